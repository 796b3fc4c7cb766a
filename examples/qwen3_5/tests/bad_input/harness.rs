//! The bad-input test's harness: model folders to break, the binary run with its
//! invariants checked (one `error: ` line, no signal, no panic, no repeated cause), library
//! calls that must return `Err`, and the table of what happened.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_qwen3_5");

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch folder for one case.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3_5-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A complete tiny model folder: fixture weights and config, tiny tokenizer, template.
pub(crate) fn model(name: &str) -> PathBuf {
    let dir = common::copy_to_temp("mlx-bf16-tied", name);
    common::write_tiny_tokenizer(&dir);
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_5_chat_template.jinja");
    std::fs::copy(template, dir.join("chat_template.jinja")).unwrap();
    dir
}

pub(crate) fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

pub(crate) fn write_config(dir: &Path, v: &serde_json::Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(v).unwrap(),
    )
    .unwrap();
}

/// Rewrites `model.safetensors` through `edit` of its (name → array) map.
pub(crate) fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, mlx_rs::Array)>)) {
    let path = dir.join("model.safetensors");
    let st = mlx_rs::io::load_safetensors(&path).unwrap();
    let mut arrays: Vec<(String, mlx_rs::Array)> = st.arrays.into_iter().collect();
    arrays.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut arrays);
    mlx_rs::eval(&arrays.iter().map(|(_, a)| a).collect::<Vec<_>>()).unwrap();
    let tmp = dir.join("new.safetensors");
    mlx_rs::io::save_safetensors(&tmp, arrays.iter().map(|(n, a)| (n, a)), &st.metadata).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

pub(crate) fn name_ending(arrays: &[(String, mlx_rs::Array)], suffix: &str) -> usize {
    arrays
        .iter()
        .position(|(n, _)| n.ends_with(suffix))
        .unwrap()
}

/// What one CLI run did.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) line: String,
}

/// Runs the binary offline (its own empty Hugging Face home; `endpoint`, when given, as the
/// hub's address) with `stdin` as its input.
fn run_binary(args: &[&str], stdin: &[u8], endpoint: Option<&str>) -> std::process::Output {
    let hf_home = std::env::temp_dir().join(format!("qwen3_5-bad-hf-{}", std::process::id()));
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("HF_HOME", &hf_home)
        .env("HF_HUB_OFFLINE", "1");
    if let Some(url) = endpoint {
        cmd.env("HF_ENDPOINT", url);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Runs the binary with no reachable hub; checks the invariants every failure keeps.
#[track_caller]
pub(crate) fn cli(args: &[&str]) -> Run {
    let out = run_binary(args, b"hello\n", Some("http://127.0.0.1:9"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code();
    assert!(
        code.is_some(),
        "{args:?}: killed by a signal ({:?}): {stderr}",
        out.status
    );
    assert_ne!(code, Some(0), "{args:?}: succeeded: {stderr}");
    let line = stderr.trim_end_matches('\n');
    assert!(
        !line.contains('\n'),
        "{args:?}: more than one stderr line: {stderr:?}"
    );
    assert!(line.starts_with("error: "), "{args:?}: {line:?}");
    assert!(
        !line.contains("panicked") && !line.contains("internal error"),
        "{args:?}: {line:?}"
    );
    assert_no_repeated_cause(line);
    Run {
        code,
        line: line.to_string(),
    }
}

/// A message must not repeat its cause (`…: EOF at line 2: EOF at line 2`, `(os error 19):
/// …(os error 19)`): an error chain printed with a cause its message already holds.
#[track_caller]
pub(crate) fn assert_no_repeated_cause(line: &str) {
    let parts: Vec<&str> = line.split(": ").collect();
    for w in parts.windows(2) {
        assert!(
            w[0] != w[1] && !(w[1].len() > 8 && w[0].ends_with(w[1])),
            "a cause is repeated: {line:?}"
        );
    }
    if let Some(i) = line.find("(os error") {
        let code = &line[i..line[i..].find(')').map_or(line.len(), |j| i + j + 1)];
        assert_eq!(
            line.matches(code).count(),
            1,
            "a cause is repeated: {line:?}"
        );
    }
}

/// Runs the binary, which must succeed; returns its stdout and, as the table's line, the
/// stderr lines that contain `keep` (there must be one).
#[track_caller]
pub(crate) fn cli_ok(args: &[&str], stdin: &str, keep: &str) -> (Run, String) {
    let out = run_binary(args, stdin.as_bytes(), None);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    let kept: Vec<&str> = stderr.lines().filter(|l| l.contains(keep)).collect();
    assert!(!kept.is_empty(), "{args:?}: no {keep:?} in {stderr}");
    (
        Run {
            code: Some(0),
            line: kept.join(" / "),
        },
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs a library call; it must return `Err`, not panic.
#[track_caller]
pub(crate) fn lib<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_)) => panic!("{what}: the library accepted it"),
        Ok(Err(msg)) => {
            assert!(!msg.is_empty(), "{what}: empty message");
            msg
        }
        Err(_) => panic!("{what}: the library panicked"),
    }
}

pub(crate) fn load(dir: &Path) -> Result<qwen3_5::Model, String> {
    qwen3_5::load(dir).map_err(|e| e.to_string())
}

/// One row of the table.
pub(crate) struct Row {
    pub(crate) case: String,
    pub(crate) cli: Option<Run>,
    pub(crate) library: Option<String>,
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Shortens scratch paths so the table does not depend on the run.
pub(crate) fn tidy(text: &str) -> String {
    let tmp = std::env::temp_dir();
    let tmp = tmp.to_str().unwrap().trim_end_matches('/');
    let mut out = text.replace(&format!("{tmp}/"), "<tmp>/");
    // <tmp>/qwen3_5-bad-<pid>-<name> and qwen3_5-test-<pid>-<variant>-<name>
    let pid = std::process::id().to_string();
    out = out.replace(&format!("-{pid}"), "");
    out.replace('|', "\\|")
}

pub(crate) fn write_table(rows: &[Row]) {
    let mut md = String::from(
        "| Case | CLI: exit code, stderr | Library (`qwen3_5`): `Err` |\n| --- | --- | --- |\n",
    );
    for r in rows {
        let cli = r.cli.as_ref().map_or("—".to_string(), |run| {
            format!("{}: `{}`", run.code.unwrap(), tidy(&run.line))
        });
        let lib = r
            .library
            .as_ref()
            .map_or("—".to_string(), |m| format!("`{}`", tidy(m)));
        md.push_str(&format!("| {} | {cli} | {lib} |\n", r.case));
    }
    let target = workspace_root().join("target/bad-input-qwen3_5.md");
    let _ = std::fs::write(&target, &md);
    if std::env::var_os("UPDATE_BAD_INPUT_DOC").is_some() {
        replace_section(&workspace_root().join("docs/bad-input.md"), "qwen3_5", &md);
    }
}

/// Replaces the text between `<!-- begin NAME -->` and `<!-- end NAME -->`.
pub(crate) fn replace_section(path: &Path, name: &str, body: &str) {
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = (
        format!("<!-- begin {name} -->\n"),
        format!("<!-- end {name} -->"),
    );
    let a = doc.find(&begin).expect("section start") + begin.len();
    let b = doc.find(&end).expect("section end");
    let new = format!("{}{body}{}", &doc[..a], &doc[b..]);
    std::fs::write(path, new).unwrap();
}
