//! The training loop of mlx-lm's `tuner/trainer.py`: batches sorted by length and padded,
//! the masked cross-entropy ([`default_loss`]), validation every N steps, reports,
//! checkpoints of the adapter every N steps, the adapter saved at the end in mlx-lm's
//! format.

use crate::error::{Error, Result};
use crate::model::LanguageModel;
use mlx_rs::nn::ParamMap;
use mlx_rs::optimizers::Optimizer;
use mlx_rs::Array;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::datasets::Example;
use super::{adapter_weights, default_loss, value_and_grad, Adaptable, Adapter, AdapterConfig};

/// The loop's settings, with mlx-lm's defaults and flag names (`--batch-size`, `--iters`,
/// `--val-batches`, `--steps-per-report`, `--steps-per-eval`, `--save-every`,
/// `--max-seq-length`, `--grad-accumulation-steps`, `--grad-checkpoint`, `--seed`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingArgs {
    /// Examples per batch.
    pub batch_size: usize,
    /// Steps to train.
    pub iters: usize,
    /// Validation batches per evaluation (`None`: the whole validation set).
    pub val_batches: Option<usize>,
    /// Steps between training-loss reports.
    pub steps_per_report: usize,
    /// Steps between validations (also at the first and the last step).
    pub steps_per_eval: usize,
    /// Steps between checkpoints of the adapter.
    pub save_every: usize,
    /// Longest sequence; longer ones are truncated (with a warning).
    pub max_seq_length: usize,
    /// Steps whose gradients are summed before an update.
    pub grad_accumulation_steps: usize,
    /// Whether each decoder layer is recomputed in the backward pass instead of keeping
    /// its activations ([`Adaptable::set_grad_checkpoint`]): less memory, more compute.
    pub grad_checkpoint: bool,
    /// Seed of the order of the batches.
    pub seed: u64,
}

impl Default for TrainingArgs {
    /// mlx-lm's defaults.
    fn default() -> Self {
        TrainingArgs {
            batch_size: 4,
            iters: 1000,
            val_batches: Some(25),
            steps_per_report: 10,
            steps_per_eval: 200,
            save_every: 100,
            max_seq_length: 2048,
            grad_accumulation_steps: 1,
            grad_checkpoint: false,
            seed: 0,
        }
    }
}

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The mean training loss of the steps since the last report.
    Train {
        /// The step.
        iteration: usize,
        /// The mean loss.
        loss: f32,
        /// The learning rate of the last update.
        learning_rate: f32,
        /// Steps per second since the last report.
        iterations_per_second: f64,
        /// Target tokens per second since the last report.
        tokens_per_second: f64,
        /// Target tokens trained on so far.
        trained_tokens: u64,
        /// MLX's peak memory so far, in bytes.
        peak_memory: usize,
    },
    /// The validation loss.
    Val {
        /// The step (0 before the first update).
        iteration: usize,
        /// The mean loss over the validation batches.
        loss: f32,
        /// Seconds the validation took.
        seconds: f64,
    },
    /// A checkpoint of the adapter was written.
    Saved {
        /// The step.
        iteration: usize,
        /// The checkpoint file.
        path: PathBuf,
    },
    /// Something the user should know (a truncated sequence).
    Warning(String),
}

/// One padded batch: ids `[B, L]` and each row's (prompt offset, length) `[B, 2]`.
pub struct Batch {
    /// The ids, zero-padded.
    pub ids: Array,
    /// `(offset, length)` per row.
    pub lengths: Array,
}

/// The batches of one pass over `data` (mlx-lm's `iterate_batches`): examples sorted by
/// length, grouped `batch_size` at a time (a last partial group is dropped), each batch
/// padded to one plus a multiple of 32 (at most `max_seq_length`), sequences longer than
/// `max_seq_length` truncated with a warning; the order of the batches shuffled by
/// `seed`.
///
/// # Errors
/// Fewer examples than `batch_size`, a batch size of 0.
pub fn batches(
    data: &[Example],
    batch_size: usize,
    max_seq_length: usize,
    seed: u64,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Batch>> {
    if batch_size == 0 || max_seq_length < 2 {
        return Err(Error::InvalidArgument(
            "the batch size must be at least 1 and the sequence length at least 2".into(),
        ));
    }
    if data.len() < batch_size {
        return Err(Error::InvalidArgument(format!(
            "the data set must have at least batch_size={batch_size} examples but only has {}",
            data.len()
        )));
    }
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data[i].tokens.len());
    let mut groups: Vec<&[usize]> = order.chunks_exact(batch_size).collect();
    shuffle(&mut groups, seed);
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let longest = group
            .iter()
            .map(|&i| data[i].tokens.len())
            .max()
            .unwrap_or(0);
        if longest > max_seq_length {
            warn(format!(
                "some sequences are longer than {max_seq_length} tokens; the longest, \
                 {longest}, is truncated to {max_seq_length}"
            ));
        }
        let width = (1 + 32 * longest.div_ceil(32)).min(max_seq_length);
        let mut ids = vec![0i32; batch_size * width];
        let mut lengths = Vec::with_capacity(2 * batch_size);
        for (row, &i) in group.iter().enumerate() {
            let tokens = &data[i].tokens;
            let n = tokens.len().min(max_seq_length);
            for (j, &t) in tokens[..n].iter().enumerate() {
                ids[row * width + j] = t as i32;
            }
            lengths.extend([data[i].offset as i32, n as i32]);
        }
        out.push(Batch {
            ids: Array::from_slice(&ids, &[batch_size as i32, width as i32])?,
            lengths: Array::from_slice(&lengths, &[batch_size as i32, 2])?,
        });
    }
    Ok(out)
}

