//! End-to-end runs of the built `qwen3_5` binary on the tiny fixture models, checked
//! against the mlx-lm 0.32.2 reference outputs of `tests/fixtures/qwen/*.expected.json`:
//! `logits` (the .npy read back), greedy `generate` (the printed text mapped back to ids),
//! a two-turn `chat`, and bad inputs that need a model (corrupt weights, bad config,
//! out-of-range ids, unwritable output).
//!
//! The fixture models have 256 output rows of which 250 are "real" (mlx-lm's reference
//! masks ids >= 250 when sampling). Each test copies a fixture into a temporary folder and
//! adds a character-level tokenizer of exactly 250 ids (so the CLI masks the 6 padded rows
//! as it does Qwen 3.5's 243), in which every id is one distinct character or a ChatML
//! special, so printed text maps back to token ids one to one.

#[path = "../common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_logits_close, copy_to_temp, expected, VARIANTS};
use mlx_lm::chat::{ChatOptions, ChatTemplate, Message};
use mlx_lm::tokenizer::Tokenizer;
use qwen3_5::{GenerateOptions, SamplingParams};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_qwen3_5");

/// Ids of the tokenizer below (the fixtures' real vocabulary size).
const VOCAB: u32 = 250;

/// Where the ChatML specials sit in the test vocabulary.
#[derive(Clone, Copy)]
struct Specials {
    end_of_text: u32,
    im_start: u32,
    im_end: u32,
}

/// The default placement: the last three ids, which none of the reference greedy runs
/// samples (except `<|im_start|>` 248 in one, which is not a stop token).
const SPECIALS: Specials = Specials {
    end_of_text: 247,
    im_start: 248,
    im_end: 249,
};

/// Id → text of the character-level vocabulary: ids not taken by a special get, in order,
/// "\n", the printable ASCII characters, then Latin letters from U+00C0 on (each one char).
fn vocabulary(sp: Specials) -> Vec<String> {
    let mut chars = std::iter::once('\n')
        .chain(' '..='~')
        .chain((0xC0u32..).filter_map(char::from_u32));
    (0..VOCAB)
        .map(|id| match id {
            _ if id == sp.end_of_text => "<|endoftext|>".to_string(),
            _ if id == sp.im_start => "<|im_start|>".to_string(),
            _ if id == sp.im_end => "<|im_end|>".to_string(),
            _ => chars.next().unwrap().to_string(),
        })
        .collect()
}

/// Writes tokenizer.json (BPE over single characters, no merges, a fusing decoder) and
/// tokenizer_config.json with Qwen 3.5's chat template.
fn write_tokenizer(dir: &Path, sp: Specials) {
    let vocab = vocabulary(sp);
    let specials = [sp.end_of_text, sp.im_start, sp.im_end];
    // The specials are in the model's vocabulary too, so that they keep their ids when
    // they are not the last ones.
    let model_vocab: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), json!(id)))
        .collect();
    let added: Vec<Value> = specials
        .iter()
        .map(|&id| {
            json!({"id": id, "content": vocab[id as usize], "single_word": false,
                   "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": model_vocab, "merges": []}
    });
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
    let template =
        std::fs::read_to_string(common::fixtures().join("../qwen3_5_chat_template.jinja")).unwrap();
    let config = json!({"chat_template": template, "eos_token": "<|im_end|>",
                        "pad_token": "<|endoftext|>", "bos_token": null});
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config).unwrap() + "\n",
    )
    .unwrap();
}

/// The committed copy of the default test tokenizer (the README's examples use it).
fn committed_tokenizer() -> PathBuf {
    common::fixtures().join("../char-tokenizer")
}

#[test]
fn committed_char_tokenizer_is_current() {
    // Regenerate with QWEN35_UPDATE_FIXTURES=1.
    let dir = scratch("char-tokenizer");
    write_tokenizer(&dir, SPECIALS);
    let committed = committed_tokenizer();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let fresh = std::fs::read(dir.join(file)).unwrap();
        if std::env::var("QWEN35_UPDATE_FIXTURES").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(&committed).unwrap();
            std::fs::write(committed.join(file), &fresh).unwrap();
        }
        let old = std::fs::read(committed.join(file)).unwrap_or_default();
        assert!(
            old == fresh,
            "{} is stale: rerun with QWEN35_UPDATE_FIXTURES=1",
            committed.join(file).display()
        );
    }
    // It loads, has 250 ids, and maps each id to one character or a special.
    let tokenizer = Tokenizer::from_model_dir(&committed).unwrap();
    assert_eq!(tokenizer.vocab_size(), VOCAB as usize);
    assert_eq!(tokenizer.stop_tokens(), [249, 247]);
    let all: Vec<u32> = (0..VOCAB).collect();
    let text = tokenizer.decode(&all, false).unwrap();
    assert_eq!(text, text_of(&all, SPECIALS));
    assert_eq!(tokenizer.encode(&text).unwrap(), all);
    assert_eq!(ids_of(&text, SPECIALS), all);
}

