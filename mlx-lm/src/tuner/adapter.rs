//! Adapters in mlx-lm's format (`adapter_config.json` + `adapters.safetensors`) and what
//! is done with them: wrapping a model's linear layers ([`linear_to_lora_layers`]),
//! loading trained weights into them ([`apply_adapter`]), merging them into the weights
//! ([`fuse`]) and taking them out to save ([`adapter_weights`]).

use crate::error::{Error, Result};
use crate::load::read_text_file;
use mlx_rs::nn::{self, KeyPath, Module, Param, ParamMap, VisitorMut};
use serde_json::{Map, Value};
use std::any::Any;
use std::collections::BTreeSet;
use std::path::Path;

use super::{Adaptable, AdaptableLinear, DoraLinear, LoraLinear};

/// The file of an adapter folder that holds its configuration.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The file of an adapter folder that holds its weights.
pub const WEIGHTS_FILE: &str = "adapters.safetensors";

/// What an adapter changes (`fine_tune_type` in `adapter_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FineTuneType {
    /// Low-rank updates of linear layers ([`LoraLinear`]).
    #[default]
    Lora,
    /// Weight-decomposed low-rank updates ([`DoraLinear`]).
    Dora,
    /// Whole layers trained: the adapter holds their weights.
    Full,
}

impl FineTuneType {
    /// The name in `adapter_config.json` (`lora`, `dora`, `full`).
    pub fn name(self) -> &'static str {
        match self {
            FineTuneType::Lora => "lora",
            FineTuneType::Dora => "dora",
            FineTuneType::Full => "full",
        }
    }

    /// The type named `name`.
    pub fn from_name(name: &str) -> Result<FineTuneType> {
        match name {
            "lora" => Ok(FineTuneType::Lora),
            "dora" => Ok(FineTuneType::Dora),
            "full" => Ok(FineTuneType::Full),
            other => Err(Error::InvalidArgument(format!(
                "unknown fine_tune_type `{other}` (lora, dora or full)"
            ))),
        }
    }
}

/// The shape of the low-rank updates (`lora_parameters` in `adapter_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraParameters {
    /// The rank `r` of each update.
    pub rank: i32,
    /// The factor of each update (mlx-lm's `scale`; other frameworks' `alpha / r`).
    pub scale: f32,
    /// Dropout on the updates' inputs while training.
    pub dropout: f32,
    /// The layers to adapt, as paths inside a decoder layer (`self_attn.q_proj`) or in the
    /// whole model; `None`: every linear layer of the decoder layers.
    pub keys: Option<Vec<String>>,
}

impl Default for LoraParameters {
    /// mlx-lm's defaults: rank 8, scale 20, no dropout, every linear layer.
    fn default() -> Self {
        LoraParameters {
            rank: 8,
            scale: 20.0,
            dropout: 0.0,
            keys: None,
        }
    }
}

/// `adapter_config.json`: what mlx-lm needs to rebuild the adapted layers, plus the other
/// fields it writes there (its training arguments), kept as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdapterConfig {
    /// What the adapter changes.
    pub fine_tune_type: FineTuneType,
    /// How many decoder layers, counted from the last, are adapted (0 or less: all, as
    /// Python's `layers[-max(n, 0):]`).
    pub num_layers: i32,
    /// The updates' shape (needed unless `fine_tune_type` is `full`).
    pub lora_parameters: Option<LoraParameters>,
    /// Every other field of the file.
    pub extra: Map<String, Value>,
}

