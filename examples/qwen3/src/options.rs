//! What a Qwen3 model runs with: [`ModelOptions`], with per-device defaults.

use mlx_lm::kernels::cpu_gemm::CpuProducts;
use mlx_lm::load::FloatDtype;
use mlx_rs::Device;

/// What a model runs with; the defaults depend on the device ([`ModelOptions::for_device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelOptions {
    /// For a model on the CPU, how its float32 products run (`mlx_lm::linear`: dense
    /// float32 ones in the CPU row kernel or GEMM, affine-quantized ones with float32 input in the CPU
    /// quantized kernels when `gemm` is on; float32 weights stored for MLX's CPU BLAS in
    /// any case); `None` on a GPU, or to run every product in MLX on weights as loaded.
    pub cpu: Option<CpuProducts>,
    /// The dtype the floating-point parameters (and so the activations) take at load
    /// ([`FloatDtype`]; default on the CPU: [`FloatDtype::Float32Activations`], float32
    /// activations with a dense checkpoint's bfloat16 weight matrices kept as stored (the
    /// CPU kernels take float32 activations only, and read bfloat16 weights); as stored
    /// on a GPU). Used by [`crate::load_with`]; a model built otherwise keeps what it was
    /// given.
    pub float_dtype: FloatDtype,
}

impl ModelOptions {
    /// The defaults for a model on `device` ([`CpuProducts::for_device`],
    /// [`FloatDtype::for_device`]).
    pub fn for_device(device: &Device) -> ModelOptions {
        ModelOptions {
            cpu: CpuProducts::for_device(device),
            float_dtype: FloatDtype::for_device(device),
        }
    }

    /// How a checkpoint's floating-point tensors are converted at load: `float_dtype` for
    /// where the products run ([`FloatDtype::for_products`]: the CPU kernels or MLX).
    pub fn load_float_dtype(&self) -> FloatDtype {
        self.float_dtype
            .for_products(self.cpu.is_some_and(|c| c.gemm))
    }

    /// `self` for training: the float dtype for MLX's products
    /// ([`FloatDtype::for_products`]), since inside a gradient the CPU kernels step aside
    /// (a dense bfloat16 checkpoint then trains in bfloat16: MLX's bfloat16 products ran
    /// Qwen3-0.6B's prefill 2.4× faster than float32 activations with bfloat16 weights);
    /// the CPU products stay for what runs outside the gradient.
    pub fn for_training(self) -> ModelOptions {
        ModelOptions {
            float_dtype: self.float_dtype.for_products(false),
            ..self
        }
    }

    /// The defaults for the device of the current default stream (the CPU when MLX cannot
    /// say).
    pub fn for_current_device() -> ModelOptions {
        let device = mlx_rs::current_stream()
            .and_then(|s| s.device())
            .unwrap_or_else(|_| Device::cpu());
        ModelOptions::for_device(&device)
    }
}
