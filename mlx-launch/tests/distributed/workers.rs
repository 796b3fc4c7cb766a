//! What each rank runs: the scenarios the tests start under `mlx-launch` (or directly),
//! as this test binary re-run with `--exact worker` and the scenario in the environment.
//! A failed check panics (the rank exits non-zero); a rank that passes prints
//! `PASS <scenario> <rank>/<size>`.

use mlx_rs::distributed::{self as dist, Backend, Group, InitOptions};
use mlx_rs::nn::{self, Linear, Module, UnaryModule};
use mlx_rs::optimizers::{Optimizer, Sgd};
use mlx_rs::{ops, Array, Dtype, Error, Result};
use std::time::Duration;

/// Dtypes of the collectives checks (sums of the test data are exact in each).
const DTYPES: [Dtype; 7] = [
    Dtype::Float32,
    Dtype::Float16,
    Dtype::Bfloat16,
    Dtype::Int32,
    Dtype::Int64,
    Dtype::Uint8,
    Dtype::Complex64,
];

/// Shapes of the collectives checks: a scalar, vectors smaller and larger than the
/// group, matrices, and one large enough to be split across the ring's buffers.
const SHAPES: [&[i32]; 7] = [&[], &[1], &[7], &[3, 5], &[2, 3, 4], &[1031], &[64, 1024]];

/// Largest difference allowed between data-parallel and one-process training (float32,
/// gradients summed in another order).
const TRAIN_TOL: f32 = 1e-5;

/// Runs `scenario` as one rank; panics on a failed check.
pub fn run(scenario: &str) {
    let result = match scenario {
        "collectives" => collectives(),
        "train" => train(),
        "peer_exits" => peer_exits(),
        "never_comes" => never_comes(),
        "init_only" => init_only(),
        "alone" => alone(),
        "interop" => interop(),
        other => panic!("unknown scenario {other:?}"),
    };
    if let Err(e) = result {
        panic!("scenario {scenario} failed: {e}");
    }
}

fn ring() -> Result<Group> {
    Group::init_with(&InitOptions {
        backend: Backend::Ring,
        strict: true,
        timeout: Some(Duration::from_secs(30)),
    })
}

fn pass(scenario: &str, g: &Group) {
    println!("PASS {scenario} {}/{}", g.rank(), g.size());
}

/// The data of `rank`: small integers (so sums are exact in every dtype), different on
/// every rank.
fn data(rank: i32, shape: &[i32], dtype: Dtype) -> Result<Array> {
    let n: i32 = shape.iter().product();
    ops::arange(0.0, n as f64, 1.0, Dtype::Int32)?
        .multiply(&Array::scalar(7i32))?
        .add(&Array::scalar(13 * rank + 1))?
        .remainder(&Array::scalar(11i32))?
        .reshape(shape)?
        .astype(dtype)
}

fn check(what: &str, got: &Array, want: &Array) -> Result<()> {
    let same = got.shape() == want.shape()
        && got.dtype() == want.dtype()
        && ops::array_equal(got, want, false)?.item::<bool>()?;
    if !same {
        panic!(
            "{what}: got {:?} {:?}, want {:?} {:?}",
            got.shape(),
            got.dtype(),
            want.shape(),
            want.dtype()
        );
    }
    Ok(())
}

fn fold(inputs: &[Array], f: impl Fn(&Array, &Array) -> Result<Array>) -> Result<Array> {
    inputs[1..]
        .iter()
        .try_fold(inputs[0].clone(), |acc, x| f(&acc, x))
}

fn expect_err(what: &str, result: Result<Array>, needle: &str) -> Result<()> {
    match result.and_then(|a| a.eval().map(|()| a)) {
        Ok(_) => panic!("{what}: expected an error mentioning {needle:?}"),
        Err(e) if e.to_string().contains(needle) => Ok(()),
        Err(e) => panic!("{what}: expected an error mentioning {needle:?}, got {e}"),
    }
}

