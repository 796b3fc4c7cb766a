//! Loading a model folder, the way every model does it (mlx-lm's `load_model`,
//! mlx-swift-lm's `Load.swift`):
//!
//! 1. [`read_config`]: `config.json` into the model's serde struct (a missing or invalid
//!    field is an [`Error::Config`] naming it), with the `quantization` entry as a
//!    [`Quantization`];
//! 2. the model is built from it (its parameters are placeholders);
//! 3. [`load_weights`]: every tensor of the [`Checkpoint`] into a
//!    [`ParamMap`], the model's own `sanitize` step (drop or rename
//!    tensors), quantization of exactly the layers whose `.scales` are stored
//!    ([`mlx_rs::nn::quantize`]), then [`Module::update`] in
//!    [`UpdateMode::Strict`], and the parameters are evaluated.
//!
//! Strict means: a tensor the model needs and the checkpoint lacks, a tensor the model has
//! no place for, and a tensor of another shape are errors naming the tensor. Floating-point
//! parameters take the dtype the checkpoint stores them in (as in mlx-lm: a bf16
//! checkpoint gives a bf16 model); an integer tensor where a float one belongs (or the
//! reverse) is an error.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use mlx_rs::nn::{self, KeyPath, Module, Param, ParamMap, UpdateMode, VisitorMut};
use mlx_rs::ops::{QuantizationMode, QuantizeOptions};
use mlx_rs::Dtype;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;

/// The dtype a model's floating-point parameters take at load, and so its activations
/// (a model computes in its norms' and scales' dtype). A model's options carry it, with a
/// per-device default ([`FloatDtype::for_device`]); [`FloatDtype::apply`] converts a
/// checkpoint's tensors as it says (after the model's `sanitize`, before the update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FloatDtype {
    /// As the checkpoint stores them (as mlx-lm loads).
    #[default]
    Stored,
    /// Every floating-point tensor converted to this dtype.
    Cast(Dtype),
    /// Float32 activations, weight matrices as compact as stored: a quantized checkpoint
    /// gets its scales, biases, norms and unquantized layers in float32 (the packed
    /// weights stay packed: a few percent more memory); a dense one keeps its bfloat16 2-D
    /// `*.weight` tensors (linear layers, embeddings) and gets every other floating-point
    /// tensor in float32 (a float16 matrix too: no kernel reads float16). The default on
    /// the CPU, whose kernels take float32 activations ([`crate::kernels::cpu_quantized`],
    /// [`crate::kernels::cpu_bf16`], [`crate::kernels::cpu_gemm`]) while MLX's CPU products
    /// in bfloat16 are slow (Qwen3-0.6B's shapes on a 2-core EPYC: 4-bit with bfloat16
    /// activations 0.3 tokens/s prefill and decode, against 30–36 and 6.1 in float32; dense
    /// bfloat16 6.0 and 2.1, against 36–40 and 9.3–10.9 with the weights kept in bfloat16),
    /// and converting a dense bfloat16 checkpoint whole would double its memory.
    Float32Activations,
    /// Float32 for a quantized checkpoint (as [`FloatDtype::Float32Activations`]), as
    /// stored otherwise: what [`FloatDtype::Float32Activations`] becomes where MLX does the
    /// products ([`FloatDtype::for_products`]), e.g. for training, because there float32
    /// activations with bfloat16 weights make MLX convert the weight at every product
    /// (Qwen3-0.6B's shapes on the 2-core EPYC, `--cpu-gemm off`: prefill 2.5 against 6.0
    /// tokens/s in bfloat16), while quantized products still want float32 ones.
    Float32IfQuantized,
}

impl FloatDtype {
    /// The default for a model on `device`: [`FloatDtype::Float32Activations`] on the CPU,
    /// [`FloatDtype::Stored`] on a GPU.
    pub fn for_device(device: &mlx_rs::Device) -> FloatDtype {
        match device.kind() {
            Ok(mlx_rs::DeviceType::Gpu) => FloatDtype::Stored,
            _ => FloatDtype::Float32Activations,
        }
    }

