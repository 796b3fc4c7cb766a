//! Activation functions, as Python's `mlx.nn` defines them ([`silu`], [`gelu`], [`relu`],
//! …, and mlx-lm's [`swiglu`]), and unit-struct layers for the common ones ([`Relu`],
//! [`Silu`], [`Gelu`], …) so that a [`Sequential`](super::Sequential) can hold them.
//!
//! The functions that Python MLX compiles (`@partial(mx.compile, shapeless=True)`) are
//! compiled here too, once per thread and shapeless, so that each runs as one fused
//! kernel: every function below except [`tanh`]. Scalars in them are weakly typed, so a
//! `bfloat16` input gives a `bfloat16` output.
//!
//! ```
//! use mlx_rs::nn::{self, Relu, Silu, UnaryModule};
//! use mlx_rs::Array;
//! let x = Array::from_slice(&[-1.0f32, 0.0, 2.0], &[3])?;
//! assert_eq!(nn::relu(&x)?.to_vec::<f32>()?, vec![0.0, 0.0, 2.0]);
//! assert_eq!(Relu.forward(&x)?.to_vec::<f32>()?, vec![0.0, 0.0, 2.0]);
//! let y = nn::silu(&x)?; // x * sigmoid(x)
//! assert!((y.to_vec::<f32>()?[2] - 2.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
//! assert_eq!(Silu.forward(&x)?.to_vec::<f32>()?, y.to_vec::<f32>()?);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use super::module::UnaryModule;
use crate::operators::weak_scalar;
use crate::transforms::{compile, Closure};
use crate::DeviceType;
use crate::{Array, Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;

/// The compiled activations, by index in [`Kernel`].
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Sigmoid,
    Relu,
    LeakyRelu,
    Softplus,
    Silu,
    Gelu,
    GeluApprox,
    GeluFastApprox,
    Swiglu,
}

const KERNELS: usize = 9;

impl Kernel {
    /// The uncompiled function: what the compiled one traces.
    fn body(self) -> fn(&[Array]) -> Result<Vec<Array>> {
        match self {
            Kernel::Sigmoid => |a| Ok(vec![a[0].sigmoid()?]),
            Kernel::Relu => |a| Ok(vec![relu_body(&a[0])?]),
            // a[1]: the slope, a 0-d array of the input's (weak) dtype
            Kernel::LeakyRelu => |a| Ok(vec![a[1].multiply(&a[0])?.maximum(&a[0])?]),
            Kernel::Softplus => |a| Ok(vec![softplus_body(&a[0])?]),
            Kernel::Silu => |a| Ok(vec![silu_body(&a[0])?]),
            Kernel::Gelu => |a| Ok(vec![gelu_body(&a[0])?]),
            Kernel::GeluApprox => |a| Ok(vec![gelu_approx_body(&a[0])?]),
            Kernel::GeluFastApprox => |a| {
                let x = &a[0];
                Ok(vec![x.multiply(&x.multiply_scalar(1.702)?.sigmoid()?)?])
            },
            Kernel::Swiglu => |a| Ok(vec![silu_body(&a[0])?.multiply(&a[1])?]),
        }
    }
}

fn relu_body(x: &Array) -> Result<Array> {
    x.maximum(&weak_scalar(0, x.dtype())?)
}

fn softplus_body(x: &Array) -> Result<Array> {
    x.logaddexp(&weak_scalar(0, x.dtype())?)
}

fn silu_body(x: &Array) -> Result<Array> {
    x.multiply(&x.sigmoid()?)
}

fn gelu_body(x: &Array) -> Result<Array> {
    let cdf = x
        .divide_scalar(std::f64::consts::SQRT_2)?
        .erf()?
        .add_scalar(1.0)?;
    x.multiply(&cdf)?.divide_scalar(2.0)
}

fn gelu_approx_body(x: &Array) -> Result<Array> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.power(&weak_scalar(3, x.dtype())?)?;
    let inner = x
        .add(&cube.multiply_scalar(0.044715)?)?
        .multiply_scalar(c)?;
    x.multiply_scalar(0.5)?
        .multiply(&inner.tanh()?.add_scalar(1.0)?)
}

/// A compiled activation of this thread: the kernel and the stream it was traced on
/// (whether that stream is on the GPU, and its index).
type CompiledKey = (usize, bool, i32);

thread_local! {
    /// This thread's compiled activations (compiled functions are not `Send`), one per
    /// stream: MLX's trace records the stream of each op, and replaying it runs them there,
    /// so a function traced on one stream must not serve another (on a stream another
    /// thread evaluates, MLX would report that stream missing; a CPU trace would run on
    /// the CPU under a GPU stream). Dropping them at thread exit is safe in any order: a
    /// compiled function reaches MLX's per-thread compile cache through a weak reference.
    static COMPILED: RefCell<HashMap<CompiledKey, Closure<'static>>> =
        RefCell::new(HashMap::with_capacity(KERNELS));
}

