//! Tensor parallelism: each rank of a [`Group`] keeps a slice of a layer's weights, as
//! `mlx.nn.layers.distributed.shard_linear` does in Python.
//!
//! A linear layer is split one of two ways ([`Split`]):
//!
//! - [`Split::AllToSharded`] (Python's `"all-to-sharded"`): every rank has the whole input
//!   and computes its slice of the outputs (rows of the weight). Query, key and value
//!   projections (a rank's share of the heads), an MLP's gate and up projections.
//! - [`Split::ShardedToAll`] (`"sharded-to-all"`): every rank has its slice of the input
//!   and computes a partial sum of every output (columns of the weight); the model adds
//!   the partial sums with [`all_sum`](mlx_rs::distributed::all_sum). Output and down
//!   projections.
//!
//! Quantized layers are split the same way: their packed weight, scales and biases along
//! the same axis (a rank's input slice must be whole quantization groups).
//!
//! The slices are evaluated and contiguous, so the whole weights they came from can be
//! freed.

use crate::{Error, Result};
use mlx_rs::distributed::Group;
use mlx_rs::nn::{Linear, MaybeQuantized};
use mlx_rs::{ops, Array};

/// This process's share of a split: rank `rank` of `size` equal parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The part this process keeps, from 0 to `size - 1`.
    pub rank: i32,
    /// The number of parts.
    pub size: i32,
}

impl Part {
    /// The share of `group`'s process.
    pub fn of(group: &Group) -> Part {
        Part {
            rank: group.rank(),
            size: group.size(),
        }
    }

    /// `n / size`, or an error naming `what` when `size` does not divide `n`.
    pub fn divide(self, n: i32, what: &str) -> Result<i32> {
        if self.size <= 0 || n % self.size != 0 {
            return Err(Error::InvalidArgument(format!(
                "cannot shard {what} ({n}) across {} processes: not divisible",
                self.size
            )));
        }
        Ok(n / self.size)
    }

    /// This rank's slice of `a` along `axis` (contiguous, evaluated). Error, naming `what`,
    /// when the axis does not split evenly.
    pub fn slice(self, a: &Array, axis: i32, what: &str) -> Result<Array> {
        self.slice_segments(a, axis, &[], what)
    }

    /// This rank's slice of each segment of `a` along `axis`, joined: the segments start at
    /// 0 and at each of `bounds` (increasing offsets along the axis). For a projection that
    /// computes several things at once (queries, keys and values), so that each rank keeps
    /// its share of each.
    pub fn slice_segments(self, a: &Array, axis: i32, bounds: &[i32], what: &str) -> Result<Array> {
        let ndim = a.ndim() as i32;
        let ax = if axis < 0 { axis + ndim } else { axis };
        if ax < 0 || ax >= ndim {
            return Err(Error::InvalidArgument(format!(
                "cannot shard {what}: axis {axis} of a {ndim}-d array"
            )));
        }
        let len = a.shape()[ax as usize];
        let mut starts = vec![0];
        starts.extend_from_slice(bounds);
        let mut parts = Vec::with_capacity(starts.len());
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(len);
            if end < start || end > len {
                return Err(Error::InvalidArgument(format!(
                    "cannot shard {what}: segment bounds {bounds:?} outside its {len} entries"
                )));
            }
            if self.size <= 0 || (end - start) % self.size != 0 {
                return Err(Error::InvalidArgument(format!(
                    "cannot shard {what} across {} processes: {} entries of axis {axis} \
                     (shape {:?}{}) do not split evenly",
                    self.size,
                    end - start,
                    a.shape(),
                    match bounds {
                        [] => String::new(),
                        b => format!(", segments at {b:?}"),
                    }
                )));
            }
            let n = (end - start) / self.size;
            let from = start + self.rank * n;
            let mut lo = vec![0; ndim as usize];
            let mut hi = a.shape().to_vec();
            lo[ax as usize] = from;
            hi[ax as usize] = from + n;
            let strides = vec![1; ndim as usize];
            parts.push(ops::slice(a, &lo, &hi, &strides)?);
        }
        let joined = match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => ops::concatenate_axis(&parts, ax)?,
        };
        let out = ops::contiguous(&joined, false)?;
        out.eval()?;
        Ok(out)
    }
}

/// How a linear layer is split; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Each rank computes a slice of the outputs (the weight's rows).
    AllToSharded,
    /// Each rank computes a partial sum from a slice of the inputs (the weight's columns);
    /// the caller all-sums the outputs.
    ShardedToAll,
}

/// Keeps this rank's part of `layer` (dense or quantized), split as `split`; `what` names
/// the layer in errors. With [`Split::ShardedToAll`] a float bias stays on rank 0 (zeros on
/// the others), so that the all-sum adds it once.
pub fn shard_linear(
    layer: &mut MaybeQuantized<Linear>,
    split: Split,
    part: Part,
    what: &str,
) -> Result<()> {
    shard_linear_segments(layer, split, &[], part, what)
}

