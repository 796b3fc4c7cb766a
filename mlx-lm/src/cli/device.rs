//! `--device`: choosing MLX's default device, and naming it in reports.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use mlx_rs::{Device, DeviceType};

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The GPU (CUDA or Metal build of MLX).
    Gpu,
}

impl DeviceArg {
    /// The flag's value (`cpu`, `gpu`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceArg::Cpu => "cpu",
            DeviceArg::Gpu => "gpu",
        }
    }
}

/// Makes the device MLX's default: the one asked for, else the GPU when this MLX has one,
/// else the CPU. Asking for a GPU that this MLX lacks is an error.
pub fn select_device(arg: Option<DeviceArg>) -> Result<Device> {
    let gpu = Device::gpu();
    let device = match arg {
        Some(DeviceArg::Cpu) => Device::cpu(),
        Some(DeviceArg::Gpu) if gpu.is_available() => gpu,
        Some(DeviceArg::Gpu) => {
            bail!("--device gpu: this MLX build has no GPU backend; use --device cpu")
        }
        None if gpu.is_available() => gpu,
        None => Device::cpu(),
    };
    Device::set_default(&device).context("cannot select the device")?;
    Ok(device)
}

/// Whether `device` is a GPU.
pub fn is_gpu(device: &Device) -> bool {
    matches!(device.kind(), Ok(DeviceType::Gpu))
}

/// `cpu (AMD EPYC)` / `gpu (NVIDIA H100 80GB HBM3)`, from MLX's device info.
pub fn describe_device(device: &Device) -> String {
    let kind = if is_gpu(device) { "gpu" } else { "cpu" };
    let info = device.info().unwrap_or_default();
    let get = |k: &str| {
        info.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let name = get("device_name")
        .or_else(|| get("architecture"))
        .unwrap_or_else(|| "unknown".into());
    let name = if kind == "cpu" {
        cpu_model().unwrap_or(name)
    } else {
        name
    };
    format!("{kind} ({name})")
}

/// The CPU model from /proc/cpuinfo (Linux), which names it more fully than MLX.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}
