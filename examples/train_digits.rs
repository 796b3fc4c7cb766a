//! Trains a small MLP on handwritten digits with `mlx_rs::nn` and `mlx_rs::optimizers`.
//!
//! The data is the UCI optical-digits set that the `scikit-learn` PyPI package ships
//! (1,797 8×8 images, pixel values 0–16), fetched once from the pinned wheel by the
//! workspace's `oracle` crate and cached under `target/`. Fixed split: a seeded shuffle,
//! then 1,437 images to train on and 360 to test on.
//!
//! ```sh
//! cargo run --release --example train_digits
//! ```
//!
//! Prints a line per epoch and, last, `test accuracy: X`.

use mlx_rs::nn::{self, Linear, Module, UnaryModule};
use mlx_rs::optimizers::{cosine_decay, AdamW, AdamWOptions, Optimizer};
use mlx_rs::{ops, Array, Dtype};
use std::io::Read;
use std::time::Instant;

const TRAIN: usize = 1437;
const EPOCHS: usize = 30;
const BATCH: usize = 64;
const HIDDEN: i32 = 128;
const SEED: u64 = 7;

/// 64 pixels → 128 → 128 → 10 classes.
#[derive(Module)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new() -> mlx_rs::Result<Mlp> {
        Ok(Mlp {
            layers: vec![
                Linear::new(64, HIDDEN, true)?,
                Linear::new(HIDDEN, HIDDEN, true)?,
                Linear::new(HIDDEN, 10, true)?,
            ],
        })
    }
}

impl UnaryModule for Mlp {
    fn forward(&self, x: &Array) -> mlx_rs::Result<Array> {
        let (last, hidden) = self.layers.split_last().expect("three layers");
        let mut x = x.clone();
        for layer in hidden {
            x = nn::relu(&layer.forward(&x)?)?;
        }
        last.forward(&x)
    }
}

/// Images (`[n, 64]`, float32 in [0, 1]) and labels (`[n]`, int32).
struct Split {
    images: Vec<f32>,
    labels: Vec<i32>,
}

impl Split {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, rows: &[usize]) -> mlx_rs::Result<(Array, Array)> {
        let mut x = Vec::with_capacity(rows.len() * 64);
        for &r in rows {
            x.extend_from_slice(&self.images[r * 64..(r + 1) * 64]);
        }
        let y: Vec<i32> = rows.iter().map(|&r| self.labels[r]).collect();
        Ok((
            Array::from_slice(&x, &[rows.len() as i32, 64])?,
            Array::from_slice(&y, &[rows.len() as i32])?,
        ))
    }
}

/// SplitMix64: a seeded, portable shuffle (the split and batch order are the same on
/// every machine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

fn load_digits() -> Result<(Split, Split), String> {
    let path = oracle::scikit_learn_digits()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    )
    .read_to_string(&mut text)
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows: Vec<(Vec<f32>, i32)> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
        if values.len() != 65 {
            return Err(format!(
                "{} line {}: {} values, expected 65",
                path.display(),
                n + 1,
                values.len()
            ));
        }
        let pixels = values[..64].iter().map(|v| v / 16.0).collect();
        rows.push((pixels, values[64] as i32));
    }
    if rows.len() <= TRAIN {
        return Err(format!(
            "{}: {} images, expected 1797",
            path.display(),
            rows.len()
        ));
    }
    Rng(SEED).shuffle(&mut rows);
    let split = |rows: &[(Vec<f32>, i32)]| Split {
        images: rows.iter().flat_map(|(p, _)| p.iter().copied()).collect(),
        labels: rows.iter().map(|(_, l)| *l).collect(),
    };
    Ok((split(&rows[..TRAIN]), split(&rows[TRAIN..])))
}

fn accuracy(model: &Mlp, data: &Split) -> mlx_rs::Result<f32> {
    let all: Vec<usize> = (0..data.len()).collect();
    let (x, y) = data.batch(&all)?;
    let predicted = ops::argmax_axis(&model.forward(&x)?, -1, false)?;
    predicted
        .equal(&y)?
        .astype(Dtype::Float32)?
        .mean(false)?
        .item::<f32>()
}

/// Loads the data, trains, and returns the accuracy on the test split.
pub fn run() -> Result<f32, String> {
    let (train, test) = load_digits()?;
    println!("digits: {} train, {} test images", train.len(), test.len());
    let err = |e: mlx_rs::Error| e.to_string();
    mlx_rs::random::seed(SEED).map_err(err)?;
    let mut model = Mlp::new().map_err(err)?;
    let steps_per_epoch = train.len().div_ceil(BATCH);
    let schedule = cosine_decay(3e-3, (EPOCHS * steps_per_epoch) as u64, 1e-5).map_err(err)?;
    let mut optimizer = AdamW::with_options(schedule, AdamWOptions::default()).map_err(err)?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = Rng(SEED + 1);
    let start = Instant::now();
    for epoch in 1..=EPOCHS {
        rng.shuffle(&mut order);
        let mut total = 0.0f32;
        for rows in order.chunks(BATCH) {
            let (x, y) = train.batch(rows).map_err(err)?;
            let (loss, grads) = nn::value_and_grad(&mut model, |m| {
                let logits = m.forward(&x)?;
                nn::cross_entropy(
                    &logits,
                    &y,
                    nn::CrossEntropyOptions {
                        reduction: nn::Reduction::Mean,
                        ..Default::default()
                    },
                )
            })
            .map_err(err)?;
            optimizer.update(&mut model, &grads).map_err(err)?;
            model.eval_parameters().map_err(err)?;
            total += loss.item::<f32>().map_err(err)? * rows.len() as f32;
        }
        if epoch % 5 == 0 || epoch == 1 {
            println!(
                "epoch {epoch:>2}: train loss {:.4}, test accuracy {:.4} ({:.1} s)",
                total / train.len() as f32,
                accuracy(&model, &test).map_err(err)?,
                start.elapsed().as_secs_f32()
            );
        }
    }
    println!(
        "trained {EPOCHS} epochs in {:.1} s",
        start.elapsed().as_secs_f32()
    );
    accuracy(&model, &test).map_err(err)
}

fn main() {
    match run() {
        Ok(acc) => println!("test accuracy: {acc:.4}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