impl AdapterConfig {
    /// Reads the configuration from its JSON document; `what` names it in errors.
    ///
    /// # Errors
    /// A missing or invalid `num_layers`, `lora_parameters` (for LoRA and DoRA) or one of
    /// its `rank`, `scale`, `dropout`; an unknown `fine_tune_type`.
    pub fn from_json(doc: &Value, what: &str) -> Result<AdapterConfig> {
        let bad = |field: &str, why: &str| Error::Config(format!("{what}: `{field}` {why}"));
        let Some(obj) = doc.as_object() else {
            return Err(bad("(document)", "is not a JSON object"));
        };
        let mut extra = obj.clone();
        let fine_tune_type = match extra.remove("fine_tune_type") {
            None | Some(Value::Null) => FineTuneType::Lora,
            Some(Value::String(s)) => {
                FineTuneType::from_name(&s).map_err(|e| bad("fine_tune_type", &e.to_string()))?
            }
            Some(_) => return Err(bad("fine_tune_type", "is not a string")),
        };
        let num_layers = match extra.remove("num_layers") {
            Some(v) => v
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad("num_layers", "is not an integer"))?,
            None => return Err(bad("num_layers", "is missing")),
        };
        let lora_parameters = match extra.remove("lora_parameters") {
            None | Some(Value::Null) if fine_tune_type == FineTuneType::Full => None,
            None | Some(Value::Null) => return Err(bad("lora_parameters", "is missing")),
            Some(Value::Object(p)) => Some(lora_parameters(&p, what)?),
            Some(_) => return Err(bad("lora_parameters", "is not an object")),
        };
        Ok(AdapterConfig {
            fine_tune_type,
            num_layers,
            lora_parameters,
            extra,
        })
    }

    /// The JSON document (keys sorted, as mlx-lm's `save_config` writes them).
    pub fn to_json(&self) -> Value {
        let mut doc = self.extra.clone();
        doc.insert("fine_tune_type".into(), self.fine_tune_type.name().into());
        doc.insert("num_layers".into(), self.num_layers.into());
        if let Some(p) = &self.lora_parameters {
            let mut lp = Map::new();
            lp.insert("rank".into(), p.rank.into());
            lp.insert("scale".into(), f64::from(p.scale).into());
            lp.insert("dropout".into(), f64::from(p.dropout).into());
            if let Some(keys) = &p.keys {
                lp.insert("keys".into(), keys.clone().into());
            }
            doc.insert("lora_parameters".into(), Value::Object(lp));
        }
        let mut sorted: Vec<(String, Value)> = doc.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        Value::Object(sorted.into_iter().collect())
    }
}

/// `lora_parameters` from its JSON object (`what` names the file in errors).
fn lora_parameters(p: &Map<String, Value>, what: &str) -> Result<LoraParameters> {
    let bad =
        |field: &str, why: &str| Error::Config(format!("{what}: `lora_parameters.{field}` {why}"));
    let number = |field: &str| -> Result<f64> {
        match p.get(field) {
            Some(v) => v.as_f64().ok_or_else(|| bad(field, "is not a number")),
            None if field == "scale" && p.contains_key("alpha") => Err(bad(
                field,
                "is missing (found `alpha`: mlx-lm's LoRA config uses `scale`)",
            )),
            None => Err(bad(field, "is missing")),
        }
    };
    let rank = number("rank")?;
    if rank.fract() != 0.0 || !(1.0..=f64::from(i32::MAX)).contains(&rank) {
        return Err(bad("rank", "is not a positive integer"));
    }
    let keys = match p.get("keys") {
        None | Some(Value::Null) => None,
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .map(|k| k.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("keys", "is not a list of strings"))?,
        ),
        Some(_) => return Err(bad("keys", "is not a list of strings")),
    };
    Ok(LoraParameters {
        rank: rank as i32,
        scale: number("scale")? as f32,
        dropout: number("dropout")? as f32,
        keys,
    })
}

/// An adapter: its configuration and its weights, by mlx-lm's parameter names
/// (`model.layers.1.self_attn.q_proj.lora_a`, …).
#[derive(Clone)]
pub struct Adapter {
    /// `adapter_config.json`.
    pub config: AdapterConfig,
    /// `adapters.safetensors`.
    pub weights: ParamMap,
}

