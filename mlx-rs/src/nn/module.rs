//! [`Module`]: a tree of named parameters and child modules, walked by visitors.

use super::param::{under, KeyPath, Param};
use crate::ops::QuantizeOptions;
use crate::{Array, Dtype, Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Parameters or gradients by dotted name (`layers.0.mlp.up_proj.weight`), as
/// [`Module::parameters`] returns them and [`Module::update`] takes them.
pub type ParamMap = BTreeMap<String, Array>;

/// Reads a module tree: called for every parameter and training flag, in field order.
pub trait Visitor {
    /// A parameter at dotted `path`.
    fn param(&mut self, path: &str, param: &Param) -> Result<()>;
    /// A training flag (kept by layers that behave differently in training, such as
    /// [`Dropout`](super::Dropout)).
    fn training(&mut self, _path: &str, _training: bool) -> Result<()> {
        Ok(())
    }
}

/// Changes a module tree: called for every parameter, training flag and quantizable
/// layer, in field order.
pub trait VisitorMut {
    /// A parameter at dotted `path`.
    fn param(&mut self, _path: &str, _param: &mut Param) -> Result<()> {
        Ok(())
    }
    /// A training flag.
    fn training(&mut self, _path: &str, _training: &mut bool) -> Result<()> {
        Ok(())
    }
    /// A layer that can be swapped for its quantized form (a
    /// [`MaybeQuantized`](super::MaybeQuantized)), before its parameters are visited.
    fn quantizable(&mut self, _path: &str, _layer: &mut dyn QuantizeSlot) -> Result<()> {
        Ok(())
    }
    /// A layer that can be swapped for another form of itself by code that knows its type
    /// (for instance a linear layer and its LoRA-adapted form in mlx-lm's tuner), before
    /// its parameters are visited: downcast `slot` (`Any::downcast_mut`) to the types the
    /// visitor handles. Python's `Module.update_modules` replaces modules by path; this is
    /// how a walk reaches them without reflection.
    fn slot(&mut self, _path: &str, _slot: &mut dyn std::any::Any) -> Result<()> {
        Ok(())
    }
}

/// A place in a module tree that holds a layer or its quantized form; see
/// [`quantize`](super::quantize).
pub trait QuantizeSlot {
    /// Whether the layer is already quantized.
    fn is_quantized(&self) -> bool;
    /// Whether the layer can be quantized with `options` (e.g. its input size is a
    /// multiple of the group size).
    fn can_quantize(&self, options: &QuantizeOptions) -> bool;
    /// Replaces the layer by its quantized form.
    fn quantize(&mut self, options: &QuantizeOptions) -> Result<()>;
    /// Replaces a quantized layer by its dense form (see [`dequantize`](super::dequantize));
    /// the default refuses.
    fn dequantize(&mut self) -> Result<()> {
        Err(Error::InvalidArgument(
            "this layer cannot be dequantized".into(),
        ))
    }
}

/// What can sit in a field of a [`Module`]: parameters ([`Param`]), child modules,
/// `Option`/`Vec` of them (and `Box`ed modules) (a `Vec`'s items are named `0`, `1`, …), and plain
/// configuration values (numbers, `bool`, `String`, [`Dtype`], …), which hold nothing.
///
/// A bare [`Array`] is deliberately not an item: say whether it is a parameter (`Param`) or a
/// constant (`#[module(skip)]`).
pub trait ModuleItem {
    /// Walks the item; `path` is its own dotted name.
    fn visit_item(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()>;
    /// Walks the item mutably.
    fn visit_item_mut(&mut self, path: &mut KeyPath, visitor: &mut dyn VisitorMut) -> Result<()>;
}

impl ModuleItem for Param {
    fn visit_item(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        visitor.param(path.as_str(), self)
    }
    fn visit_item_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        v.param(path.as_str(), self)
    }
}

impl<M: Module + ?Sized> ModuleItem for M {
    fn visit_item(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        self.visit(path, visitor)
    }
    fn visit_item_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        self.visit_mut(path, v)
    }
}

impl<T: ModuleItem> ModuleItem for Option<T> {
    fn visit_item(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        match self {
            Some(item) => item.visit_item(path, visitor),
            None => Ok(()),
        }
    }
    fn visit_item_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        match self {
            Some(item) => item.visit_item_mut(path, v),
            None => Ok(()),
        }
    }
}