/// Every collective against the one-process result, send/recv around the ring, and the
/// ring backend's refusals.
fn collectives() -> Result<()> {
    let g = ring()?;
    let (rank, size) = (g.rank(), g.size());
    assert_eq!(g.backend(), Some(Backend::Ring));
    assert!(size > 1 && (0..size).contains(&rank));
    // The default group is the one just made (MLX caches it).
    assert_eq!(Group::init(Backend::Any, false)?.size(), size);

    for dtype in DTYPES {
        for shape in SHAPES {
            let inputs: Vec<Array> = (0..size)
                .map(|r| data(r, shape, dtype))
                .collect::<Result<_>>()?;
            let x = &inputs[rank as usize];
            let case = format!("{dtype:?} {shape:?}");
            check(
                &format!("all_sum {case}"),
                &dist::all_sum(x, Some(&g))?,
                &fold(&inputs, ops::add)?,
            )?;
            check(
                &format!("all_max {case}"),
                &dist::all_max(x, Some(&g))?,
                &fold(&inputs, ops::maximum)?,
            )?;
            check(
                &format!("all_min {case}"),
                &dist::all_min(x, None)?,
                &fold(&inputs, ops::minimum)?,
            )?;
            let gathered = if shape.is_empty() {
                ops::stack(&inputs)?
            } else {
                ops::concatenate_axis(&inputs, 0)?
            };
            check(
                &format!("all_gather {case}"),
                &dist::all_gather(x, Some(&g))?,
                &gathered,
            )?;
        }
    }

    // 2.5 M floats: more than the ring's 8 MiB buffers.
    let big: Vec<Array> = (0..size)
        .map(|r| data(r, &[2_500_000], Dtype::Float32))
        .collect::<Result<_>>()?;
    check(
        "all_sum large",
        &dist::all_sum(&big[rank as usize], Some(&g))?,
        &fold(&big, ops::add)?,
    )?;
    // A non-contiguous input (a transposed view).
    let t: Vec<Array> = (0..size)
        .map(|r| data(r, &[3, 5], Dtype::Float32)?.transpose())
        .collect::<Result<_>>()?;
    check(
        "all_sum transposed",
        &dist::all_sum(&t[rank as usize], Some(&g))?,
        &fold(&t, ops::add)?,
    )?;
    // On a chosen stream.
    let s = mlx_rs::Stream::new(&mlx_rs::Device::cpu());
    let on_stream = mlx_rs::with_stream(&s, || dist::all_sum(&t[rank as usize], Some(&g)))?;
    check("all_sum on a stream", &on_stream, &fold(&t, ops::add)?)?;

    // send / recv / recv_like around the ring (even ranks send first, as MLX's tests do).
    let right = (rank + 1) % size;
    let left = (rank + size - 1) % size;
    for dtype in [
        Dtype::Float32,
        Dtype::Int8,
        Dtype::Bfloat16,
        Dtype::Complex64,
    ] {
        for shape in [&[7][..], &[1024, 16]] {
            let mine = data(rank, shape, dtype)?;
            let theirs = data(left, shape, dtype)?;
            let (sent, got) = if rank % 2 == 0 {
                let sent = dist::send(&mine, right, Some(&g))?;
                let got = dist::recv_like(&mine, left, Some(&g))?;
                mlx_rs::eval(&[&sent, &got])?;
                (sent, got)
            } else {
                let got = dist::recv(shape, dtype, left, Some(&g))?;
                let sent = dist::send(&mine, right, Some(&g))?;
                mlx_rs::eval(&[&got, &sent])?;
                (sent, got)
            };
            check(&format!("send {dtype:?} {shape:?}"), &sent, &mine)?;
            check(&format!("recv {dtype:?} {shape:?}"), &got, &theirs)?;
        }
    }

    // What the ring backend refuses, as errors.
    let x = data(rank, &[size * 2], Dtype::Float32)?;
    expect_err(
        "sum_scatter",
        dist::sum_scatter(&x, Some(&g)),
        "sum_scatter not supported",
    )?;
    match g.split(rank % 2, -1) {
        Ok(_) => panic!("split: the ring backend cannot split"),
        Err(e) => assert!(e.to_string().contains("split"), "split: {e}"),
    }
    expect_err(
        "send outside the group",
        dist::send(&x, size, Some(&g)),
        "Invalid destination",
    )?;
    if size >= 4 && rank == 0 {
        // Rank 2 is no neighbour of rank 0 on a ring of 4.
        expect_err(
            "send past a neighbour",
            dist::send(&x, 2, Some(&g)),
            "direct neighbors",
        )?;
    }
    expect_err(
        "recv shape",
        dist::recv(&[-1], Dtype::Float32, left, Some(&g)),
        "negative",
    )?;
    // Still usable after those errors.
    let inputs: Vec<Array> = (0..size)
        .map(|r| data(r, &[5], Dtype::Int32))
        .collect::<Result<_>>()?;
    check(
        "all_sum after errors",
        &dist::all_sum(&inputs[rank as usize], Some(&g))?,
        &fold(&inputs, ops::add)?,
    )?;
    pass("collectives", &g);
    Ok(())
}

