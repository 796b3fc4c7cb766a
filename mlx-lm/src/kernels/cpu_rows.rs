//! Products of one to a few float32 rows with a float32 weight on the CPU, done outside
//! MLX: a decode step (one row), a small batch's step, a short prompt.
//!
//! A model on the CPU keeps its float32 weights as the row-major transpose `Wᵀ` (`[k,
//! n]`). Each thread takes a block of output columns and walks the rows of `Wᵀ` in order,
//! eight at a time, adding each row's slice times its input value into the output row:
//! the weight is read once, straight through (up to four input rows share a pass), and
//! the output slice stays in the cache. A weight kept as stored (`[n, k]`, e.g. an
//! embedding table as the tied output head) is read row by row and dotted with each input
//! row. Loops are built for AVX2+FMA when the CPU has them (picked at run time).
//!
//! Why: MLX multiplies one row through its Linux wheels' reference BLAS, and the packed
//! GEMM of [`super::cpu_gemm`] copies the weight into packed panels at every product. On
//! this project's 2-core EPYC, 1024×3584 by one row (a weight set of 117 MB, so from
//! memory): MLX 1.28–1.45 ms, the GEMM 1.18 ms, here 0.55–0.60 ms; the 1024×32,000 head
//! 16.4, 6.2 and 3.7–4.4 ms. Up to four rows cost about one; at 8 rows this is level with
//! the GEMM and at 16 behind it, so [`super::cpu_gemm::matmul`] sends 1 to [`MAX_ROWS`]
//! rows here.

use super::cpu_gemm::{avx2_fma, over_weight_rows, SendPtr};
use super::cpu_quantized::dot;

thread_local! {
    /// Products done on this thread so far (to check that a path took them).
    static PRODUCTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many products [`super::cpu_gemm`] handed to this module for calls made on this
/// thread (they count in [`super::cpu_gemm::products`] too): per thread, so tests running
/// side by side do not see each other's.
pub fn products() -> usize {
    PRODUCTS.with(|p| p.get())
}

/// Most rows multiplied here; more go through the packed GEMM.
pub const MAX_ROWS: usize = 8;

/// `out = x · b` for row-major `x` (`[rows, k]`) and `out` (`[rows, n]`, overwritten),
/// `1 ≤ rows ≤ MAX_ROWS`, where `b` is `Wᵀ` row-major (`[k, n]`), or with `transposed`
/// the weight `W` itself, row-major (`[n, k]`, e.g. an embedding table as the output
/// head); output columns spread over `threads` threads.
pub(super) fn multiply(
    x: &[f32],
    b: &[f32],
    out: &mut [f32],
    rows: usize,
    transposed: bool,
    threads: usize,
) {
    assert!((1..=MAX_ROWS).contains(&rows));
    let k = x.len() / rows;
    let n = out.len() / rows;
    assert!(x.len() == rows * k && out.len() == rows * n && b.len() == k * n);
    let product = Product { x, b, rows, k, n };
    let out_ptr = SendPtr(out.as_mut_ptr());
    let avx2 = avx2_fma();
    PRODUCTS.with(|p| p.set(p.get() + 1));
    over_weight_rows(n, threads, |lo, hi| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { product.columns_avx2(lo, hi, transposed, out_ptr) };
            return;
        }
        let _ = avx2;
        product.columns::<false>(lo, hi, transposed, out_ptr);
    });
}

/// One product's operands (see [`multiply`]).
struct Product<'a> {
    x: &'a [f32],
    /// `Wᵀ` (`[k, n]`), or `W` (`[n, k]`) for [`Product::dots`].
    b: &'a [f32],
    rows: usize,
    k: usize,
    n: usize,
}

