//! Linear regression trained with minibatch SGD: gradients from `value_and_grad`, the
//! whole training step compiled with `compile_with_state` (parameters passed as state,
//! never captured). Prints the loss per epoch and checks that the learned weights match
//! the ones the data was made with; exits with status 1 if they do not.
//!
//! ```text
//! cargo run --release --example linear_regression            # compiled step
//! cargo run --release --example linear_regression -- --eager # uncompiled step
//! ```

use mlx_rs::transforms::{compile_with_state, value_and_grad};
use mlx_rs::{Array, Result};

const TRUE_W: [f32; 3] = [2.0, -3.5, 0.5];
const TRUE_B: f32 = 1.25;
const SAMPLES: usize = 512;
const BATCH: usize = 64;
const EPOCHS: usize = 30;
const LEARNING_RATE: f32 = 0.1;

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

/// Mean squared error of `x @ w + b` against `y`: arguments `[w, b, x, y]`.
fn loss(args: &[Array]) -> Result<Vec<Array>> {
    let (w, b, x, y) = (&args[0], &args[1], &args[2], &args[3]);
    let residual = x.matmul(w)?.add(b)?.subtract(y)?;
    let n = Array::scalar(residual.size() as f32);
    // r · r / n: the mean of the squares
    Ok(vec![residual.matmul(&residual)?.divide(&n)?])
}

/// A small deterministic generator, so that runs are reproducible.
struct Lcg(u64);

impl Lcg {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn run() -> Result<bool> {
    let eager = std::env::args().any(|a| a == "--eager");
    let d = TRUE_W.len();

    // Data: y = x · w* + b* + noise.
    let mut rng = Lcg(42);
    let xs: Vec<f32> = (0..SAMPLES * d).map(|_| rng.next()).collect();
    let ys: Vec<f32> = (0..SAMPLES)
        .map(|i| {
            let dot: f32 = (0..d).map(|j| xs[i * d + j] * TRUE_W[j]).sum();
            dot + TRUE_B + 0.01 * rng.next()
        })
        .collect();
    let batches: Vec<(Array, Array)> = (0..SAMPLES / BATCH)
        .map(|k| {
            let x = Array::from_slice(
                &xs[k * BATCH * d..(k + 1) * BATCH * d],
                &[BATCH as i32, d as i32],
            )?;
            let y = Array::from_slice(&ys[k * BATCH..(k + 1) * BATCH], &[BATCH as i32])?;
            Ok((x, y))
        })
        .collect::<Result<_>>()?;

    // One SGD step: state = [w, b], inputs = [x, y] -> [loss, new w, new b].
    let grads = value_and_grad(loss, &[0, 1])?;
    let lr = Array::scalar(LEARNING_RATE);
    let sgd_step = move |state: &[Array], batch: &[Array]| -> Result<Vec<Array>> {
        let (values, g) = grads.call(&[&state[0], &state[1], &batch[0], &batch[1]])?;
        let w = state[0].subtract(&g[0].multiply(&lr)?)?;
        let b = state[1].subtract(&g[1].multiply(&lr)?)?;
        Ok(vec![values[0].clone(), w, b])
    };
    let compiled = compile_with_state(sgd_step.clone(), false)?;
    println!(
        "MLX {} ({} backend), {} step",
        mlx_rs::version(),
        mlx_rs::backend(),
        if eager { "eager" } else { "compiled" }
    );

    let mut w = Array::from_slice(&vec![0.0f32; d], &[d as i32])?;
    let mut b = Array::scalar(0.0f32);
    for epoch in 1..=EPOCHS {
        let mut total = 0.0;
        for (x, y) in &batches {
            let out = if eager {
                sgd_step(&[w.clone(), b.clone()], &[x.clone(), y.clone()])?
            } else {
                compiled.call(&[&w, &b], &[x, y])?
            };
            mlx_rs::eval(&out)?;
            total += out[0].item::<f32>()?;
            w = out[1].clone();
            b = out[2].clone();
        }
        if epoch == 1 || epoch % 5 == 0 {
            println!("epoch {epoch:>2}: loss {:.6}", total / batches.len() as f32);
        }
    }

    let learned = w.to_vec::<f32>()?;
    let bias = b.item::<f32>()?;
    println!("learned w = {learned:?}, b = {bias:.4}");
    println!("true    w = {TRUE_W:?}, b = {TRUE_B:.4}");
    let close = learned
        .iter()
        .zip(TRUE_W)
        .all(|(a, t)| (a - t).abs() < 0.02)
        && (bias - TRUE_B).abs() < 0.02;
    if close {
        println!("converged: every weight within 0.02 of the truth");
    } else {
        eprintln!("did not converge to the true weights");
    }
    Ok(close)
}
