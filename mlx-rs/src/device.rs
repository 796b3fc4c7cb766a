//! Devices: the CPU and the GPU (CUDA or Metal, depending on the MLX linked).

use crate::raw::{status, MlxString};
use crate::Result;
use mlx_sys as sys;

/// The kind of a [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// The CPU.
    Cpu,
    /// The GPU: CUDA on Linux with the `cuda` feature, Metal on Apple silicon.
    Gpu,
}

impl DeviceType {
    fn to_raw(self) -> sys::mlx_device_type {
        match self {
            DeviceType::Cpu => sys::MLX_CPU,
            DeviceType::Gpu => sys::MLX_GPU,
        }
    }
}

/// A compute device. Cheap to clone.
pub struct Device {
    raw: sys::mlx_device,
}

// SAFETY: an mlx device is an immutable (type, index) value; no thread affinity.
unsafe impl Send for Device {}
// SAFETY: as above; all methods take `&self` and only read it.
unsafe impl Sync for Device {}

impl Device {
    /// Device `index` of the given type (does not check that it exists: see
    /// [`Device::is_available`]).
    pub fn new(kind: DeviceType, index: i32) -> Device {
        // MLX's default handler would exit the process on a failure.
        crate::error::install_error_handler();
        // SAFETY: creates a new handle, owned by the returned value.
        Device {
            raw: unsafe { sys::mlx_device_new_type(kind.to_raw(), index) },
        }
    }

    /// The CPU.
    pub fn cpu() -> Device {
        Device::new(DeviceType::Cpu, 0)
    }

    /// The first GPU.
    pub fn gpu() -> Device {
        Device::new(DeviceType::Gpu, 0)
    }

    /// The device ops run on when no stream is chosen.
    pub fn default_device() -> Result<Device> {
        crate::error::install_error_handler();
        // SAFETY: fresh handle filled by mlx; owned (and freed) by `dev`.
        let mut dev = Device {
            raw: unsafe { sys::mlx_device_new() },
        };
        status(|| unsafe { sys::mlx_get_default_device(&mut dev.raw) })?;
        Ok(dev)
    }

    /// Makes `device` the default for ops on this thread that name no stream.
    pub fn set_default(device: &Device) -> Result<()> {
        status(|| unsafe { sys::mlx_set_default_device(device.raw) })?;
        crate::stream::forget_cached_default();
        Ok(())
    }

    /// Whether this device exists in the MLX that is loaded (a GPU exists only with the
    /// CUDA or Metal backend).
    pub fn is_available(&self) -> bool {
        let mut avail = false;
        status(|| unsafe { sys::mlx_device_is_available(&mut avail, self.raw) }).is_ok() && avail
    }

    /// How many devices of a type exist.
    pub fn count(kind: DeviceType) -> Result<i32> {
        let mut n = 0;
        status(|| unsafe { sys::mlx_device_count(&mut n, kind.to_raw()) })?;
        Ok(n)
    }

    /// CPU or GPU.
    pub fn kind(&self) -> Result<DeviceType> {
        let mut t = sys::MLX_CPU;
        status(|| unsafe { sys::mlx_device_get_type(&mut t, self.raw) })?;
        Ok(if t == sys::MLX_GPU {
            DeviceType::Gpu
        } else {
            DeviceType::Cpu
        })
    }

    /// The index among devices of its type.
    pub fn index(&self) -> Result<i32> {
        let mut i = 0;
        status(|| unsafe { sys::mlx_device_get_index(&mut i, self.raw) })?;
        Ok(i)
    }

    /// Key/value facts MLX knows about the device (name, memory size, architecture, …).
    /// Values are strings or sizes; sizes are returned in decimal.
    pub fn info(&self) -> Result<Vec<(String, String)>> {
        // SAFETY: fresh handles freed below.
        let mut info = unsafe { sys::mlx_device_info_new() };
        let mut keys = unsafe { sys::mlx_vector_string_new() };
        let result = (|| {
            status(|| unsafe { sys::mlx_device_info_get(&mut info, self.raw) })?;
            status(|| unsafe { sys::mlx_device_info_get_keys(&mut keys, info) })?;
            let n = unsafe { sys::mlx_vector_string_size(keys) };
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let mut key_ptr: *mut std::ffi::c_char = std::ptr::null_mut();
                status(|| unsafe { sys::mlx_vector_string_get(&mut key_ptr, keys, i) })?;
                // SAFETY: mlx returns a NUL-terminated string owned by `keys`.
                let key_c = unsafe { std::ffi::CStr::from_ptr(key_ptr) };
                let key = key_c.to_string_lossy().into_owned();
                let mut is_string = false;
                status(|| unsafe {
                    sys::mlx_device_info_is_string(&mut is_string, info, key_c.as_ptr())
                })?;
                let value = if is_string {
                    let mut v: *const std::ffi::c_char = std::ptr::null();
                    status(|| unsafe {
                        sys::mlx_device_info_get_string(&mut v, info, key_c.as_ptr())
                    })?;
                    // SAFETY: NUL-terminated string owned by `info`.
                    unsafe { std::ffi::CStr::from_ptr(v) }
                        .to_string_lossy()
                        .into_owned()
                } else {
                    let mut v = 0usize;
                    status(|| unsafe {
                        sys::mlx_device_info_get_size(&mut v, info, key_c.as_ptr())
                    })?;
                    v.to_string()
                };
                out.push((key, value));
            }
            Ok(out)
        })();
        // SAFETY: owned handles, freed once.
        unsafe {
            sys::mlx_vector_string_free(keys);
            sys::mlx_device_info_free(info);
        }
        result
    }

    /// Whether [`Device::info`] has an entry named `key`.
    pub fn has_info(&self, key: &str) -> Result<bool> {
        let key = std::ffi::CString::new(key)
            .map_err(|_| crate::Error::InvalidArgument("key contains a NUL byte".into()))?;
        // SAFETY: fresh handle, freed below.
        let mut info = unsafe { sys::mlx_device_info_new() };
        let mut exists = false;
        let result =
            status(|| unsafe { sys::mlx_device_info_get(&mut info, self.raw) }).and_then(|()| {
                status(|| unsafe { sys::mlx_device_info_has_key(&mut exists, info, key.as_ptr()) })
            });
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_device_info_free(info) };
        result.map(|()| exists)
    }

    pub(crate) fn as_raw(&self) -> sys::mlx_device {
        self.raw
    }

    pub(crate) fn as_raw_mut(&mut self) -> &mut sys::mlx_device {
        &mut self.raw
    }
}

impl Clone for Device {
    fn clone(&self) -> Device {
        // SAFETY: copies a (type, index) pair into a new handle.
        let mut raw = unsafe { sys::mlx_device_new() };
        unsafe { sys::mlx_device_set(&mut raw, self.raw) };
        Device { raw }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: owned handle, freed once.
        unsafe { sys::mlx_device_free(self.raw) };
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        // SAFETY: reads two live handles.
        unsafe { sys::mlx_device_equal(self.raw, other.raw) }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = MlxString::new();
        // SAFETY: writes into an owned string handle.
        if unsafe { sys::mlx_device_tostring(&mut s.0, self.raw) } == 0 {
            f.write_str(&s.to_string_lossy())
        } else {
            f.write_str("Device(?)")
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