impl Product<'_> {
    /// [`Product::columns`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns_avx2(&self, lo: usize, hi: usize, transposed: bool, out: SendPtr) {
        self.columns::<true>(lo, hi, transposed, out)
    }

    /// Columns `lo..hi` of every output row, up to four rows per pass over `Wᵀ`; `FMA`:
    /// fused multiply-adds.
    #[inline(always)]
    fn columns<const FMA: bool>(&self, lo: usize, hi: usize, transposed: bool, out: SendPtr) {
        if transposed {
            return self.dots::<FMA>(lo, hi, out);
        }
        let mut first = 0;
        while first < self.rows {
            let left = self.rows - first;
            match left {
                1 => self.one_row::<FMA>(first, lo, hi, out),
                2 => self.group::<FMA, 2>(first, lo, hi, out),
                3 => self.group::<FMA, 3>(first, lo, hi, out),
                _ => self.group::<FMA, 4>(first, lo, hi, out),
            }
            first += left.min(4);
        }
    }

    /// Columns `lo..hi` of every output row when `b` holds `W` itself (`[n, k]`): each
    /// weight row is read once and dotted with every input row.
    #[inline(always)]
    fn dots<const FMA: bool>(&self, lo: usize, hi: usize, out: SendPtr) {
        let (k, n) = (self.k, self.n);
        for j in lo..hi {
            let w = &self.b[j * k..][..k];
            for m in 0..self.rows {
                // SAFETY: m < rows and j < n index `out` ([rows, n]); each thread writes its
                // own columns, and `out` outlives the scope.
                unsafe { *out.at(m * n + j) = dot::<FMA>(w, &self.x[m * k..][..k]) };
            }
        }
    }

    /// Columns `lo..hi` of output row `m`, accumulated in place, eight rows of `Wᵀ` at a
    /// time (each read straight through, in order). [`Product::group`] for one row, written
    /// out: the compiler keeps this form's eight weight streams in registers (decode
    /// through the generic form ran 10–20 % slower).
    #[inline(always)]
    fn one_row<const FMA: bool>(&self, m: usize, lo: usize, hi: usize, out: SendPtr) {
        let width = hi - lo;
        // SAFETY: m < rows and lo..hi ⊆ 0..n index `out` ([rows, n]); each thread writes
        // its own columns, and `out` outlives the scope.
        let acc = unsafe { std::slice::from_raw_parts_mut(out.at(m * self.n + lo), width) };
        acc.fill(0.0);
        let x = &self.x[m * self.k..][..self.k];
        let w = |i: usize| &self.b[i * self.n + lo..][..width];
        let fma = |a: f32, w: f32, x: f32| if FMA { w.mul_add(x, a) } else { a + w * x };
        let mut i = 0;
        while i + 8 <= self.k {
            let (w0, w1, w2, w3) = (w(i), w(i + 1), w(i + 2), w(i + 3));
            let (w4, w5, w6, w7) = (w(i + 4), w(i + 5), w(i + 6), w(i + 7));
            let xs = &x[i..i + 8];
            for j in 0..width {
                let a = fma(
                    fma(fma(fma(acc[j], w0[j], xs[0]), w1[j], xs[1]), w2[j], xs[2]),
                    w3[j],
                    xs[3],
                );
                acc[j] = fma(
                    fma(fma(fma(a, w4[j], xs[4]), w5[j], xs[5]), w6[j], xs[6]),
                    w7[j],
                    xs[7],
                );
            }
            i += 8;
        }
        for (i, &xi) in x.iter().enumerate().skip(i) {
            for (a, &w) in acc.iter_mut().zip(w(i)) {
                *a = fma(*a, w, xi);
            }
        }
    }

    /// Columns `lo..hi` of the `R` output rows from `first`, accumulated in place, eight
    /// rows of `Wᵀ` at a time (each read straight through, in order, once for the `R`
    /// rows).
    #[inline(always)]
    fn group<const FMA: bool, const R: usize>(
        &self,
        first: usize,
        lo: usize,
        hi: usize,
        out: SendPtr,
    ) {
        let (k, n, width) = (self.k, self.n, hi - lo);
        // SAFETY: first + r < rows and lo..hi ⊆ 0..n index `out` ([rows, n]); each thread
        // writes its own columns, the R rows are distinct, and `out` outlives the scope.
        let mut acc: [&mut [f32]; R] = std::array::from_fn(|r| unsafe {
            std::slice::from_raw_parts_mut(out.at((first + r) * n + lo), width)
        });
        acc.iter_mut().for_each(|a| a.fill(0.0));
        let x: [&[f32]; R] = std::array::from_fn(|r| &self.x[(first + r) * k..][..k]);
        let fma = |a: f32, w: f32, x: f32| if FMA { w.mul_add(x, a) } else { a + w * x };
        let mut i = 0;
        while i + 8 <= k {
            let w: [&[f32]; 8] = std::array::from_fn(|t| &self.b[(i + t) * n + lo..][..width]);
            let xs: [[f32; 8]; R] = std::array::from_fn(|r| std::array::from_fn(|t| x[r][i + t]));
            for j in 0..width {
                let wj: [f32; 8] = std::array::from_fn(|t| w[t][j]);
                for (a, xs) in acc.iter_mut().zip(&xs) {
                    let mut s = a[j];
                    for t in 0..8 {
                        s = fma(s, wj[t], xs[t]);
                    }
                    a[j] = s;
                }
            }
            i += 8;
        }
        for i in i..k {
            let w = &self.b[i * n + lo..][..width];
            for (a, x) in acc.iter_mut().zip(&x) {
                let xi = x[i];
                for (a, &w) in a.iter_mut().zip(w) {
                    *a = fma(*a, w, xi);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_a_plain_sum() {
        // Both layouts; 1 to MAX_ROWS rows (one pass, passes of four and a remainder);
        // inner sizes with and without a tail past the groups of eight; widths that do
        // and do not split evenly over the threads.
        for (rows, k, n, threads) in [
            (1, 7, 5, 1),
            (1, 64, 300, 2),
            (2, 17, 130, 2),
            (3, 33, 513, 3),
            (5, 100, 200, 2),
            (MAX_ROWS, 24, 1030, 2),
        ] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
                .collect();
            let wt: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
                .collect();
            // The same weight stored as W ([n, k]).
            let w: Vec<f32> = (0..n * k).map(|e| wt[(e % k) * n + e / k]).collect();
            for (b, transposed) in [(&wt, false), (&w, true)] {
                let mut out = vec![f32::NAN; rows * n];
                multiply(&x, b, &mut out, rows, transposed, threads);
                // The portable loop too (the machine may take the AVX2 one above).
                let mut portable = vec![f32::NAN; rows * n];
                let product = Product {
                    x: &x,
                    b,
                    rows,
                    k,
                    n,
                };
                product.columns::<false>(0, n, transposed, SendPtr(portable.as_mut_ptr()));
                for m in 0..rows {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|i| x[m * k + i] as f64 * wt[i * n + j] as f64)
                            .sum();
                        for got in [out[m * n + j], portable[m * n + j]] {
                            assert!(
                                (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{rows}x{k}x{n} t{threads} transposed {transposed} \
                                 [{m}, {j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