impl<T: ModuleItem> ModuleItem for Vec<T> {
    fn visit_item(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        for (i, item) in self.iter().enumerate() {
            path.push(i);
            let r = item.visit_item(path, visitor);
            path.pop();
            r?;
        }
        Ok(())
    }
    fn visit_item_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        for (i, item) in self.iter_mut().enumerate() {
            path.push(i);
            let r = item.visit_item_mut(path, v);
            path.pop();
            r?;
        }
        Ok(())
    }
}

/// A boxed module (e.g. `Box<dyn UnaryModule>` in a [`Sequential`](super::Sequential)) is
/// a module.
impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        (**self).visit(path, visitor)
    }
    fn visit_mut(&mut self, path: &mut KeyPath, visitor: &mut dyn VisitorMut) -> Result<()> {
        (**self).visit_mut(path, visitor)
    }
}

macro_rules! plain_items {
    ($($t:ty),*) => {$(
        impl ModuleItem for $t {
            fn visit_item(&self, _: &mut KeyPath, _: &mut dyn Visitor) -> Result<()> {
                Ok(())
            }
            fn visit_item_mut(&mut self, _: &mut KeyPath, _: &mut dyn VisitorMut) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
plain_items!(
    bool,
    i8,
    i16,
    i32,
    i64,
    isize,
    u8,
    u16,
    u32,
    u64,
    usize,
    f32,
    f64,
    String,
    Dtype,
    QuantizeOptions
);

/// The training flag of a layer that behaves differently in training and evaluation
/// (dropout). `true` (training) when made, as in Python MLX; [`Module::train`] and
/// [`Module::eval`] set every flag of a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainingFlag(pub bool);

impl Default for TrainingFlag {
    fn default() -> Self {
        TrainingFlag(true)
    }
}

impl ModuleItem for TrainingFlag {
    fn visit_item(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()> {
        visitor.training(path.as_str(), self.0)
    }
    fn visit_item_mut(&mut self, path: &mut KeyPath, v: &mut dyn VisitorMut) -> Result<()> {
        v.training(path.as_str(), &mut self.0)
    }
}

/// How [`Module::update`] checks the arrays it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// Every parameter must be given, and every key must be a parameter of the same shape
    /// and dtype (loading a whole checkpoint).
    #[default]
    Strict,
    /// Every key must be a parameter of the same shape and dtype; parameters not given
    /// keep their values (e.g. updating the trainable part).
    Partial,
    /// Applies what matches (same key, shape and dtype) and reports the rest in the
    /// returned [`UpdateReport`] instead of failing.
    Lenient,
}

/// What [`Module::update`] did not apply (always empty unless [`UpdateMode::Lenient`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Parameters of the module that were not given.
    pub missing: Vec<String>,
    /// Keys given that are not parameters of the module.
    pub unexpected: Vec<String>,
    /// Keys whose array has another shape or dtype than the parameter (with the reason).
    pub mismatched: Vec<(String, String)>,
}

impl UpdateReport {
    /// Whether everything was applied and every parameter was given.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

/// A tree of named parameters ([`Param`]) and child modules; the base of every layer and
/// model in [`nn`](super).
///
/// Implement it with `#[derive(Module)]` (every named field is part of the tree under its
/// name; see [`ModuleItem`] for what a field can be):
///
/// ```
/// use mlx_rs::nn::{self, Linear, Module, UnaryModule};
/// use mlx_rs::{Array, Result};
///
/// #[derive(Module)]
/// struct Mlp {
///     up: Linear,
///     layers: Vec<Linear>,
///     #[module(rename = "out_proj")]
///     out: Linear,
///     #[module(skip)]
///     note: &'static str, // not part of the tree
/// }
///
/// let mlp = Mlp {
///     up: Linear::new(4, 8, true)?,
///     layers: vec![Linear::new(8, 8, false)?],
///     out: Linear::new(8, 2, true)?,
///     note: "demo",
/// };
/// let keys: Vec<String> = mlp.parameters()?.into_keys().collect();
/// assert_eq!(keys, ["layers.0.weight", "out_proj.bias", "out_proj.weight", "up.bias", "up.weight"]);
/// assert_eq!(mlp.num_parameters()?, 4 * 8 + 8 + 8 * 8 + 8 * 2 + 2);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
///
/// A raw identifier is keyed without its `r#`; two fields under one key do not compile:
///
/// ```
/// use mlx_rs::nn::{Module, Param};
/// #[derive(Module)]
/// struct Gate { r#type: Param }
/// let g = Gate { r#type: Param::new(mlx_rs::Array::scalar(1.0f32)) };
/// assert!(g.parameters()?.contains_key("type"));
/// # Ok::<(), mlx_rs::Error>(())
/// ```
///
/// ```compile_fail
/// use mlx_rs::nn::{Module, Param};
/// #[derive(Module)]
/// struct Twice { a: Param, #[module(rename = "a")] b: Param }
/// ```
///
/// # Why a derive over `Param` fields
///
/// Python's `mlx.nn.Module` finds arrays and modules among an object's attributes at run
/// time; mlx-swift's `Module` reflects over properties (`@ModuleInfo`/`@ParameterInfo` for
/// renames); candle's `VarBuilder` only loads (a module cannot list or update its
/// parameters afterwards); oxiglade's mlx-rs derives `ModuleParameters` over fields marked
/// `#[param]`. Rust has no reflection, so a derive is the only way a model author writes no
/// flattening by hand. This one walks *every* field through one trait ([`ModuleItem`]), so
/// forgetting an attribute cannot silently drop a layer from the tree, and it makes the
/// author decide, at compile time, whether a bare array is a parameter ([`Param`], which
/// also carries the frozen flag) or a constant (`#[module(skip)]`). The walk is one
/// visitor method per direction, so every operation — listing, updating with checks,
/// freezing, train/eval, quantizing in place, gradients — is written once, here.
pub trait Module {
    /// Walks every parameter and training flag under `path` (generated by the derive).
    fn visit(&self, path: &mut KeyPath, visitor: &mut dyn Visitor) -> Result<()>;

    /// Walks every parameter, training flag and quantizable layer mutably.
    fn visit_mut(&mut self, path: &mut KeyPath, visitor: &mut dyn VisitorMut) -> Result<()>;

    /// All parameters, by dotted name.
    fn parameters(&self) -> Result<ParamMap> {
        collect(self, |_| true)
    }

    /// The parameters that are not frozen (what gradients and optimizers see).
    fn trainable_parameters(&self) -> Result<ParamMap> {
        collect(self, |p| !p.is_frozen())
    }

    /// The frozen parameters.
    fn frozen_parameters(&self) -> Result<ParamMap> {
        collect(self, |p| p.is_frozen())
    }

    /// The number of scalars in all parameters.
    fn num_parameters(&self) -> Result<usize> {
        Ok(self.parameters()?.values().map(Array::size).sum())
    }

    /// Replaces parameters by name, checked as `mode` says; see [`UpdateMode`].
    ///
    /// Strict and partial updates change nothing when they fail: the error names the first
    /// offending key (an unknown key, a missing parameter, another shape or dtype).
    fn update(&mut self, arrays: &ParamMap, mode: UpdateMode) -> Result<UpdateReport> {
        update_checked(self, arrays, mode)
    }

    /// Freezes every parameter (none is trained until unfrozen).
    fn freeze(&mut self) -> Result<()> {
        set_frozen(self, "", true).map(|_| ())
    }

    /// Unfreezes every parameter.
    fn unfreeze(&mut self) -> Result<()> {
        set_frozen(self, "", false).map(|_| ())
    }

    /// Freezes the parameters at or under the dotted `prefix` (whole segments:
    /// `layers.1` covers `layers.1.mlp.weight`, not `layers.10.weight`); an error if
    /// nothing is there.
    fn freeze_prefix(&mut self, prefix: &str) -> Result<()> {
        set_frozen_matching(self, prefix, true)
    }

    /// Unfreezes the parameters at or under `prefix`; an error if nothing is there.
    fn unfreeze_prefix(&mut self, prefix: &str) -> Result<()> {
        set_frozen_matching(self, prefix, false)
    }

    /// Sets training mode (`true`) or evaluation mode on every layer of the tree.
    fn train(&mut self, training: bool) -> Result<()> {
        struct Mode(bool);
        impl VisitorMut for Mode {
            fn training(&mut self, _: &str, flag: &mut bool) -> Result<()> {
                *flag = self.0;
                Ok(())
            }
        }
        self.visit_mut(&mut KeyPath::new(), &mut Mode(training))
    }

    /// Evaluation mode: `train(false)`.
    fn eval(&mut self) -> Result<()> {
        self.train(false)
    }

    /// Whether the tree is in training mode: its first training flag, or `true` (as in
    /// Python) when no layer keeps one.
    fn is_training(&self) -> Result<bool> {
        struct First(Option<bool>);
        impl Visitor for First {
            fn param(&mut self, _: &str, _: &Param) -> Result<()> {
                Ok(())
            }
            fn training(&mut self, _: &str, t: bool) -> Result<()> {
                self.0.get_or_insert(t);
                Ok(())
            }
        }
        let mut first = First(None);
        self.visit(&mut KeyPath::new(), &mut first)?;
        Ok(first.0.unwrap_or(true))
    }

    /// Casts every floating-point parameter to `dtype` (a floating-point dtype); integer
    /// parameters (quantized weights) stay as they are.
    fn set_dtype(&mut self, dtype: Dtype) -> Result<()> {
        if !dtype.is_float() {
            return Err(Error::InvalidArgument(format!(
                "set_dtype: {dtype:?} is not a floating-point dtype"
            )));
        }
        struct Cast(Dtype);
        impl VisitorMut for Cast {
            fn param(&mut self, _: &str, p: &mut Param) -> Result<()> {
                if p.dtype().is_float() && p.dtype() != self.0 {
                    let cast = p.astype(self.0)?;
                    p.set(cast);
                }
                Ok(())
            }
        }
        self.visit_mut(&mut KeyPath::new(), &mut Cast(dtype))
    }

    /// Evaluates every parameter (after building or updating a model lazily).
    fn eval_parameters(&self) -> Result<()> {
        let params: Vec<Array> = self.parameters()?.into_values().collect();
        crate::eval(&params)
    }

    /// Writes every parameter to a safetensors file (keys as in [`Module::parameters`]),
    /// as Python's `Module.save_weights` does for `.safetensors`.
    fn save_weights(&self, path: impl AsRef<Path>) -> Result<()>
    where
        Self: Sized,
    {
        let params = self.parameters()?;
        crate::io::save_safetensors(path, params.iter(), [("format", "mlx")])
    }

    /// Loads parameters from a safetensors file, checked as `mode` says.
    fn load_weights(&mut self, path: impl AsRef<Path>, mode: UpdateMode) -> Result<UpdateReport>
    where
        Self: Sized,
    {
        let loaded = crate::io::load_safetensors(path)?;
        let arrays: ParamMap = loaded.arrays.into_iter().collect();
        self.update(&arrays, mode)
    }
}

fn collect<M: Module + ?Sized>(m: &M, keep: impl Fn(&Param) -> bool) -> Result<ParamMap> {
    struct Collect<F>(ParamMap, F);
    impl<F: Fn(&Param) -> bool> Visitor for Collect<F> {
        fn param(&mut self, path: &str, p: &Param) -> Result<()> {
            if (self.1)(p) {
                self.0.insert(path.to_string(), p.value().clone());
            }
            Ok(())
        }
    }
    let mut c = Collect(ParamMap::new(), keep);
    m.visit(&mut KeyPath::new(), &mut c)?;
    Ok(c.0)
}

/// Name, shape and dtype of every parameter, in walk order.
pub(crate) fn signature<M: Module + ?Sized>(m: &M) -> Result<Vec<(String, Vec<i32>, Dtype)>> {
    struct Sig(Vec<(String, Vec<i32>, Dtype)>);
    impl Visitor for Sig {
        fn param(&mut self, path: &str, p: &Param) -> Result<()> {
            self.0
                .push((path.to_string(), p.shape().to_vec(), p.dtype()));
            Ok(())
        }
    }
    let mut s = Sig(Vec::new());
    m.visit(&mut KeyPath::new(), &mut s)?;
    Ok(s.0)
}

fn mismatch(param: &Param, given: &Array) -> Option<String> {
    if param.shape() != given.shape() {
        Some(format!(
            "shape {:?}, but the parameter has shape {:?}",
            given.shape(),
            param.shape()
        ))
    } else if param.dtype() != given.dtype() {
        Some(format!(
            "dtype {:?}, but the parameter is {:?} (cast with astype, or the model with \
             set_dtype)",
            given.dtype(),
            param.dtype()
        ))
    } else {
        None
    }
}

fn update_checked<M: Module + ?Sized>(
    m: &mut M,
    arrays: &ParamMap,
    mode: UpdateMode,
) -> Result<UpdateReport> {
    let mut report = UpdateReport::default();
    let sig = signature(m)?;
    let known: BTreeSet<&str> = sig.iter().map(|(k, _, _)| k.as_str()).collect();
    report.unexpected = arrays
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    report.missing = sig
        .iter()
        .filter(|(k, _, _)| !arrays.contains_key(k))
        .map(|(k, _, _)| k.clone())
        .collect();

    struct Check<'a> {
        arrays: &'a ParamMap,
        mismatched: Vec<(String, String)>,
    }
    impl VisitorMut for Check<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> Result<()> {
            if let Some(given) = self.arrays.get(path) {
                if let Some(why) = mismatch(p, given) {
                    self.mismatched.push((path.to_string(), why));
                }
            }
            Ok(())
        }
    }
    let mut check = Check {
        arrays,
        mismatched: Vec::new(),
    };
    m.visit_mut(&mut KeyPath::new(), &mut check)?;
    report.mismatched = check.mismatched;

    if mode != UpdateMode::Lenient {
        if let Some(k) = report.unexpected.first() {
            let close: Vec<&str> = known
                .iter()
                .copied()
                .filter(|n| n.ends_with(last(k)))
                .take(3)
                .collect();
            return Err(Error::InvalidArgument(format!(
                "update: `{k}` is not a parameter of the module{} ({} unexpected key(s) in all)",
                if close.is_empty() {
                    String::new()
                } else {
                    format!(" (parameters with that last segment: {})", close.join(", "))
                },
                report.unexpected.len()
            )));
        }
        if let Some((k, why)) = report.mismatched.first() {
            return Err(Error::Shape(format!("update: `{k}` was given with {why}")));
        }
        if mode == UpdateMode::Strict {
            if let Some(k) = report.missing.first() {
                return Err(Error::InvalidArgument(format!(
                    "update: parameter `{k}` was not given ({} missing in all; \
                     UpdateMode::Partial keeps the values of those not given)",
                    report.missing.len()
                )));
            }
        }
    }

    struct Apply<'a>(&'a ParamMap);
    impl VisitorMut for Apply<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> Result<()> {
            if let Some(given) = self.0.get(path) {
                if mismatch(p, given).is_none() {
                    p.set(given.clone());
                }
            }
            Ok(())
        }
    }
    m.visit_mut(&mut KeyPath::new(), &mut Apply(arrays))?;
    if mode != UpdateMode::Lenient {
        report = UpdateReport::default();
    }
    Ok(report)
}

