//! Tests of the linear layers: the CPU paths' values against MLX's, joining, the device
//! forms, and the small-batch and quantized one-row kernel settings through joining and compiled copies.
use super::cpu::{cpu_streams_matmul, CPU_SPLIT_ROWS};
use super::*;
use mlx_lm::kernels::cpu_gemm;
use mlx_rs::random;

/// More threads than this machine may have: the split must not depend on the count.
const THREADS: usize = 3;
/// Products on the CPU, through MLX's own and the packed GEMM.
const CPU: CpuProducts = CpuProducts {
    gemm: true,
    threads: THREADS,
};

/// A GPU model's dense layers keep the small-batch setting through joining and the
/// compiled functions' copies (`with_weights`; the hash tells the setting apart); a CPU
/// model's never take it.
#[test]
fn dense_layers_keep_the_small_batch_rows() {
    let rows = |l: &Linear| match l {
        Linear::Dense {
            small_batch_rows: r,
            ..
        }
        | Linear::DenseT {
            small_batch_rows: r,
            ..
        } => *r,
        _ => -1,
    };
    let gpu = Products {
        cpu: None,
        small_batch_rows: 12,
        quantized_gemv: true,
    };
    let part = Linear::dense(normal(&[8, 16], 1)).unwrap();
    let joined = Projections::new(vec![part.clone(); 2], gpu).unwrap();
    let j = joined.joined.as_ref().unwrap();
    let copy = j.with_weights(&mut j.weights().into_iter()).unwrap();
    assert_eq!((rows(j), rows(&copy), rows(&part)), (12, 12, 0));
    let single = part.clone().for_device(gpu).unwrap();
    assert_eq!(rows(&single), 12);
    let hash = |l: &Linear| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        l.hash_structure(&mut h);
        h.finish()
    };
    assert_ne!(hash(j), hash(&part));
    let on_cpu = Products {
        cpu: Some(CPU),
        small_batch_rows: 12,
        quantized_gemv: true,
    };
    assert_eq!(rows(&part.for_device(on_cpu).unwrap()), 0);
}

#[test]
fn quantized_products_take_the_cpu_paths_with_the_same_values() {
    let cpu = mlx_rs::Device::cpu();
    mlx_rs::with_device(&cpu, || {
        let mlx = quantized_4bit(&normal(&[96, 64], 21));
        let on_cpu = mlx.clone().for_device(Products::cpu(CPU)).unwrap();
        assert!(matches!(&on_cpu, Linear::Quantized(q) if q.cpu == Some(CPU)));
        // 40 rows, 2-D and 3-D: the GEMM (the counter is process-wide, so other tests
        // may move it too), the values of MLX's quantized matmul.
        for shape in [vec![40, 64], vec![2, 20, 64]] {
            let x = normal(&shape, 22);
            let before = cpu_gemm::products();
            let got = on_cpu.forward(&x).unwrap();
            assert!(cpu_gemm::products() > before, "{shape:?}");
            close(&got, &mlx.forward(&x).unwrap(), &format!("4-bit {shape:?}"));
        }
        // 1 and 3 rows: the few-row product (`cpu_quantized`), MLX's values.
        for rows in [1, 3] {
            let x = normal(&[rows, 64], 23);
            let before = cpu_quantized::products();
            let got = on_cpu.forward(&x).unwrap();
            assert!(cpu_quantized::products() > before, "{rows} rows");
            close(
                &got,
                &mlx.forward(&x).unwrap(),
                &format!("4-bit, {rows} rows"),
            );
        }
    })
    .unwrap();
}

/// `w` quantized to 4 bits in groups of 32, as MLX's quantized matmul takes it.
fn quantized_4bit(w: &Array) -> Linear {
    let opts = ops::QuantizeOptions {
        group_size: Some(32),
        bits: Some(4),
        mode: ops::QuantizationMode::Affine,
    };
    let q = ops::quantize(w, None, opts).unwrap();
    Linear::Quantized(Quantized {
        weight: q.w,
        scales: q.scales,
        biases: q.biases.unwrap(),
        params: QuantParams {
            group_size: 32,
            bits: 4,
        },
        cpu: None,
        one_row_kernel: false,
    })
}

