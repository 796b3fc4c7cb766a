//! `mlx_lm::base::attention_in_blocks`: the queries in row blocks give MLX's attention of
//! all of them at once (causal with more keys than queries, an array mask over the rows,
//! no mask), and shapes it cannot split run whole.

use mlx_lm::base::attention_in_blocks;
use mlx_rs::fast::{scaled_dot_product_attention, AttentionMask};
use mlx_rs::{ops, random, Array, Dtype};

fn normal(shape: &[i32], seed: u64) -> Array {
    let key = random::key(seed).unwrap();
    random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(&key)).unwrap()
}

fn assert_close(what: &str, got: &Array, want: &Array) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    for (i, (a, e)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - e).abs() <= 1e-5,
            "{what}: element {i} is {a}, expected {e}"
        );
    }
}

#[test]
fn blocks_of_query_rows_give_the_whole_attention() {
    // 2 sequences, 4 query heads on 2 key heads, 13 new positions after 20 cached ones.
    let (b, h, kv, l, s, d) = (2, 4, 2, 13, 33, 16);
    let q = normal(&[b, h, l, d], 1);
    let k = normal(&[b, kv, s, d], 2);
    let v = normal(&[b, kv, s, d], 3);
    let scale = 0.25;
    // A padded batch's mask: row 1 skips its first 5 keys; causal as well.
    let col = ops::arange(0.0, s as f64, 1.0, Dtype::Int32).unwrap();
    let col = col.reshape(&[1, 1, 1, s]).unwrap();
    let row = ops::arange((s - l) as f64, s as f64, 1.0, Dtype::Int32).unwrap();
    let row = row.reshape(&[1, 1, l, 1]).unwrap();
    let pad = Array::from_slice(&[0i32, 5], &[b, 1, 1, 1]).unwrap();
    let mask = col
        .less_equal(&row)
        .unwrap()
        .logical_and(&col.greater_equal(&pad).unwrap())
        .unwrap();
    let cases = [
        ("causal", AttentionMask::Causal),
        ("array mask", AttentionMask::Array(&mask)),
        ("no mask", AttentionMask::None),
    ];
    for (what, m) in cases {
        let want = scaled_dot_product_attention(&q, &k, &v, scale, m).unwrap();
        // Blocks of 1, 2, 5 and 13 rows (the last one whole).
        for rows in [1, 2, 5, 13] {
            let max = (b * h * s * rows) as i64;
            let got = attention_in_blocks(&q, &k, &v, scale, m, max).unwrap();
            assert_close(&format!("{what}, blocks of {rows} rows"), &got, &want);
        }
    }
}

#[test]
fn shapes_it_cannot_split_run_whole() {
    // More queries than keys under a causal mask; 3-d inputs.
    let q = normal(&[1, 2, 6, 8], 4);
    let k = normal(&[1, 2, 4, 8], 5);
    let want = scaled_dot_product_attention(&q, &k, &k, 1.0, AttentionMask::Causal).unwrap();
    let got = attention_in_blocks(&q, &k, &k, 1.0, AttentionMask::Causal, 1).unwrap();
    assert_close("causal, more queries than keys", &got, &want);
    let q3 = normal(&[2, 6, 8], 6);
    let err = attention_in_blocks(&q3, &q3, &q3, 1.0, AttentionMask::None, 1);
    let direct = scaled_dot_product_attention(&q3, &q3, &q3, 1.0, AttentionMask::None);
    assert_eq!(
        err.is_ok(),
        direct.is_ok(),
        "3-d inputs go to MLX as they are"
    );
}