fn last(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

fn set_frozen<M: Module + ?Sized>(m: &mut M, prefix: &str, frozen: bool) -> Result<usize> {
    struct Freeze<'a>(&'a str, bool, usize);
    impl VisitorMut for Freeze<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> Result<()> {
            if under(path, self.0) {
                p.set_frozen(self.1);
                self.2 += 1;
            }
            Ok(())
        }
    }
    let mut f = Freeze(prefix, frozen, 0);
    m.visit_mut(&mut KeyPath::new(), &mut f)?;
    Ok(f.2)
}

fn set_frozen_matching<M: Module + ?Sized>(m: &mut M, prefix: &str, frozen: bool) -> Result<()> {
    if set_frozen(m, prefix, frozen)? == 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: no parameter is at or under `{prefix}`",
            if frozen { "freeze" } else { "unfreeze" }
        )));
    }
    Ok(())
}

/// Sets the parameters named `names` (in this order) to `values`, unchecked, returning
/// the values they had. For the gradient transform, whose names come from the module.
pub(crate) fn swap_params<M: Module + ?Sized>(
    m: &mut M,
    names: &[String],
    values: &[Array],
) -> Result<Vec<Array>> {
    let by_name: BTreeMap<&str, &Array> = names
        .iter()
        .map(String::as_str)
        .zip(values.iter())
        .collect();
    struct Swap<'a>(BTreeMap<&'a str, &'a Array>, BTreeMap<String, Array>);
    impl VisitorMut for Swap<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> Result<()> {
            if let Some(v) = self.0.get(path) {
                let old = p.value().clone();
                p.set((*v).clone());
                self.1.insert(path.to_string(), old);
            }
            Ok(())
        }
    }
    let mut s = Swap(by_name, BTreeMap::new());
    m.visit_mut(&mut KeyPath::new(), &mut s)?;
    names
        .iter()
        .map(|n| {
            s.1.remove(n)
                .ok_or_else(|| Error::InvalidArgument(format!("no parameter `{n}`")))
        })
        .collect()
}

/// A module with one input and one output (most layers): what
/// [`Sequential`](super::Sequential) chains.
pub trait UnaryModule: Module {
    /// Applies the layer.
    fn forward(&self, x: &Array) -> Result<Array>;
}