/// A temporary copy of a fixture model with the test tokenizer.
fn model_with_tokenizer(variant: &str, tag: &str, sp: Specials) -> PathBuf {
    let dir = copy_to_temp(variant, tag);
    write_tokenizer(&dir, sp);
    dir
}

/// The text of ids in the test vocabulary.
fn text_of(ids: &[u32], sp: Specials) -> String {
    let vocab = vocabulary(sp);
    ids.iter().map(|&i| vocab[i as usize].as_str()).collect()
}

/// The ids of text printed by the binary (specials written out as their text).
fn ids_of(text: &str, sp: Specials) -> Vec<u32> {
    let vocab = vocabulary(sp);
    let mut ids = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let special = [sp.end_of_text, sp.im_start, sp.im_end]
            .into_iter()
            .find(|&id| rest.starts_with(vocab[id as usize].as_str()));
        let (id, len) = match special {
            Some(id) => (id, vocab[id as usize].len()),
            None => {
                let c = rest.chars().next().unwrap();
                let id = vocab
                    .iter()
                    .position(|t| *t == c.to_string())
                    .unwrap_or_else(|| panic!("{c:?} is not in the test vocabulary"));
                (id as u32, c.len_utf8())
            }
        };
        ids.push(id);
        rest = &rest[len..];
    }
    ids
}

fn run(args: &[&str], stdin: &str) -> Output {
    common::retry_jit_cache_race(|| {
        let mut command = Command::new(BIN);
        command.args(args).env("HF_HUB_OFFLINE", "1");
        common::output_with_stdin(&mut command, stdin)
    })
}

/// Runs the binary and asserts success; returns (stdout, stderr).
#[track_caller]
fn run_ok(args: &[&str], stdin: &str) -> (String, String) {
    let out = run(args, stdin);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// Asserts a failure: exit 1, one `error: ` line containing `needle`, nothing on stdout.
#[track_caller]
fn assert_fails(args: &[&str], needle: &str) -> String {
    let out = run(args, "");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr:?}");
    let line = stderr.trim_end_matches('\n');
    assert!(
        !line.contains('\n'),
        "{args:?}: more than one line: {stderr:?}"
    );
    assert!(line.starts_with("error: "), "{args:?}: {line:?}");
    assert!(!line.contains("panicked"), "{args:?}: {line:?}");
    assert!(line.contains(needle), "{args:?}: {line:?} lacks {needle:?}");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    line.to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3_5-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reads a little-endian float32 .npy file (format 1.0): (shape, data).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "magic and version");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let dims = header.split("'shape': (").nth(1).unwrap();
    let dims = &dims[..dims.find(')').unwrap()];
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "data length");
    (shape, data)
}

/// Nothing but `expected` in `dir` (no partial output left behind).
#[track_caller]
fn assert_only_files(dir: &Path, expected: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, expected, "files in {}", dir.display());
}

#[test]
fn logits_match_mlx_lm_for_every_variant() {
    let out_dir = scratch("logits");
    for v in VARIANTS {
        let exp = expected(v);
        let out = out_dir.join(format!("{v}.npy"));
        let model = common::model_dir(v);
        let (stdout, stderr) = run_ok(
            &[
                "logits",
                "--model",
                s(&model),
                "--tokens",
                &csv(&exp.prompt),
                "--out",
                s(&out),
                "--device",
                "cpu",
                // As mlx-lm loads it (the CPU default runs a quantized model in float32).
                "--float-dtype",
                "stored",
            ],
            "",
        );
        assert!(stdout.is_empty(), "{v}: {stdout}");
        assert!(stderr.contains("11 x 256 float32"), "{v}: {stderr}");
        let (shape, data) = read_npy(&out);
        let want: Vec<usize> = exp.logits_full.0.iter().map(|&d| d as usize).collect();
        assert_eq!(shape, want, "{v}");
        assert_logits_close(v, &data, &exp.logits_full.1, 256);
    }
    let mut files: Vec<String> = VARIANTS.iter().map(|v| format!("{v}.npy")).collect();
    files.sort();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_only_files(&out_dir, &files);
}

