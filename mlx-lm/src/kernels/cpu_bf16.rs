//! Products of float32 rows with a bfloat16 weight on the CPU, done outside MLX: how a
//! dense bfloat16 checkpoint (as models are published) runs on the CPU with float32
//! activations and its weights kept in bfloat16 (half the memory of float32 ones, and half
//! the bytes a decode step reads).
//!
//! MLX's CPU backend multiplies bfloat16 in bfloat16, slowly (Qwen3-0.6B's shapes on this
//! project's 2-core EPYC: prefill 5.7 and decode 2.2 tokens/s, against 35.7 and 4.6 in
//! float32 with [`super::cpu_gemm`]), and a float32 input with a bfloat16 weight makes it
//! convert the whole weight at every product. Here a few rows (decode, a batch's step)
//! read each weight row once, converted a block at a time to floats and multiplied with
//! every row on one thread per core (by blocks of weight rows); more rows (a prefill)
//! convert the weight to float32 on every thread and multiply in the packed GEMM.

use super::cpu_gemm::{avx2_fma, dense, output_buffer, over_weight_rows, sgemm_nt, SendPtr};
use super::cpu_quantized::dot;
use crate::error::Result;
use half::bf16;
use mlx_rs::{Array, Dtype};

/// Most rows a product multiplies row by row; more rows convert the weight for the GEMM.
pub const MAX_ROWS: usize = 31;

/// Weight values converted to floats at a time (one block of a weight row).
const BLOCK: usize = 512;

thread_local! {
    /// Products asked for on this thread so far (to check that a path took them).
    static PRODUCTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many products [`matmul`] has done for calls made on this thread: per thread, so
/// tests running side by side do not see each other's.
pub fn products() -> usize {
    PRODUCTS.with(|p| p.get())
}

/// `x · wᵀ` for float32 `x` `[.., k]` and a bfloat16 weight `w` `[n, k]` (a linear layer's
/// weight as stored), on `threads` threads: evaluates the inputs and returns a new,
/// evaluated float32 `[.., n]` array. Up to [`MAX_ROWS`] rows straight from the bfloat16
/// weight; more rows through the weight converted whole (`n · k` floats) when
/// `max_converted_bytes` allows it. `None` when they do not fit (other dtypes, sizes that
/// disagree, a converted weight over the limit or past MLX's memory limit, an input that
/// cannot be evaluated here, e.g. inside a compiled function's trace or a gradient): the
/// caller then multiplies with MLX.
pub fn matmul(
    x: &Array,
    w: &Array,
    threads: usize,
    max_converted_bytes: usize,
) -> Result<Option<Array>> {
    if x.ndim() == 0
        || x.dtype() != Dtype::Float32
        || w.dtype() != Dtype::Bfloat16
        || w.ndim() != 2
        || x.dim(-1) != w.dim(1)
    {
        return Ok(None);
    }
    let (n, k) = (w.dim(0) as usize, w.dim(1) as usize);
    let rows = x.size() / k.max(1);
    let convert = rows > MAX_ROWS;
    if rows == 0 || n == 0 || k == 0 || (convert && n * k * 4 > max_converted_bytes) {
        return Ok(None);
    }
    // Inside a gradient or vmap the result would carry no derivative (or batch axis), and a
    // traced input (compile) cannot be evaluated: leave the product to MLX.
    if mlx_rs::transforms::in_transform() || mlx_rs::eval(&[x, w]).is_err() {
        return Ok(None);
    }
    let (x, w) = (dense(x)?, dense(w)?);
    let (Ok(xs), Ok(ws)) = (x.as_slice::<f32>(), w.as_slice::<bf16>()) else {
        return Ok(None);
    };
    let Some(mut out) = output_buffer(rows * n) else {
        return Ok(None);
    };
    let weight = Weight { w: ws, n, k };
    if convert {
        let Some(mut wf) = output_buffer(n * k) else {
            return Ok(None);
        };
        weight.convert(&mut wf, threads);
        sgemm_nt(xs, &wf, &mut out, rows, k, threads);
    } else {
        weight.multiply(xs, rows, &mut out, threads);
    }
    PRODUCTS.with(|p| p.set(p.get() + 1));
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("ndim > 0") = n as i32;
    Ok(Some(Array::from_slice(&out, &shape)?))
}

/// A bfloat16 weight's data, row-major `[n, k]`.
struct Weight<'a> {
    w: &'a [bf16],
    n: usize,
    k: usize,
}

/// `src` as floats into `dst` (equal lengths): a bfloat16 is the high half of a float32.
#[inline(always)]
fn widen(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits(u32::from(s.to_bits()) << 16);
    }
}

