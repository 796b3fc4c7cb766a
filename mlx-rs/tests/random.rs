//! mlx_rs::random: bit-exact agreement with Python MLX for the same key (fixtures from
//! tests/oracle/gen_random.py), determinism, ranges, moments, and bad inputs.

mod common;

use common::Case;
use mlx_rs::{random, with_stream, Array, Dtype, Stream};

fn dtype(case: &Case) -> Dtype {
    Dtype::from_name(&case.str("dtype")).expect("known dtype")
}

fn run(case: &Case) -> Vec<Array> {
    let k = random::key(case.args["seed"].as_u64().unwrap()).unwrap();
    let key = Some(&k);
    let x = |i| case.input(i);
    let one = |r: mlx_rs::Result<Array>| vec![r.unwrap_or_else(|e| panic!("{}: {e}", case.name))];
    match case.op.as_str() {
        "key" => vec![k.clone()],
        "split" => {
            let (a, b) = random::split(&k).unwrap();
            vec![a, b]
        }
        "split_num" => one(random::split_num(&k, case.int("num"))),
        "uniform" => one(random::uniform(
            &x(0),
            &x(1),
            &case.ints("shape"),
            dtype(case),
            key,
        )),
        "normal" => one(random::normal(
            &case.ints("shape"),
            dtype(case),
            case.float("loc") as f32,
            case.float("scale") as f32,
            key,
        )),
        "normal_broadcast" => one(random::normal_broadcast(
            &case.ints("shape"),
            dtype(case),
            Some(&x(0)),
            Some(&x(1)),
            key,
        )),
        "randint" => one(random::randint(
            &x(0),
            &x(1),
            &case.ints("shape"),
            dtype(case),
            key,
        )),
        "bernoulli" => one(random::bernoulli(&x(0), &case.ints("shape"), key)),
        "truncated_normal" => one(random::truncated_normal(
            &x(0),
            &x(1),
            &case.ints("shape"),
            dtype(case),
            key,
        )),
        "gumbel" => one(random::gumbel(&case.ints("shape"), dtype(case), key)),
        "laplace" => one(random::laplace(
            &case.ints("shape"),
            dtype(case),
            case.float("loc") as f32,
            case.float("scale") as f32,
            key,
        )),
        "categorical" => one(random::categorical(&x(0), case.int("axis"), key)),
        "categorical_shape" => one(random::categorical_shape(
            &x(0),
            case.int("axis"),
            &case.ints("shape"),
            key,
        )),
        "categorical_num_samples" => one(random::categorical_num_samples(
            &x(0),
            case.int("axis"),
            case.int("num_samples"),
            key,
        )),
        "multivariate_normal" => one(with_stream(&Stream::cpu(), || {
            random::multivariate_normal(&x(0), &x(1), &case.ints("shape"), dtype(case), key)
        })),
        "permutation_arange" => one(random::permutation_arange(case.int("n"), key)),
        "permutation" => one(random::permutation(&x(0), case.int("axis"), key)),
        op => panic!("{}: unknown op {op}", case.name),
    }
}

#[test]
fn same_key_gives_pythons_numbers() {
    let cases = common::load("random");
    for case in &cases {
        let outs = run(case);
        assert_eq!(outs.len(), case.outputs.len(), "{}: outputs", case.name);
        for (i, o) in outs.iter().enumerate() {
            case.check(i, o);
        }
    }
}

#[test]
fn keys_make_results_reproducible() {
    let k = random::key(7).unwrap();
    let a = random::uniform_range(0.0..1.0, &[64], Some(&k))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = random::uniform_range(0.0..1.0, &[64], Some(&k))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b, "same key, same values");
    let (k1, k2) = random::split(&k).unwrap();
    assert_ne!(k1.to_vec::<u32>().unwrap(), k2.to_vec::<u32>().unwrap());
    let c = random::uniform_range(0.0..1.0, &[64], Some(&k1))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let d = random::uniform_range(0.0..1.0, &[64], Some(&k2))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(a, c, "a split key differs from its parent");
    assert_ne!(c, d, "the two halves of a split differ");
    let many = random::split_num(&k, 4).unwrap();
    assert_eq!(many.shape(), &[4, 2]);
    assert_eq!(many.dtype(), Dtype::Uint32);
    let mut rows: Vec<Vec<u32>> = many
        .to_vec::<u32>()
        .unwrap()
        .chunks(2)
        .map(|c| c.to_vec())
        .collect();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), 4, "split_num gives distinct keys");
    assert_eq!(
        random::key(7).unwrap().to_vec::<u32>().unwrap(),
        k.to_vec::<u32>().unwrap()
    );
}

