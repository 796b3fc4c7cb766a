//! Products of a few float32 rows with an MLX affine-quantized weight (2, 4 or 8 bits) on
//! the CPU, done outside MLX: a decode step (one row) or a batch's decode step (a few
//! rows).
//!
//! MLX's CPU quantized matmul multiplies one row at a time on one thread, so a batch's
//! step costs as many passes over the weight as it has rows (a served 4-bit model on this
//! project's 2-core EPYC stepped in 60 ms at one row, 208 ms at ~4 and 514 ms at ~11).
//! Here, on one thread per core (by blocks of output rows of the weight),
//! `out[m, n] = Σ_g scale[n, g] · (q[n, g] · x[m, g]) + bias[n, g] · Σ x[m, g]`: where a
//! group is a whole number of eight-word blocks (4 bits in groups of 64 or 128, 8 bits
//! in groups of 32 or more, 2 bits in groups of 128), the input is reordered once so
//! that each shift of eight packed words, widened to eight floats, meets its eight inputs
//! in one vector (nothing unpacked to memory: 1024×3584 at 4 bits, one row, 1.06–1.19 →
//! 0.29 ms on this project's 2-core EPYC, mid-1024x8 4-bit decode 11.9–13.7 → 40.0–46.4
//! tokens/s); other groups are unpacked into floats once and multiplied with every row.
//! A product of more rows (a prefill) dequantizes the weight here, on every thread, and
//! multiplies with the packed GEMM ([`super::cpu_gemm`]): MLX's CPU dequantize runs on one
//! thread.

use super::cpu_gemm::{avx2_fma, dense, output_buffer, over_weight_rows, sgemm_nt, SendPtr};
use crate::error::Result;
use mlx_rs::{Array, Dtype};

/// Most rows a product multiplies group by group; more rows dequantize the weight for the
/// GEMM.
pub const MAX_ROWS: usize = 31;

thread_local! {
    /// Products asked for on this thread so far (to check that a path took them).
    static PRODUCTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one product asked for on this thread.
fn count_product() {
    PRODUCTS.with(|p| p.set(p.get() + 1));
}

/// How many products [`matmul`] has done for calls made on this thread: per thread, so
/// tests running side by side do not see each other's.
pub fn products() -> usize {
    PRODUCTS.with(|p| p.get())
}

/// `x · wᵀ` for float32 `x` `[.., k]` and an affine-quantized `w` (`weight` `[n, k · bits
/// / 32]` `uint32`, `scales` and `biases` `[n, k / group_size]`, any float dtype) with 2,
/// 4 or 8 bits, on `threads` threads: evaluates the inputs and returns a new, evaluated
/// `[.., n]` array. Up to [`MAX_ROWS`] rows group by group; more rows through the weight
/// dequantized whole (`n · k` floats) when `max_dequantized_bytes` allows it. `None` when
/// they do not fit (another dtype or bit width, sizes that disagree, a dequantized weight
/// over the limit or past MLX's memory limit, an input that cannot be evaluated here,
/// e.g. inside a compiled function's trace): the caller then multiplies with MLX.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    x: &Array,
    weight: &Array,
    scales: &Array,
    biases: &Array,
    bits: i32,
    group_size: i32,
    threads: usize,
    max_dequantized_bytes: usize,
) -> Result<Option<Array>> {
    if x.ndim() == 0
        || x.dtype() != Dtype::Float32
        || weight.dtype() != Dtype::Uint32
        || !matches!(bits, 2 | 4 | 8)
        || group_size <= 0
        || weight.ndim() != 2
        || scales.ndim() != 2
        || biases.shape() != scales.shape()
    {
        return Ok(None);
    }
    let k = x.dim(-1);
    let (n, words) = (weight.dim(0), weight.dim(1));
    let groups = scales.dim(1);
    if k <= 0
        || n <= 0
        || k % group_size != 0
        || words as i64 * 32 != k as i64 * bits as i64
        || scales.dim(0) != n
        || groups * group_size != k
        || (group_size * bits) % 32 != 0
    {
        return Ok(None);
    }
    let rows = x.size() / k as usize;
    let dequantize = rows > MAX_ROWS;
    if rows == 0 || (dequantize && n as usize * k as usize * 4 > max_dequantized_bytes) {
        return Ok(None);
    }
    let (s32, b32) = (
        scales.astype(Dtype::Float32)?,
        biases.astype(Dtype::Float32)?,
    );
    // Inside a gradient or vmap the result would carry no derivative (or batch axis), and a
    // traced input (compile) cannot be evaluated: leave the product to MLX.
    if mlx_rs::transforms::in_transform() || mlx_rs::eval(&[x, weight, &s32, &b32]).is_err() {
        return Ok(None);
    }
    let (x, weight, s32, b32) = (dense(x)?, dense(weight)?, dense(&s32)?, dense(&b32)?);
    let (Ok(xs), Ok(ws), Ok(ss), Ok(bs)) = (
        x.as_slice::<f32>(),
        weight.as_slice::<u32>(),
        s32.as_slice::<f32>(),
        b32.as_slice::<f32>(),
    ) else {
        return Ok(None);
    };
    let Some(mut out) = output_buffer(rows * n as usize) else {
        return Ok(None);
    };
    let q = Quantized {
        w: ws,
        scales: ss,
        biases: bs,
        n: n as usize,
        k: k as usize,
        bits: bits as usize,
        group: group_size as usize,
    };
    if dequantize {
        let Some(mut w) = output_buffer(q.n * q.k) else {
            return Ok(None);
        };
        q.dequantize(&mut w, threads);
        sgemm_nt(xs, &w, &mut out, rows, q.k, threads);
    } else {
        q.multiply(xs, rows, &mut out, threads);
    }
    count_product();
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("ndim > 0") = n;
    Ok(Some(Array::from_slice(&out, &shape)?))
}