/// The training data: 16 rows of 4 features and 2 targets.
fn dataset() -> Result<(Array, Array)> {
    let x = ops::arange(0.0, 64.0, 1.0, Dtype::Float32)?
        .multiply(&Array::scalar(0.37f32))?
        .sin()?
        .reshape(&[16, 4])?;
    let w = Array::from_slice(&[0.5f32, -1.0, 2.0, 0.25, 1.5, 0.0, -0.5, 1.0], &[4, 2])?;
    let y = x.matmul(&w)?.add(&Array::scalar(0.3f32))?;
    Ok((x, y))
}

fn model() -> Result<Linear> {
    let w = Array::from_slice(&[0.1f32, -0.2, 0.3, 0.0, 0.05, 0.1, -0.1, 0.2], &[2, 4])?;
    Linear::from_weights(w, Some(Array::from_slice(&[0.0f32, 0.1], &[2])?))
}

fn mse(m: &Linear, x: &Array, y: &Array) -> Result<Array> {
    m.forward(x)?.subtract(y)?.square()?.mean(false)
}

/// Data-parallel SGD (each rank a slice of the batch, gradients averaged with all_sum)
/// ends with the parameters of one process training on the whole batch.
fn train() -> Result<()> {
    const STEPS: usize = 20;
    let g = ring()?;
    let (rank, size) = (g.rank(), g.size());
    let (x, y) = dataset()?;
    let rows = 16 / size;
    let take = |a: &Array| -> Result<Array> {
        let idx = ops::arange(
            (rank * rows) as f64,
            ((rank + 1) * rows) as f64,
            1.0,
            Dtype::Int32,
        )?;
        ops::take_axis(a, &idx, 0)
    };
    let (xs, ys) = (take(&x)?, take(&y)?);

    let mut shared = model()?;
    let mut opt = Sgd::new(0.1f32)?;
    let mut alone = model()?;
    let mut opt_alone = Sgd::new(0.1f32)?;
    let n = Array::scalar(size as f32);
    for _ in 0..STEPS {
        let (_, grads) = nn::value_and_grad(&mut shared, |m| mse(m, &xs, &ys))?;
        let mut mean = nn::ParamMap::new();
        for (k, gr) in grads {
            mean.insert(k, dist::all_sum(&gr, Some(&g))?.divide(&n)?);
        }
        opt.update(&mut shared, &mean)?;
        mlx_rs::eval(&shared.parameters()?.into_values().collect::<Vec<_>>())?;

        let (_, grads) = nn::value_and_grad(&mut alone, |m| mse(m, &x, &y))?;
        opt_alone.update(&mut alone, &grads)?;
    }
    let (ours, one) = (shared.parameters()?, alone.parameters()?);
    for (k, p) in &ours {
        let diff: f32 = p.subtract(&one[k])?.abs()?.max(false)?.item()?;
        assert!(diff <= TRAIN_TOL, "{k}: data-parallel differs by {diff}");
        // Every rank holds the same parameters, bit for bit.
        check(
            &format!("{k} same on all ranks"),
            &dist::all_max(p, Some(&g))?,
            p,
        )?;
        check(
            &format!("{k} same on all ranks"),
            &dist::all_min(p, Some(&g))?,
            p,
        )?;
    }
    let loss: f32 = mse(&shared, &x, &y)?.item()?;
    let start: f32 = mse(&model()?, &x, &y)?.item()?;
    assert!(
        loss < start / 4.0,
        "training did not learn: {start} -> {loss}"
    );
    if rank == 0 {
        println!("loss {start:.4} -> {loss:.4} after {STEPS} steps on {size} ranks");
    }
    pass("train", &g);
    Ok(())
}