    /// This option for a model whose products run in the CPU kernels (`cpu_kernels`) or in
    /// MLX: [`FloatDtype::Float32Activations`] becomes [`FloatDtype::Float32IfQuantized`]
    /// in MLX's case; other options stay.
    pub fn for_products(self, cpu_kernels: bool) -> FloatDtype {
        match self {
            FloatDtype::Float32Activations if !cpu_kernels => FloatDtype::Float32IfQuantized,
            other => other,
        }
    }

    /// `weights` (a checkpoint's tensors, after the model's `sanitize`) converted as this
    /// option says for a checkpoint that is `quantized` or not.
    pub fn apply(self, weights: ParamMap, quantized: bool) -> Result<ParamMap> {
        match self {
            FloatDtype::Stored => Ok(weights),
            FloatDtype::Cast(dtype) => cast_floats(weights, dtype),
            FloatDtype::Float32Activations | FloatDtype::Float32IfQuantized if quantized => {
                cast_floats(weights, Dtype::Float32)
            }
            FloatDtype::Float32IfQuantized => Ok(weights),
            // A bfloat16 weight matrix stays: the CPU kernels read it as stored.
            FloatDtype::Float32Activations => convert_floats(weights, Dtype::Float32, |k, w| {
                w.dtype() == Dtype::Bfloat16 && w.ndim() == 2 && k.ends_with(".weight")
            }),
        }
    }
}

/// `weights` with every floating-point tensor converted to `dtype` (lazily; the update
/// evaluates them). Integer tensors (packed quantized weights) are kept.
///
/// # Errors
/// `dtype` is not a floating-point dtype.
pub fn cast_floats(weights: ParamMap, dtype: Dtype) -> Result<ParamMap> {
    if !dtype.is_float() {
        return Err(Error::InvalidArgument(format!(
            "parameters can be converted to a floating-point dtype only, not {dtype}"
        )));
    }
    convert_floats(weights, dtype, |_, _| false)
}

/// `weights` with every floating-point tensor of another dtype converted to `dtype`,
/// except those that `keep(name, tensor)` picks.
fn convert_floats(
    weights: ParamMap,
    dtype: Dtype,
    keep: impl Fn(&str, &mlx_rs::Array) -> bool,
) -> Result<ParamMap> {
    weights
        .into_iter()
        .map(|(k, w)| {
            let w = if w.dtype().is_float() && w.dtype() != dtype && !keep(&k, &w) {
                w.astype(dtype)?
            } else {
                w
            };
            Ok((k, w))
        })
        .collect()
}

/// Reads `dir/config.json` into `T`. A missing field or a value of the wrong type is an
/// [`Error::Config`] that names the field (serde's message, with the file).
pub fn read_config<T: DeserializeOwned>(dir: impl AsRef<Path>) -> Result<T> {
    let path = dir.as_ref().join("config.json");
    let text = read_text_file(&path)?;
    serde_json::from_str(&text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::Config(format!("{}: {e}", path.display())),
        _ => Error::Json { path, source: e },
    })
}

/// Reads a text file that must be a regular file: a folder or a FIFO (which would block
/// the read for ever) in its place is an [`Error::Io`] saying what it is, not a missing
/// file.
pub fn read_text_file(path: &Path) -> Result<String> {
    if let Some(kind) = not_a_regular_file(path) {
        let kind = format!("is {kind}, not a regular file");
        return Err(Error::io(path, std::io::Error::other(kind)));
    }
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// What `path` is when it exists and is not a regular file (links followed): "a
/// directory", "a FIFO (named pipe)", "a socket", "a device"; `None` for a regular or
/// missing file.
pub fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let meta = std::fs::metadata(path).ok()?;
    let kind = meta.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
        if kind.is_block_device() || kind.is_char_device() {
            return Some("a device");
        }
    }
    Some("not a file")
}

