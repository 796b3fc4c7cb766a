//! Float32 products of a model on the CPU: through the packed GEMM
//! ([`cpu_gemm`]) or MLX's, spread over CPU streams.

use crate::error::Result;
use mlx_lm::kernels::cpu_gemm::{self, CpuProducts};
use mlx_rs::{ops, Array};

/// Rows of `x` from which a float32 product on the CPU is spread over several CPU streams.
///
/// MLX runs each CPU stream's ops on one thread, and the reference BLAS of its Linux
/// wheels is single-threaded, so one product uses one core. Split by output columns over
/// `n` streams (views of `Wᵀ`, no copies), it uses `n`: on this project's 2-core EPYC a
/// 511×1024 by 1024×3584 product took 0.35–0.48 s on two streams against 0.70–0.76 s on
/// one (bit-identical results). For one row (decode) the streams' hand-offs cost more than
/// they save (1.5 ms against 2.4 ms), so decode stays on one stream.
pub(super) const CPU_SPLIT_ROWS: usize = 32;

thread_local! {
    /// This thread's extra CPU streams (made on first use).
    static CPU_STREAMS: std::cell::RefCell<Vec<mlx_rs::Stream>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `x · wt` for a float32 row-major `wt` on the CPU: through [`cpu_gemm`] (any rows: a
/// few in its row kernel, more in the GEMM) when `cpu.gemm` is on, else (and when it
/// declines) through MLX, spread over CPU streams ([`cpu_streams_matmul`]).
pub(super) fn cpu_matmul(x: &Array, wt: &Array, cpu: CpuProducts) -> Result<Array> {
    if cpu.gemm {
        if let Some(y) = cpu_gemm::matmul(x, wt, cpu.threads)? {
            return Ok(y);
        }
    }
    cpu_streams_matmul(x, wt, cpu.threads)
}

/// `x · wt` on the CPU, spread over `threads` streams by output columns when `x` has at
/// least [`CPU_SPLIT_ROWS`] rows; the parts are joined on the current stream.
pub(super) fn cpu_streams_matmul(x: &Array, wt: &Array, threads: usize) -> Result<Array> {
    let inner = x.dim(-1).max(1) as usize;
    let rows = x.size() / inner;
    let out = wt.dim(1);
    let n = threads.min(out.max(1) as usize);
    if n < 2 || rows < CPU_SPLIT_ROWS {
        return Ok(ops::matmul(x, wt)?);
    }
    let streams = CPU_STREAMS.with(|s| {
        let mut s = s.borrow_mut();
        while s.len() < n {
            s.push(mlx_rs::Stream::new(&mlx_rs::Device::cpu()));
        }
        s[..n].to_vec()
    });
    let k = wt.dim(0);
    let mut parts = Vec::with_capacity(n);
    for (i, stream) in streams.iter().enumerate() {
        let (lo, hi) = (out * i as i32 / n as i32, out * (i as i32 + 1) / n as i32);
        let cols = ops::slice(wt, &[0, lo], &[k, hi], &[1, 1])?;
        parts.push(mlx_rs::with_stream(stream, || ops::matmul(x, &cols))?);
    }
    Ok(ops::concatenate_axis(&parts, -1)?)
}