/// Fisher–Yates with a fixed 64-bit LCG: the same order for the same seed everywhere.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    for i in (1..items.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = ((state >> 33) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The loss of `model` over `data` (mlx-lm's `evaluate`): the token-weighted mean of
/// [`default_loss`] over the first `num_batches` batches (`None`: all), in evaluation
/// mode.
pub fn evaluate<M: Adaptable + LanguageModel>(
    model: &mut M,
    data: &[Example],
    batch_size: usize,
    num_batches: Option<usize>,
    max_seq_length: usize,
) -> Result<f32> {
    model.eval()?;
    model.refresh_adapters()?;
    let all = batches(data, batch_size, max_seq_length, 0, &mut |_| {})?;
    let take = num_batches.unwrap_or(all.len()).min(all.len());
    let (mut total, mut tokens) = (0f64, 0f64);
    for batch in &all[..take] {
        let out = default_loss(&*model, || model.new_cache(), &batch.ids, &batch.lengths)?;
        let n = f64::from(out[1].item::<i32>()?);
        total += f64::from(out[0].item::<f32>()?) * n;
        tokens += n;
    }
    if tokens == 0.0 {
        return Err(Error::InvalidArgument(
            "no tokens to evaluate (every target masked?)".into(),
        ));
    }
    Ok((total / tokens) as f32)
}

/// Trains the trainable parameters of `model` (its adapters, after
/// [`linear_to_lora_layers`](super::linear_to_lora_layers) and
/// [`freeze_all_but_adapters`](super::freeze_all_but_adapters)) on `train` with
/// `optimizer` — mlx-lm's `train`: `config` and the adapter are written into `adapter_dir`
/// (`adapter_config.json` at once; `adapters.safetensors` and
/// `NNNNNNN_adapters.safetensors` every `save_every` steps; `adapters.safetensors` at
/// the end). `valid` may be empty (no validation).
///
/// # Errors
/// Too few examples for a batch; a loss that is not finite (NaN or infinite): training
/// stops with a message naming the step, and the files written before (the last
/// checkpoint) are kept; I/O errors.
#[allow(clippy::too_many_arguments)]
pub fn train<M: Adaptable + LanguageModel>(
    model: &mut M,
    optimizer: &mut dyn Optimizer,
    train: &[Example],
    valid: &[Example],
    args: &TrainingArgs,
    adapter_dir: &Path,
    config: &AdapterConfig,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    if args.iters == 0 || args.steps_per_report == 0 || args.steps_per_eval == 0 {
        return Err(Error::InvalidArgument(
            "iters, steps_per_report and steps_per_eval must be at least 1".into(),
        ));
    }
    std::fs::create_dir_all(adapter_dir).map_err(|e| Error::io(adapter_dir, e))?;
    Adapter {
        config: config.clone(),
        weights: ParamMap::new(),
    }
    .save_config(adapter_dir)?;
    model.set_grad_checkpoint(args.grad_checkpoint)?;
    let trained = train_steps(
        model,
        optimizer,
        train,
        valid,
        args,
        adapter_dir,
        config,
        on_event,
    );
    // Generation after training runs the layers as usual.
    let off = model.set_grad_checkpoint(false);
    trained.and(off)
}