#[test]
fn global_key_follows_seed() {
    // The only test in this binary that uses the global key (tests run in parallel).
    random::seed(123).unwrap();
    let a = random::standard_normal(&[16], None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = random::standard_normal(&[16], None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(a, b, "the global key advances");
    random::seed(123).unwrap();
    let c = random::standard_normal(&[16], None)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, c, "seed resets the global key");
}

#[test]
fn samples_stay_in_range() {
    let k = random::key(1).unwrap();
    let u = random::uniform_range(-2.0..3.0, &[10_000], Some(&k))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        u.iter().all(|&x| (-2.0..3.0).contains(&x)),
        "uniform in [lo, hi)"
    );
    let mean = u.iter().map(|&x| x as f64).sum::<f64>() / u.len() as f64;
    assert!((mean - 0.5).abs() < 0.05, "uniform mean {mean}");

    let r = random::randint_range(-3..4, &[10_000], Some(&k)).unwrap();
    assert_eq!(r.dtype(), Dtype::Int32);
    let r = r.to_vec::<i32>().unwrap();
    assert!(r.iter().all(|x| (-3..4).contains(x)), "randint in [lo, hi)");
    for v in -3..4 {
        assert!(r.contains(&v), "randint hits {v}");
    }

    let lo = Array::scalar(-0.5f32);
    let hi = Array::scalar(0.25f32);
    let t = random::truncated_normal(&lo, &hi, &[2000], Dtype::Float32, Some(&k)).unwrap();
    assert!(t
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .all(|&x| (-0.5..=0.25).contains(&x)));

    let p = random::permutation_arange(50, Some(&k))
        .unwrap()
        .to_vec::<u32>()
        .unwrap();
    let mut sorted = p.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..50).collect::<Vec<_>>(),
        "a permutation of 0..50"
    );
    assert_ne!(p, sorted, "and not the identity");

    for (width, dt) in [(1, Dtype::Uint8), (2, Dtype::Uint16), (4, Dtype::Uint32)] {
        let b = random::bits(&[3, 2], width, Some(&k)).unwrap();
        assert_eq!((b.shape(), b.dtype()), (&[3, 2][..], dt));
    }
    let coins = random::bernoulli(&Array::scalar(0.25f32), &[10_000], Some(&k)).unwrap();
    assert_eq!(coins.dtype(), Dtype::Bool);
    let heads = coins
        .to_vec::<bool>()
        .unwrap()
        .iter()
        .filter(|&&c| c)
        .count();
    assert!(
        (2250..2750).contains(&heads),
        "bernoulli(0.25): {heads} of 10000"
    );
}

#[test]
fn normal_moments_are_right() {
    let k = random::key(2024).unwrap();
    let n = random::normal(&[10_000], Dtype::Float32, 2.0, 3.0, Some(&k)).unwrap();
    let v: Vec<f64> = n
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    // Standard errors: 3/100 for the mean, about 9*sqrt(2/10000) = 0.13 for the variance.
    assert!((mean - 2.0).abs() < 0.12, "mean {mean}");
    assert!((var - 9.0).abs() < 0.6, "variance {var}");
    let g = random::gumbel(&[10_000], Dtype::Float32, Some(&k))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let gmean = g.iter().map(|&x| x as f64).sum::<f64>() / g.len() as f64;
    assert!(
        (gmean - 0.5772).abs() < 0.05,
        "Gumbel mean is Euler's constant: {gmean}"
    );
    let h = random::normal(&[8], Dtype::Float16, 0.0, 1.0, Some(&k)).unwrap();
    assert_eq!(h.dtype(), Dtype::Float16);
}

fn assert_err_mentions<T: std::fmt::Debug>(r: mlx_rs::Result<T>, words: &[&str]) {
    let msg = r.expect_err("expected an error").to_string().to_lowercase();
    assert!(
        words.iter().any(|w| msg.contains(&w.to_lowercase())),
        "{msg:?} mentions none of {words:?}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let k = random::key(0).unwrap();
    let key = Some(&k);
    assert_err_mentions(
        random::normal(&[2, -3], Dtype::Float32, 0.0, 1.0, key),
        &["negative"],
    );
    assert_err_mentions(random::uniform_range(1.0..1.0, &[2], key), &["range"]);
    assert_err_mentions(random::uniform_range(0.0..f32::NAN, &[2], key), &["range"]);
    #[allow(clippy::reversed_empty_ranges)] // the point of the check
    let reversed = 5..2;
    assert_err_mentions(random::randint_range(reversed, &[2], key), &["range"]);
    let (lo, hi) = (Array::scalar(0.0f32), Array::scalar(1.0f32));
    assert_err_mentions(
        random::uniform(&lo, &hi, &[2], Dtype::Int32, key),
        &["floating"],
    );
    assert_err_mentions(
        random::randint(&lo, &hi, &[2], Dtype::Float32, key),
        &["integer"],
    );
    assert_err_mentions(
        random::normal(&[2], Dtype::Int32, 0.0, 1.0, key),
        &["floating"],
    );
    let bad_key = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    assert_err_mentions(random::split(&bad_key), &["uint32"]);
    let long_key = Array::from_slice(&[1u32, 2, 3], &[3]).unwrap();
    assert_err_mentions(
        random::uniform(&lo, &hi, &[2], Dtype::Float32, Some(&long_key)),
        &["key shape"],
    );
    let logits = Array::from_slice(&[0.0f32; 6], &[2, 3]).unwrap();
    assert_err_mentions(random::categorical(&logits, 5, key), &["axis"]);
    assert_err_mentions(random::permutation(&logits, 2, key), &["axis"]);
    assert_err_mentions(random::permutation_arange(-3, key), &["negative"]);
    assert_err_mentions(random::bits(&[2], 3, key), &["width"]);
    let p = Array::from_slice(&[0.5f32; 3], &[3]).unwrap();
    assert_err_mentions(random::bernoulli(&p, &[2], key), &["broadcast"]);
    let mean = Array::from_slice(&[0.0f32; 3], &[3]).unwrap();
    let cov = mlx_rs::ops::eye(2, 2, 0, Dtype::Float32).unwrap();
    let r = with_stream(&Stream::cpu(), || {
        random::multivariate_normal(&mean, &cov, &[], Dtype::Float32, key)
    });
    assert_err_mentions(r, &["compatible shapes"]);
}