/// The `quantization` entry of an MLX `config.json`, as mlx-lm writes it:
/// `{"group_size": 64, "bits": 4, "mode": "affine"}` for the whole model, plus per-layer
/// entries by module path (`"model.layers.0.mlp.down_proj": {"group_size": 64, "bits": 8}`,
/// or `false` for a layer left dense).
///
/// Deserializing checks the values: an unknown mode, or bits or a group size the mode
/// does not support, is an error naming the entry.
///
/// ```
/// let q: mlx_lm::load::Quantization = serde_json::from_str(
///     r#"{"group_size": 32, "bits": 4, "lm_head": {"group_size": 64, "bits": 8}, "model.embed_tokens": false}"#,
/// )?;
/// assert_eq!(q.default.bits, Some(4));
/// assert_eq!(q.per_layer["lm_head"].unwrap().group_size, Some(64));
/// assert!(q.per_layer["model.embed_tokens"].is_none());
/// assert!(serde_json::from_str::<mlx_lm::load::Quantization>(r#"{"group_size": 64, "bits": 7}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// Group size, bits and mode of the layers without an entry of their own.
    pub default: QuantizeOptions,
    /// Layers with their own entry, by module path: `None` leaves the layer dense.
    pub per_layer: BTreeMap<String, Option<QuantizeOptions>>,
}

impl<'de> Deserialize<'de> for Quantization {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let default = options(&map, "quantization").map_err(D::Error::custom)?;
        let mut per_layer = BTreeMap::new();
        for (key, value) in &map {
            let entry = match value {
                serde_json::Value::Object(m) => {
                    let o = options(m, &format!("quantization[{key:?}]"));
                    Some(o.map_err(D::Error::custom)?)
                }
                serde_json::Value::Bool(false) => None,
                serde_json::Value::Bool(true) => Some(default),
                _ => continue, // group_size, bits, mode
            };
            per_layer.insert(key.clone(), entry);
        }
        Ok(Quantization { default, per_layer })
    }
}

