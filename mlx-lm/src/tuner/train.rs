//! Gradients of a loss with respect to an adapted model's trainable parameters, and the
//! loss mlx-lm trains with.

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use mlx_rs::nn::{self, KeyPath, Module, Param, ParamMap, VisitorMut};
use mlx_rs::{ops, transforms, Array, Dtype};

use super::Adaptable;

/// Runs `loss(model)` and returns its outputs and the gradient of the first (a scalar)
/// with respect to every trainable parameter of `model`, by name — `nn.value_and_grad`
/// as mlx-lm's trainer uses it. Further outputs (e.g. the token count) come back as they
/// are.
///
/// Unlike [`mlx_rs::nn::value_and_grad`], the model is told when its parameters are
/// swapped for the transform's tracers and back ([`Adaptable::refresh_adapters`]), so a
/// model whose forward pass runs prepared forms (Qwen 3.5) differentiates through its
/// adapters, or, when its weights are trainable, through forms it builds again from the
/// traced weights. The forward pass must stay in
/// MLX's graph: products computed outside it (Qwen 3.5's CPU GEMM) pass no gradient, so
/// load such a model with its training options.
///
/// # Errors
/// No trainable parameter; the loss's errors.
pub fn value_and_grad<M: Adaptable + ?Sized>(
    model: &mut M,
    mut loss: impl FnMut(&M) -> Result<Vec<Array>>,
) -> Result<(Vec<Array>, ParamMap)> {
    let (names, values): (Vec<String>, Vec<Array>) =
        model.trainable_parameters()?.into_iter().unzip();
    if names.is_empty() {
        return Err(Error::InvalidArgument(
            "value_and_grad: the model has no trainable parameters".into(),
        ));
    }
    let argnums: Vec<i32> = (0..names.len() as i32).collect();
    let result = {
        let m = &mut *model;
        let names = &names;
        let f = move |args: &[Array]| -> mlx_rs::Result<Vec<Array>> {
            set_named(m, names, args)?;
            m.refresh_adapters()?;
            Ok(loss(m)?)
        };
        transforms::value_and_grad(f, &argnums).and_then(|vg| vg.call(&values))
    };
    set_named(model, &names, &values)?;
    model.refresh_adapters()?;
    let (outputs, grads) = result?;
    if outputs.is_empty() || grads.len() != names.len() {
        return Err(Error::InvalidArgument(
            "value_and_grad: MLX returned no value or too few gradients".into(),
        ));
    }
    Ok((outputs, names.into_iter().zip(grads).collect()))
}

/// Runs `forward(layer, inputs)` with gradient checkpointing, as mlx-lm's
/// `grad_checkpoint` wraps a layer's `__call__`: the layer's intermediate values are not
/// kept for the backward pass but computed again there, so a training step holds one
/// layer's activations at a time instead of every layer's (less memory, one more forward
/// pass of compute). Outputs and gradients are those of `forward` itself.
///
/// The layer's trainable parameters are inputs of the checkpointed function (arrays a
/// function captures are constants to MLX's transforms, so captured trainable parameters
/// would get no gradient): the function runs on a clone of `layer` whose trainable
/// parameters are set to those inputs, then `forward` (which may first rebuild forms
/// derived from them, as a prepared model's `refresh_adapters`). The clone lives in MLX's
/// graph as long as the outputs do, hence `Clone + Send + 'static`; arrays are cheap to
/// clone. `forward` must read nothing but the layer and `inputs` (and constants): a
/// dropout mask drawn again in the backward pass would differ, so train with dropout 0.
///
/// # Errors
/// The layer's or `forward`'s errors.
pub fn checkpoint_layer<L, F>(layer: &L, inputs: &[Array], mut forward: F) -> Result<Vec<Array>>
where
    L: Module + Clone + Send + 'static,
    F: FnMut(&mut L, &[Array]) -> Result<Vec<Array>> + Send + 'static,
{
    let (names, values): (Vec<String>, Vec<Array>) =
        layer.trainable_parameters()?.into_iter().unzip();
    let n = inputs.len();
    let mut copy = layer.clone();
    let f = move |args: &[Array]| -> mlx_rs::Result<Vec<Array>> {
        let (inputs, params) = args.split_at(n.min(args.len()));
        set_named(&mut copy, &names, params)?;
        Ok(forward(&mut copy, inputs)?)
    };
    let mut args = inputs.to_vec();
    args.extend(values);
    Ok(transforms::checkpoint(f)?.call(&args)?)
}

/// Sets the parameters `names[i]` to `values[i]`, unchecked.
fn set_named<M: Module + ?Sized>(model: &mut M, names: &[String], values: &[Array]) -> Result<()> {
    struct Set<'a>(std::collections::BTreeMap<&'a str, &'a Array>);
    impl VisitorMut for Set<'_> {
        fn param(&mut self, path: &str, p: &mut Param) -> mlx_rs::Result<()> {
            if let Some(v) = self.0.get(path) {
                p.set((*v).clone());
            }
            Ok(())
        }
    }
    let by_name = names.iter().map(String::as_str).zip(values).collect();
    model.visit_mut(&mut KeyPath::new(), &mut Set(by_name))?;
    Ok(())
}

/// mlx-lm's `default_loss`: the mean cross-entropy of predicting each next token of
/// `batch` (`[B, T]` ids), counting only the targets at positions `offset + 1 ..= length`
/// of each row (`lengths` `[B, 2]`: the prompt offset to skip, when the prompt is masked,
/// and the length). Returns `[loss, ntoks]` (a float32 scalar, float64 for a float64
/// model; an int32 count). `new_cache` makes the empty cache the forward pass runs with.
pub fn default_loss<M: LanguageModel + ?Sized>(
    model: &M,
    new_cache: impl FnOnce() -> Cache,
    batch: &Array,
    lengths: &Array,
) -> Result<Vec<Array>> {
    let t = batch.dim(1);
    if t < 2 {
        return Err(Error::InvalidArgument(
            "a training batch needs at least 2 tokens per row".into(),
        ));
    }
    let b = batch.dim(0);
    let inputs = ops::slice(batch, &[0, 0], &[b, t - 1], &[1, 1])?;
    let targets = ops::slice(batch, &[0, 1], &[b, t], &[1, 1])?;
    let mut cache = new_cache();
    let logits = model.forward(&inputs, &mut cache)?;
    let steps = ops::arange(1.0, t as f64, 1.0, Dtype::Int32)?.expand_dims(0)?;
    let col = |i: i32| -> Result<Array> { Ok(ops::slice(lengths, &[0, i], &[b, i + 1], &[1, 1])?) };
    let mask = steps
        .greater_equal(&col(0)?)?
        .logical_and(&steps.less_equal(&col(1)?)?)?;
    let ce = nn::cross_entropy(
        &logits,
        &targets,
        nn::CrossEntropyOptions {
            reduction: nn::Reduction::None,
            ..Default::default()
        },
    )?;
    let ce = ce.multiply(&mask)?;
    let ntoks = mask.sum(false)?;
    // Summed in float32 as mlx-lm does (bf16 models), or in float64 for a float64 model.
    let dtype = match ce.dtype() {
        Dtype::Float64 => Dtype::Float64,
        _ => Dtype::Float32,
    };
    let loss = ce.astype(dtype)?.sum(false)?.divide(&ntoks)?;
    Ok(vec![loss, ntoks])
}
