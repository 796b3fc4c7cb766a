//! Checkpoints on disk: the safetensors files of a model folder, memory-mapped, every
//! tensor's dtype, shape and place known before any is read.
//!
//! A folder holds one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json` (each tensor must be where the index says), or any
//! number of `model*.safetensors`. Tensors are copied into MLX arrays one by one, on
//! demand ([`Checkpoint::array`]) or all at once ([`Checkpoint::load_all`], what
//! [`load`](crate::load) does).

use crate::error::{Error, Result};
use memmap2::Mmap;
use mlx_rs::nn::ParamMap;
use mlx_rs::{Array, Dtype};
use safetensors::tensor::{Dtype as StDtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// One tensor's place in a memory-mapped file.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<i32>,
    start: usize,
    end: usize,
}

/// The safetensors files of a checkpoint, memory-mapped, with every tensor's location.
pub struct Checkpoint {
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, Entry>,
    /// Tensors held in memory instead (see [`Checkpoint::from_arrays`]).
    arrays: BTreeMap<String, Array>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors.index.json` (sharded), else `dir/model.safetensors`,
    /// else every `dir/model*.safetensors`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Checkpoint> {
        let dir = dir.as_ref();
        let index = dir.join("model.safetensors.index.json");
        let (paths, weight_map) = if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: index.clone(),
                    source,
                })?;
            let map = value
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    Error::Weights(format!("{}: no \"weight_map\" object", index.display()))
                })?;
            let mut weight_map = BTreeMap::new();
            let mut files = BTreeSet::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    Error::Weights(format!(
                        "{}: weight_map[{name:?}] is not a file name",
                        index.display()
                    ))
                })?;
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    return Err(Error::Weights(format!(
                        "{}: weight_map[{name:?}] = {file:?} is not a file in the model folder",
                        index.display()
                    )));
                }
                files.insert(file.to_string());
                weight_map.insert(name.clone(), file.to_string());
            }
            (
                files.into_iter().map(|f| dir.join(f)).collect::<Vec<_>>(),
                Some(weight_map),
            )
        } else if dir.join("model.safetensors").is_file() {
            (vec![dir.join("model.safetensors")], None)
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("model") && n.ends_with(".safetensors"))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::Weights(format!(
                    "{}: no model.safetensors, model.safetensors.index.json or model*.safetensors",
                    dir.display()
                )));
            }
            (found, None)
        };

        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for path in paths {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the map is read-only; the checkpoint files are not expected to change
            // while a model loads (as with every mmap-based loader).
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
                Error::Weights(format!("{}: not a safetensors file: {e}", path.display()))
            })?;
            let base = 8 + header_len;
            let file_idx = files.len();
            for (name, info) in metadata.tensors() {
                let dtype = match info.dtype {
                    StDtype::BF16 => Dtype::Bfloat16,
                    StDtype::F16 => Dtype::Float16,
                    StDtype::F32 => Dtype::Float32,
                    StDtype::U32 => Dtype::Uint32,
                    StDtype::U8 => Dtype::Uint8,
                    StDtype::I32 => Dtype::Int32,
                    StDtype::I16 => Dtype::Int16,
                    StDtype::I8 => Dtype::Int8,
                    StDtype::U16 => Dtype::Uint16,
                    StDtype::U64 => Dtype::Uint64,
                    StDtype::I64 => Dtype::Int64,
                    StDtype::F64 => Dtype::Float64,
                    StDtype::BOOL => Dtype::Bool,
                    other => {
                        return Err(Error::Weights(format!(
                            "{name} (in {}): dtype {other:?} is not supported",
                            path.display()
                        )))
                    }
                };
                let shape = info
                    .shape
                    .iter()
                    .map(|&d| i32::try_from(d))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        Error::Weights(format!("{name}: shape {:?} is too large", info.shape))
                    })?;
                let entry = Entry {
                    file: file_idx,
                    dtype,
                    shape,
                    start: base + info.data_offsets.0,
                    end: base + info.data_offsets.1,
                };
                if let Some(old) = tensors.insert(name.clone(), entry) {
                    return Err(Error::Weights(format!(
                        "{name}: stored twice ({} and {})",
                        files
                            .get(old.file)
                            .map(|(p, _): &(PathBuf, Mmap)| p.display().to_string())
                            .unwrap_or_else(|| path.display().to_string()),
                        path.display()
                    )));
                }
                if let Some(map) = &weight_map {
                    let expected = map.get(&name).map(String::as_str);
                    let actual = path.file_name().and_then(|n| n.to_str());
                    if expected != actual {
                        return Err(Error::Weights(format!(
                            "{name}: found in {} but the index says {}",
                            path.display(),
                            expected.unwrap_or("nothing")
                        )));
                    }
                }
            }
            files.push((path, mmap));
        }
        if let Some(map) = &weight_map {
            if let Some((name, file)) = map.iter().find(|(n, _)| !tensors.contains_key(*n)) {
                return Err(Error::Weights(format!(
                    "{name}: the index places it in {file}, which does not hold it"
                )));
            }
        }
        Ok(Checkpoint {
            files,
            tensors,
            arrays: BTreeMap::new(),
        })
    }

    /// A checkpoint of arrays already in memory, by stored name (e.g. random weights for
    /// a benchmark), read as the files would be.
    pub fn from_arrays(arrays: BTreeMap<String, Array>) -> Checkpoint {
        let tensors = arrays
            .iter()
            .map(|(name, a)| {
                let entry = Entry {
                    file: usize::MAX,
                    dtype: a.dtype(),
                    shape: a.shape().to_vec(),
                    start: 0,
                    end: 0,
                };
                (name.clone(), entry)
            })
            .collect();
        Checkpoint {
            files: Vec::new(),
            tensors,
            arrays,
        }
    }

    /// Names of all stored tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Shape of a stored tensor.
    pub fn shape(&self, name: &str) -> Option<&[i32]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// Dtype of a stored tensor.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.tensors.get(name).map(|e| e.dtype)
    }

    /// Copies a stored tensor into an MLX array (with `shape`, which must hold the same
    /// number of elements as the stored one).
    pub fn array_with_shape(&self, name: &str, shape: &[i32]) -> Result<Array> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::Weights(format!("missing tensor {name}")))?;
        if let Some(a) = self.arrays.get(name) {
            return Ok(a.reshape(shape)?);
        }
        let bytes = self.files[e.file]
            .1
            .get(e.start..e.end)
            .ok_or_else(|| Error::Weights(format!("{name}: data lies outside its file")))?;
        Array::from_bytes(bytes, shape, e.dtype)
            .map_err(|err| Error::Weights(format!("{name}: {err}")))
    }

    /// Copies a stored tensor into an MLX array (shape as stored).
    pub fn array(&self, name: &str) -> Result<Array> {
        let shape = self
            .shape(name)
            .ok_or_else(|| Error::Weights(format!("missing tensor {name}")))?
            .to_vec();
        self.array_with_shape(name, &shape)
    }

    /// Copies every stored tensor into an MLX array, by stored name.
    pub fn load_all(&self) -> Result<ParamMap> {
        self.names()
            .map(|name| Ok((name.to_string(), self.array(name)?)))
            .collect()
    }
}
