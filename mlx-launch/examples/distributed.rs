//! Data-parallel training on several processes: each rank fits a linear model to its
//! slice of a synthetic data set, and the ranks average their gradients with `all_sum`
//! every step, so all of them end with the model one process would get from the whole
//! batch. Run it under the launcher (alone it is a group of one and trains on everything;
//! `--backend NAME` asks for one backend strictly, e.g. `nccl` under `mlx-launch --backend nccl`):
//!
//! ```text
//! cargo build --release -p mlx-launch --bins --examples
//! target/release/mlx-launch -n 4 -- target/release/examples/distributed
//! ```

use mlx_rs::distributed::{self, Backend, Group};
use mlx_rs::nn::{self, Linear, Module, UnaryModule};
use mlx_rs::optimizers::{Optimizer, Sgd};
use mlx_rs::{ops, Array, Dtype, Result};
use std::time::Instant;

const ROWS: i32 = 4096;
const FEATURES: i32 = 16;
const STEPS: usize = 50;

/// The whole data set (the same on every rank): `y = x·w + 0.5` with fixed `w`.
fn dataset() -> Result<(Array, Array)> {
    let x = ops::arange(0.0, (ROWS * FEATURES) as f64, 1.0, Dtype::Float32)?
        .multiply(&Array::scalar(0.013f32))?
        .sin()?
        .reshape(&[ROWS, FEATURES])?;
    let w = ops::arange(0.0, FEATURES as f64, 1.0, Dtype::Float32)?
        .multiply(&Array::scalar(0.7f32))?
        .cos()?
        .reshape(&[FEATURES, 1])?;
    let y = x.matmul(&w)?.add(&Array::scalar(0.5f32))?;
    Ok((x, y))
}

fn main() -> Result<()> {
    // `--backend NAME` (any, ring, mpi, nccl, jaccl) asks for that backend strictly.
    let args: Vec<String> = std::env::args().collect();
    let group = match args.iter().position(|a| a == "--backend") {
        Some(i) => {
            let name = args.get(i + 1).map_or("", String::as_str);
            let backend: Backend = name.parse()?;
            Group::init(backend, true)?
        }
        None => Group::init(Backend::Any, false)?,
    };
    let (rank, size) = (group.rank(), group.size());
    let backend = group
        .backend()
        .map_or("none".to_string(), |b| b.to_string());
    // Every rank contributes rank + 1: the sum is size (size + 1) / 2 everywhere.
    let check: f32 =
        distributed::all_sum(&Array::scalar((rank + 1) as f32), Some(&group))?.item()?;
    println!("rank {rank} of {size} (backend {backend}): all_sum check {check}");

    let (x, y) = dataset()?;
    let rows = ROWS / size;
    let mine = ops::arange(
        (rank * rows) as f64,
        ((rank + 1) * rows) as f64,
        1.0,
        Dtype::Int32,
    )?;
    let (xs, ys) = (x.take_axis(&mine, 0)?, y.take_axis(&mine, 0)?);

    let mut model = Linear::from_weights(
        ops::zeros(&[1, FEATURES], Dtype::Float32)?,
        Some(ops::zeros(&[1], Dtype::Float32)?),
    )?;
    let mut opt = Sgd::new(0.1f32)?;
    let n = Array::scalar(size as f32);
    let start = Instant::now();
    for step in 1..=STEPS {
        let (loss, grads) = nn::value_and_grad(&mut model, |m| {
            m.forward(&xs)?.subtract(&ys)?.square()?.mean(false)
        })?;
        let mut mean = nn::ParamMap::new();
        for (name, g) in grads {
            mean.insert(name, distributed::all_sum(&g, Some(&group))?.divide(&n)?);
        }
        opt.update(&mut model, &mean)?;
        let loss = distributed::all_sum(&loss, Some(&group))?.divide(&n)?;
        // Every rank evaluates the same collectives in the same order (a rank that skipped
        // one, say the loss off rank 0, would pair its next one with another's).
        let mut step_outputs: Vec<Array> = model.parameters()?.into_values().collect();
        step_outputs.push(loss.clone());
        mlx_rs::eval(&step_outputs)?;
        if rank == 0 && (step == 1 || step % 10 == 0) {
            println!("step {step:>2}: loss {:.6}", loss.item::<f32>()?);
        }
    }
    let w = model.parameters()?["weight"].clone();
    let digest: f32 = w.square()?.sum(false)?.item()?;
    println!(
        "rank {rank}: {STEPS} steps on {rows} rows in {:.2} s, |w|^2 = {digest:.6}",
        start.elapsed().as_secs_f32()
    );
    Ok(())
}
