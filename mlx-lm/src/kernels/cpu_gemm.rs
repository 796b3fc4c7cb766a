//! Float32 products on the CPU, done outside MLX.
//!
//! MLX's Linux wheels hand CPU float32 matmuls to the reference (netlib) BLAS they ship,
//! which runs at 4–6 GFLOP/s per core on this project's 2-core AMD EPYC. A packed,
//! SIMD GEMM (the `matrixmultiply` crate: AVX2/FMA micro-kernels, detected at run time)
//! runs the same products at ~95 GFLOP/s per core there. Prefill on the CPU is almost all
//! such products, and so is a decode step of a batch (a served batch of ~11 rows stepped
//! in 207–208 ms through the reference BLAS against 43–46 ms here), so the layer evaluates
//! its input, multiplies on one thread per core (by blocks of output columns) and hands
//! the result back to MLX as a new array. Up to [`super::cpu_rows::MAX_ROWS`] rows (decode,
//! a small batch's step, a short prompt) go to [`super::cpu_rows`] instead, which reads
//! the weight once, straight through, where the GEMM copies it into packed panels: one
//! row there runs at 2–4× the bandwidth of MLX's product (float32 decode 1.9× as fast).
//!
//! A model takes this path when its options say so ([`CpuProducts::gemm`]; Qwen 3.5's
//! `ModelOptions::cpu_gemm` turns it on by default on the CPU except on macOS, where MLX
//! multiplies through Accelerate).

use crate::error::Result;
use mlx_rs::{ops, Array, Dtype};

/// Queries from which a CPU float32 attention of a prompt goes through [`batched`] (one
/// query, a decode step, has `cpu_attention`).
pub const MIN_ROWS: usize = 2;

/// How a model on the CPU does its float32 products, fixed at load from the model's
/// options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuProducts {
    /// Float32 products go through [`matmul`] / [`batched`] (else through MLX).
    pub gemm: bool,
    /// Threads a product is spread over: the GEMM's, or the CPU streams a model splits
    /// MLX's product over (at least 1).
    pub threads: usize,
}

impl CpuProducts {
    /// Every product in MLX, on one stream.
    pub const MLX: CpuProducts = CpuProducts {
        gemm: false,
        threads: 1,
    };