/// Keeps this rank's share of a gated MLP's hidden units: `gate` and `up` split by their
/// outputs, `down` by its inputs (the caller all-sums `down`'s output). `path` names the
/// block in errors (`{path}.gate_proj` …).
pub fn shard_mlp(
    gate: &mut MaybeQuantized<Linear>,
    up: &mut MaybeQuantized<Linear>,
    down: &mut MaybeQuantized<Linear>,
    part: Part,
    path: &str,
) -> Result<()> {
    let what = |n: &str| format!("{path}.{n}");
    shard_linear(gate, Split::AllToSharded, part, &what("gate_proj"))?;
    shard_linear(up, Split::AllToSharded, part, &what("up_proj"))?;
    shard_linear(down, Split::ShardedToAll, part, &what("down_proj"))
}

/// [`shard_linear`] of a joined projection: with [`Split::AllToSharded`], each rank keeps
/// its share of each segment of the outputs (segments starting at 0 and at each of
/// `bounds`), as Python's `segments` argument. Only [`Split::AllToSharded`] takes bounds.
pub fn shard_linear_segments(
    layer: &mut MaybeQuantized<Linear>,
    split: Split,
    bounds: &[i32],
    part: Part,
    what: &str,
) -> Result<()> {
    if split == Split::ShardedToAll && !bounds.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "cannot shard {what}: segments are for the outputs of an all-to-sharded split"
        )));
    }
    let axis = match split {
        Split::AllToSharded => 0,
        Split::ShardedToAll => -1,
    };
    let bias = |b: &Array| -> Result<Array> {
        match split {
            Split::AllToSharded => part.slice_segments(b, 0, bounds, what),
            Split::ShardedToAll if part.rank == 0 => Ok(b.clone()),
            Split::ShardedToAll => Ok(ops::zeros_like(b)?),
        }
    };
    match layer {
        MaybeQuantized::Dense(l) => {
            let w = part.slice_segments(l.weight.value(), axis, bounds, what)?;
            l.weight.set(w);
            if let Some(b) = &mut l.bias {
                let v = bias(b.value())?;
                b.set(v);
            }
        }
        MaybeQuantized::Quantized(q) => {
            // Row segment bounds are the same in the packed weight, the scales and the
            // biases; column slices must be whole groups (checked through the scales).
            let w = part.slice_segments(q.weight.value(), axis, bounds, what)?;
            let s = part.slice_segments(q.scales.value(), axis, bounds, what)?;
            q.weight.set(w);
            q.scales.set(s);
            if let Some(b) = &mut q.biases {
                let v = part.slice_segments(b.value(), axis, bounds, what)?;
                b.set(v);
            }
            if let Some(b) = &mut q.bias {
                let v = bias(b.value())?;
                b.set(v);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::nn::Param;

    fn arange(n: i32, shape: &[i32]) -> Array {
        let v: Vec<f32> = (0..n).map(|x| x as f32).collect();
        Array::from_slice(&v, shape).unwrap()
    }

    #[test]
    fn slices_and_segments() {
        let a = arange(12, &[6, 2]);
        let p = Part { rank: 1, size: 2 };
        let s = p.slice(&a, 0, "a").unwrap();
        assert_eq!(s.to_vec::<f32>().unwrap(), [6., 7., 8., 9., 10., 11.]);
        let s = p.slice(&a, 1, "a").unwrap();
        assert_eq!(s.to_vec::<f32>().unwrap(), [1., 3., 5., 7., 9., 11.]);
        // Segments [0, 2) and [2, 6): rank 1 keeps row 1 and rows 4..6.
        let s = p.slice_segments(&a, 0, &[2], "a").unwrap();
        assert_eq!(s.to_vec::<f32>().unwrap(), [2., 3., 8., 9., 10., 11.]);
        let err = Part { rank: 0, size: 4 }
            .slice(&a, 0, "the rows")
            .unwrap_err();
        let want = "the rows across 4 processes: 6 entries of axis 0 (shape [6, 2])";
        assert!(err.to_string().contains(want), "{err}");
        let err = Part { rank: 0, size: 4 }
            .divide(6, "the heads")
            .unwrap_err();
        assert!(err.to_string().contains("the heads (6) across 4"), "{err}");
    }

    #[test]
    fn split_linear_sums_to_the_whole() {
        let w = arange(24, &[4, 6]);
        let x = arange(6, &[1, 6]);
        let whole = x
            .matmul(&w.transpose_axes(&[1, 0]).unwrap())
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let mut sum = vec![0f32; 4];
        let mut rows = Vec::new();
        for rank in 0..2 {
            let part = Part { rank, size: 2 };
            let mut l: MaybeQuantized<Linear> = Linear {
                weight: Param::new(w.clone()),
                bias: None,
            }
            .into();
            shard_linear(&mut l, Split::ShardedToAll, part, "l").unwrap();
            let MaybeQuantized::Dense(l) = &l else {
                unreachable!()
            };
            let xs = part.slice(&x, -1, "x").unwrap();
            let y = xs
                .matmul(&l.weight.value().transpose_axes(&[1, 0]).unwrap())
                .unwrap();
            for (s, v) in sum.iter_mut().zip(y.to_vec::<f32>().unwrap()) {
                *s += v;
            }
            let mut l: MaybeQuantized<Linear> = Linear {
                weight: Param::new(w.clone()),
                bias: None,
            }
            .into();
            shard_linear(&mut l, Split::AllToSharded, part, "l").unwrap();
            let MaybeQuantized::Dense(l) = &l else {
                unreachable!()
            };
            rows.extend(
                x.matmul(&l.weight.value().transpose_axes(&[1, 0]).unwrap())
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
        assert_eq!(sum, whole);
        assert_eq!(rows, whole);
    }
}
