//! `fuse`: an adapter merged into the model's weights, saved as a model folder (mlx-lm's
//! `mlx_lm.fuse`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use mlx_rs::nn::{Module, ParamMap};
use serde_json::Value;

use super::device::{select_device, DeviceArg};
use super::ModelCli;
use crate::hub::{self, HubOptions};
use crate::tuner;

/// `fuse`.
#[derive(Debug, Args)]
pub struct FuseArgs<O: Args> {
    /// The base model: a local folder (with config.json) or a Hugging Face model id.
    #[arg(long, value_name = "DIR|ID")]
    pub model: String,
    /// The adapter (adapter_config.json and adapters.safetensors).
    #[arg(long, value_name = "DIR", default_value = "adapters")]
    pub adapter_path: PathBuf,
    /// Where to write the fused model (made if missing; its weights are replaced).
    #[arg(long, value_name = "DIR", default_value = "fused_model")]
    pub save_path: PathBuf,
    /// Write dense weights: quantized layers are dequantized and the quantization is
    /// dropped from config.json.
    #[arg(long)]
    pub dequantize: bool,
    /// Device to run on (default: the GPU when MLX has one, else the CPU).
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
}

/// Largest safetensors file written before the weights are split (mlx-lm's 5 GB).
const MAX_FILE_BYTES: usize = 5 << 30;

/// The files of a model folder besides config.json and the weights that a fused folder
/// needs to be loaded and run: the tokenizer's, the chat template, the generation config.
fn is_tokenizer_file(name: &str) -> bool {
    name.starts_with("tokenizer")
        || name.starts_with("chat_template")
        || name.starts_with("vocab")
        || name.ends_with(".tiktoken")
        || matches!(
            name,
            "special_tokens_map.json"
                | "added_tokens.json"
                | "merges.txt"
                | "generation_config.json"
                | "preprocessor_config.json"
        )
}

/// Runs `fuse`.
pub fn run<M: ModelCli>(args: FuseArgs<M::Options>) -> Result<()> {
    let dir = hub::resolve(&args.model, &HubOptions::default())?.dir;
    if args.save_path.exists() && same_dir(&args.save_path, &dir) {
        bail!(
            "--save-path {} is the model's own folder; choose another",
            args.save_path.display()
        );
    }
    select_device(args.device)?;
    let mut model =
        super::commands::load_adapted::<M>(&dir, &args.options, Some(args.adapter_path.as_path()))?;
    let fused = tuner::fuse(&mut model, args.dequantize).context("cannot fuse the adapter")?;
    let params = model.parameters()?;
    save_folder(&dir, &args.save_path, &params, args.dequantize)
        .with_context(|| format!("cannot write {}", args.save_path.display()))?;
    eprintln!(
        "fused {fused} adapted layer(s){}; wrote {}",
        if args.dequantize { ", dequantized" } else { "" },
        args.save_path.display()
    );
    Ok(())
}

/// Whether `a` and `b` are the same folder.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes a model folder into `out`: the weights (one safetensors file, or shards of at
/// most 5 GB with an index, as mlx-lm saves them), `src`'s config.json (without its
/// quantization when `dequantized`) and the tokenizer files of `src`.
fn save_folder(src: &Path, out: &Path, params: &ParamMap, dequantized: bool) -> Result<()> {
    fs::create_dir_all(out)?;
    for entry in fs::read_dir(out)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".safetensors") || name == "model.safetensors.index.json" {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    save_weights(out, params)?;

    let config_path = src.join("config.json");
    let text = crate::load::read_text_file(&config_path)?;
    let mut config: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
    if let Some(c) = config.as_object_mut() {
        if dequantized {
            c.remove("quantization");
            c.remove("quantization_config");
        } else if let Some(q) = c.get("quantization").cloned() {
            c.insert("quantization_config".into(), q);
        }
    }
    fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;

    for entry in fs::read_dir(src)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && is_tokenizer_file(name) {
            fs::copy(&path, out.join(name))
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// The weights as mlx-lm's `save_model` writes them.
fn save_weights(out: &Path, params: &ParamMap) -> Result<()> {
    let mut shards: Vec<Vec<(&String, &mlx_rs::Array)>> = vec![Vec::new()];
    let mut size = 0;
    for (name, a) in params {
        if size + a.nbytes() > MAX_FILE_BYTES && !shards.last().is_some_and(Vec::is_empty) {
            shards.push(Vec::new());
            size = 0;
        }
        size += a.nbytes();
        if let Some(last) = shards.last_mut() {
            last.push((name, a));
        }
    }
    let metadata = [("format", "mlx")];
    if shards.len() == 1 {
        let path = out.join("model.safetensors");
        mlx_rs::io::save_safetensors(&path, shards[0].iter().copied(), metadata)?;
        return Ok(());
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        mlx_rs::io::save_safetensors(out.join(&file), shard.iter().copied(), metadata)?;
        for (name, _) in shard {
            weight_map.insert((*name).clone(), file.clone().into());
        }
    }
    let total: usize = params.values().map(mlx_rs::Array::nbytes).sum();
    let index = serde_json::json!({
        "metadata": { "total_size": total },
        "weight_map": weight_map,
    });
    fs::write(
        out.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index)?,
    )?;
    Ok(())
}