fn close(got: &Array, want: &Array, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (g, e) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    for (a, b) in g.iter().zip(&e) {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{what}: {a} vs {b}"
        );
    }
}

fn normal(shape: &[i32], seed: u64) -> Array {
    let key = random::key(seed).unwrap();
    random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(&key)).unwrap()
}

#[test]
fn cpu_float32_weights_are_stored_transposed_and_give_the_same_product() {
    let cpu = mlx_rs::Device::cpu();
    mlx_rs::with_device(&cpu, || {
        let w = normal(&[96, 64], 3);
        let lin = Linear::dense(w.clone())
            .unwrap()
            .for_device(Products::cpu(CPU))
            .unwrap();
        assert!(matches!(lin, Linear::DenseT { .. }));
        assert_eq!(lin.out_features().unwrap(), 96);
        for rows in [1, 31, 100] {
            let x = normal(&[1, rows, 64], rows as u64);
            let want = ops::matmul(&x, &ops::transpose(&w).unwrap()).unwrap();
            close(&lin.forward(&x).unwrap(), &want, &format!("{rows} rows"));
        }
        // bfloat16 keeps the stored form, its float32 products in `cpu_bf16`.
        let wb = w.astype(Dtype::Bfloat16).unwrap();
        let bf = Linear::dense(wb.clone())
            .unwrap()
            .for_device(Products::cpu(CPU))
            .unwrap();
        assert!(matches!(bf, Linear::Dense { cpu: Some(_), .. }));
        let wb32 = ops::transpose(&wb.astype(Dtype::Float32).unwrap()).unwrap();
        for rows in [1, 40] {
            let x = normal(&[1, rows, 64], 7 + rows as u64);
            let before = cpu_bf16::products();
            let got = bf.forward(&x).unwrap();
            assert!(cpu_bf16::products() > before, "{rows} rows: bf16 kernel");
            let want = ops::matmul(&x, &wb32).unwrap();
            close(&got, &want, &format!("bfloat16, {rows} rows"));
        }
    })
    .unwrap();
}

#[test]
fn products_spread_over_cpu_streams_are_exact() {
    let cpu = mlx_rs::Device::cpu();
    mlx_rs::with_device(&cpu, || {
        // An odd number of columns, so the streams' parts differ in width.
        let wt = normal(&[64, 97], 11);
        for rows in [1, CPU_SPLIT_ROWS as i32, 100] {
            // A lazy input from the current stream.
            let x = normal(&[2, rows, 64], 12)
                .multiply(&Array::scalar(0.5f32))
                .unwrap();
            let got = cpu_streams_matmul(&x, &wt, THREADS).unwrap();
            let want = ops::matmul(&x, &wt).unwrap();
            assert_eq!(got.shape(), &[2, rows, 97]);
            assert_eq!(
                got.to_vec::<f32>().unwrap(),
                want.to_vec::<f32>().unwrap(),
                "{rows} rows over {THREADS} streams"
            );
        }
    })
    .unwrap();
}