/// Group size, bits and mode of one quantization entry, checked.
fn options(
    m: &serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> std::result::Result<QuantizeOptions, String> {
    let mode = match m.get("mode").map(|v| v.as_str()) {
        None | Some(Some("affine")) => QuantizationMode::Affine,
        Some(Some("mxfp4")) => QuantizationMode::Mxfp4,
        Some(Some("mxfp8")) => QuantizationMode::Mxfp8,
        Some(Some("nvfp4")) => QuantizationMode::Nvfp4,
        Some(_) => {
            return Err(format!(
                "{what}.mode: {} is not a quantization mode (affine, mxfp4, mxfp8, nvfp4)",
                m["mode"]
            ))
        }
    };
    let int = |field: &str| -> std::result::Result<i32, String> {
        let v = m
            .get(field)
            .ok_or_else(|| format!("{what}: missing field `{field}`"))?;
        v.as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .ok_or_else(|| format!("{what}.{field}: {v} is not an integer"))
    };
    let o = QuantizeOptions {
        group_size: Some(int("group_size")?),
        bits: Some(int("bits")?),
        mode,
    };
    check_options(&o).map_err(|e| format!("{what}: {e}"))?;
    Ok(o)
}

/// Fails unless `o`'s group size and bits are ones its mode supports.
fn check_options(o: &QuantizeOptions) -> std::result::Result<(), String> {
    let (groups, bits): (&[i32], &[i32]) = match o.mode {
        QuantizationMode::Affine => (&[32, 64, 128], &[2, 3, 4, 5, 6, 8]),
        QuantizationMode::Mxfp4 => (&[32], &[4]),
        QuantizationMode::Mxfp8 => (&[32], &[8]),
        QuantizationMode::Nvfp4 => (&[16], &[4]),
    };
    let (g, b) = o.resolved();
    if !groups.contains(&g) || !bits.contains(&b) {
        return Err(format!(
            "group size {g} and {b} bits are not supported by the {} mode (group sizes \
             {groups:?}, bits {bits:?})",
            o.mode.name()
        ));
    }
    Ok(())
}

/// Loads the checkpoint in `dir` into `model` (built from the same folder's config):
/// reads every tensor, runs `sanitize`, quantizes the layers whose `.scales` are stored
/// (with `quantization`, the config's entry), and updates the model strictly; see the
/// [module docs](self).
pub fn load_weights<M: Module + ?Sized>(
    model: &mut M,
    dir: impl AsRef<Path>,
    quantization: Option<&Quantization>,
    sanitize: impl FnOnce(ParamMap) -> Result<ParamMap>,
) -> Result<()> {
    let weights = Checkpoint::open(dir)?.load_all()?;
    apply_weights(model, sanitize(weights)?, quantization)
}

/// The second half of [`load_weights`], for tensors already in memory (sanitized):
/// quantizes the layers whose `.scales` are in `weights`, checks every key, shape and
/// dtype, updates the model and evaluates its parameters.
pub fn apply_weights<M: Module + ?Sized>(
    model: &mut M,
    weights: ParamMap,
    quantization: Option<&Quantization>,
) -> Result<()> {
    quantize_stored(model, &weights, quantization)?;
    let params = model.parameters()?;
    if let Some(k) = params.keys().find(|k| !weights.contains_key(*k)) {
        return Err(Error::Weights(format!("missing tensor {k}")));
    }
    if let Some(k) = weights.keys().find(|k| !params.contains_key(*k)) {
        return Err(Error::Weights(format!("unexpected tensor {k}")));
    }
    for (k, p) in &params {
        let w = &weights[k];
        if w.shape() != p.shape() {
            return Err(Error::Weights(format!(
                "{k}: shape {:?}, expected {:?}",
                w.shape(),
                p.shape()
            )));
        }
        if w.dtype().is_float() != p.dtype().is_float() || !is_number(w.dtype()) {
            // A float parameter takes any float dtype the checkpoint stores.
            let expected = if p.dtype().is_float() {
                "a floating-point dtype (bfloat16, float16 or float32)".to_string()
            } else {
                p.dtype().to_string()
            };
            return Err(Error::Weights(format!(
                "{k}: dtype {}, expected {expected}",
                w.dtype()
            )));
        }
    }
    adopt_float_dtypes(model, &weights)?;
    model
        .update(&weights, UpdateMode::Strict)
        .map_err(|e| Error::Weights(e.to_string()))?;
    model.eval_parameters()?;
    Ok(())
}

fn is_number(d: Dtype) -> bool {
    d != Dtype::Bool
}

/// Quantizes the layers of `model` that `weights` stores quantized (a `<path>.scales`
/// tensor), with the group size, bits and mode the stored shapes imply (as mlx-lm 0.32
/// does: a top-level default can be wrong for some layers); a per-layer entry of the
/// config must agree with them (an error naming the layer's weight otherwise). Layers the
/// config lists as quantized must have their scales stored (checked by the update that
/// follows).
fn quantize_stored<M: Module + ?Sized>(
    model: &mut M,
    weights: &ParamMap,
    quantization: Option<&Quantization>,
) -> Result<()> {
    let stored: Vec<&str> = weights
        .keys()
        .filter_map(|k| k.strip_suffix(".scales"))
        .collect();
    let Some(q) = quantization else {
        return match stored.first() {
            Some(p) => Err(Error::Weights(format!(
                "{p}.scales: a quantized tensor, but config.json has no \"quantization\""
            ))),
            None => Ok(()),
        };
    };
    let dense = model.parameters()?;
    let mut plan: BTreeMap<String, QuantizeOptions> = BTreeMap::new();
    for (path, entry) in &q.per_layer {
        if let Some(o) = entry {
            plan.insert(path.clone(), *o);
        }
    }
    for p in stored {
        if let Some(None) = q.per_layer.get(p) {
            return Err(Error::Weights(format!(
                "unexpected tensor {p}.scales: the config leaves {p} unquantized"
            )));
        }
        // Not a layer of the model: reported as an unexpected tensor by the checks.
        let Some(in_dims) = dense
            .get(&format!("{p}.weight"))
            .and_then(|w| w.shape().last())
        else {
            continue;
        };
        let found = infer_options(p, *in_dims, weights)?;
        if let Some(Some(entry)) = q.per_layer.get(p) {
            let (g, b) = found.resolved();
            let (eg, eb) = entry.resolved();
            if (g, b, found.mode) != (eg, eb, entry.mode) {
                return Err(Error::Weights(format!(
                    "{p}.weight: stored with group size {g} and {b} bits ({}), but the \
                     config says group size {eg} and {eb} bits ({})",
                    found.mode.name(),
                    entry.mode.name()
                )));
            }
            continue;
        }
        plan.insert(p.to_string(), found);
    }
    let mut groups: Vec<QuantizeOptions> = plan.values().copied().collect();
    groups.sort_by_key(|o| (o.group_size, o.bits, o.mode.name()));
    groups.dedup();
    for o in groups {
        nn::quantize(model, &o, |path| plan.get(path) == Some(&o))?;
    }
    Ok(())
}

/// Group size, bits and mode of a stored quantized layer with `in_dims` inputs, from the
/// shapes of its packed weight and scales (mlx-lm's `infer_quant_config`).
fn infer_options(path: &str, in_dims: i32, weights: &ParamMap) -> Result<QuantizeOptions> {
    let scales = &weights[&format!("{path}.scales")];
    let wname = format!("{path}.weight");
    let w = weights
        .get(&wname)
        .ok_or_else(|| Error::Weights(format!("missing tensor {wname}")))?;
    let (Some(&packed), Some(&groups)) = (w.shape().last(), scales.shape().last()) else {
        return Err(Error::Weights(format!(
            "{wname}: a scalar quantized weight"
        )));
    };
    if groups <= 0 || in_dims % groups != 0 {
        return Err(Error::Weights(format!(
            "{path}.scales: shape {:?} does not fit a quantized layer of {in_dims} inputs \
             (the groups must divide them)",
            scales.shape()
        )));
    }
    if (packed as i64 * 32) % in_dims as i64 != 0 {
        return Err(Error::Weights(format!(
            "{wname}: shape {:?} does not fit a quantized layer of {in_dims} inputs \
             (packed width)",
            w.shape()
        )));
    }
    let (group_size, bits) = (
        in_dims / groups,
        (packed as i64 * 32 / in_dims as i64) as i32,
    );
    let mode = match (scales.dtype(), bits, group_size) {
        (d, _, _) if d.is_float() => QuantizationMode::Affine,
        (Dtype::Uint8, 4, 16) => QuantizationMode::Nvfp4,
        (Dtype::Uint8, 4, 32) => QuantizationMode::Mxfp4,
        (Dtype::Uint8, 8, 32) => QuantizationMode::Mxfp8,
        (d, _, _) => {
            return Err(Error::Weights(format!(
                "{path}: cannot tell the quantization mode of {bits} bits with group size \
                 {group_size} and {d} scales"
            )))
        }
    };
    let o = QuantizeOptions {
        group_size: Some(group_size),
        bits: Some(bits),
        mode,
    };
    check_options(&o).map_err(|e| {
        Error::Weights(format!(
            "{path}.scales: shape {:?} with {wname} {:?}: {e}",
            scales.shape(),
            w.shape()
        ))
    })?;
    Ok(o)
}

/// Gives each floating-point parameter whose stored tensor has another floating-point
/// dtype that dtype (the placeholders only, before they are replaced): it takes the stored
/// tensor itself, which the update puts there anyway, rather than a cast of the
/// placeholder (a new array, checked against the memory left with the whole checkpoint
/// loaded).
fn adopt_float_dtypes<M: Module + ?Sized>(model: &mut M, weights: &ParamMap) -> Result<()> {
    struct Adopt<'a>(&'a ParamMap);
    impl VisitorMut for Adopt<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> mlx_rs::Result<()> {
            if let Some(w) = self.0.get(path) {
                if p.dtype().is_float() && w.dtype().is_float() && p.dtype() != w.dtype() {
                    p.set(w.clone());
                }
            }
            Ok(())
        }
    }
    model.visit_mut(&mut KeyPath::new(), &mut Adopt(weights))?;
    Ok(())
}