/// The input rows of a product (`[rows, k]`), also in [`Quantized::lane_order`] where that
/// applies, with their sums over each group.
struct Input<'a> {
    x: &'a [f32],
    lanes: Option<&'a [f32]>,
    sums: &'a [f32],
    rows: usize,
}

/// A quantized weight's data, row-major.
struct Quantized<'a> {
    w: &'a [u32],
    scales: &'a [f32],
    biases: &'a [f32],
    n: usize,
    k: usize,
    bits: usize,
    group: usize,
}

impl Quantized<'_> {
    /// `out[m, j] = x[m] · row j` for `m < rows` (`x` `[rows, k]`, `out` `[rows, n]`),
    /// weight rows spread over `threads` threads.
    fn multiply(&self, x: &[f32], rows: usize, out: &mut [f32], threads: usize) {
        assert!(x.len() == rows * self.k && out.len() == rows * self.n);
        // Σ x over each group of each row: the biases' share.
        let sums: Vec<f32> = x.chunks(self.group).map(|c| c.iter().sum()).collect();
        let out_ptr = SendPtr(out.as_mut_ptr());
        let avx2 = avx2_fma();
        let xp = self.lane_order(x, rows);
        let input = Input {
            x,
            lanes: xp.as_deref(),
            sums: &sums,
            rows,
        };
        over_weight_rows(self.n, threads, |lo, hi| {
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { self.columns_avx2(&input, lo..hi, out_ptr) };
                return;
            }
            let _ = avx2;
            self.columns::<false>(&input, lo..hi, out_ptr);
        });
    }

    /// `x` (`[rows, k]`) in the order [`Quantized::lanes`] reads it, or `None` where that
    /// path does not apply (a group that is not a whole number of eight-word blocks, e.g.
    /// 4 bits in groups of 32). In each block of eight packed words of a weight row, word
    /// `i` holds the values `8 · i · per_word / 8 …`: element `(block · 8 + i) · per_word +
    /// s` goes to position `block · 8 · per_word + s · 8 + i`, so that the `s`-th values
    /// of the eight words meet their inputs in one vector.
    fn lane_order(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        let per = 32 / self.bits;
        if (self.group / per) % 8 != 0 || self.k % (8 * per) != 0 {
            return None;
        }
        let mut xp = vec![0f32; rows * self.k];
        for (src, dst) in x.chunks_exact(self.k).zip(xp.chunks_exact_mut(self.k)) {
            for (sb, db) in src.chunks_exact(8 * per).zip(dst.chunks_exact_mut(8 * per)) {
                for i in 0..8 {
                    for s in 0..per {
                        db[s * 8 + i] = sb[i * per + s];
                    }
                }
            }
        }
        Some(xp)
    }

    /// [`Quantized::columns`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns_avx2(&self, input: &Input, cols: std::ops::Range<usize>, out: SendPtr) {
        self.columns::<true>(input, cols, out)
    }

    /// Columns `cols` of `out` (`[rows, n]`): through [`Quantized::lanes`] when the input
    /// is in lane order, else [`Quantized::rows`]; `FMA`: fused multiply-adds.
    #[inline(always)]
    fn columns<const FMA: bool>(&self, input: &Input, cols: std::ops::Range<usize>, out: SendPtr) {
        match input.lanes {
            Some(xp) => self.lanes::<FMA>(xp, input, cols, out),
            None => self.rows::<FMA>(input, cols, out),
        }
    }

    /// [`Quantized::rows`] for `xp` in [`Quantized::lane_order`]: eight packed words at a
    /// time, each shift of them widened to eight floats and multiplied with eight inputs
    /// in one vector (nothing unpacked to memory).
    #[inline(always)]
    fn lanes<const FMA: bool>(
        &self,
        xp: &[f32],
        input: &Input,
        cols: std::ops::Range<usize>,
        out: SendPtr,
    ) {
        match self.bits {
            2 => self.lanes_of::<FMA, 2>(xp, input, cols, out),
            4 => self.lanes_of::<FMA, 4>(xp, input, cols, out),
            _ => self.lanes_of::<FMA, 8>(xp, input, cols, out),
        }
    }

    /// [`Quantized::lanes`] for `BITS`-bit values.
    #[inline(always)]
    fn lanes_of<const FMA: bool, const BITS: usize>(
        &self,
        xp: &[f32],
        input: &Input,
        cols: std::ops::Range<usize>,
        out: SendPtr,
    ) {
        let (sums, rows) = (input.sums, input.rows);
        let per = 32 / BITS;
        let mask = (1u32 << BITS) - 1;
        let groups = self.k / self.group;
        let row_words = self.k / per;
        let blocks = self.group / per / 8;
        let fma = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
        for j in cols {
            let wrow = &self.w[j * row_words..][..row_words];
            for m in 0..rows {
                let xm = &xp[m * self.k..][..self.k];
                let mut total = [0f32; 8];
                let mut bias = 0f32;
                for g in 0..groups {
                    let mut acc = [[0f32; 8]; 2];
                    for blk in g * blocks..(g + 1) * blocks {
                        let words = &wrow[blk * 8..][..8];
                        let xb = &xm[blk * 8 * per..][..8 * per];
                        for s in 0..per {
                            let xs = &xb[s * 8..][..8];
                            let a = &mut acc[s % 2];
                            for i in 0..8 {
                                let q = ((words[i] >> (s * BITS)) & mask) as f32;
                                a[i] = fma(q, xs[i], a[i]);
                            }
                        }
                    }
                    let scale = self.scales[j * groups + g];
                    for i in 0..8 {
                        total[i] = fma(acc[0][i] + acc[1][i], scale, total[i]);
                    }
                    bias = fma(self.biases[j * groups + g], sums[m * groups + g], bias);
                }
                // SAFETY: m < rows and j < n index `out` ([rows, n]); each thread writes
                // its own columns j, and `out` outlives the scope.
                unsafe { *out.at(m * self.n + j) = total.iter().sum::<f32>() + bias };
            }
        }
    }

    /// The whole weight as floats into `w` (`[n, k]`), rows spread over `threads` threads.
    fn dequantize(&self, w: &mut [f32], threads: usize) {
        let groups = self.k / self.group;
        let threads = threads.clamp(1, self.n.max(1));
        let per = self.n.div_ceil(threads);
        std::thread::scope(|s| {
            for (t, chunk) in w.chunks_mut(per * self.k).enumerate() {
                s.spawn(move || {
                    for (r, row) in chunk.chunks_exact_mut(self.k).enumerate() {
                        let j = t * per + r;
                        for (g, out) in row.chunks_exact_mut(self.group).enumerate() {
                            self.unpack(j, g, out);
                            let (s, b) = (self.scales[j * groups + g], self.biases[j * groups + g]);
                            out.iter_mut().for_each(|v| *v = *v * s + b);
                        }
                    }
                });
            }
        });
    }

    /// Columns `cols` of `out` (`[rows, n]`) for the input's `x` (`[rows, k]`) with its
    /// `sums` (Σ x over each group of each row); `FMA`: fused multiply-adds.
    #[inline(always)]
    fn rows<const FMA: bool>(&self, input: &Input, cols: std::ops::Range<usize>, out: SendPtr) {
        let (x, sums, rows) = (input.x, input.sums, input.rows);
        let groups = self.k / self.group;
        let mut unpacked = vec![0f32; self.group];
        let mut acc = vec![0f32; rows];
        for j in cols {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for g in 0..groups {
                self.unpack(j, g, &mut unpacked);
                let (s, b) = (self.scales[j * groups + g], self.biases[j * groups + g]);
                for (m, a) in acc.iter_mut().enumerate() {
                    let xg = &x[m * self.k + g * self.group..][..self.group];
                    *a += s * dot::<FMA>(&unpacked, xg) + b * sums[m * groups + g];
                }
            }
            for (m, a) in acc.iter().enumerate() {
                // SAFETY: m < rows and j < n index `out` ([rows, n]); each thread writes
                // its own columns j, and `out` outlives the scope.
                unsafe { *out.at(m * self.n + j) = *a };
            }
        }
    }

    /// The quantized values of group `g` of weight row `j` as floats (MLX packs the
    /// lowest bits of each word first).
    #[inline(always)]
    fn unpack(&self, j: usize, g: usize, out: &mut [f32]) {
        let per_word = 32 / self.bits;
        let words = self.group / per_word;
        let row_words = self.k / per_word;
        let src = &self.w[j * row_words + g * words..][..words];
        let mask = (1u32 << self.bits) - 1;
        for (w, chunk) in src.iter().zip(out.chunks_exact_mut(per_word)) {
            for (i, o) in chunk.iter_mut().enumerate() {
                *o = ((w >> (i * self.bits)) & mask) as f32;
            }
        }
    }
}