#[test]
fn joined_projections_split_into_the_separate_products() {
    let cpu = mlx_rs::Device::cpu();
    mlx_rs::with_device(&cpu, || {
        let ws = [
            normal(&[40, 64], 1),
            normal(&[8, 64], 2),
            normal(&[3, 64], 4),
        ];
        let x = normal(&[2, 5, 64], 9);
        // Dense (bfloat16 stays [out, in]) and transposed float32 forms.
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let parts: Vec<Linear> = ws
                .iter()
                .map(|w| Linear::dense(w.astype(dtype).unwrap()).unwrap())
                .collect();
            let proj = Projections::new(parts.clone(), Products::cpu(CPU)).unwrap();
            assert!(proj.joined.is_some());
            let got = proj.forward(&x.astype(dtype).unwrap()).unwrap();
            assert_eq!(got.len(), 3);
            for (g, p) in got.iter().zip(&parts) {
                let want = p.forward(&x.astype(dtype).unwrap()).unwrap();
                let (g, want) = (
                    g.astype(Dtype::Float32).unwrap(),
                    want.astype(Dtype::Float32).unwrap(),
                );
                close(&g, &want, &format!("{dtype:?}"));
            }
        }
        // Quantized parts of one quantization join; with a dense part they do not.
        let quant = quantized_4bit;
        let parts: Vec<Linear> = ws.iter().map(quant).collect();
        let proj = Projections::new(parts.clone(), Products::cpu(CPU)).unwrap();
        assert!(proj.joined.is_some());
        for (g, p) in proj.forward(&x).unwrap().iter().zip(&parts) {
            close(g, &p.forward(&x).unwrap(), "4-bit");
        }
        let mixed = vec![quant(&ws[0]), Linear::dense(ws[1].clone()).unwrap()];
        assert!(Linear::join(&mixed).unwrap().is_none());
        let proj = Projections::new(mixed, Products::cpu(CPU)).unwrap();
        assert!(proj.joined.is_none());
        assert_eq!(proj.forward(&x).unwrap()[1].shape(), &[2, 5, 8]);
    })
    .unwrap();
}

#[test]
fn a_transposed_table_looks_up_the_same_rows() {
    let cpu = mlx_rs::Device::cpu();
    mlx_rs::with_device(&cpu, || {
        let table = normal(&[50, 16], 5);
        let emb = Embedding {
            table: Linear::dense(table.clone()).unwrap(),
        }
        .for_device(Products::cpu(CPU))
        .unwrap();
        assert!(matches!(emb.table, Linear::DenseT { .. }));
        let ids = Array::from_slice(&[3u32, 0, 49, 3, 7, 12], &[2, 3]).unwrap();
        let want = ops::take_axis(&table, &ids, 0).unwrap();
        close(&emb.forward(&ids).unwrap(), &want, "rows");
        let x = normal(&[1, 2, 16], 6);
        let want = ops::matmul(&x, &ops::transpose(&table).unwrap()).unwrap();
        close(&emb.as_linear(&x).unwrap(), &want, "head");
    })
    .unwrap();
}

/// A GPU model's quantized layers keep the one-row kernel setting through joining and the
/// compiled functions' copies (the hash tells it apart); `compile_kernels` keeps a kernel
/// only where it can be built (a CUDA GPU) and otherwise turns it off, so the model keeps
/// MLX's products.
#[test]
fn quantized_layers_keep_the_one_row_kernel_where_it_compiles() {
    let gpu = Products {
        cpu: None,
        small_batch_rows: 16,
        quantized_gemv: true,
    };
    let part = quantized_4bit(&normal(&[64, 64], 5));
    let on = |l: &Linear| matches!(l, Linear::Quantized(q) if q.one_row_kernel);
    let joined = Projections::new(vec![part.clone(); 2], gpu).unwrap();
    let j = joined.joined.as_ref().unwrap();
    let copy = j.with_weights(&mut j.weights().into_iter()).unwrap();
    assert!(on(j) && on(&copy) && !on(&part));
    let hash = |l: &Linear| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        l.hash_structure(&mut h);
        h.finish()
    };
    let single = part.clone().for_device(gpu).unwrap();
    assert_ne!(hash(&single), hash(&part));

    // On the default device: the GPU where MLX has one, else the CPU, where building a
    // CUDA kernel is an error.
    let cuda = mlx_rs::Device::gpu().is_available() && !cfg!(target_os = "macos");
    let got = compile_kernels(gpu, &part, &[64, 128]);
    assert_eq!(
        got.quantized_gemv, cuda,
        "quantized kernel kept where CUDA compiles it"
    );
    let dense = Linear::dense(normal(&[64, 64], 6)).unwrap();
    let got = compile_kernels(gpu, &dense, &[64]);
    assert_eq!(
        got.small_batch_rows == 16,
        cuda,
        "small-batch kernel kept where CUDA compiles it"
    );
    let none = compile_kernels(Products::cpu(CPU), &part, &[64]);
    assert_eq!(none, Products::cpu(CPU), "a CPU model's products unchanged");
}
