//! `lora`: fine-tuning with LoRA or DoRA adapters, as `mlx_lm.lora` (same flag names).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use mlx_rs::optimizers::{self, Optimizer};

use super::device::{select_device, DeviceArg};
use super::ModelCli;
use crate::chat::ChatTemplate;
use crate::hub::{self, HubOptions};
use crate::tokenizer::Tokenizer;
use crate::tuner::datasets::{load_local_dataset, DataOptions};
use crate::tuner::trainer::{self, Event, TrainingArgs};
use crate::tuner::{self, AdapterConfig, FineTuneType, LoraParameters};

/// `--fine-tune-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FineTune {
    /// Low-rank updates.
    Lora,
    /// Weight-decomposed low-rank updates.
    Dora,
    /// The last `--num-layers` layers' own weights (models whose forward pass reads them).
    Full,
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// Adam.
    Adam,
    /// AdamW (weight decay 0.01).
    Adamw,
    /// Plain SGD.
    Sgd,
}

/// `--lr-schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    /// The learning rate throughout.
    Constant,
    /// Cosine decay from the learning rate to 0 over `--iters` (after the warmup).
    Cosine,
}

/// `lora`.
#[derive(Debug, Args)]
pub struct LoraArgs<O: Args> {
    /// A YAML file of options, as mlx_lm.lora's `-c` (keys are the flags' names with
    /// underscores, `lora_parameters: {rank, scale, dropout}`); flags given here win.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The base model: a local folder or a Hugging Face model id.
    #[arg(long, value_name = "DIR|ID")]
    pub model: String,
    /// Train (mlx_lm.lora's flag; training is what this command does, so it may be left
    /// out).
    #[arg(long)]
    pub train: bool,
    /// Evaluate on test.jsonl after training (or, without --train and with
    /// --adapter-path, the adapter there).
    #[arg(long)]
    pub test: bool,
    /// Folder with train.jsonl, valid.jsonl and test.jsonl (chat, completions or text
    /// lines, as mlx_lm.lora reads them).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The kind of adapter.
    #[arg(long, value_enum, default_value = "lora")]
    pub fine_tune_type: FineTune,
    /// The optimizer.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Leave the prompt out of the loss (chat and completions data).
    #[arg(long)]
    pub mask_prompt: bool,
    /// Decoder layers to adapt, counted from the last (-1: all).
    #[arg(long, default_value_t = 16, allow_negative_numbers = true)]
    pub num_layers: i32,
    /// Rank of each update (mlx-lm reads it from a config file's lora_parameters).
    #[arg(long, default_value_t = 8)]
    pub rank: i32,
    /// Factor of each update.
    #[arg(long, default_value_t = 20.0)]
    pub scale: f32,
    /// Dropout on the updates' inputs.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    /// Examples per batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Training steps.
    #[arg(long, default_value_t = 1000)]
    pub iters: usize,
    /// Validation batches per evaluation (-1: the whole validation set).
    #[arg(long, default_value_t = 25, allow_negative_numbers = true)]
    pub val_batches: i64,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-5)]
    pub learning_rate: f64,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value = "constant")]
    pub lr_schedule: ScheduleArg,
    /// Steps of linear warmup from 0 before the schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Steps between training-loss reports.
    #[arg(long, default_value_t = 10)]
    pub steps_per_report: usize,
    /// Steps between validations.
    #[arg(long, default_value_t = 200)]
    pub steps_per_eval: usize,
    /// Steps whose gradients are summed before an update.
    #[arg(long, default_value_t = 1)]
    pub grad_accumulation_steps: usize,
    /// Recompute each layer's activations in the backward pass instead of keeping them:
    /// less memory per step, about one more forward pass of compute.
    #[arg(long)]
    pub grad_checkpoint: bool,
    /// Start from the adapter weights of this file (a checkpoint of an earlier run).
    #[arg(long, value_name = "FILE")]
    pub resume_adapter_file: Option<PathBuf>,
    /// Where the adapter is written (and read for --test without --train).
    #[arg(long, value_name = "DIR", default_value = "adapters")]
    pub adapter_path: PathBuf,
    /// Steps between checkpoints of the adapter.
    #[arg(long, default_value_t = 100)]
    pub save_every: usize,
    /// Test batches (-1: the whole test set).
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    pub test_batches: i64,
    /// Longest sequence; longer ones are truncated, with a warning.
    #[arg(long, default_value_t = 2048)]
    pub max_seq_length: usize,
    /// Seed of the adapters' initial values and the order of the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device to run on (default: the GPU when MLX has one, else the CPU).
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    #[command(flatten)]
    /// The model's own flags.
    pub options: O,
}

