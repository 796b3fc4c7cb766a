//! The caches: growth of the KV buffers, snapshot and restore, and taking a batch apart
//! and putting it together.

use crate::common::{assert_close, cpu};
use mlx_lm::cache::{Cache, KvCache, LayerCache, Positions, RecurrentCache};
use mlx_rs::{ops, Array};

/// `[b, h, l, d]` of consecutive values starting at `start`.
fn seq(start: f32, shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| start + i as f32).collect();
    Array::from_slice(&v, shape).unwrap()
}

fn values(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

#[test]
fn kv_cache_grows_past_its_step_and_returns_every_position() {
    cpu(|| {
        let mut c = KvCache::default();
        let first = seq(0.0, &[1, 2, 250, 4]);
        let (k, v) = c.update_and_fetch(&first, &first).unwrap();
        assert_eq!(k.shape(), &[1, 2, 250, 4]);
        assert_eq!(values(&v), values(&first));
        // 250 + 10 crosses the 256-position step: the buffers grow and keep the old rows.
        let second = seq(1000.0, &[1, 2, 10, 4]);
        let (k, _) = c.update_and_fetch(&second, &second).unwrap();
        assert_eq!(c.offset(), 260);
        assert_eq!(k.shape(), &[1, 2, 260, 4]);
        let want = ops::concatenate_axis(&[first, second], 2).unwrap();
        assert_eq!(values(&k), values(&want));
        let (bk, _) = c
            .update_buffers(&seq(0.0, &[1, 2, 1, 4]), &seq(0.0, &[1, 2, 1, 4]))
            .unwrap();
        assert!(
            bk.shape()[2] >= c.offset(),
            "the buffers hold every position"
        );
        assert_eq!(c.offset(), 261);
    })
}

#[test]
fn kv_cache_rejects_mismatched_keys_and_values() {
    cpu(|| {
        let mut c = KvCache::default();
        let err = c
            .update_and_fetch(&seq(0.0, &[1, 2, 3, 4]), &seq(0.0, &[1, 2, 2, 4]))
            .unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
        let err = c
            .update_and_fetch(&seq(0.0, &[2, 4]), &seq(0.0, &[2, 4]))
            .unwrap_err();
        assert!(err.to_string().contains("[B, H, L, D]"), "{err}");
        c.update_and_fetch(&seq(0.0, &[1, 2, 3, 4]), &seq(0.0, &[1, 2, 3, 4]))
            .unwrap();
        let err = c
            .update_and_fetch(&seq(0.0, &[1, 3, 1, 4]), &seq(0.0, &[1, 3, 1, 4]))
            .unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
        assert_eq!(c.offset(), 3, "a rejected update changes nothing");
    })
}

/// A two-layer cache (attention, recurrent) of batch `b` after `steps` positions, with
/// values offset by `base`.
fn filled(b: i32, steps: i32, base: f32) -> Cache {
    let mut kv = KvCache::default();
    kv.update_and_fetch(
        &seq(base, &[b, 2, steps, 4]),
        &seq(base + 0.5, &[b, 2, steps, 4]),
    )
    .unwrap();
    let rec = RecurrentCache {
        conv: Some(seq(base, &[b, 3, 8])),
        recurrent: Some(seq(base + 7.0, &[b, 2, 4, 4])),
        offset: steps,
    };
    Cache::new(vec![LayerCache::Attention(kv), LayerCache::Recurrent(rec)])
}

/// A batch run aligned on the left splits into one cache per sequence: each keeps its
/// first `lengths[i]` attention positions and its recurrent row; lengths that do not fit,
/// and a batch with left padding, are errors; so are empty prompts for a padded batch.
#[test]
fn a_right_padded_batch_splits_by_lengths() {
    cpu(|| {
        let batch = filled(2, 5, 0.0);
        let parts = batch.split_rows(&[3, 5]).unwrap();
        assert_eq!(parts.len(), 2);
        let whole = all_values(&batch);
        for (i, (part, len)) in parts.iter().zip([3usize, 5]).enumerate() {
            assert_eq!(part.lengths(), Some(vec![len as i32]), "row {i}");
            assert_eq!(part.offset(), len as i32);
            let got = all_values(part);
            // Keys and values: row i's first `len` positions of [b, 2, 5, 4].
            for (g, w) in got[..2].iter().zip(&whole[..2]) {
                let want: Vec<f32> = (0..2)
                    .flat_map(|h| {
                        let start = (i * 2 + h) * 5 * 4;
                        w[start..start + len * 4].to_vec()
                    })
                    .collect();
                assert_eq!(g, &want, "row {i}");
            }
            // The recurrent row as it is.
            for (g, w) in got[2..].iter().zip(&whole[2..]) {
                let per = w.len() / 2;
                assert_eq!(g, &w[i * per..(i + 1) * per].to_vec(), "row {i}");
            }
        }
        for bad in [&[3][..], &[0, 5], &[3, 6]] {
            let err = batch.split_rows(bad).unwrap_err();
            assert!(err.to_string().contains("do not fit"), "{bad:?}: {err}");
        }
        let merged = Cache::merge(&[filled(1, 3, 0.0), filled(1, 5, 1.0)]).unwrap();
        let err = merged.split_rows(&[3, 5]).unwrap_err();
        assert!(err.to_string().contains("left padding"), "{err}");
        for prompts in [&[][..], &[&[1u32, 2][..], &[]]] {
            let err = mlx_lm::model::PaddedRows::new(prompts).unwrap_err();
            assert!(err.to_string().contains("none of them empty"), "{err}");
        }
    })
}

fn all_values(c: &Cache) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for l in &c.layers {
        match l {
            LayerCache::Attention(kv) => {
                let (k, v) = kv.state().unwrap().unwrap();
                out.push(values(&k));
                out.push(values(&v));
            }
            LayerCache::Recurrent(r) => {
                out.push(values(r.conv.as_ref().unwrap()));
                out.push(values(r.recurrent.as_ref().unwrap()));
            }
        }
    }
    out
}

