//! Shared by the oracle tests: reads the fixtures that `tests/oracle/gen_*.py` write with
//! Python MLX, builds the input arrays, and compares results with named tolerances.
#![allow(dead_code)]

use mlx_rs::{Array, Complex32, Dtype};
use serde::Deserialize;

/// One stored array: dtype name, shape, row-major values.
#[derive(Debug, Deserialize, Clone)]
pub struct Tensor {
    pub dtype: String,
    pub shape: Vec<i32>,
    pub data: serde_json::Value,
}

/// One oracle case.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub op: String,
    pub args: serde_json::Value,
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
    pub rtol: f64,
    pub atol: f64,
}

#[derive(Debug, Deserialize)]
struct File {
    mlx_version: String,
    cases: Vec<Case>,
}

/// Reads `mlx-rs/tests/fixtures/<name>.json`.
pub fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: File = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        file.mlx_version,
        mlx_rs::version(),
        "fixtures of another MLX version"
    );
    file.cases
}

impl Case {
    /// Input `i` as an array of its stored dtype.
    pub fn input(&self, i: usize) -> Array {
        to_array(&self.inputs[i])
    }
    /// Integer argument `key`.
    pub fn int(&self, key: &str) -> i32 {
        self.args[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: no int arg {key}", self.name)) as i32
    }
    /// Float argument `key`.
    pub fn float(&self, key: &str) -> f64 {
        self.args[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no float arg {key}", self.name))
    }
    /// Bool argument `key`.
    pub fn bool(&self, key: &str) -> bool {
        self.args[key]
            .as_bool()
            .unwrap_or_else(|| panic!("{}: no bool arg {key}", self.name))
    }
    /// Integer-list argument `key`.
    pub fn ints(&self, key: &str) -> Vec<i32> {
        self.args[key]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no list arg {key}", self.name))
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect()
    }
    /// String argument `key`.
    pub fn str(&self, key: &str) -> String {
        self.args[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no str arg {key}", self.name))
            .to_string()
    }
    /// Checks `got` against output `i` within the case's tolerances.
    pub fn check(&self, i: usize, got: &Array) {
        assert_close(got, &self.outputs[i], self.rtol, self.atol, &self.name);
    }
}

/// Builds an array from a stored tensor.
pub fn to_array(t: &Tensor) -> Array {
    let dtype = Dtype::from_name(&t.dtype).unwrap_or_else(|| panic!("unknown dtype {}", t.dtype));
    let values = t.data.as_array().expect("data is a list");
    match dtype {
        Dtype::Complex64 => {
            let v: Vec<Complex32> = values
                .iter()
                .map(|p| {
                    Complex32::new(p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32)
                })
                .collect();
            Array::from_slice(&v, &t.shape).unwrap()
        }
        Dtype::Float64 => {
            let v: Vec<f64> = values.iter().map(|x| x.as_f64().unwrap()).collect();
            Array::from_slice(&v, &t.shape).unwrap()
        }
        d if d.is_float() => {
            let v: Vec<f32> = values.iter().map(|x| x.as_f64().unwrap() as f32).collect();
            Array::from_slice(&v, &t.shape).unwrap().astype(d).unwrap()
        }
        Dtype::Bool => {
            let v: Vec<bool> = values.iter().map(|x| x.as_i64().unwrap() != 0).collect();
            Array::from_slice(&v, &t.shape).unwrap()
        }
        Dtype::Uint64 => {
            let v: Vec<u64> = values.iter().map(|x| x.as_u64().unwrap()).collect();
            Array::from_slice(&v, &t.shape).unwrap()
        }
        d => {
            let v: Vec<i64> = values.iter().map(|x| x.as_i64().unwrap()).collect();
            Array::from_slice(&v, &t.shape).unwrap().astype(d).unwrap()
        }
    }
}

/// Asserts that `got` has the stored dtype and shape, and values within
/// `|got - want| <= atol + rtol * |want|` (NaNs must match NaNs).
pub fn assert_close(got: &Array, want: &Tensor, rtol: f64, atol: f64, what: &str) {
    let (rtol, atol) = if on_gpu() {
        (rtol.max(tol::GPU_FLOOR.0), atol.max(tol::GPU_FLOOR.1))
    } else {
        (rtol, atol)
    };
    assert_eq!(got.dtype().name(), want.dtype, "{what}: dtype");
    assert_eq!(got.shape(), want.shape.as_slice(), "{what}: shape");
    let want_arr = to_array(want);
    // float64 exists only on the CPU in MLX: compare there whatever the default device.
    let cpu = mlx_rs::Stream::cpu();
    let (g, w): (Vec<f64>, Vec<f64>) = if got.dtype() == Dtype::Complex64 {
        let flat = |a: &Array| -> Vec<f64> {
            a.to_vec::<Complex32>()
                .unwrap()
                .iter()
                .flat_map(|c| [c.re as f64, c.im as f64])
                .collect()
        };
        (flat(got), flat(&want_arr))
    } else {
        let as_f64 = |a: &Array| {
            mlx_rs::with_stream(&cpu, || a.astype(Dtype::Float64))
                .unwrap()
                .to_vec::<f64>()
                .unwrap()
        };
        (as_f64(got), as_f64(&want_arr))
    };
    for (k, (x, y)) in g.iter().zip(&w).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= atol + rtol * y.abs();
        assert!(
            ok,
            "{what}: element {k}: got {x}, want {y} (rtol {rtol}, atol {atol})"
        );
    }
}

/// Whether ops run on a GPU by default (the fixtures come from Python MLX on the CPU).
pub fn on_gpu() -> bool {
    mlx_rs::Device::default_device()
        .and_then(|d| d.kind())
        .map(|k| k == mlx_rs::DeviceType::Gpu)
        .unwrap_or(false)
}

/// Relative and absolute tolerances by dtype, named so tests say what they allow.
pub mod tol {
    /// Least tolerance when results come from a GPU and the fixture from the CPU: CUDA
    /// runs float32 matmuls in TF32 (10-bit mantissa inputs) and GPUs reduce in another
    /// order.
    pub const GPU_FLOOR: (f64, f64) = (5e-3, 5e-3);
    /// float32 results of the same kernels: bit-identical in practice.
    pub const F32: (f64, f64) = (1e-5, 1e-6);
    /// float16 results.
    pub const F16: (f64, f64) = (1e-3, 1e-3);
    /// bfloat16 results.
    pub const BF16: (f64, f64) = (1e-2, 1e-2);
}

/// Runs this test binary again with only `test` and `MLX_RS_CHILD=1` (plus `envs`), so
/// that an exit, an abort or a signal fails the test instead of ending the runner; the
/// child prints CHILD-DONE when it got to the end. Returns the child's (stdout, stderr).
pub fn child_ok(test: &str, envs: &[(&str, &str)]) -> (String, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("MLX_RS_CHILD", "1")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("CHILD-DONE"),
        "child {test} {envs:?} ended with {:?}:\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Whether this process is a child started by [`child_ok`].
pub fn is_child() -> bool {
    std::env::var_os("MLX_RS_CHILD").is_some()
}
