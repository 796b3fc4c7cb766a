//! The choices a model is loaded with ([`ModelOptions`]) and what they resolve to on the
//! device it is loaded for ([`Plan`]).
//!
//! Every choice is made once, at load ([`crate::Model::load_with`]); nothing in the model
//! reads the environment or a per-thread switch afterwards. The defaults depend on the
//! device and come from the measurements in `benches/README.md`; the `qwen3_5` binary
//! sets each field from a flag (`--decode`, `--compile-layers`, `--cpu-gemm`,
//! `--cpu-threads`, `--float-dtype`; the hidden `--prefill-chunk` / `--sequential-prefill` /
//! `--kernel-prefill-max` / `--small-batch-rows`).

use crate::error::{Error, Result};
use mlx_lm::kernels::cpu_gemm::CpuProducts;
pub use mlx_lm::kernels::gated_delta::Prefill;
use mlx_lm::kernels::gated_delta::{ShortPrefill, StepPath};
pub use mlx_lm::load::FloatDtype;
use mlx_rs::{Device, DeviceType};

/// How a single-token forward pass (a decode step) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decode {
    /// The fused forms of [`mlx_lm::kernels`]: on a GPU the whole-layer DeltaNet kernel (and
    /// on CUDA the attention decode kernels), on the CPU compiled graphs; `[B, hidden]`
    /// activations. The same values as [`Decode::Reference`] (bit-identical on the CPU).
    #[default]
    Fused,
    /// The plain ops of the reference forward pass, as for a prompt: what the fused forms
    /// are tested against.
    Reference,
}

/// What a model is loaded with. Each field's default depends on the device
/// ([`ModelOptions::for_device`]); [`Default`] gives those of the current default device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelOptions {
    /// How decode steps run (default [`Decode::Fused`]: 240 → 370 tokens/s on an H200
    /// over the plain ops, together with the joined projections and the attention kernel).
    pub decode: Decode,
    /// Each decoder layer's decode step as one compiled function (a replayed MLX trace
    /// instead of ~15 ops built per layer and step); fused decode only. Default: on for a
    /// GPU other than Metal. On an H200 with the submit thread it cut the host's graph
    /// building from 1.5 to 1.0–1.1 ms per step (decode 395 / 457 / 461 against
    /// 412 / 348 / 346 tokens/s in three pairs); on the CPU the graph is not the bound,
    /// and on Metal it has not been measured.
    pub compile_layers: bool,
    /// On the CPU, float32 products run outside MLX's BLAS: up to
    /// [`mlx_lm::kernels::cpu_rows::MAX_ROWS`] rows (decode, a small batch's step) in
    /// [`mlx_lm::kernels::cpu_rows`] (mid-1024x8 float32 decode 10.3–11.2 → 19.6–22.2
    /// tokens/s), more in the packed SIMD GEMM (a served batch of ~11 rows stepped in 43–46
    /// instead of 207–208 ms), and a fused
    /// decode step's attention in [`mlx_lm::kernels::cpu_attention`] (at a 4,096-position
    /// cache, float32 decode 8.3–8.7 → 10.0–10.2 tokens/s on a 2-core EPYC). Default: on
    /// for the CPU except on macOS (the Linux wheels' reference BLAS runs at 4–6 GFLOP/s
    /// per core against ~95 for the GEMM on a 2-core EPYC: 2B float32 prefill 3.5× faster;
    /// macOS multiplies through Accelerate). Off for a GPU (no CPU products there).
    pub cpu_gemm: bool,
    /// Threads a CPU product of many rows is spread over (the GEMM's threads, or the CPU
    /// streams MLX's product is split over when the GEMM is off). Default: the available
    /// cores, at most 8; must be at least 1.
    pub cpu_threads: usize,
    /// How a forward pass over several tokens (a prompt) runs the gated delta rule.
    /// Default: [`Prefill::Chunked`] with chunks of 64 tokens (the chunk size must be at
    /// least 1); [`Prefill::Sequential`] is the reference form, one token at a time.
    pub prefill: Prefill,
    /// Prompts (and prompt chunks) of at most this many tokens run the gated delta rule
    /// as the GPU step kernel over their tokens, one launch per layer, instead of the
    /// [`ModelOptions::prefill`] form, whose ~80 small ops per layer dominate a short
    /// prompt (a chat turn, a served request). Fused decode on a GPU kernel path only; 0:
    /// never. Default: [`KERNEL_PREFILL_MAX`] on CUDA, 0 elsewhere (unmeasured on Metal).
    pub kernel_prefill_max: i32,
    /// The dtype the floating-point parameters (and so the activations) take at load
    /// ([`FloatDtype`]). Default: [`FloatDtype::Float32Activations`] on the CPU (the CPU
    /// kernels take float32 activations and read bfloat16 or quantized weights as
    /// stored), as stored on a GPU.
    pub float_dtype: FloatDtype,
    /// On CUDA, dense bfloat16 / float16 weight products of 2 to this many rows (at most
    /// [`MAX_ROWS`](mlx_lm::kernels::small_batch::MAX_ROWS): a decode step of a served
    /// batch) run in [`small_batch`](mlx_lm::kernels::small_batch) (tensor cores, one launch
    /// each) instead of MLX's matmul, which takes them to cuBLASLt with its per-call host
    /// work; the kernel is compiled at load. 0: never. Fused decode on the CUDA kernel path
    /// only. Default: [`SMALL_BATCH_ROWS`] on CUDA, 0 elsewhere.
    pub small_batch_rows: i32,
    /// On CUDA, products of one row with a 4- or 8-bit affine-quantized weight (a
    /// quantized model's decode step) run in
    /// [`quantized_gemv`](mlx_lm::kernels::quantized_gemv) (all of a block's loads first,
    /// float32 sums) instead of MLX's `quantized_matmul`; compiled at load. Measured on an
    /// H100 (the 2B in 4 bits, prompt 2,048, 2026-12-06, `benches/README.md`, session
    /// 28): decode 519.0–541.0 tok/s with MLX's, 587.9 with the kernel. Fused decode on the
    /// CUDA kernel path only. Default: on for CUDA, off elsewhere.
    pub quantized_gemv: bool,
}