fn batches_arg(n: i64) -> Option<usize> {
    usize::try_from(n).ok()
}

/// Runs `lora`.
pub fn run<M: ModelCli>(args: LoraArgs<M::Options>) -> Result<()> {
    let dir = hub::resolve(&args.model, &HubOptions::default())?.dir;
    if !args.train && !args.test {
        bail!("give --train, --test or both");
    }
    select_device(args.device)?;
    mlx_rs::random::seed(args.seed)?;
    let tokenizer = Tokenizer::from_model_dir(&dir)?;
    let template = ChatTemplate::from_model_dir(&dir).ok();
    let data_options = DataOptions {
        mask_prompt: args.mask_prompt,
        eos: Some(eos_token(&dir, &tokenizer)),
    };
    eprintln!("loading datasets from {}", args.data.display());
    let [train, valid, test] =
        load_local_dataset(&args.data, &tokenizer, template.as_ref(), &data_options)?;
    if args.train && train.is_empty() {
        bail!(
            "{}: no training set (train.jsonl missing or empty)",
            args.data.display()
        );
    }
    if args.test && test.is_empty() {
        bail!(
            "{}: no test set (test.jsonl missing or empty)",
            args.data.display()
        );
    }

    eprintln!("loading {}", dir.display());
    let mut model = if args.train {
        M::load_for_training(&dir, &args.options)
            .with_context(|| format!("cannot load {}", dir.display()))?
    } else {
        super::commands::load_adapted::<M>(&dir, &args.options, Some(&args.adapter_path))?
    };

    if args.train {
        let layers = tuner::Adaptable::num_layers(&model);
        if usize::try_from(args.num_layers).is_ok_and(|n| n > layers) {
            bail!(
                "--num-layers {} but the model has {layers} layers",
                args.num_layers
            );
        }
        let params = LoraParameters {
            rank: args.rank,
            scale: args.scale,
            dropout: args.dropout,
            keys: None,
        };
        let (fine_tune_type, trainable) = match args.fine_tune_type {
            FineTune::Full => {
                let n = tuner::unfreeze_last_layers(&mut model, args.num_layers)?;
                resume::<M>(&mut model, args.resume_adapter_file.as_deref(), true)?;
                (FineTuneType::Full, n)
            }
            kind => {
                let dora = kind == FineTune::Dora;
                tuner::linear_to_lora_layers(&mut model, args.num_layers, &params, dora)?;
                resume::<M>(&mut model, args.resume_adapter_file.as_deref(), false)?;
                let n = tuner::freeze_all_but_adapters(&mut model)?;
                let kind = if dora {
                    FineTuneType::Dora
                } else {
                    FineTuneType::Lora
                };
                (kind, n)
            }
        };
        let (total, trained) = parameter_counts(&model)?;
        eprintln!(
            "trainable parameters: {:.3}% ({:.3}M/{:.3}M) in {trainable} tensors",
            100.0 * trained as f64 / total as f64,
            trained as f64 / 1e6,
            total as f64 / 1e6
        );
        let config = AdapterConfig {
            fine_tune_type,
            num_layers: args.num_layers,
            lora_parameters: (fine_tune_type != FineTuneType::Full).then_some(params),
            extra: run_record(&args),
        };
        let mut optimizer = make_optimizer(&args)?;
        let training = TrainingArgs {
            batch_size: args.batch_size,
            iters: args.iters,
            val_batches: batches_arg(args.val_batches),
            steps_per_report: args.steps_per_report,
            steps_per_eval: args.steps_per_eval,
            save_every: args.save_every,
            max_seq_length: args.max_seq_length,
            grad_accumulation_steps: args.grad_accumulation_steps,
            grad_checkpoint: args.grad_checkpoint,
            seed: args.seed,
        };
        if valid.is_empty() {
            eprintln!("warning: no validation set: training without validation");
        }
        if args.grad_checkpoint && args.dropout > 0.0 {
            eprintln!(
                "warning: with --grad-checkpoint the backward pass draws other dropout masks \
                 than the forward pass did (as in mlx_lm.lora); use --dropout 0 for exact \
                 gradients"
            );
        }
        trainer::train(
            &mut model,
            optimizer.as_mut(),
            &train,
            &valid,
            &training,
            &args.adapter_path,
            &config,
            &mut report,
        )?;
        println!(
            "Saved final weights to {}.",
            args.adapter_path.join(tuner::WEIGHTS_FILE).display()
        );
    }
    if args.test {
        let loss = trainer::evaluate(
            &mut model,
            &test,
            args.batch_size,
            batches_arg(args.test_batches),
            args.max_seq_length,
        )?;
        println!(
            "Test loss {loss:.3}, Test ppl {:.3}.",
            f64::from(loss).exp()
        );
    }
    Ok(())
}