/// `a · b` (equal lengths), in eight running sums (vectorizable); `FMA`: fused
/// multiply-adds (only where the CPU has them: elsewhere `mul_add` is a library call).
#[inline(always)]
pub(super) fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            s[i] = if FMA {
                x[i].mul_add(y[i], s[i])
            } else {
                s[i] + x[i] * y[i]
            };
        }
    }
    s.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops;

    /// A random `[n, k]` weight quantized with `bits` and `group`: the options, packed
    /// values, scales and biases.
    fn random_quantized(
        n: i32,
        k: i32,
        bits: i32,
        group: i32,
    ) -> (ops::QuantizeOptions, Array, Array, Array) {
        let w = mlx_rs::random::normal(&[n, k], Dtype::Float32, 0.0, 1.0, None).unwrap();
        let options = ops::QuantizeOptions {
            group_size: Some(group),
            bits: Some(bits),
            mode: ops::QuantizationMode::Affine,
        };
        let q = ops::quantize(&w, None, options).unwrap();
        let biases = q.biases.expect("affine biases");
        (options, q.w, q.scales, biases)
    }

    #[test]
    fn the_lane_order_path_matches_the_group_path() {
        // Both loops of both paths (the machine may take only the AVX2 ones in `matmul`):
        // bit widths and groups that take the lane order, 1 and 3 rows.
        for (bits, group, rows, n, k) in
            [(4, 64, 1, 9, 128), (8, 32, 3, 5, 64), (2, 128, 2, 4, 256)]
        {
            let (_, qw, qs, qb) = random_quantized(n, k, bits, group);
            let (ws, ss, bs) = (
                qw.to_vec::<u32>().unwrap(),
                qs.to_vec::<f32>().unwrap(),
                qb.to_vec::<f32>().unwrap(),
            );
            let q = Quantized {
                w: &ws,
                scales: &ss,
                biases: &bs,
                n: n as usize,
                k: k as usize,
                bits: bits as usize,
                group: group as usize,
            };
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
                .collect();
            let rows = rows as usize;
            let sums: Vec<f32> = x.chunks(q.group).map(|c| c.iter().sum()).collect();
            let xp = q.lane_order(&x, rows).expect("whole blocks of eight words");
            let (mut lanes, mut groups) = (vec![f32::NAN; rows * q.n], vec![f32::NAN; rows * q.n]);
            let input = Input {
                x: &x,
                lanes: None,
                sums: &sums,
                rows,
            };
            q.lanes::<false>(&xp, &input, 0..q.n, SendPtr(lanes.as_mut_ptr()));
            q.rows::<false>(&input, 0..q.n, SendPtr(groups.as_mut_ptr()));
            for (i, (a, c)) in lanes.iter().zip(&groups).enumerate() {
                assert!(
                    (a - c).abs() <= 1e-4 * (1.0 + c.abs()),
                    "{bits} bits, group {group}, [{i}]: {a} vs {c}"
                );
            }
        }
    }

    #[test]
    fn products_match_mlx_quantized_matmul() {
        for (bits, group, rows, n, k, threads) in [
            (4, 64, 1, 40, 128, 1),
            (4, 32, 3, 65, 96, 2),
            (8, 64, 5, 33, 192, 3),
            (4, 128, 31, 130, 256, 2),
            (2, 64, 2, 17, 128, 2),
            (4, 64, 40, 70, 192, 3),
            (8, 32, 33, 9, 64, 2),
        ] {
            let (options, q, s, b) = random_quantized(n, k, bits, group);
            let x = mlx_rs::random::normal(&[rows, k], Dtype::Float32, 0.0, 1.0, None).unwrap();
            let got = matmul(&x, &q, &s, &b, bits, group, threads, usize::MAX)
                .unwrap()
                .expect("fits");
            let want = ops::quantized_matmul(&x, &q, &s, Some(&b), true, options).unwrap();
            assert_eq!(got.shape(), want.shape());
            let (g, e) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
            for (i, (a, c)) in g.iter().zip(&e).enumerate() {
                assert!(
                    (a - c).abs() <= 1e-4 * (1.0 + c.abs()),
                    "{bits} bits, group {group}, {rows}x{n}x{k}, [{i}]: {a} vs {c}"
                );
            }
        }
    }

    #[test]
    fn other_inputs_are_left_to_mlx() {
        let (_, q, s, b) = random_quantized(8, 64, 4, 64);
        let x = |rows: i32, dtype| {
            mlx_rs::random::normal(&[rows, 64], Dtype::Float32, 0.0, 1.0, None)
                .unwrap()
                .astype(dtype)
                .unwrap()
        };
        let none = |x: &Array, bits| matmul(x, &q, &s, &b, bits, 64, 2, 1024).unwrap().is_none();
        assert!(none(&x(2, Dtype::Bfloat16), 4), "bfloat16 rows");
        assert!(
            none(&x(32, Dtype::Float32), 4),
            "a dequantized weight over the limit"
        );
        assert!(
            !none(&x(31, Dtype::Float32), 4),
            "group by group: no dequantized weight"
        );
        assert!(none(&x(2, Dtype::Float32), 3), "3 bits");
        assert!(
            none(&x(2, Dtype::Float32), 8),
            "bits that disagree with the packing"
        );
        assert!(!none(&x(2, Dtype::Float32), 4));
    }
}