/// [`ModelOptions::kernel_prefill_max`] on CUDA: the longest prompt chunk measured (an
/// H200, the 2B in bf16, 2026-12-04: prefill 2,763 → 6,234 tokens/s at 128 tokens, 13,994
/// → 26,972 at 1,024, 14,457 → 33,516 at 2,048; served aggregate decode at 32 clients
/// 855–962 → 1,608–1,705 tokens/s). Its peak memory is that of the chunked form only with
/// [`Plan::paced_prefill`] (without: 9.54 against 5.29 GB at 2,048 tokens).
pub const KERNEL_PREFILL_MAX: i32 = 2048;

/// [`ModelOptions::small_batch_rows`] on CUDA. Measured on an H100 (the 2B in bf16,
/// 2026-12-05, `benches/README.md`, session 20): served aggregate at 4 / 16 clients 741–802
/// / 2,565–2,689 tokens/s with the kernel against 503–747 / 1,641–2,478 with MLX's matmul
/// (16 against one client: 9.7–10.4× against 7.0–10.2×); at 32 rows it won two served runs
/// of three but lost a quarter when steps were waited for one by one, so a batch of more
/// than 16 rows stays on MLX's matmul.
pub const SMALL_BATCH_ROWS: i32 = 16;

/// A prefill of more tokens than this is paced ([`Plan::paced_prefill`]); a shorter one (a
/// served request's chunk, a chat turn) goes to MLX whole: pacing waits for the GPU once
/// per layer, which a short prefill pays for without needing it. Measured on an H200 (2B,
/// bf16, 2026-12-04, one call each): serving with prefills up to 512 tokens unpaced (and
/// newcomers joining the batch's step) gave 316 / 658 / 1,793 / 1,985 against 242 / 496 /
/// 1,216 / 1,836 tokens/s at 1 / 4 / 16 / 32 clients (requests of ~80 prompt tokens, in
/// chunks below 256; the decode steps, whose code is the same, took 2.79 against 3.63 ms
/// at 1 client in that call, so part of the gap is the machine's variance); but a
/// 512-token prompt unpaced peaked at 4.64 against 3.95 GB and prefilled at 16.2k against
/// 18.9k tokens/s, so prompts from 257 tokens on stay paced.
pub const PACE_ABOVE_TOKENS: i32 = 256;

impl ModelOptions {
    /// The defaults for a model running on `device`.
    pub fn for_device(device: &Device) -> ModelOptions {
        let gpu = device.kind().is_ok_and(|k| k == DeviceType::Gpu);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ModelOptions {
            decode: Decode::Fused,
            compile_layers: gpu && !cfg!(target_os = "macos"),
            cpu_gemm: !gpu && !cfg!(target_os = "macos"),
            cpu_threads: cores.clamp(1, 8),
            prefill: Prefill::default(),
            kernel_prefill_max: match StepPath::fused_on(device) {
                StepPath::CudaKernel => KERNEL_PREFILL_MAX,
                _ => 0,
            },
            float_dtype: FloatDtype::for_device(device),
            small_batch_rows: match StepPath::fused_on(device) {
                StepPath::CudaKernel => SMALL_BATCH_ROWS,
                _ => 0,
            },
            quantized_gemv: StepPath::fused_on(device) == StepPath::CudaKernel,
        }
    }

    /// The defaults for the device of the current default stream (where a model loaded
    /// now runs; the CPU when MLX cannot say).
    pub fn for_current_device() -> ModelOptions {
        ModelOptions::for_device(&current_device())
    }

    /// `self` with the decode path set.
    pub fn with_decode(self, decode: Decode) -> ModelOptions {
        ModelOptions { decode, ..self }
    }

    /// `self` for training: every product in MLX's graph, so that gradients flow (the CPU
    /// GEMM hands MLX finished results, which gradients cannot pass through), the
    /// reference decode, no compiled layer steps.
    pub fn for_training(self) -> ModelOptions {
        ModelOptions {
            decode: Decode::Reference,
            compile_layers: false,
            cpu_gemm: false,
            ..self
        }
    }
}