/// The id of `tokenizer_config.json`'s `eos_token` (what mlx-lm appends to text
/// examples), else the end-of-text token.
fn eos_token(dir: &std::path::Path, tokenizer: &Tokenizer) -> u32 {
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let name = config.as_ref().and_then(|c| match &c["eos_token"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    });
    name.and_then(|n| tokenizer.token_to_id(&n))
        .unwrap_or(tokenizer.specials().end_of_text)
}

/// Loads the weights of a checkpoint file (`--resume-adapter-file`) into the model being
/// trained: adapter parameters, or (`full`) any parameter.
fn resume<M: ModelCli>(
    model: &mut M::Model,
    file: Option<&std::path::Path>,
    full: bool,
) -> Result<()> {
    let Some(file) = file else {
        return Ok(());
    };
    let loaded = mlx_rs::io::load_safetensors(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let weights = loaded.arrays.into_iter().collect();
    tuner::load_adapter_weights(model, &weights, full)
        .with_context(|| format!("cannot resume from {}", file.display()))?;
    eprintln!("resuming from {}", file.display());
    Ok(())
}

/// Prints a report line in mlx-lm's words.
fn report(event: Event) {
    match event {
        Event::Val {
            iteration,
            loss,
            seconds,
        } => println!("Iter {iteration}: Val loss {loss:.3}, Val took {seconds:.3}s"),
        Event::Train {
            iteration,
            loss,
            learning_rate,
            iterations_per_second,
            tokens_per_second,
            trained_tokens,
            peak_memory,
        } => println!(
            "Iter {iteration}: Train loss {loss:.3}, Learning Rate {learning_rate:.3e}, \
             It/sec {iterations_per_second:.3}, Tokens/sec {tokens_per_second:.3}, \
             Trained Tokens {trained_tokens}, Peak mem {:.3} GB",
            peak_memory as f64 / 1e9
        ),
        Event::Saved { iteration, path } => {
            println!(
                "Iter {iteration}: Saved adapter weights to {}.",
                path.display()
            )
        }
        Event::Warning(w) => eprintln!("warning: {w}"),
    }
}

/// All parameters and the trainable ones, in scalars.
fn parameter_counts<M: mlx_rs::nn::Module>(model: &M) -> Result<(usize, usize)> {
    let total = model.num_parameters()?;
    let trainable = model
        .trainable_parameters()?
        .values()
        .map(mlx_rs::Array::size)
        .sum();
    Ok((total, trainable))
}

/// The run's settings as mlx-lm writes them into `adapter_config.json` (its training
/// arguments), besides the fields the adapter needs.
fn run_record<O: Args>(args: &LoraArgs<O>) -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "model": args.model,
        "data": args.data.display().to_string(),
        "batch_size": args.batch_size,
        "iters": args.iters,
        "learning_rate": args.learning_rate,
        "mask_prompt": args.mask_prompt,
        "max_seq_length": args.max_seq_length,
        "grad_checkpoint": args.grad_checkpoint,
        "seed": args.seed,
        "adapter_path": args.adapter_path.display().to_string(),
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn make_optimizer<O: Args>(args: &LoraArgs<O>) -> Result<Box<dyn Optimizer>> {
    let lr = args.learning_rate;
    let decay_steps = (args.iters as u64).saturating_sub(args.warmup).max(1);
    let main = match args.lr_schedule {
        ScheduleArg::Constant => optimizers::linear_schedule(lr, lr, 1)?,
        ScheduleArg::Cosine => optimizers::cosine_decay(lr, decay_steps, 0.0)?,
    };
    let schedule = if args.warmup > 0 {
        let warm = optimizers::linear_schedule(0.0, lr, args.warmup)?;
        optimizers::join_schedules(vec![warm, main], &[args.warmup + 1])?
    } else {
        main
    };
    Ok(match args.optimizer {
        OptimizerArg::Adam => Box::new(optimizers::Adam::new(schedule)?),
        OptimizerArg::Adamw => Box::new(optimizers::AdamW::new(schedule)?),
        OptimizerArg::Sgd => Box::new(optimizers::Sgd::new(schedule)?),
    })
}