/// Runs the compiled form of `kernel` on `args` (compiling it on this thread's first call
/// on the current stream).
fn run(kernel: Kernel, args: &[&Array]) -> Result<Array> {
    let s = crate::current_stream()?;
    let key = (
        kernel as usize,
        s.device()?.kind()? == DeviceType::Gpu,
        s.index()?,
    );
    // `try_with` fails only while the thread is being torn down: compile uncached then.
    let cached = COMPILED
        .try_with(|c| c.borrow().get(&key).cloned())
        .ok()
        .flatten();
    let f = match cached {
        Some(f) => f,
        None => {
            let f = compile(kernel.body(), true)?;
            let _ = COMPILED.try_with(|c| c.borrow_mut().insert(key, f.clone()));
            f
        }
    };
    f.call(args)?
        .pop()
        .ok_or_else(|| Error::Closure(format!("the compiled {kernel:?} returned nothing")))
}

/// `σ(x) = 1 / (1 + e⁻ˣ)`, element-wise.
pub fn sigmoid(x: &Array) -> Result<Array> {
    run(Kernel::Sigmoid, &[x])
}

/// `max(x, 0)`, element-wise.
pub fn relu(x: &Array) -> Result<Array> {
    run(Kernel::Relu, &[x])
}

/// `max(negative_slope · x, x)`, element-wise (Python's default slope is `0.01`).
pub fn leaky_relu(x: &Array, negative_slope: f32) -> Result<Array> {
    let slope = weak_scalar(negative_slope, x.dtype())?;
    run(Kernel::LeakyRelu, &[x, &slope])
}

/// `log(1 + eˣ)`, element-wise, computed without overflow.
pub fn softplus(x: &Array) -> Result<Array> {
    run(Kernel::Softplus, &[x])
}

/// `x · σ(x)` (also called swish), element-wise.
pub fn silu(x: &Array) -> Result<Array> {
    run(Kernel::Silu, &[x])
}

/// The Gaussian error linear unit, `x · Φ(x) = x · (1 + erf(x / √2)) / 2`, element-wise.
pub fn gelu(x: &Array) -> Result<Array> {
    run(Kernel::Gelu, &[x])
}

/// The tanh approximation of [`gelu`]:
/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))` (error below 0.0005 on
/// `[-6, 6]`).
pub fn gelu_approx(x: &Array) -> Result<Array> {
    run(Kernel::GeluApprox, &[x])
}

/// The sigmoid approximation of [`gelu`]: `x · σ(1.702 · x)` (error below 0.015 on
/// `[-6, 6]`).
pub fn gelu_fast_approx(x: &Array) -> Result<Array> {
    run(Kernel::GeluFastApprox, &[x])
}

/// `silu(gate) · x`, the gated unit of SwiGLU feed-forward layers (mlx-lm's `swiglu`).
/// `gate` and `x` broadcast together.
pub fn swiglu(gate: &Array, x: &Array) -> Result<Array> {
    run(Kernel::Swiglu, &[gate, x])
}

/// The hyperbolic tangent, element-wise (not compiled, as in Python: it is one op).
pub fn tanh(x: &Array) -> Result<Array> {
    x.tanh()
}

macro_rules! activation_layers {
    ($($(#[$doc:meta])* $name:ident => $f:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, super::Module)]
        pub struct $name;

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Result<Array> {
                $f(x)
            }
        }
    )*};
}

activation_layers! {
    /// [`relu`] as a layer (Python's `nn.ReLU`).
    Relu => relu;
    /// [`silu`] as a layer (Python's `nn.SiLU`).
    Silu => silu;
    /// [`gelu`] as a layer (Python's `nn.GELU()`).
    Gelu => gelu;
    /// [`gelu_approx`] as a layer (Python's `nn.GELU(approx="tanh")`).
    GeluApprox => gelu_approx;
    /// [`sigmoid`] as a layer (Python's `nn.Sigmoid`).
    Sigmoid => sigmoid;
    /// [`tanh`] as a layer (Python's `nn.Tanh`).
    Tanh => tanh;
}

/// [`leaky_relu`] as a layer (Python's `nn.LeakyReLU`).
#[derive(Debug, Clone, Copy, PartialEq, super::Module)]
pub struct LeakyRelu {
    /// The slope for negative inputs.
    pub negative_slope: f32,
}

impl Default for LeakyRelu {
    /// Python's default slope, `0.01`.
    fn default() -> Self {
        LeakyRelu {
            negative_slope: 0.01,
        }
    }
}

impl UnaryModule for LeakyRelu {
    fn forward(&self, x: &Array) -> Result<Array> {
        leaky_relu(x, self.negative_slope)
    }
}