#[test]
fn logits_of_one_token_and_of_a_prefix_agree() {
    // The first row of the whole prompt equals the logits of the first token alone.
    let v = "mlx-bf16-untied";
    let exp = expected(v);
    let dir = scratch("logits-one");
    let out = dir.join("one.npy");
    let model = common::model_dir(v);
    run_ok(
        &[
            "logits",
            "--model",
            s(&model),
            // As mlx-lm computes: bfloat16 activations (the CPU default is float32 ones).
            "--float-dtype",
            "stored",
            "--tokens",
            &exp.prompt[0].to_string(),
            "--out",
            s(&out),
        ],
        "",
    );
    let (shape, data) = read_npy(&out);
    assert_eq!(shape, [1, 256]);
    assert_logits_close(v, &data, &exp.logits_full.1[..256], 256);
}

/// `generate --raw` on the reference prompt, greedy, no presence penalty (mlx-lm's
/// greedy reference has none; the CLI's default is the model card's 1.5).
fn greedy_args<'a>(model: &'a str, prompt: &'a str, max_tokens: &'a str) -> Vec<&'a str> {
    vec![
        "generate",
        "--model",
        model,
        "--raw",
        "--prompt",
        prompt,
        "--temp",
        "0",
        "--presence-penalty",
        "0",
        "--max-tokens",
        max_tokens,
        // As mlx-lm loads it (the CPU default runs a quantized model in float32).
        "--float-dtype",
        "stored",
    ]
}

#[test]
fn greedy_generate_prints_the_mlx_lm_tokens() {
    for v in VARIANTS {
        let exp = expected(v);
        let dir = model_with_tokenizer(v, "greedy", SPECIALS);
        let prompt = text_of(&exp.prompt, SPECIALS);
        let n = exp.greedy_masked.len().to_string();
        let (stdout, stderr) = run_ok(&greedy_args(s(&dir), &prompt, &n), "");
        // The reply, then a newline the command adds when the reply lacks one.
        let reply = stdout.strip_suffix('\n').unwrap();
        assert_eq!(
            ids_of(reply, SPECIALS),
            exp.greedy_masked,
            "{v}: {stdout:?}"
        );
        // mlx-lm's statistics block on stderr.
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 4, "{v}: {stderr}");
        assert_eq!(lines[0], "==========");
        assert!(
            lines[1].starts_with("Prompt: 11 tokens, ") && lines[1].ends_with(" tokens-per-sec"),
            "{stderr}"
        );
        assert!(
            lines[2].starts_with(&format!("Generation: {n} tokens, ")),
            "{stderr}"
        );
        // The tiny model needs well under a megabyte: 0.000 GB at mlx-lm's precision.
        let gb: f64 = lines[3]
            .strip_prefix("Peak memory: ")
            .and_then(|l| l.strip_suffix(" GB"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((0.0..0.01).contains(&gb), "{stderr}");
    }
}

#[test]
fn padded_vocabulary_ids_are_never_sampled() {
    // Unmasked, this model's greedy choice is id 251 every step: a padded row, which the
    // tokenizer (250 ids) cannot print. The CLI masks it and follows mlx-lm's masked run.
    let v = "mlx-bf16-tied";
    let exp = expected(v);
    assert!(exp.greedy.iter().all(|&t| t >= VOCAB), "{:?}", exp.greedy);
    let dir = model_with_tokenizer(v, "mask", SPECIALS);
    let prompt = text_of(&exp.prompt, SPECIALS);
    let (stdout, _) = run_ok(&greedy_args(s(&dir), &prompt, "20"), "");
    assert_eq!(
        ids_of(stdout.strip_suffix('\n').unwrap(), SPECIALS),
        exp.greedy_masked
    );

    // Sampling at a high temperature never reaches them either.
    let (stdout, _) = run_ok(
        &[
            "generate",
            "--model",
            s(&dir),
            "--raw",
            "--prompt",
            &prompt,
            "--temp",
            "5",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--max-tokens",
            "40",
            "--seed",
            "3",
        ],
        "",
    );
    // Any id printed is one of the 250 (a stop token may end the reply early).
    let reply = stdout.strip_suffix('\n').unwrap_or(&stdout);
    assert!(ids_of(reply, SPECIALS).iter().all(|&t| t < VOCAB));
}

#[test]
fn sampling_is_reproducible_per_seed() {
    let v = "mlx-bf16-untied";
    let exp = expected(v);
    let dir = model_with_tokenizer(v, "seed", SPECIALS);
    let prompt = text_of(&exp.prompt, SPECIALS);
    let args = |seed: &'static str| {
        vec![
            "generate".to_string(),
            "--model".into(),
            s(&dir).into(),
            "--raw".into(),
            "--prompt".into(),
            prompt.clone(),
            "--temp".into(),
            "1.5".into(),
            "--top-k".into(),
            "0".into(),
            "--top-p".into(),
            "1".into(),
            "--max-tokens".into(),
            "30".into(),
            "--seed".into(),
            seed.into(),
        ]
    };
    let go = |seed| {
        let a = args(seed);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_ok(&a, "").0
    };
    let (a, b, c) = (go("1"), go("1"), go("2"));
    assert_eq!(a, b, "same seed, same text");
    assert_ne!(a, c, "another seed, other text");
    // Not simply the greedy text.
    assert_ne!(
        ids_of(a.strip_suffix('\n').unwrap_or(&a), SPECIALS),
        exp.greedy_masked
    );
}