/// Rank 1 leaves (successfully) right after joining; the others' all_sum then fails with
/// MLX's error instead of waiting.
fn peer_exits() -> Result<()> {
    let g = ring()?;
    if g.rank() == 1 {
        println!("LEAVING");
        return Ok(());
    }
    let x = data(g.rank(), &[4096], Dtype::Float32)?;
    let started = std::time::Instant::now();
    let result = dist::all_sum(&x, Some(&g)).and_then(|y| y.eval());
    match result {
        Ok(()) => panic!("all_sum with a peer gone succeeded"),
        Err(e) => println!("ERROR after {:.1}s: {e}", started.elapsed().as_secs_f32()),
    }
    Ok(())
}

/// A rank whose peer never starts: the init with a timeout returns `Error::Timeout`, and a
/// second init waits for the first only as long as its own timeout.
fn never_comes() -> Result<()> {
    let opts = InitOptions {
        backend: Backend::Ring,
        strict: true,
        timeout: Some(Duration::from_millis(1500)),
    };
    match Group::init_with(&opts) {
        Err(Error::Timeout(m)) => println!("TIMEOUT {m}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let again = InitOptions {
        timeout: Some(Duration::from_millis(200)),
        ..opts
    };
    match Group::init_with(&again) {
        Err(Error::Timeout(m)) => println!("TIMEOUT AGAIN {m}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The helper thread still waits in MLX's accept(): leave without running C++ static
    // destructors under it.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the process at once; nothing of ours needs cleaning up.
    unsafe { libc::_exit(0) }
}

/// Only the init (for hostfile errors): prints `INIT ERROR <message>` or the group.
fn init_only() -> Result<()> {
    match Group::init_with(&InitOptions {
        backend: Backend::Ring,
        strict: true,
        timeout: Some(Duration::from_secs(20)),
    }) {
        Ok(g) => println!("INIT OK {g:?}"),
        Err(e) => println!("INIT ERROR {e}"),
    }
    Ok(())
}

/// A process started alone (`mlx-launch -n 1`): a group of one.
fn alone() -> Result<()> {
    let g = Group::init(Backend::Any, false)?;
    assert_eq!((g.rank(), g.size(), g.backend()), (0, 1, None));
    pass("alone", &g);
    Ok(())
}

/// The Rust side of a group shared with Python ranks (see `INTEROP_PY` in the tests):
/// the same ops in the same order.
fn interop() -> Result<()> {
    let g = ring()?;
    let (rank, size) = (g.rank(), g.size());
    let x =
        ops::arange(0.0, 10.0, 1.0, Dtype::Float32)?.multiply(&Array::scalar((rank + 1) as f32))?;
    let y = dist::all_sum(&x, Some(&g))?;
    let total: i32 = (1..=size).sum();
    let want =
        ops::arange(0.0, 10.0, 1.0, Dtype::Float32)?.multiply(&Array::scalar(total as f32))?;
    check("interop all_sum", &y, &want)?;
    let z = dist::all_gather(&Array::from_slice(&[rank * 10 + 1], &[1])?, Some(&g))?;
    let want: Vec<i32> = (0..size).map(|r| r * 10 + 1).collect();
    assert_eq!(z.to_vec::<i32>()?, want);
    let m = dist::all_max(
        &Array::from_slice(&[rank as f32, -(rank as f32)], &[2])?,
        Some(&g),
    )?;
    assert_eq!(m.to_vec::<f32>()?, vec![(size - 1) as f32, 0.0]);
    println!(
        "sum {:?} gather {:?}",
        y.to_vec::<f32>()?,
        z.to_vec::<i32>()?
    );
    pass("interop", &g);
    Ok(())
}
