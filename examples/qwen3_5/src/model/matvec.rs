//! A CUDA kernel for one decode token's products with dense weights, with the norms,
//! gates and residual adds around them folded in (`kernels/matvec.cu.inc`).
//!
//! Decode of the 2B on a GPU is bound by the host: MLX builds and launches each graph
//! node on one CPU thread, and a step had ~550 nodes. With these kernels a DeltaNet
//! layer's step is: the input RMSNorm and `in_proj` (one kernel), the delta-rule kernel,
//! the gated norm, `out_proj` and the residual add (one kernel), the post-attention
//! RMSNorm, `gate_proj`/`up_proj` and SwiGLU (one kernel), `down_proj` and the residual
//! add (one kernel); attention layers alike around the attention kernels. Each product
//! reads its weight once, in 16-byte vectors.
//!
//! Opt-in (`QWEN3_5_MATVEC_KERNEL=1`), for CUDA and dense (not quantized) weights in the
//! activations' dtype. Measured on an H200 it made decode slower, not faster: building a
//! custom-kernel node costs MLX more host time than the plain ops it replaces (graph
//! building 1.2–1.6 ms per 2B step against 0.8–1.2 ms), and the kernel reaches about a
//! quarter of the memory bandwidth (`benches/README.md`). `tests/matvec.rs` compares every
//! form with MLX's ops on a GPU.

use super::fused::{cuda_header, DecodeMode, StepPath};
use crate::error::{Error, Result};
use mlx_rs::fast::{CudaKernel, KernelBuilder, KernelConfig, TemplateArg};
use mlx_rs::{Array, Dtype};
use std::cell::Cell;
use std::rc::Rc;

/// Body of the kernel.
pub const BODY: &str = include_str!("kernels/matvec.cu.inc");
/// Warps per block (one output row each).
pub const WARPS: i32 = 8;
/// The largest inner size: the kernel keeps its input row in shared memory as fp32.
pub const MAX_K: i32 = 10_240;

/// What the kernel does to the input row before the product.
#[derive(Clone, Copy)]
pub enum Prologue<'a> {
    /// The row as it is.
    None,
    /// RMSNorm with weight `[K]`.
    Norm(&'a Array),
    /// DeltaNet's gated norm: per head of `head` values, `silu(z) · rmsnorm(x) · g`
    /// (`g` `[head]`, `z` `[B, K]`).
    GatedNorm {
        /// Norm weight `[head]`.
        g: &'a Array,
        /// Gate input `[B, K]`.
        z: &'a Array,
        /// Values per head (divides K).
        head: i32,
    },
}

/// What the kernel does with the product.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    /// The product.
    None,
    /// The product added to `r` `[B, N]` (a residual add).
    Residual(&'a Array),
    /// SwiGLU over a weight of `2N` rows (gate rows, then up rows): `silu(gate) · up`.
    SwiGlu,
}

/// Whether decode takes these kernels: MLX with a CUDA GPU, the current stream on it,
/// the fused decode mode, and `QWEN3_5_MATVEC_KERNEL` not `0` (or [`with_matvec`]'s
/// choice on this thread).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = OVERRIDE
        .with(Cell::get)
        .unwrap_or_else(|| *ON.get_or_init(|| super::knobs::flag("QWEN3_5_MATVEC_KERNEL", false)));
    on && StepPath::current() == StepPath::CudaKernel && DecodeMode::current() == DecodeMode::Fused
}

