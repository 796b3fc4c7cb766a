//! The caches: growth of the KV buffers, snapshot and restore, and taking a batch apart
//! and putting it together.

use crate::common::cpu;
use mlx_lm::cache::{Cache, KvCache, LayerCache, RecurrentCache};
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
fn caches_of_different_lengths_or_kinds_do_not_merge() {
    cpu(|| {
        let err = Cache::merge(&[filled(1, 5, 0.0), filled(1, 6, 0.0)]).unwrap_err();
        assert!(err.to_string().contains("different lengths"), "{err}");
        let mut swapped = filled(1, 5, 0.0);
        swapped.layers.reverse();
        let err = Cache::merge(&[filled(1, 5, 0.0), swapped]).unwrap_err();
        assert!(err.to_string().contains("cannot be merged"), "{err}");
        assert!(Cache::merge(&[]).is_err());
    })
}