impl Adapter {
    /// Reads an adapter folder (`adapter_config.json` and `adapters.safetensors`), as
    /// written by `mlx_lm.lora` or [`Adapter::save`].
    ///
    /// # Errors
    /// A missing or unreadable file (the error names it), an invalid configuration.
    pub fn load(dir: impl AsRef<Path>) -> Result<Adapter> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the adapter folder does not exist",
                ),
            ));
        }
        let config_path = dir.join(CONFIG_FILE);
        let text = read_text_file(&config_path)?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: config_path.clone(),
            source: e,
        })?;
        let config = AdapterConfig::from_json(&doc, &config_path.display().to_string())?;
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.is_file() {
            return Err(Error::io(
                &weights_path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no adapter weights"),
            ));
        }
        let loaded = mlx_rs::io::load_safetensors(&weights_path)
            .map_err(|e| Error::Weights(format!("{}: {e}", weights_path.display())))?;
        Ok(Adapter {
            config,
            weights: loaded.arrays.into_iter().collect(),
        })
    }

    /// Writes the adapter into `dir` (made if missing) as mlx-lm does: the configuration
    /// (keys sorted, indented) and the weights.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.save_config(dir)?;
        let weights_path = dir.join(WEIGHTS_FILE);
        mlx_rs::io::save_safetensors(&weights_path, self.weights.iter(), [("format", "mlx")])
            .map_err(|e| Error::Weights(format!("{}: {e}", weights_path.display())))?;
        Ok(())
    }

    /// Writes only `adapter_config.json` into `dir` (made if missing).
    pub fn save_config(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let config_path = dir.join(CONFIG_FILE);
        let text =
            serde_json::to_string_pretty(&self.config.to_json()).map_err(|e| Error::Json {
                path: config_path.clone(),
                source: e,
            })?;
        std::fs::write(&config_path, text).map_err(|e| Error::io(&config_path, e))
    }

    /// The adapter of `model` as it is now ([`adapter_weights`]) with `config`.
    pub fn from_model<M: Module + ?Sized>(model: &M, config: AdapterConfig) -> Result<Adapter> {
        let weights = adapter_weights(model, config.fine_tune_type)?;
        Ok(Adapter { config, weights })
    }
}

/// The last segment of a parameter name that marks it as part of a LoRA or DoRA update.
const ADAPTER_LEAVES: [&str; 3] = ["lora_a", "lora_b", "m"];

/// Whether the parameter `name` belongs to a LoRA or DoRA update (its last segment is
/// `lora_a`, `lora_b` or `m`).
pub fn is_adapter_parameter(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    ADAPTER_LEAVES.contains(&last)
}

/// The weights an adapter of `model` is saved with: for LoRA and DoRA the updates'
/// parameters (`lora_a`, `lora_b`, `m`); for full fine-tuning the trainable parameters
/// (what mlx-lm saves in both cases, since it freezes everything else).
pub fn adapter_weights<M: Module + ?Sized>(
    model: &M,
    fine_tune_type: FineTuneType,
) -> Result<ParamMap> {
    Ok(match fine_tune_type {
        FineTuneType::Full => model.trainable_parameters()?,
        _ => model
            .parameters()?
            .into_iter()
            .filter(|(k, _)| is_adapter_parameter(k))
            .collect(),
    })
}

/// Freezes every parameter of `model` except the adapters' updates (`lora_a`, `lora_b`,
/// `m`): what mlx-lm trains (it freezes the model, then wraps the layers). Returns the
/// number of parameters left trainable.
pub fn freeze_all_but_adapters<M: Module + ?Sized>(model: &mut M) -> Result<usize> {
    struct Freeze(usize);
    impl VisitorMut for Freeze {
        fn param(&mut self, path: &str, p: &mut Param) -> mlx_rs::Result<()> {
            let adapter = is_adapter_parameter(path);
            p.set_frozen(!adapter);
            self.0 += usize::from(adapter);
            Ok(())
        }
    }
    let mut f = Freeze(0);
    model.visit_mut(&mut KeyPath::new(), &mut f)?;
    Ok(f.0)
}

/// Freezes `model` except its last `num_layers` decoder layers (0 or less: all), for full
/// fine-tuning as mlx-lm does it (quantized weights stay frozen). Returns the number of
/// trainable parameters.
///
/// # Errors
/// The model cannot be fully fine-tuned ([`Adaptable::supports_full_fine_tuning`]).
pub fn unfreeze_last_layers<M: Adaptable + ?Sized>(
    model: &mut M,
    num_layers: i32,
) -> Result<usize> {
    if !model.supports_full_fine_tuning() {
        return Err(Error::InvalidArgument(
            "this model, as loaded, cannot be fully fine-tuned (its forward pass does not \
             read its weights through MLX's graph: load it with its training options); \
             train LoRA or DoRA adapters instead"
                .into(),
        ));
    }
    let total = model.num_layers();
    let first = match usize::try_from(num_layers) {
        Ok(n) if n > 0 => total.saturating_sub(n),
        _ => 0,
    };
    model.freeze()?;
    let layers = model.layers_path();
    for i in first..total {
        model.unfreeze_prefix(&format!("{layers}.{i}"))?;
    }
    Ok(model.trainable_parameters()?.len())
}