impl Default for ModelOptions {
    /// [`ModelOptions::for_current_device`].
    fn default() -> Self {
        ModelOptions::for_current_device()
    }
}

/// The device of the current default stream (the CPU when MLX cannot say).
fn current_device() -> Device {
    mlx_rs::current_stream()
        .and_then(|s| s.device())
        .unwrap_or_else(|_| Device::cpu())
}

/// What a model's [`ModelOptions`] resolve to on the device it is loaded for: the paths
/// its layers take, fixed at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The path of a decode step's delta rule: [`StepPath::Ops`] for
    /// [`Decode::Reference`]; for [`Decode::Fused`] the GPU kernels of the platform
    /// (CUDA, Metal) on a GPU, else compiled ops.
    pub step: StepPath,
    /// Compiled layer steps ([`ModelOptions::compile_layers`] with the fused decode).
    pub compile_layers: bool,
    /// How CPU float32 products run; `None` when the model is on a GPU.
    pub cpu: Option<CpuProducts>,
    /// The form of the gated delta rule over several tokens ([`ModelOptions::prefill`]).
    pub prefill: Prefill,
    /// Short prompts on the GPU step kernel ([`ModelOptions::kernel_prefill_max`]).
    pub short_prefill: Option<ShortPrefill>,
    /// A prefill of more than [`PACE_ABOVE_TOKENS`] tokens hands each layer to MLX as it
    /// is built and waits for the layer before (`Model`'s `prefill`): on CUDA. There MLX
    /// keeps every buffer an encoded kernel reads until the GPU has run it, and a prefill
    /// whose GPU work outlasts the host's building (the step kernel over a prompt)
    /// otherwise holds the activations of every layer at once: an H200, the 2B in bf16, a
    /// 2,048-token prompt peaked at 9.54 GB against 5.2 GB on the chunked form.
    pub paced_prefill: bool,
    /// Dense products of 2 to this many rows in [`small_batch`](mlx_lm::kernels::small_batch)
    /// ([`ModelOptions::small_batch_rows`] on the CUDA kernel path, else 0: never).
    pub small_batch_rows: i32,
    /// One-row quantized products in [`quantized_gemv`](mlx_lm::kernels::quantized_gemv)
    /// ([`ModelOptions::quantized_gemv`] on the CUDA kernel path).
    pub quantized_gemv: bool,
}

/// How a model's linear layers multiply on its device, fixed at load ([`Plan::products`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Products {
    /// On the CPU, how float32 products run; `None` on a GPU.
    pub cpu: Option<CpuProducts>,
    /// Dense products of 2 to this many rows in [`small_batch`](mlx_lm::kernels::small_batch) (CUDA); 0: never.
    pub small_batch_rows: i32,
    /// Quantized products of one row in [`quantized_gemv`](mlx_lm::kernels::quantized_gemv) (CUDA).
    pub quantized_gemv: bool,
}

impl Products {
    /// The products of a model on the CPU.
    pub fn cpu(cpu: CpuProducts) -> Products {
        Products {
            cpu: Some(cpu),
            small_batch_rows: 0,
            quantized_gemv: false,
        }
    }
}

impl Plan {
    /// Resolves `options` for a model loaded on the current default stream's device.
    ///
    /// # Errors
    /// `cpu_threads` of 0, a prefill chunk size below 1.
    pub fn resolve(options: &ModelOptions) -> Result<Plan> {
        if options.cpu_threads == 0 {
            return Err(Error::InvalidArgument(
                "cpu_threads must be at least 1".into(),
            ));
        }
        let device = current_device();
        let on_cpu = device.kind().map_or(true, |k| k == DeviceType::Cpu);
        let step = match options.decode {
            Decode::Reference => StepPath::Ops,
            Decode::Fused => StepPath::fused_on(&device),
        };
        Ok(Plan {
            step,
            compile_layers: options.compile_layers && options.decode == Decode::Fused,
            cpu: on_cpu.then_some(CpuProducts {
                gemm: options.cpu_gemm,
                threads: options.cpu_threads,
            }),
            prefill: options.prefill.checked()?,
            short_prefill: step
                .backend()
                .filter(|_| options.kernel_prefill_max > 1)
                .map(|backend| ShortPrefill {
                    backend,
                    max_tokens: options.kernel_prefill_max,
                }),
            paced_prefill: step == StepPath::CudaKernel,
            small_batch_rows: match step {
                StepPath::CudaKernel => options.small_batch_rows.max(0),
                _ => 0,
            },
            quantized_gemv: options.quantized_gemv && step == StepPath::CudaKernel,
        })
    }

    /// How the layers' products run ([`Plan::cpu`], [`Plan::small_batch_rows`]).
    pub fn products(&self) -> Products {
        Products {
            cpu: self.cpu,
            small_batch_rows: self.small_batch_rows,
            quantized_gemv: self.quantized_gemv,
        }
    }

    /// Whether decode steps take the fused forms.
    pub fn fused(&self) -> bool {
        self.step != StepPath::Ops
    }
}