thread_local! {
    static OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Runs `f` with the matvec kernels on or off on this thread, whatever the environment
/// says (restored afterwards, also on panic).
pub fn with_matvec<R>(on: bool, f: impl FnOnce() -> R) -> R {
    super::knobs::with_override(&OVERRIDE, on, f)
}

/// Whether the kernel takes a weight `w` (`[rows, K]`) for activations of `dtype`: a float
/// dtype shared by both, K a whole number of 16-byte vectors and at most [`MAX_K`].
pub fn fits(w: &Array, dtype: Dtype) -> bool {
    let bytes = match dtype {
        Dtype::Float32 => 4,
        Dtype::Float16 | Dtype::Bfloat16 => 2,
        _ => return false,
    };
    w.dtype() == dtype
        && w.ndim() == 2
        && (1..=MAX_K).contains(&w.dim(1))
        && (w.dim(1) * bytes) % 16 == 0
        && w.dim(0) > 0
}

thread_local! {
    static KERNEL: std::cell::OnceCell<Rc<CudaKernel>> = const { std::cell::OnceCell::new() };
}

fn kernel() -> Result<Rc<CudaKernel>> {
    KERNEL.with(|k| {
        if let Some(k) = k.get() {
            return Ok(k.clone());
        }
        let built = Rc::new(
            KernelBuilder::new("qwen3_5_matvec", BODY)
                .header(&cuda_header())
                .input_names(&["x", "g", "z", "w", "r", "eps"])
                .output_names(&["y"])
                .build_cuda()?,
        );
        Ok(k.get_or_init(|| built).clone())
    })
}

fn bad(msg: String) -> Error {
    Error::InvalidArgument(format!("matvec kernel: {msg}"))
}

/// `y = epilogue(prologue(x) · Wᵀ)` for `x` `[B, K]` and `w` `[N, K]` (`[2N, K]` for
/// [`Epilogue::SwiGlu`]); returns `[B, N]` in x's dtype. `eps` is the norm's. Checks every
/// shape and dtype first (an error, never a bad launch).
pub fn matvec(x: &Array, w: &Array, pro: Prologue, epi: Epilogue, eps: f32) -> Result<Array> {
    let dtype = x.dtype();
    let [b, k] = *x.shape() else {
        return Err(bad(format!("x {:?} must be [B, K]", x.shape())));
    };
    if b < 1 || !fits(w, dtype) || w.dim(1) != k {
        return Err(bad(format!(
            "x {:?} ({dtype:?}) and w {:?} ({:?}) do not fit",
            x.shape(),
            w.shape(),
            w.dtype()
        )));
    }
    let rows = w.dim(0);
    let n = match epi {
        Epilogue::SwiGlu if rows % 2 == 0 => rows / 2,
        Epilogue::SwiGlu => {
            return Err(bad(format!("SwiGLU needs an even row count, found {rows}")))
        }
        _ => rows,
    };
    let eps = super::fused::f32_constant(eps)?;
    let (pro_id, g, z, head) = match pro {
        Prologue::None => (0, &eps, &eps, 1),
        Prologue::Norm(g) => {
            if g.shape() != [k] {
                return Err(bad(format!("norm weight {:?}, expected [{k}]", g.shape())));
            }
            (1, g, &eps, 1)
        }
        Prologue::GatedNorm { g, z, head } => {
            if head < 1
                || k % head != 0
                || g.shape() != [head]
                || z.shape() != x.shape()
                || z.dtype() != dtype
            {
                return Err(bad(format!(
                    "gated norm: g {:?}, z {:?} ({:?}) with heads of {head} do not fit x {:?}",
                    g.shape(),
                    z.shape(),
                    z.dtype(),
                    x.shape()
                )));
            }
            (2, g, z, head)
        }
    };
    let (epi_id, r) = match epi {
        Epilogue::None => (0, &eps),
        Epilogue::Residual(r) => {
            if r.shape() != [b, n] || r.dtype() != dtype {
                return Err(bad(format!(
                    "residual {:?} ({:?}), expected [{b}, {n}] ({dtype:?})",
                    r.shape(),
                    r.dtype()
                )));
            }
            (1, r)
        }
        Epilogue::SwiGlu => (2, &eps),
    };
    // The kernel's name holds the template values, which fix every input's dtype (the
    // unused inputs are the fp32 `eps`), so one name is one signature.
    let config = KernelConfig::new([32, WARPS * ((n + WARPS - 1) / WARPS), b], [32, WARPS, 1])
        .output(&[b, n], dtype)
        .template("T", TemplateArg::Dtype(dtype))
        .template("GT", TemplateArg::Dtype(g.dtype()))
        .template("K", TemplateArg::Int(k))
        .template("N", TemplateArg::Int(n))
        .template("PRO", TemplateArg::Int(pro_id))
        .template("EPI", TemplateArg::Int(epi_id))
        .template("DV", TemplateArg::Int(head))
        .template("WARPS", TemplateArg::Int(WARPS));
    let out = kernel()?.apply(&[x, g, z, w, r, &eps], &config)?;
    out.into_iter()
        .next()
        .ok_or_else(|| bad("expected one output".into()))
}