/// Every [`AdaptableLinear`] of `model`, by dotted path, in walk order.
fn slot_paths<M: Module + ?Sized>(model: &mut M) -> Result<Vec<(String, bool)>> {
    struct Paths(Vec<(String, bool)>);
    impl VisitorMut for Paths {
        fn slot(&mut self, path: &str, slot: &mut dyn Any) -> mlx_rs::Result<()> {
            if let Some(l) = slot.downcast_mut::<AdaptableLinear>() {
                self.0.push((path.to_string(), l.is_adapted()));
            }
            Ok(())
        }
    }
    let mut p = Paths(Vec::new());
    model.visit_mut(&mut KeyPath::new(), &mut p)?;
    Ok(p.0)
}

/// Calls `f` on every [`AdaptableLinear`] whose path `select` accepts.
fn for_each_slot<M: Module + ?Sized>(
    model: &mut M,
    select: &dyn Fn(&str) -> bool,
    f: &mut dyn FnMut(&str, &mut AdaptableLinear) -> Result<()>,
) -> Result<()> {
    struct Each<'a> {
        select: &'a dyn Fn(&str) -> bool,
        f: &'a mut dyn FnMut(&str, &mut AdaptableLinear) -> Result<()>,
    }
    impl VisitorMut for Each<'_> {
        fn slot(&mut self, path: &str, slot: &mut dyn Any) -> mlx_rs::Result<()> {
            if let Some(l) = slot.downcast_mut::<AdaptableLinear>() {
                if (self.select)(path) {
                    (self.f)(path, l)?;
                }
            }
            Ok(())
        }
    }
    model.visit_mut(&mut KeyPath::new(), &mut Each { select, f })?;
    Ok(())
}

/// The decoder layer index and the path inside it of `path`, when it lies under
/// `layers` (`model.layers.3.mlp.up_proj` → `(3, "mlp.up_proj")`).
fn in_layer<'p>(path: &'p str, layers: &str) -> Option<(usize, &'p str)> {
    let rest = path.strip_prefix(layers)?.strip_prefix('.')?;
    let (index, inner) = rest.split_once('.')?;
    Some((index.parse().ok()?, inner))
}

/// Wraps linear layers of `model` in LoRA (or, with `dora`, DoRA) layers with fresh
/// updates — mlx-lm's `linear_to_lora_layers`: in the last `num_layers` decoder layers
/// (0 or less: all) the layers named by `params.keys` (paths inside a decoder layer;
/// default: every linear layer that any decoder layer has), and anywhere in the model a
/// layer whose whole path is one of the keys. Returns how many layers were wrapped; the
/// model is told ([`Adaptable::adapters_changed`]).
///
/// # Errors
/// A layer to wrap that already has an adapter; a rank below 1 or a dropout outside
/// `[0, 1)`.
pub fn linear_to_lora_layers<M: Adaptable + ?Sized>(
    model: &mut M,
    num_layers: i32,
    params: &LoraParameters,
    dora: bool,
) -> Result<usize> {
    let layers = model.layers_path();
    let total = model.num_layers();
    let first = match usize::try_from(num_layers) {
        Ok(n) if n > 0 => total.saturating_sub(n),
        _ => 0,
    };
    let slots = slot_paths(model)?;
    let keys: BTreeSet<String> = match &params.keys {
        Some(keys) => keys.iter().cloned().collect(),
        None => slots
            .iter()
            .filter_map(|(p, _)| in_layer(p, &layers).map(|(_, inner)| inner.to_string()))
            .collect(),
    };
    let select = |path: &str| -> bool {
        keys.contains(path)
            || in_layer(path, &layers).is_some_and(|(i, inner)| i >= first && keys.contains(inner))
    };
    let mut count = 0;
    for_each_slot(model, &select, &mut |path, slot| {
        let base = match std::mem::replace(slot, AdaptableLinear::placeholder()) {
            AdaptableLinear::Base(base) => base,
            adapted => {
                *slot = adapted;
                return Err(Error::InvalidArgument(format!(
                    "`{path}` already has an adapter"
                )));
            }
        };
        let (r, s, d) = (params.rank, params.scale, params.dropout);
        *slot = if dora {
            AdaptableLinear::Dora(DoraLinear::from_base(base, r, d, s)?)
        } else {
            AdaptableLinear::Lora(LoraLinear::from_base(base, r, d, s)?)
        };
        count += 1;
        Ok(())
    })?;
    model.adapters_changed()?;
    Ok(count)
}