#[test]
fn generation_ends_at_a_stop_token() {
    // Put <|im_end|> where the 6th greedy token is: the reply is the first 5 tokens, and
    // the stop token counts as generated (as in mlx-lm).
    let v = "mlx-bf16-untied";
    let exp = expected(v);
    let stop = exp.greedy_masked[5];
    assert!(!exp.greedy_masked[..5].contains(&stop));
    assert!(!exp.prompt.contains(&stop));
    let sp = Specials {
        im_end: stop,
        ..SPECIALS
    };
    let dir = model_with_tokenizer(v, "stop", sp);
    let prompt = text_of(&exp.prompt, sp);
    let (stdout, stderr) = run_ok(&greedy_args(s(&dir), &prompt, "20"), "");
    assert_eq!(
        ids_of(stdout.strip_suffix('\n').unwrap(), sp),
        exp.greedy_masked[..5]
    );
    assert!(stderr.contains("Generation: 6 tokens, "), "{stderr}");

    // <|endoftext|> stops as well.
    let sp = Specials {
        end_of_text: stop,
        im_end: 249,
        im_start: 248,
    };
    let dir = model_with_tokenizer(v, "stop-eot", sp);
    let prompt = text_of(&exp.prompt, sp);
    let (stdout, _) = run_ok(&greedy_args(s(&dir), &prompt, "20"), "");
    assert_eq!(
        ids_of(stdout.strip_suffix('\n').unwrap(), sp),
        exp.greedy_masked[..5]
    );
}

