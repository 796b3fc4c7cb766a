//! The model as an `mlx_rs::nn` module tree: its parameters are named as mlx-lm names
//! them and hold the checkpoint's values (after `sanitize`) whichever layout it came in,
//! and the forms the forward pass runs with share their arrays (the weights are held once).

mod common;

use common::{cpu, model_dir};
use mlx_rs::nn::{Module, ParamMap};
use mlx_rs::{ops, Array, Dtype};
use qwen3_5::weights::Checkpoint;
use qwen3_5::{Config, Model, ModelOptions};
use std::sync::Mutex;

/// Measurements of MLX's active memory must not overlap another test's loading.
static MEMORY: Mutex<()> = Mutex::new(());

fn stored(variant: &str) -> ParamMap {
    Checkpoint::open(model_dir(variant))
        .unwrap()
        .load_all()
        .unwrap()
}

fn assert_same(got: &ParamMap, want: &ParamMap, what: &str) {
    let keys = |m: &ParamMap| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "{what}: names");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(
            (g.shape(), g.dtype()),
            (w.shape(), w.dtype()),
            "{what}: {k}"
        );
        let equal = ops::array_equal(g, w, false)
            .unwrap()
            .item::<bool>()
            .unwrap();
        assert!(equal, "{what}: {k} differs");
    }
}

#[test]
fn parameters_are_the_mlx_checkpoint() {
    let _lock = MEMORY.lock().unwrap();
    cpu(|| {
        for v in [
            "mlx-bf16-tied",
            "mlx-bf16-untied",
            "mlx-q4-tied",
            "mlx-q4-untied-mixed",
        ] {
            let model = common::load_stored(model_dir(v));
            assert_same(&model.parameters().unwrap(), &stored(v), v);
        }
        // Hugging Face checkpoints of the same weights: renamed, conv weights moved, the
        // `1 + w` norms shifted once.
        for (hf, mlx) in [
            ("hf-bf16-tied", "mlx-bf16-tied"),
            ("hf-bf16-untied", "mlx-bf16-untied"),
        ] {
            let model = common::load_stored(model_dir(hf));
            assert_same(&model.parameters().unwrap(), &stored(mlx), hf);
        }
    });
}

/// float32 on the CPU: the products keep transposed copies of the weights (and joined
/// ones), the tied table too; the parameters are views of them, and nothing else stays.
#[test]
fn weights_are_held_once() {
    let _lock = MEMORY.lock().unwrap();
    cpu(|| {
        let config = Config::from_file(model_dir("mlx-bf16-tied")).unwrap();
        let options = ModelOptions::for_device(&mlx_rs::Device::cpu());
        // Once first, so that what MLX sets up on first use is not counted, and without
        // cached buffers (a larger one reused for a smaller array counts in full).
        drop(Model::from_tensors(config.clone(), stored("mlx-bf16-tied"), options).unwrap());
        mlx_rs::memory::clear_cache().unwrap();
        let before = mlx_rs::memory::get_active_memory().unwrap();
        let f32s = |m: ParamMap| -> ParamMap {
            m.into_iter()
                .map(|(k, a)| {
                    let a = if a.dtype().is_float() {
                        a.astype(Dtype::Float32).unwrap()
                    } else {
                        a
                    };
                    a.eval().unwrap();
                    (k, a)
                })
                .collect()
        };
        let want = f32s(stored("mlx-bf16-tied"));
        let tensors = f32s(stored("mlx-bf16-tied"));
        let model = Model::from_tensors(config, tensors, options).unwrap();
        let params = model.parameters().unwrap();
        assert_same(&params, &want, "float32");
        drop(want);
        let held = mlx_rs::memory::get_active_memory().unwrap() - before;
        let param_bytes: usize = params.values().map(Array::nbytes).sum();
        // The RoPE frequencies of the attention layer are the only other arrays. A CUDA
        // build of MLX rounds each allocation up (464 KiB of parameters in 55 arrays took
        // 513 KiB on an H200), so allow 1.5 KiB per array for that; holding any joined
        // projection twice would add far more.
        let rounding = 1536 * params.len();
        assert!(
            held <= param_bytes + 1024 + rounding,
            "{held} bytes held for {param_bytes} bytes of parameters"
        );
    });
}