/// Loads `adapter` into `model` — mlx-lm's `load_adapters`: wraps the layers its
/// configuration names ([`linear_to_lora_layers`]; nothing for full fine-tuning), checks
/// that every tensor of the adapter is an adapter parameter of the model (for full
/// fine-tuning, any parameter) of the same shape, and sets them (in the dtype they are
/// stored in, as Python does). The model is left in evaluation mode (no dropout) and told
/// ([`Adaptable::adapters_changed`]).
///
/// # Errors
/// A tensor the model has no place for or of another shape: the error names the first
/// such key (in sorted order) and says how many there are; the layers are then already
/// wrapped (load the model again). An invalid configuration.
pub fn apply_adapter<M: Adaptable + ?Sized>(model: &mut M, adapter: &Adapter) -> Result<()> {
    let config = &adapter.config;
    let full = config.fine_tune_type == FineTuneType::Full;
    if !full {
        let params = config
            .lora_parameters
            .as_ref()
            .ok_or_else(|| Error::Config("adapter: `lora_parameters` is missing".into()))?;
        let dora = config.fine_tune_type == FineTuneType::Dora;
        linear_to_lora_layers(model, config.num_layers, params, dora)?;
    }
    check_and_set(model, &adapter.weights, full)?;
    model.eval()?;
    model.adapters_changed()
}

/// Sets adapter weights (`lora_a`, `lora_b`, `m`; with `full`, any parameter) of a model
/// whose layers are already wrapped, e.g. to resume training from a checkpoint file, with
/// the checks of [`apply_adapter`]; the model is told ([`Adaptable::adapters_changed`]).
pub fn load_adapter_weights<M: Adaptable + ?Sized>(
    model: &mut M,
    weights: &ParamMap,
    full: bool,
) -> Result<()> {
    check_and_set(model, weights, full)?;
    model.adapters_changed()
}

/// Checks that every tensor of `weights` is an adapter parameter of `model` (any
/// parameter when `full`) of the same shape, then sets them as they are.
fn check_and_set<M: Module + ?Sized>(model: &mut M, weights: &ParamMap, full: bool) -> Result<()> {
    let params = model.parameters()?;
    let mut errors = Vec::new();
    for (name, w) in weights {
        match params.get(name) {
            Some(p) if full || is_adapter_parameter(name) => {
                if p.shape() != w.shape() {
                    errors.push(format!(
                        "`{name}` has shape {:?} in the adapter but {:?} in the model",
                        w.shape(),
                        p.shape()
                    ));
                }
            }
            _ => errors.push(format!("`{name}` is not an adapter parameter of the model")),
        }
    }
    if let Some(first) = errors.first() {
        return Err(Error::Weights(format!(
            "the adapter does not fit the model: {first} ({} incompatible tensor(s) in all)",
            errors.len()
        )));
    }
    set_parameters(model, weights)
}

/// Sets the parameters named in `arrays` to them as they are (shapes already checked).
fn set_parameters<M: Module + ?Sized>(model: &mut M, arrays: &ParamMap) -> Result<()> {
    struct Set<'a>(&'a ParamMap);
    impl VisitorMut for Set<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> mlx_rs::Result<()> {
            if let Some(a) = self.0.get(path) {
                p.set(a.clone());
            }
            Ok(())
        }
    }
    model.visit_mut(&mut KeyPath::new(), &mut Set(arrays))?;
    Ok(())
}

/// Merges every adapter of `model` into its layer's weight (mlx-lm's `fuse`): each
/// adapted layer becomes its base layer with the update added (quantized again as it
/// was unless `dequantize`); with `dequantize` every other quantized layer of the model
/// is made dense too (mlx-lm's `dequantize_model`). Returns the number of layers fused;
/// the model is told ([`Adaptable::adapters_changed`]).
pub fn fuse<M: Adaptable + ?Sized>(model: &mut M, dequantize: bool) -> Result<usize> {
    let mut count = 0;
    for_each_slot(model, &|_| true, &mut |_, slot| {
        let fused = match slot {
            AdaptableLinear::Base(_) => return Ok(()),
            AdaptableLinear::Lora(l) => l.fuse(dequantize)?,
            AdaptableLinear::Dora(l) => l.fuse(dequantize)?,
        };
        *slot = AdaptableLinear::Base(fused);
        count += 1;
        Ok(())
    })?;
    if dequantize {
        nn::dequantize(model)?;
    }
    model.adapters_changed()?;
    Ok(count)
}