    /// The defaults for a model on `device`: `None` on a GPU (no CPU products there); on
    /// the CPU the GEMM on except on macOS (MLX multiplies through Accelerate there; the
    /// Linux wheels' reference BLAS runs at 4–6 GFLOP/s per core against ~95 for the GEMM
    /// on a 2-core EPYC), on the available cores, at most 8.
    pub fn for_device(device: &mlx_rs::Device) -> Option<CpuProducts> {
        if device.kind().is_ok_and(|k| k == mlx_rs::DeviceType::Gpu) {
            return None;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(CpuProducts {
            gemm: !cfg!(target_os = "macos"),
            threads: cores.clamp(1, 8),
        })
    }
}

thread_local! {
    /// Products asked for on this thread so far (to check that a path took them).
    static PRODUCTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one product asked for on this thread.
fn count_product() {
    PRODUCTS.with(|p| p.set(p.get() + 1));
}

/// How many products this module has done ([`matmul`], [`matmul_t`], [`batched`], and
/// the GEMM of [`super::cpu_quantized`]'s dequantized weights) for calls made on this
/// thread: per thread, so tests running side by side do not see each other's.
pub fn products() -> usize {
    PRODUCTS.with(|p| p.get())
}

/// `x · wt` for float32 `x` `[.., k]` and a row-major float32 `wt` `[k, n]`: evaluates
/// `x` (and `wt`, normally evaluated at load) and returns a new, evaluated `[.., n]`
/// array, spread over `threads` threads. `None` when the arrays do not fit (another
/// dtype, inner sizes that differ, or an input that cannot be evaluated here, e.g. inside
/// a compiled function's trace): the caller then multiplies with MLX.
pub fn matmul(x: &Array, wt: &Array, threads: usize) -> Result<Option<Array>> {
    if x.ndim() == 0 || wt.ndim() != 2 || x.dim(-1) != wt.dim(0) {
        return Ok(None);
    }
    let (k, n) = (wt.dim(0), wt.dim(1));
    let rows = x.size() as i32 / k.max(1);
    let Some(flat) = batched(&x.reshape(&[rows, k])?, wt, threads)? else {
        return Ok(None);
    };
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("ndim > 0") = n;
    Ok(Some(flat.reshape(&shape)?))
}

/// `x · wᵀ` for float32 `x` `[.., k]` and a float32 weight `w` `[n, k]` as a linear layer
/// holds it: stored row-major (as loaded) or as the transpose of a row-major `[k, n]`
/// matrix (how [`crate::linear::store_for_cpu`] keeps it); the GEMM reads either in
/// place. Returns a new, evaluated `[.., n]` array, or `None` as [`matmul`] does.
pub fn matmul_t(x: &Array, w: &Array, threads: usize) -> Result<Option<Array>> {
    let fits = x.ndim() > 0 && w.ndim() == 2 && x.dim(-1) == w.dim(1);
    if !fits || x.dtype() != Dtype::Float32 || w.dtype() != Dtype::Float32 {
        return Ok(None);
    }
    let (n, k) = (w.dim(0), w.dim(1));
    let rows = x.size() as i32 / k.max(1);
    // The weight's layout is known once it is evaluated (a loaded weight already is).
    if rows <= 0 || n <= 0 || mlx_rs::transforms::in_transform() || w.eval().is_err() {
        return Ok(None);
    }
    // Stored transposed: the row-major `wᵀ`, a plain product; else `w` read transposed.
    let wt = (w.is_col_contiguous() && !w.is_row_contiguous())
        .then(|| w.transpose())
        .transpose()?;
    let dims = Dims {
        count: 1,
        m: rows as usize,
        k: k as usize,
        n: n as usize,
        b_stride: 0,
        b_transposed: wt.is_none(),
    };
    let b = wt.as_ref().unwrap_or(w);
    let x2 = x.reshape(&[rows, k])?;
    let Some(flat) = multiply(&x2, b, dims, &[rows, n], threads)? else {
        return Ok(None);
    };
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("ndim > 0") = n;
    Ok(Some(flat.reshape(&shape)?))
}

/// Evaluates `a` and `b`, multiplies them as `d` says on `threads` threads and returns the
/// product as a new array of `shape`; `None` when an input cannot be evaluated here (a
/// traced one, inside compile or vmap), is not float32 data, or the output would not fit.
fn multiply(a: &Array, b: &Array, d: Dims, shape: &[i32], threads: usize) -> Result<Option<Array>> {
    // Inside a gradient or vmap the result would carry no derivative (or batch axis), and a
    // traced input (compile) cannot be evaluated: leave the product to MLX.
    if mlx_rs::transforms::in_transform() || mlx_rs::eval(&[a, b]).is_err() {
        return Ok(None);
    }
    let (a, b) = (dense(a)?, dense(b)?);
    let (Ok(da), Ok(db)) = (a.as_slice::<f32>(), b.as_slice::<f32>()) else {
        return Ok(None);
    };
    if da.len() != d.count * d.m * d.k {
        return Ok(None);
    }
    let Some(mut c) = output_buffer(d.count * d.m * d.n) else {
        return Ok(None);
    };
    if d.count == 1 && d.m <= super::cpu_rows::MAX_ROWS {
        let b = &db[..d.k * d.n];
        super::cpu_rows::multiply(da, b, &mut c, d.m, d.b_transposed, threads);
    } else {
        sgemm_threads(da, db, &mut c, d, threads);
    }
    count_product();
    Ok(Some(Array::from_slice(&c, shape)?))
}

/// The batched product `a · b` of float32 arrays (`[.., m, k]` · `[.., k, n]`, the same
/// leading axes on both, or a 2-D `b` shared by every matrix of `a`), as [`matmul`] does
/// it, on `threads` threads. `None` when the arrays do not fit (see [`matmul`]); the
/// caller then uses MLX.
pub fn batched(a: &Array, b: &Array, threads: usize) -> Result<Option<Array>> {
    if a.dtype() != Dtype::Float32 || b.dtype() != Dtype::Float32 || a.ndim() < 2 || b.ndim() < 2 {
        return Ok(None);
    }
    let (sa, sb) = (a.shape(), b.shape());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    let batch = &sa[..sa.len() - 2];
    let b_shared = sb.len() == 2;
    if sb[sb.len() - 2] != k || !(b_shared || &sb[..sb.len() - 2] == batch) {
        return Ok(None);
    }
    if m <= 0 || k <= 0 || n <= 0 {
        return Ok(None);
    }
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let count = batch.iter().map(|&x| x as usize).product::<usize>();
    let dims = Dims {
        count,
        m,
        k,
        n,
        b_stride: if b_shared { 0 } else { k * n },
        b_transposed: false,
    };
    let mut shape = batch.to_vec();
    shape.extend([m as i32, n as i32]);
    multiply(a, b, dims, &shape, threads)
}

/// `x` (evaluated) with row-major data: itself when it already is, else a dense copy.
pub(super) fn dense(x: &Array) -> Result<Array> {
    if x.is_row_contiguous() {
        return Ok(x.clone());
    }
    let d = ops::contiguous(x, false)?;
    d.eval()?;
    Ok(d)
}

/// A zeroed buffer of `len` floats for a product's output, or `None` when it and MLX's copy
/// of it would not fit under MLX's memory limit next to the live arrays, or the allocation
/// fails (the caller then leaves the product to MLX, whose checks report it; an
/// allocation failure here must not abort the process).
pub(super) fn output_buffer(len: usize) -> Option<Vec<f32>> {
    let bytes = len.checked_mul(std::mem::size_of::<f32>())?;
    if let (Ok(limit), Ok(active)) = (
        mlx_rs::memory::get_memory_limit(),
        mlx_rs::memory::get_active_memory(),
    ) {
        if limit > 0 && bytes.saturating_mul(2) > limit.saturating_sub(active) {
            return None;
        }
    }
    let mut c = Vec::new();
    c.try_reserve_exact(len).ok()?;
    c.resize(len, 0.0f32);
    Some(c)
}

/// Sizes of a batched product: `count` products of `m×k` by `k×n`, the `k×n` operands
/// `b_stride` elements apart (0: one shared matrix).
#[derive(Debug, Clone, Copy)]
struct Dims {
    /// Number of products.
    count: usize,
    /// Rows of each product.
    m: usize,
    /// Inner size.
    k: usize,
    /// Columns of each product.
    n: usize,
    /// Elements between consecutive right-hand matrices (`k · n`, or 0 for a shared one).
    b_stride: usize,
    /// The right-hand matrices are stored as their transposes (row-major `n×k`).
    b_transposed: bool,
}

/// `c = a · wᵀ` for row-major `a` (`m×k`) and `w` (`n×k`, a weight as stored, e.g. just
/// dequantized) into `c` (`m×n`), on `threads` threads; the GEMM reads `w` through
/// strides, without a transposed copy.
pub(super) fn sgemm_nt(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, threads: usize) {
    let n = c.len() / m.max(1);
    let d = Dims {
        count: 1,
        m,
        k,
        n,
        b_stride: 0,
        b_transposed: true,
    };
    sgemm_threads(a, w, c, d, threads);
    count_product();
}

/// `c[i] = a[i] · b[i]` for `i < count` (row-major `m×k`, `k×n`, `m×n` matrices, packed
/// one after the other), split into units of one product and one block of output
/// columns, spread over `threads` threads (the calling thread takes the last share).
fn sgemm_threads(a: &[f32], b: &[f32], c: &mut [f32], d: Dims, threads: usize) {
    let Dims {
        count,
        m,
        k,
        n,
        b_stride,
        b_transposed,
    } = d;
    // Element (p, j) of b[i]: at p·n + j, or at j·k + p when stored transposed.
    let (rsb, csb) = if b_transposed { (1, k) } else { (n, 1) };
    assert!(a.len() == count * m * k && c.len() == count * m * n);
    assert!(count == 0 || b.len() >= (count - 1) * b_stride + k * n);
    if count == 0 || m == 0 || n == 0 {
        return;
    }
    let threads = threads.max(1);
    // Column blocks per product: enough units for every thread, in whole micro-kernel
    // widths (16 covers the AVX2 and AVX-512 kernels).
    let per = n
        .div_ceil(threads.div_ceil(count))
        .next_multiple_of(16)
        .min(n);
    let units: Vec<(usize, usize, usize)> = (0..count)
        .flat_map(|i| {
            (0..n)
                .step_by(per)
                .map(move |lo| (i, lo, (lo + per).min(n)))
        })
        .collect();
    let c_ptr = SendPtr(c.as_mut_ptr());
    let run = |share: &[(usize, usize, usize)]| {
        for &(i, lo, hi) in share {
            // SAFETY: the sizes were checked above: product i reads a[i] (m×k), columns
            // lo..hi of b[i] (k×n or its n×k transpose, b_stride apart) and writes
            // columns lo..hi of c[i], which no other unit touches; `c` outlives the scope.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    hi - lo,
                    1.0,
                    a.as_ptr().add(i * m * k),
                    k as isize,
                    1,
                    b.as_ptr().add(i * b_stride + lo * csb),
                    rsb as isize,
                    csb as isize,
                    0.0,
                    c_ptr.at(i * m * n + lo),
                    n as isize,
                    1,
                );
            }
        }
    };
    let shares: Vec<&[(usize, usize, usize)]> =
        units.chunks(units.len().div_ceil(threads)).collect();
    std::thread::scope(|s| {
        let (last, rest) = shares.split_last().expect("at least one unit");
        for &share in rest {
            s.spawn(move || run(share));
        }
        run(last);
    });
}

