//! `bench --compare mlx-lm`: the same benchmark run by mlx-lm in Python
//! (`benches/mlx_lm_peer.py`, built into the binary), on the same random weights and
//! prompt.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::report::Measured;

/// The peer script, `benches/mlx_lm_peer.py` of this repository.
const PEER_SCRIPT: &str = include_str!("../../../../benches/mlx_lm_peer.py");

/// What `bench` asks of the peer.
pub struct PeerRequest<'a> {
    /// The Python interpreter (with mlx and mlx-lm).
    pub python: &'a str,
    /// The model's config.json, without our quantization block (the peer quantizes).
    pub config: &'a Path,
    /// `bfloat16`, `float16` or `float32`.
    pub dtype: &'a str,
    /// Prompt tokens.
    pub prompt: u32,
    /// Tokens to generate.
    pub gen: u32,
    /// Prompt ids are drawn below this.
    pub vocab_limit: usize,
    /// Seed of the weights and the prompt.
    pub seed: u64,
    /// Quantization bits.
    pub quantize: Option<i32>,
    /// `cpu` or `gpu`, when chosen.
    pub device: Option<&'static str>,
    /// MLX memory limit in GB.
    pub memory_limit: Option<f64>,
}

/// The peer's answer.
pub struct PeerRun {
    /// Its measurements.
    pub measured: Measured,
    /// Its greedy tokens.
    pub tokens: Vec<u32>,
    /// Its device, as it names it.
    pub device: String,
    /// The MLX version of the peer's Python.
    pub mlx_version: String,
}

/// A file in the temporary folder, removed when dropped.
pub struct TempFile(PathBuf);

impl TempFile {
    /// Writes `contents` to `name` (made unique to this process) in the temporary folder.
    pub fn new(name: &str, contents: &str) -> Result<TempFile> {
        let path = std::env::temp_dir().join(format!("{}-{name}", std::process::id()));
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(TempFile(path))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The peer script to run: `explicit` (`--peer-script`), else the built-in copy written
/// to a temporary file.
pub fn peer_script(explicit: Option<&Path>) -> Result<PeerScript> {
    match explicit {
        Some(p) if p.is_file() => Ok(PeerScript::Given(p.to_path_buf())),
        Some(p) => bail!("--peer-script {}: no such file", p.display()),
        None => Ok(PeerScript::BuiltIn(TempFile::new(
            "mlx_lm_peer.py",
            PEER_SCRIPT,
        )?)),
    }
}

/// The peer script's file.
pub enum PeerScript {
    /// Given with `--peer-script`.
    Given(PathBuf),
    /// The built-in copy.
    BuiltIn(TempFile),
}

impl PeerScript {
    /// Where it is.
    pub fn path(&self) -> &Path {
        match self {
            PeerScript::Given(p) => p,
            PeerScript::BuiltIn(t) => t.path(),
        }
    }
}

/// Fails early (before building our model) when the peer's Python cannot import mlx-lm's
/// model of `model_type`.
pub fn check_peer_python(python: &str, model_type: &str) -> Result<()> {
    if model_type.is_empty()
        || !model_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("--compare mlx-lm: the config's model_type {model_type:?} is not a module name");
    }
    let out = Command::new(python)
        .arg("-c")
        .arg(format!(
            "import mlx.core, mlx_lm, mlx_lm.generate, mlx_lm.models.{model_type}"
        ))
        .output()
        .with_context(|| format!("--compare mlx-lm: cannot run {python}"))?;
    if !out.status.success() {
        let last = last_line(&out.stderr);
        bail!("--compare mlx-lm: {python} cannot import mlx-lm's {model_type} model: {last}");
    }
    Ok(())
}

/// The last non-empty line of a child's stderr (where Python puts the exception).
fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Runs the peer once (a warm-up and one timed run) and reads its JSON answer.
pub fn run_peer(script: &Path, r: &PeerRequest) -> Result<PeerRun> {
    let mut cmd = Command::new(r.python);
    cmd.arg(script)
        .arg("--config")
        .arg(r.config)
        .args(["--dtype", r.dtype])
        .args(["--prompt", &r.prompt.to_string()])
        .args(["--gen", &r.gen.to_string()])
        .args(["--vocab-limit", &r.vocab_limit.to_string()])
        .args(["--seed", &r.seed.to_string()]);
    if let Some(b) = r.quantize {
        cmd.args(["--quantize", &b.to_string()]);
    }
    if let Some(d) = r.device {
        cmd.args(["--device", d]);
    }
    if let Some(gb) = r.memory_limit {
        cmd.args(["--memory-limit", &gb.to_string()]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", r.python))?;
    if !out.status.success() {
        let last = last_line(&out.stderr);
        bail!(
            "the mlx-lm peer ({} {}) failed ({}): {last}",
            r.python,
            script.display(),
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| anyhow!("the mlx-lm peer printed no JSON"))?;
    let v: Value = serde_json::from_str(line).context("the mlx-lm peer's JSON")?;
    let num = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| anyhow!("the mlx-lm peer's JSON lacks {k}"))
    };
    Ok(PeerRun {
        measured: Measured {
            prefill_tps: num("prefill_tps")?,
            decode_tps: num("decode_tps")?,
            peak_mem_bytes: num("peak_mem_bytes")? as u64,
            prefill_peak_bytes: v["prefill_peak_mem_bytes"].as_u64().unwrap_or(0),
            prefill_tps_cpu: v["prefill_tps_cpu"].as_f64().unwrap_or(f64::NAN),
            decode_tps_cpu: v["decode_tps_cpu"].as_f64().unwrap_or(f64::NAN),
            host_us: None,
        },
        tokens: v["tokens"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_u64().map(|t| t as u32))
                    .collect()
            })
            .unwrap_or_default(),
        device: v["device"].as_str().unwrap_or("?").to_string(),
        mlx_version: v["mlx_version"].as_str().unwrap_or("?").to_string(),
    })
}