/// The loop of [`train`], after the adapter's config was written.
#[allow(clippy::too_many_arguments)]
fn train_steps<M: Adaptable + LanguageModel>(
    model: &mut M,
    optimizer: &mut dyn Optimizer,
    train: &[Example],
    valid: &[Example],
    args: &TrainingArgs,
    adapter_dir: &Path,
    config: &AdapterConfig,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    let accumulate = args.grad_accumulation_steps.max(1);
    model.train(true)?;

    let mut epoch = 0;
    let mut pending: Vec<Batch> = Vec::new();
    let (mut losses, mut steps, mut tokens, mut trained_tokens) = (0f64, 0usize, 0u64, 0u64);
    let mut timer = 0f64;
    let mut accumulated: Option<ParamMap> = None;
    let mut last_saved: Option<usize> = None;
    for it in 1..=args.iters {
        if !valid.is_empty() && (it == 1 || it % args.steps_per_eval == 0 || it == args.iters) {
            let start = Instant::now();
            let loss = evaluate(
                model,
                valid,
                args.batch_size,
                args.val_batches,
                args.max_seq_length,
            )?;
            model.train(true)?;
            let seconds = start.elapsed().as_secs_f64();
            on_event(Event::Val {
                iteration: it - 1,
                loss,
                seconds,
            });
        }
        if pending.is_empty() {
            let seed = args.seed.wrapping_add(epoch);
            pending = batches(
                train,
                args.batch_size,
                args.max_seq_length,
                seed,
                &mut |w| on_event(Event::Warning(w)),
            )?;
            pending.reverse();
            epoch += 1;
        }
        let Some(batch) = pending.pop() else {
            return Err(Error::InvalidArgument("no training batch".into()));
        };
        let start = Instant::now();
        let (out, grads) = value_and_grad(model, |m| {
            default_loss(m, || m.new_cache(), &batch.ids, &batch.lengths)
        })?;
        let grads = match accumulated.take() {
            Some(acc) => add_maps(&acc, &grads)?,
            None => grads,
        };
        if it % accumulate == 0 {
            let grads = if accumulate > 1 {
                scale_map(&grads, 1.0 / accumulate as f32)?
            } else {
                grads
            };
            optimizer.update(model, &grads)?;
            model.refresh_adapters()?;
        } else {
            accumulated = Some(grads);
        }
        let mut to_eval: Vec<Array> = model.trainable_parameters()?.into_values().collect();
        to_eval.extend(optimizer.state().into_values());
        to_eval.extend(out.iter().cloned());
        mlx_rs::eval(&to_eval)?;
        let loss = out[0].item::<f32>()?;
        if !loss.is_finite() {
            let kept = match last_saved {
                Some(s) => format!(
                    "the adapter of step {s} is kept in {}",
                    adapter_dir.display()
                ),
                None => "no checkpoint was written yet".into(),
            };
            return Err(Error::InvalidArgument(format!(
                "the training loss is {loss} at step {it}: training stopped ({kept}); \
                 try a lower learning rate"
            )));
        }
        losses += f64::from(loss);
        tokens += out[1].item::<i32>()? as u64;
        steps += 1;
        timer += start.elapsed().as_secs_f64();

        if it % args.steps_per_report == 0 || it == args.iters {
            trained_tokens += tokens;
            on_event(Event::Train {
                iteration: it,
                loss: (losses / steps as f64) as f32,
                learning_rate: optimizer.learning_rate()?.item::<f32>()?,
                iterations_per_second: steps as f64 / timer.max(1e-9),
                tokens_per_second: tokens as f64 / timer.max(1e-9),
                trained_tokens,
                peak_memory: mlx_rs::memory::get_peak_memory()?,
            });
            (losses, steps, tokens, timer) = (0.0, 0, 0, 0.0);
        }
        if args.save_every > 0 && it % args.save_every == 0 {
            let weights = adapter_weights(&*model, config.fine_tune_type)?;
            save_weights(&adapter_dir.join(super::WEIGHTS_FILE), &weights)?;
            let path = adapter_dir.join(format!("{it:07}_adapters.safetensors"));
            save_weights(&path, &weights)?;
            last_saved = Some(it);
            on_event(Event::Saved {
                iteration: it,
                path,
            });
        }
    }
    let weights = adapter_weights(&*model, config.fine_tune_type)?;
    save_weights(&adapter_dir.join(super::WEIGHTS_FILE), &weights)
}

fn save_weights(path: &Path, weights: &ParamMap) -> Result<()> {
    mlx_rs::io::save_safetensors(path, weights.iter(), [("format", "mlx")])
        .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
}

fn add_maps(a: &ParamMap, b: &ParamMap) -> Result<ParamMap> {
    a.iter()
        .map(|(k, v)| {
            let w = b.get(k).ok_or_else(|| {
                Error::InvalidArgument(format!("gradient `{k}` missing from a step"))
            })?;
            Ok((k.clone(), v.add(w)?))
        })
        .collect()
}

fn scale_map(a: &ParamMap, s: f32) -> Result<ParamMap> {
    a.iter()
        .map(|(k, v)| Ok((k.clone(), v.multiply_scalar(s)?)))
        .collect()
}