/// Whether this CPU has AVX2 and FMA (x86-64, detected at run time; false elsewhere).
pub(super) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `run(lo, hi)` for blocks of the rows `0..n` of a weight, one block per thread (at
/// most `threads`, and blocks of 64 rows or more); the calling thread takes the first.
pub(super) fn over_weight_rows(n: usize, threads: usize, run: impl Fn(usize, usize) + Sync) {
    let threads = threads.clamp(1, n.div_ceil(64).max(1));
    let per = n.div_ceil(threads);
    let run = &run;
    std::thread::scope(|s| {
        for t in 1..threads {
            let (lo, hi) = (t * per, ((t + 1) * per).min(n));
            if lo < hi {
                s.spawn(move || run(lo, hi));
            }
        }
        run(0, per.min(n));
    });
}

/// A raw output pointer handed to the worker threads (each writes its own columns).
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);

// SAFETY: the threads write disjoint columns of one buffer that outlives them.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        // SAFETY (for callers): offset < the buffer's length.
        unsafe { self.0.add(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
                c[i * n + j] = acc as f32;
            }
        }
        c
    }

    #[test]
    fn threaded_blocks_cover_every_column() {
        // Widths that do and do not divide into the blocks, and more threads than blocks.
        for &(m, k, n, t) in &[
            (33, 17, 50, 2),
            (40, 64, 16, 3),
            (32, 5, 1, 4),
            (64, 96, 129, 8),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
                .collect();
            let mut c = vec![f32::NAN; m * n];
            let d = Dims {
                count: 1,
                m,
                k,
                n,
                b_stride: 0,
                b_transposed: false,
            };
            sgemm_threads(&a, &b, &mut c, d, t);
            let want = naive(&a, &b, m, k, n);
            for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{m}x{k}x{n} t{t} [{i}]: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn batches_with_own_and_shared_right_operands() {
        let (count, m, k, n) = (5, 7, 9, 20);
        let a: Vec<f32> = (0..count * m * k)
            .map(|i| ((i * 3 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let b: Vec<f32> = (0..count * k * n)
            .map(|i| ((i * 7 % 19) as f32 - 9.0) / 8.0)
            .collect();
        for (b_stride, threads) in [(k * n, 1), (k * n, 3), (0, 2), (0, 16)] {
            let mut c = vec![f32::NAN; count * m * n];
            sgemm_threads(
                &a,
                &b,
                &mut c,
                Dims {
                    count,
                    m,
                    k,
                    n,
                    b_stride,
                    b_transposed: false,
                },
                threads,
            );
            for i in 0..count {
                let bi = &b[i * b_stride..i * b_stride + k * n];
                let want = naive(&a[i * m * k..(i + 1) * m * k], bi, m, k, n);
                let got = &c[i * m * n..(i + 1) * m * n];
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "stride {b_stride} t{threads} [{i}][{j}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn output_buffers_past_the_memory_limit_are_declined() {
        // 4 TiB of floats is past any memory limit MLX sets by default; usize::MAX floats
        // overflow the byte count. Neither may abort: both leave the product to MLX.
        assert!(output_buffer(1 << 40).is_none());
        assert!(output_buffer(usize::MAX).is_none());
        assert_eq!(output_buffer(16).map(|c| c.len()), Some(16));
    }

    #[test]
    fn products_with_a_stored_weight_match_mlx() {
        // x · wᵀ for w [n, k] as stored: widths that do and do not fill the blocks, 1 to 3
        // threads; against MLX's product.
        for (m, n, threads) in [(40, 33, 1), (74, 70, 3)] {
            let x = mlx_rs::random::normal(&[m, 24], Dtype::Float32, 0.0, 1.0, None).unwrap();
            let w = mlx_rs::random::normal(&[n, 24], Dtype::Float32, 0.0, 1.0, None).unwrap();
            let (xs, ws) = (x.to_vec::<f32>().unwrap(), w.to_vec::<f32>().unwrap());
            let mut got = vec![f32::NAN; (m * n) as usize];
            sgemm_nt(&xs, &ws, &mut got, m as usize, 24, threads);
            let want = ops::matmul(&x, &w.transpose().unwrap()).unwrap();
            let e = want.to_vec::<f32>().unwrap();
            for (i, (a, b)) in got.iter().zip(&e).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "[{i}]: {a} vs {b}");
            }
        }
    }

    #[test]
    fn arrays_match_mlx_products_and_decline_other_dtypes() {
        let a = mlx_rs::random::normal(&[2, 3, 40, 24], Dtype::Float32, 0.0, 1.0, None).unwrap();
        let b = mlx_rs::random::normal(&[2, 3, 24, 33], Dtype::Float32, 0.0, 1.0, None).unwrap();
        let shared = mlx_rs::random::normal(&[24, 33], Dtype::Float32, 0.0, 1.0, None).unwrap();
        for rhs in [&b, &shared] {
            let want = ops::matmul(&a, rhs).unwrap();
            let got = batched(&a, rhs, 2).unwrap().expect("float32 fits");
            assert_eq!(got.shape(), want.shape());
            let diff = ops::abs(&got.subtract(&want).unwrap()).unwrap();
            let max = ops::max(&diff, false).unwrap().item::<f32>().unwrap();
            assert!(max < 1e-4, "max difference {max}");
        }
        let w = matmul(&a, &shared, 2).unwrap().expect("float32 fits");
        assert_eq!(w.shape(), &[2, 3, 40, 33]);
        let half = a.astype(Dtype::Float16).unwrap();
        assert!(batched(&half, &b, 2).unwrap().is_none());
        assert!(batched(&a, &a, 2).unwrap().is_none(), "inner sizes differ");
    }
}
