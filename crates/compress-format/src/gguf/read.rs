//! Memory-mapped GGUF reader: metadata, tensor infos and tensor data, with every offset and
//! size checked against the file (a corrupt file is an error naming it, never a panic).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dequant::dequantize;
use super::value::{Cursor, Value, ValueType};
use super::{align_up, GgmlType, DEFAULT_ALIGNMENT, MAGIC};
use crate::error::{FormatError, Result};

/// One tensor as listed in a file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensor {
    /// Tensor name.
    pub name: String,
    /// Dimensions, innermost first.
    pub ne: Vec<usize>,
    /// Raw `ggml_type` number (see [`GgmlType::from_id`]).
    pub type_id: u32,
    /// Offset from the start of the data section.
    pub offset: usize,
}

impl GgufTensor {
    /// The storage type, if this crate knows it.
    pub fn ty(&self) -> Option<GgmlType> {
        GgmlType::from_id(self.type_id)
    }

    /// Number of weights ([`GgufFile::open`] checks that it fits `usize`).
    pub fn numel(&self) -> usize {
        self.ne.iter().product()
    }
}

/// An opened GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<GgufTensor>,
    index: HashMap<String, usize>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GgufFile({}, {} keys, {} tensors)",
            self.path.display(),
            self.metadata.len(),
            self.tensors.len()
        )
    }
}

fn corrupt(path: &Path, msg: impl Into<String>) -> FormatError {
    FormatError::Gguf {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl GgufFile {
    /// Opens and parses `path` (versions 2 and 3).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap reader we assume nobody truncates the
        // file while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let err = |m: String| corrupt(path, m);
        let mut c = Cursor { buf: &mmap, pos: 0 };
        let magic = c.u32("magic").map_err(err)?;
        if magic != MAGIC {
            return Err(corrupt(
                path,
                format!("not a GGUF file (magic {magic:#010x})"),
            ));
        }
        let version = c.u32("version").map_err(err)?;
        if !(2..=3).contains(&version) {
            return Err(corrupt(
                path,
                format!("GGUF version {version} is not supported (2 or 3)"),
            ));
        }
        // A tensor info is at least 32 bytes (name length, n_dims, one dim, type, offset) and
        // a metadata pair at least 13 (key length, type, a one-byte value). Counts are checked
        // against the bytes left, and the lists grow as entries are read: a claimed count
        // never sizes an allocation.
        let n_tensors = c.count(32, "tensor_count").map_err(err)?;
        let n_kv = c.count(13, "metadata_kv_count").map_err(err)?;
        let mut metadata = Vec::with_capacity(n_kv.min(256));
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key {i}")).map_err(err)?;
            let tag = c.u32(&key).map_err(err)?;
            let ty = ValueType::from_id(tag)
                .ok_or_else(|| corrupt(path, format!("`{key}`: unknown value type {tag}")))?;
            let v = c.value(ty, &key).map_err(err)?;
            metadata.push((key, v));
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(256));
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor {i} name")).map_err(err)?;
            let n_dims = c.u32(&name).map_err(err)? as usize;
            if n_dims == 0 || n_dims > super::write::MAX_DIMS {
                return Err(corrupt(path, format!("tensor `{name}`: {n_dims} dims")));
            }
            let ne = (0..n_dims)
                .map(|_| c.u64(&name).map(|d| d as usize))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(err)?;
            let type_id = c.u32(&name).map_err(err)?;
            let offset = c.u64(&name).map_err(err)? as usize;
            tensors.push(GgufTensor {
                name,
                ne,
                type_id,
                offset,
            });
        }
        let header_end = c.pos;
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => {
                    return Err(corrupt(
                        path,
                        format!("general.alignment = {v:?} is not a power of two"),
                    ))
                }
            },
        };
        let mut me = GgufFile {
            path: path.to_path_buf(),
            mmap,
            version,
            metadata,
            index: HashMap::new(),
            tensors,
            data_start: align_up(header_end, alignment),
        };
        for (i, t) in me.tensors.iter().enumerate() {
            if me.index.insert(t.name.clone(), i).is_some() {
                return Err(corrupt(path, format!("tensor `{}` listed twice", t.name)));
            }
            if t.offset % alignment != 0 {
                return Err(corrupt(
                    path,
                    format!(
                        "tensor `{}`: offset {} is not aligned to {alignment}",
                        t.name, t.offset
                    ),
                ));
            }
            if t.ne
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none()
            {
                return Err(corrupt(
                    path,
                    format!("tensor `{}`: dims {:?} overflow", t.name, t.ne),
                ));
            }
            if let Some(n) = t.ty().and_then(|ty| ty.tensor_bytes(&t.ne)) {
                let end = me
                    .data_start
                    .checked_add(t.offset)
                    .and_then(|s| s.checked_add(n));
                if end.is_none_or(|e| e > me.mmap.len()) {
                    return Err(corrupt(
                        path,
                        format!("tensor `{}`: data runs past the end of the file", t.name),
                    ));
                }
            }
        }
        Ok(me)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    /// One tensor's info.
    pub fn tensor(&self, name: &str) -> Result<&GgufTensor> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| FormatError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// A tensor's raw bytes (its type must be one of [`GgmlType`]).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        let ty = t.ty().ok_or_else(|| {
            FormatError::tensor(
                name,
                format!("ggml type {} is not supported here", t.type_id),
            )
        })?;
        let n = ty.tensor_bytes(&t.ne).ok_or_else(|| {
            FormatError::tensor(name, format!("ne {:?} does not fit {ty} blocks", t.ne))
        })?;
        let start = self.data_start + t.offset;
        Ok(&self.mmap[start..start + n])
    }

    /// A tensor's weights as f32 (dequantized from any [`GgmlType`]), innermost dimension
    /// fastest.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(name)?;
        let t = self.tensor(name)?;
        let ty = t.ty().expect("tensor_bytes checked the type");
        let mut out = Vec::with_capacity(t.numel());
        dequantize(ty, bytes, &mut out);
        Ok(out)
    }
}