impl Weight<'_> {
    /// `out[m, j] = x[m] · row j` for `m < rows` (`x` `[rows, k]`, `out` `[rows, n]`),
    /// weight rows spread over `threads` threads.
    fn multiply(&self, x: &[f32], rows: usize, out: &mut [f32], threads: usize) {
        assert!(x.len() == rows * self.k && out.len() == rows * self.n);
        let out_ptr = SendPtr(out.as_mut_ptr());
        let avx2 = avx2_fma();
        over_weight_rows(self.n, threads, |lo, hi| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { self.rows_avx2(x, rows, lo..hi, out_ptr) };
                return;
            }
            let _ = avx2;
            self.rows::<false>(x, rows, lo..hi, out_ptr);
        });
    }

    /// [`Weight::rows`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, x: &[f32], rows: usize, cols: std::ops::Range<usize>, out: SendPtr) {
        self.rows::<true>(x, rows, cols, out)
    }

    /// Columns `cols` of `out` (`[rows, n]`) for `x` (`[rows, k]`); `FMA`: fused
    /// multiply-adds.
    #[inline(always)]
    fn rows<const FMA: bool>(
        &self,
        x: &[f32],
        rows: usize,
        cols: std::ops::Range<usize>,
        out: SendPtr,
    ) {
        let mut block = [0f32; BLOCK];
        let mut acc = vec![0f32; rows];
        for j in cols {
            acc.iter_mut().for_each(|a| *a = 0.0);
            let row = &self.w[j * self.k..][..self.k];
            for (b, src) in row.chunks(BLOCK).enumerate() {
                let wf = &mut block[..src.len()];
                widen(src, wf);
                for (m, a) in acc.iter_mut().enumerate() {
                    *a += dot::<FMA>(wf, &x[m * self.k + b * BLOCK..][..src.len()]);
                }
            }
            for (m, a) in acc.iter().enumerate() {
                // SAFETY: m < rows and j < n index `out` ([rows, n]); each thread writes
                // its own columns j, and `out` outlives the scope.
                unsafe { *out.at(m * self.n + j) = *a };
            }
        }
    }

    /// The whole weight as floats into `wf` (`[n, k]`), rows spread over `threads` threads.
    fn convert(&self, wf: &mut [f32], threads: usize) {
        let threads = threads.clamp(1, self.n.max(1));
        let per = self.n.div_ceil(threads) * self.k;
        std::thread::scope(|s| {
            for (dst, src) in wf.chunks_mut(per).zip(self.w.chunks(per)) {
                s.spawn(move || widen(src, dst));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops;

    #[test]
    fn products_match_mlx_in_float32() {
        // Rows group by group and converted, widths that do and do not fill a block or
        // the threads, 1 to 3 threads; against MLX's float32 product of the same values.
        for (rows, n, k, threads) in [
            (1, 40, 128, 1),
            (3, 65, 96, 2),
            (5, 33, 1100, 3),
            (31, 130, 256, 2),
            (32, 17, 64, 2),
            (40, 70, 600, 3),
        ] {
            let w = mlx_rs::random::normal(&[n, k], Dtype::Float32, 0.0, 1.0, None)
                .unwrap()
                .astype(Dtype::Bfloat16)
                .unwrap();
            let x = mlx_rs::random::normal(&[rows, k], Dtype::Float32, 0.0, 1.0, None).unwrap();
            let got = matmul(&x, &w, threads, usize::MAX).unwrap().expect("fits");
            let w32 = w.astype(Dtype::Float32).unwrap();
            let want = ops::matmul(&x, &w32.transpose().unwrap()).unwrap();
            assert_eq!(got.shape(), want.shape());
            let (g, e) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
            for (i, (a, c)) in g.iter().zip(&e).enumerate() {
                assert!(
                    (a - c).abs() <= 1e-4 * (1.0 + c.abs()),
                    "{rows}x{n}x{k} t{threads} [{i}]: {a} vs {c}"
                );
            }
        }
    }

    #[test]
    fn other_inputs_are_left_to_mlx() {
        let w = mlx_rs::random::normal(&[8, 64], Dtype::Float32, 0.0, 1.0, None).unwrap();
        let wb = w.astype(Dtype::Bfloat16).unwrap();
        let x = |rows: i32, dtype| {
            mlx_rs::random::normal(&[rows, 64], Dtype::Float32, 0.0, 1.0, None)
                .unwrap()
                .astype(dtype)
                .unwrap()
        };
        let none = |x: &Array, w: &Array| matmul(x, w, 2, 1024).unwrap().is_none();
        assert!(none(&x(2, Dtype::Bfloat16), &wb), "bfloat16 rows");
        assert!(none(&x(2, Dtype::Float32), &w), "a float32 weight");
        assert!(
            none(&x(32, Dtype::Float32), &wb),
            "a converted weight over the limit"
        );
        assert!(
            !none(&x(31, Dtype::Float32), &wb),
            "row by row: no converted weight"
        );
        let wide = mlx_rs::random::normal(&[8, 65], Dtype::Bfloat16, 0.0, 1.0, None).unwrap();
        assert!(none(&x(2, Dtype::Float32), &wide), "inner sizes differ");
    }
}