#[test]
fn snapshot_and_restore_undo_steps() {
    cpu(|| {
        let mut c = filled(1, 5, 0.0);
        let before = all_values(&c);
        let snap = c.snapshot();
        // One more step on both layers.
        if let LayerCache::Attention(kv) = &mut c.layers[0] {
            kv.update_and_fetch(&seq(99.0, &[1, 2, 1, 4]), &seq(99.0, &[1, 2, 1, 4]))
                .unwrap();
        }
        if let LayerCache::Recurrent(r) = &mut c.layers[1] {
            r.recurrent = Some(seq(-5.0, &[1, 2, 4, 4]));
            r.offset += 1;
        }
        assert_eq!(c.offset(), 6);
        c.restore(snap).unwrap();
        assert_eq!(c.offset(), 5);
        assert_eq!(all_values(&c), before);
        // A snapshot of another shape of cache does not fit.
        let other = Cache::new(vec![LayerCache::Recurrent(RecurrentCache::default())]);
        let err = c.restore(other.snapshot()).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    })
}

#[test]
fn a_merged_batch_comes_apart_into_its_sequences() {
    cpu(|| {
        let a = filled(1, 5, 0.0);
        let b = filled(1, 5, 1000.0);
        let both = Cache::merge(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(both.batch_size(), Some(2));
        assert_eq!(both.offset(), 5);
        assert_eq!(all_values(&both.extract(0).unwrap()), all_values(&a));
        assert_eq!(all_values(&both.extract(1).unwrap()), all_values(&b));
        let swapped = both.filter(&[1, 0]).unwrap();
        assert_eq!(all_values(&swapped.extract(0).unwrap()), all_values(&b));
        let err = both.filter(&[2]).unwrap_err();
        assert!(err.to_string().contains("outside a batch of 2"), "{err}");
    })
}

#[test]
fn caches_of_other_models_or_kinds_do_not_merge() {
    cpu(|| {
        let mut swapped = filled(1, 5, 0.0);
        swapped.layers.reverse();
        let err = Cache::merge(&[filled(1, 5, 0.0), swapped]).unwrap_err();
        assert!(err.to_string().contains("cannot be merged"), "{err}");
        let mut short = filled(1, 5, 0.0);
        short.layers.pop();
        let err = Cache::merge(&[filled(1, 5, 0.0), short]).unwrap_err();
        assert!(err.to_string().contains("different layer counts"), "{err}");
        let empty = Cache::new(vec![
            LayerCache::Attention(KvCache::default()),
            LayerCache::Recurrent(RecurrentCache::default()),
        ]);
        let err = Cache::merge(&[filled(1, 5, 0.0), empty]).unwrap_err();
        assert!(err.to_string().contains("some caches are empty"), "{err}");
        assert!(Cache::merge(&[]).is_err());
    })
}

/// The attention layer of a two-layer cache made by `filled`.
fn kv(c: &Cache) -> &KvCache {
    match &c.layers[0] {
        LayerCache::Attention(kv) => kv,
        LayerCache::Recurrent(_) => panic!("layer 0 is attention"),
    }
}

fn positions(c: &Cache) -> Vec<i32> {
    match kv(c).positions().unwrap() {
        Positions::Shared(p) => vec![p; c.batch_size().unwrap() as usize],
        Positions::PerSequence(p) => p.to_vec::<i32>().unwrap(),
    }
}

/// `(batch, length)` of one cache to merge.
type Part = (i32, i32);

#[test]
fn caches_of_different_lengths_merge_aligned_on_the_right() {
    cpu(|| {
        // (batch, length) of each cache → the merged padding, one entry per sequence.
        let cases: &[(&[Part], &[i32])] = &[
            (&[(1, 5), (1, 5)], &[]),
            (&[(1, 5), (1, 3)], &[0, 2]),
            (&[(1, 5), (2, 3), (1, 7)], &[2, 4, 4, 0]),
            (&[(1, 1), (1, 12)], &[11, 0]),
        ];
        for &(parts, want_padding) in cases {
            let caches: Vec<Cache> = parts
                .iter()
                .enumerate()
                .map(|(i, &(b, t))| filled(b, t, 1000.0 * i as f32))
                .collect();
            let merged = Cache::merge(&caches).unwrap();
            let longest = parts.iter().map(|p| p.1).max().unwrap();
            let batch: i32 = parts.iter().map(|p| p.0).sum();
            let lengths: Vec<i32> = parts
                .iter()
                .flat_map(|&(b, t)| vec![t; b as usize])
                .collect();
            let what = format!("{parts:?}");
            assert_eq!(kv(&merged).left_padding(), want_padding, "{what}");
            assert_eq!(
                kv(&merged).has_padding(),
                !want_padding.is_empty(),
                "{what}"
            );
            assert_eq!(merged.offset(), longest, "{what}: recurrent offset");
            assert_eq!(kv(&merged).offset(), longest, "{what}");
            assert_eq!(merged.batch_size(), Some(batch), "{what}");
            assert_eq!(merged.lengths(), Some(lengths.clone()), "{what}");
            assert_eq!(positions(&merged), lengths, "{what}: RoPE positions");
            let (k, _) = kv(&merged).state().unwrap().unwrap();
            assert_eq!(k.shape(), &[batch, 2, longest, 4], "{what}");
            // Every sequence comes back out as it went in, without padding.
            let mut row = 0;
            for (cache, &(b, _)) in caches.iter().zip(parts) {
                for j in 0..b {
                    let out = merged.extract(row).unwrap();
                    assert!(!kv(&out).has_padding(), "{what}: row {row}");
                    assert_eq!(
                        all_values(&out),
                        all_values(&cache.extract(j).unwrap()),
                        "{what}: row {row}"
                    );
                    row += 1;
                }
            }
        }
    })
}

#[test]
fn padding_columns_hold_zeros() {
    cpu(|| {
        let merged = Cache::merge(&[filled(1, 2, 1.0), filled(1, 4, 1.0)]).unwrap();
        let (k, v) = kv(&merged).state().unwrap().unwrap();
        for a in [k, v] {
            let row0 = values(&a)[..2 * 4 * 4].to_vec();
            // Row 0, each of 2 heads: 2 padding columns of 4 zeros, then its 2 positions.
            for head in 0..2 {
                let cols = &row0[head * 16..head * 16 + 16];
                assert!(cols[..8].iter().all(|&x| x == 0.0), "{cols:?}");
                assert!(cols[8..].iter().all(|&x| x != 0.0), "{cols:?}");
            }
        }
    })
}

#[test]
fn the_mask_is_causal_and_hides_each_sequences_padding() {
    cpu(|| {
        let none = filled(2, 3, 0.0);
        assert!(kv(&none).mask(1).unwrap().is_none(), "no padding, no mask");
        assert!(matches!(
            kv(&none).positions().unwrap(),
            Positions::Shared(3)
        ));
        // Lengths 1 and 3: padding [2, 0], offset 3; two new queries see 5 columns.
        let merged = Cache::merge(&[filled(1, 1, 0.0), filled(1, 3, 0.0)]).unwrap();
        let mask = kv(&merged).mask(2).unwrap().unwrap();
        assert_eq!(mask.shape(), &[2, 1, 2, 5]);
        let got: Vec<bool> = mask.to_vec::<bool>().unwrap();
        #[rustfmt::skip]
        let want = [
            false, false, true, true, false, // sequence 0, query at column 3
            false, false, true, true, true,  // sequence 0, query at column 4
            true, true, true, true, false,   // sequence 1
            true, true, true, true, true,
        ];
        assert_eq!(got, want);
    })
}

#[test]
fn filter_keeps_padding_and_trims_columns_no_sequence_needs() {
    cpu(|| {
        // Lengths 5, 3, 7 → padding [2, 4, 0], offset 7.
        let merged =
            Cache::merge(&[filled(1, 5, 0.0), filled(1, 3, 100.0), filled(1, 7, 200.0)]).unwrap();
        // (kept rows, padding, offset) after filter.
        let cases: &[(&[i32], &[i32], i32)] = &[
            (&[0, 1, 2], &[2, 4, 0], 7),
            (&[0, 1], &[0, 2], 5),
            (&[1, 0], &[2, 0], 5),
            (&[2, 1], &[0, 4], 7),
            (&[1], &[], 3),
        ];
        for &(rows, padding, offset) in cases {
            let kept = merged.filter(rows).unwrap();
            let what = format!("{rows:?}");
            assert_eq!(kv(&kept).left_padding(), padding, "{what}");
            assert_eq!(kept.offset(), offset, "{what}: recurrent offset");
            assert_eq!(kv(&kept).offset(), offset, "{what}");
            let (k, _) = kv(&kept).state().unwrap().unwrap();
            assert_eq!(k.shape(), &[rows.len() as i32, 2, offset, 4], "{what}");
            for (j, &r) in rows.iter().enumerate() {
                let a = all_values(&kept.extract(j as i32).unwrap());
                assert_eq!(a, all_values(&merged.extract(r).unwrap()), "{what}");
            }
        }
    })
}

#[test]
fn padded_caches_merge_again_and_their_padding_adds_up() {
    cpu(|| {
        let ab = Cache::merge(&[filled(1, 5, 0.0), filled(1, 3, 100.0)]).unwrap();
        let cases: &[(&str, i32, &[i32], i32)] = &[
            ("longer joins after", 9, &[4, 6, 0], 9),
            ("shorter joins after", 2, &[0, 2, 3], 5),
        ];
        for &(what, len, padding, offset) in cases {
            let c = filled(1, len, 200.0);
            let all = Cache::merge(&[ab.clone(), c.clone()]).unwrap();
            assert_eq!(kv(&all).left_padding(), padding, "{what}");
            assert_eq!(all.offset(), offset, "{what}");
            assert_eq!(all.lengths(), Some(vec![5, 3, len]), "{what}");
            assert_eq!(
                all_values(&all.extract(1).unwrap()),
                all_values(&ab.extract(1).unwrap())
            );
            assert_eq!(all_values(&all.extract(2).unwrap()), all_values(&c));
        }
    })
}

#[test]
fn snapshot_and_restore_keep_the_padding() {
    cpu(|| {
        let mut c = Cache::merge(&[filled(1, 5, 0.0), filled(1, 3, 100.0)]).unwrap();
        let before = all_values(&c);
        let snap = c.snapshot();
        if let LayerCache::Attention(kv) = &mut c.layers[0] {
            kv.update_and_fetch(&seq(9.0, &[2, 2, 1, 4]), &seq(9.0, &[2, 2, 1, 4]))
                .unwrap();
        }
        if let LayerCache::Recurrent(r) = &mut c.layers[1] {
            r.recurrent = Some(seq(-5.0, &[2, 2, 4, 4]));
            r.offset += 1;
        }
        assert_eq!(c.lengths(), Some(vec![6, 4]));
        c.restore(snap).unwrap();
        assert_eq!(c.lengths(), Some(vec![5, 3]));
        assert_eq!(kv(&c).left_padding(), &[0, 2]);
        assert_eq!(all_values(&c), before);
    })
}

#[test]
fn rope_with_one_offset_per_sequence_rotates_each_row_at_its_own() {
    cpu(|| {
        let x = seq(0.0, &[3, 2, 4, 8])
            .multiply(&Array::scalar(0.01f32))
            .unwrap();
        let offsets = [0, 5, 11];
        let options = || mlx_rs::fast::RopeOptions {
            base: Some(1e4),
            ..Default::default()
        };
        for dims in [8, 4] {
            let per = Positions::PerSequence(Array::from_slice(&offsets, &[3]).unwrap());
            let got = per.rope(&x, dims, options()).unwrap();
            for (i, &o) in offsets.iter().enumerate() {
                let row = ops::slice(&x, &[i as i32, 0, 0, 0], &[i as i32 + 1, 2, 4, 8], &[1; 4])
                    .unwrap();
                let want = Positions::Shared(o).rope(&row, dims, options()).unwrap();
                let got_row = ops::slice(
                    &got,
                    &[i as i32, 0, 0, 0],
                    &[i as i32 + 1, 2, 4, 8],
                    &[1; 4],
                )
                .unwrap();
                assert_close(
                    &format!("dims {dims}, row {i}"),
                    &values(&got_row),
                    &values(&want),
                    ROPE_ATOL,
                    0.0,
                );
            }
        }
    })
}

/// Float32 RoPE: the same rotation, computed from an array offset or a scalar one.
const ROPE_ATOL: f32 = 1e-6;

/// Timing, not a check: what a join ([`Cache::merge`] of a newcomer into a running batch)
/// and a leave ([`Cache::filter`] of one row) cost at Qwen 3.5 2B's shapes (18 DeltaNet
/// layers, 6 attention layers; the batch at 200 positions, the newcomer at 100), each
/// with the next step's KV write (in place when the buffers have room, else a copy), next
/// to one pass over every recurrent state (what a decode step's DeltaNet kernels read and
/// write anyway). On the default device; on the GPU machine:
/// `lm-<hash> --ignored --nocapture join_and_leave_cost`.
#[test]
#[ignore = "timing, for the GPU machine"]
fn join_and_leave_cost() {
    use mlx_rs::Dtype;
    use std::time::Instant;
    let zeros = |shape: &[i32], dtype| ops::zeros(shape, dtype).unwrap();
    let layer = |b: i32, len: i32, i: usize| -> LayerCache {
        if i % 4 == 3 {
            let mut kv = KvCache::default();
            let x = zeros(&[b, 2, len, 256], Dtype::Bfloat16);
            kv.update_buffers(&x, &x).unwrap();
            LayerCache::Attention(kv)
        } else {
            LayerCache::Recurrent(RecurrentCache {
                conv: Some(zeros(&[b, 3, 6144], Dtype::Bfloat16)),
                recurrent: Some(zeros(&[b, 16, 128, 128], Dtype::Float32)),
                offset: len,
            })
        }
    };
    let cache = |b: i32, len: i32| {
        let c = Cache::new((0..24).map(|i| layer(b, len, i)).collect());
        mlx_rs::eval(&c.arrays()).unwrap();
        c
    };
    // Every array of `c` after one more KV column in each attention layer.
    let step = |mut c: Cache| -> Vec<Array> {
        let x = zeros(&[c.batch_size().unwrap(), 2, 1, 256], Dtype::Bfloat16);
        for l in &mut c.layers {
            if let LayerCache::Attention(kv) = l {
                kv.update_buffers(&x, &x).unwrap();
            }
        }
        c.arrays().into_iter().cloned().collect()
    };
    // Median milliseconds of `f` (evaluated) over 9 runs after one warm-up.
    let time = |f: &dyn Fn() -> Vec<Array>| -> f64 {
        let mut ms: Vec<f64> = (0..10)
            .map(|_| {
                let t = Instant::now();
                mlx_rs::eval(&f()).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .skip(1)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    };
    println!("| batch | join + next KV write ms | leave + next KV write ms | one pass over the states ms |");
    println!("|---:|---:|---:|---:|");
    for b in [4, 16, 32] {
        let (batch, one) = (cache(b - 1, 200), cache(1, 100));
        let join = time(&|| step(Cache::merge(&[batch.clone(), one.clone()]).unwrap()));
        let merged = Cache::merge(&[batch.clone(), one.clone()]).unwrap();
        mlx_rs::eval(&merged.arrays()).unwrap();
        // A row of the longest length leaves (the newcomer keeps its padding).
        let keep: Vec<i32> = (1..b).collect();
        let leave = time(&|| step(merged.filter(&keep).unwrap()));
        let pass = time(&|| {
            let one = Array::scalar(1f32);
            let states = merged.layers.iter().filter_map(|l| match l {
                LayerCache::Recurrent(c) => c.recurrent.as_ref(),
                LayerCache::Attention(_) => None,
            });
            states.map(|s| s.multiply(&one).unwrap()).collect()
        });
        println!("| {b} | {join:.2} | {leave:.2} | {pass:.2} |");
    }
}

/// `capacity_after` says what `update_buffers` makes (growth from empty, within the room,
/// across a step from a full and from a partly used step, after a merge and a filter),
/// and `step_meta` is `[n, cap, n - 1, paddings]` for the next token; a kept meta that no
/// longer describes the cache (another length, capacity or padding) is not used.
#[test]
fn kv_cache_capacity_after_and_step_meta() {
    use mlx_lm::kernels::attention::StepMeta;
    cpu(|| {
        let meta = |c: &KvCache, b: i32| -> Vec<i32> {
            c.step_meta(b).unwrap().array().to_vec::<i32>().unwrap()
        };
        let mut c = KvCache::default();
        assert_eq!(c.capacity_after(1), 256);
        assert_eq!(meta(&c, 1), [1, 256, 0, 0]);
        for l in [250, 6, 1, 300, 1, 211, 300] {
            let want = c.capacity_after(l);
            let x = seq(0.0, &[1, 2, l, 4]);
            let (k, _) = c.update_buffers(&x, &x).unwrap();
            assert_eq!(k.shape()[2], want, "after {} columns", c.offset());
        }
        let (n, cap) = (c.offset() + 1, c.capacity_after(1));
        assert_eq!(meta(&c, 1), [n, cap, n - 1, 0]);
        // A kept meta for another length is not used; one that fits is.
        c.keep_step_meta(StepMeta::new(n - 1, cap, 1, &[]).unwrap());
        assert_eq!(meta(&c, 1), [n, cap, n - 1, 0]);
        c.keep_step_meta(StepMeta::new(n, cap, 1, &[]).unwrap());
        assert_eq!(meta(&c, 1), [n, cap, n - 1, 0]);
        // A batch of rows 30 and 20 long: padding 0 and 10, capacity 256.
        let row = |len: i32| {
            let mut kv = KvCache::default();
            let x = seq(0.0, &[1, 2, len, 4]);
            kv.update_buffers(&x, &x).unwrap();
            Cache::new(vec![LayerCache::Attention(kv)])
        };
        let merged = Cache::merge(&[row(30), row(20)]).unwrap();
        let LayerCache::Attention(kv) = &merged.layers[0] else {
            panic!("an attention layer")
        };
        assert_eq!(meta(kv, 2), [31, 256, 30, 0, 10]);
        let mut kv = kv.clone();
        kv.keep_step_meta(StepMeta::new(31, 256, 2, &[]).unwrap());
        assert_eq!(
            meta(&kv, 2),
            [31, 256, 30, 0, 10],
            "a kept meta without the padding"
        );
        let x = seq(0.0, &[2, 2, 226, 4]);
        let want = kv.capacity_after(226);
        let (k, _) = kv.update_buffers(&x, &x).unwrap();
        assert_eq!((k.shape()[2], want), (256, 256));
        let want = kv.capacity_after(1);
        let x = seq(0.0, &[2, 2, 1, 4]);
        let (k, _) = kv.update_buffers(&x, &x).unwrap();
        assert_eq!((k.shape()[2], want), (512, 512));
        let left = merged.filter(&[1]).unwrap();
        let LayerCache::Attention(kv) = &left.layers[0] else {
            panic!("an attention layer")
        };
        assert_eq!(meta(kv, 1), [21, kv.capacity_after(1), 20, 0]);
        assert!(StepMeta::new(31, 256, 2, &[0, 10]).unwrap().left_padding() == [0, 10]);
    })
}