#[test]
fn templated_generate_and_dry_run_agree() {
    // Without --raw the prompt goes through the chat template; --dry-run shows exactly the
    // ids the real run feeds, and the real run's prompt count matches.
    let v = "mlx-q4-tied";
    let dir = model_with_tokenizer(v, "template", SPECIALS);
    let base = [
        "generate",
        "--model",
        s(&dir),
        "--prompt",
        "Hi there",
        "--system",
        "Be brief.",
        "--temp",
        "0",
        "--max-tokens",
        "8",
    ];
    let mut dry = base.to_vec();
    dry.push("--dry-run");
    let (stdout, _) = run_ok(&dry, "");
    let (text, ids) = stdout.rsplit_once("\n[").unwrap();
    assert!(text.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
    let (count, ids) = ids.trim_end().split_once(" tokens] ").unwrap();
    let ids: Vec<u32> = ids.split(',').map(|t| t.parse().unwrap()).collect();
    assert_eq!(ids.len(), count.parse::<usize>().unwrap());
    assert_eq!(text_of(&ids, SPECIALS), text);
    let (reply, stderr) = run_ok(&base, "");
    assert!(
        stderr.contains(&format!("Prompt: {} tokens, ", ids.len())),
        "{stderr}"
    );

    // The same reply as the library's greedy generation from these ids.
    let model = qwen3_5::load(&dir).unwrap();
    let opts = GenerateOptions {
        max_tokens: 8,
        sampling: SamplingParams {
            presence_penalty: 1.5,
            seed: Some(0),
            ..SamplingParams::greedy()
        },
        stop_tokens: vec![SPECIALS.im_end, SPECIALS.end_of_text],
        valid_vocab_size: Some(VOCAB as i32),
        ..Default::default()
    };
    let want: Vec<u32> = model
        .generate(&ids, opts)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(reply, format!("{}\n", text_of(&want, SPECIALS)));
}

/// Greedy ids after `prompt` (from an empty cache), with the CLI's chat settings.
fn library_greedy(model: &qwen3_5::Model, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let opts = GenerateOptions {
        max_tokens,
        sampling: SamplingParams {
            seed: Some(0),
            ..SamplingParams::greedy()
        },
        stop_tokens: vec![SPECIALS.im_end, SPECIALS.end_of_text],
        valid_vocab_size: Some(VOCAB as i32),
        ..Default::default()
    };
    model
        .generate(prompt, opts)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn chat_keeps_the_conversation_across_turns() {
    let v = "mlx-bf16-untied";
    let dir = model_with_tokenizer(v, "chat", SPECIALS);
    let args = [
        "chat",
        "--model",
        s(&dir),
        "--system",
        "Be brief.",
        "--temp",
        "0",
        "--presence-penalty",
        "0",
        "--max-tokens",
        "6",
    ];
    let (stdout, stderr) = run_ok(&args, "Hello\n\nHow are you?\n");
    assert!(stderr.is_empty(), "not a terminal, no statistics: {stderr}");

    // The reference: the library, each turn generated from an empty cache on the whole
    // token sequence so far: [system + user 1 + generation prompt] reply 1 <|im_end|> "\n"
    // [user 2 + generation prompt] reply 2.
    let tokenizer = Tokenizer::from_model_dir(&dir).unwrap();
    let template = ChatTemplate::from_model_dir(&dir).unwrap();
    let model = qwen3_5::load(&dir).unwrap();
    let render = |m: &[Message]| {
        tokenizer
            .encode(&template.render(m, &ChatOptions::default()).unwrap())
            .unwrap()
    };
    let mut sequence = render(&[Message::system("Be brief."), Message::user("Hello")]);
    let reply1 = library_greedy(&model, &sequence, 6);
    sequence.extend(&reply1);
    sequence.push(SPECIALS.im_end);
    sequence.extend(tokenizer.encode("\n").unwrap());
    sequence.extend(render(&[Message::user("How are you?")]));
    let reply2 = library_greedy(&model, &sequence, 6);
    assert_eq!(
        stdout,
        format!(
            "{}\n{}\n",
            text_of(&reply1, SPECIALS),
            text_of(&reply2, SPECIALS)
        )
    );
    // The second turn depends on the first: alone it would be answered differently.
    let alone = library_greedy(&model, &render(&[Message::user("How are you?")]), 6);
    assert_ne!(alone, reply2, "turn 2 does not see turn 1");

    // /reset starts over: the same question then gets the answer it gets alone.
    let (stdout, _) = run_ok(&args, "Hello\n/reset\nHow are you?\n/quit\nignored\n");
    let second = stdout
        .strip_prefix(&format!("{}\n", text_of(&reply1, SPECIALS)))
        .unwrap();
    let alone_with_system = library_greedy(
        &model,
        &render(&[Message::system("Be brief."), Message::user("How are you?")]),
        6,
    );
    assert_eq!(
        second,
        format!("{}\n", text_of(&alone_with_system, SPECIALS))
    );
}

#[test]
fn device_flag() {
    let v = "mlx-bf16-tied";
    let exp = expected(v);
    let dir = model_with_tokenizer(v, "device", SPECIALS);
    let prompt = text_of(&exp.prompt, SPECIALS);
    let mut args = greedy_args(s(&dir), &prompt, "20");
    args.extend(["--device", "cpu"]);
    let (stdout, _) = run_ok(&args, "");
    assert_eq!(
        ids_of(stdout.strip_suffix('\n').unwrap(), SPECIALS),
        exp.greedy_masked
    );
    let mut args = greedy_args(s(&dir), &prompt, "20");
    args.extend(["--device", "gpu"]);
    if mlx_rs::Device::gpu().is_available() {
        let (stdout, _) = run_ok(&args, "");
        assert_eq!(
            ids_of(stdout.strip_suffix('\n').unwrap(), SPECIALS),
            exp.greedy_masked
        );
    } else {
        assert_fails(&args, "--device gpu: this MLX build has no GPU backend");
    }
}

mod bad_models;
mod serve_adapter;
mod serve_engine;
mod serve_http;
mod serve_memory;
