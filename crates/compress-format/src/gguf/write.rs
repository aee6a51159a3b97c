//! Streaming, atomic GGUF writer: the header first, then each tensor's bytes as a callback
//! produces them, so a model never has to be held in memory at once.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use super::value::{encode_str, Value};
use super::{align_up, GgmlType, DEFAULT_ALIGNMENT, MAGIC, VERSION};
use crate::atomic::write_atomic_with;
use crate::error::{FormatError, Result};

/// ggml's `GGML_MAX_NAME` (names must be shorter, leaving room for the terminator).
pub const MAX_NAME: usize = 64;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (`[in, out]` for a PyTorch `[out, in]` weight).
    pub ne: Vec<usize>,
    /// Storage type.
    pub ty: GgmlType,
}

impl TensorInfo {
    /// Bytes of the tensor's data (errors when `ne[0]` is not a multiple of the block length).
    pub fn nbytes(&self) -> Result<usize> {
        self.ty.tensor_bytes(&self.ne).ok_or_else(|| {
            FormatError::tensor(
                &self.name,
                format!(
                    "{} needs rows of a multiple of {} weights, but ne[0] = {}",
                    self.ty,
                    self.ty.block_len(),
                    self.ne.first().copied().unwrap_or(0)
                ),
            )
        })
    }

    /// Number of weights.
    pub fn numel(&self) -> usize {
        self.ne.iter().product()
    }
}

fn check(path: &Path, metadata: &[(String, Value)], tensors: &[TensorInfo]) -> Result<()> {
    let mut keys = HashSet::new();
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(FormatError::invalid(path, k, "metadata key given twice"));
        }
        v.check().map_err(|m| FormatError::invalid(path, k, m))?;
    }
    let mut names = HashSet::new();
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(FormatError::tensor(&t.name, "tensor name given twice"));
        }
        if t.name.len() >= MAX_NAME {
            return Err(FormatError::tensor(
                &t.name,
                format!(
                    "name is {} bytes; ggml allows at most {}",
                    t.name.len(),
                    MAX_NAME - 1
                ),
            ));
        }
        if t.ne.is_empty() || t.ne.len() > MAX_DIMS || t.ne.contains(&0) {
            return Err(FormatError::tensor(
                &t.name,
                format!("dims {:?}: need 1 to {MAX_DIMS} non-zero dims", t.ne),
            ));
        }
        t.nbytes()?;
    }
    Ok(())
}

/// Writes a GGUF v3 file at `path` atomically (temp file + rename).
///
/// `data(i)` must return exactly [`TensorInfo::nbytes`] bytes for `tensors[i]`; it is called
/// once per tensor, in order. Returns the file size in bytes.
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorInfo],
    mut data: impl FnMut(usize) -> Result<Vec<u8>>,
) -> Result<u64> {
    check(path, metadata, tensors)?;
    let mut header = Vec::new();
    header.extend(MAGIC.to_le_bytes());
    header.extend(VERSION.to_le_bytes());
    header.extend((tensors.len() as u64).to_le_bytes());
    header.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        encode_str(k, &mut header);
        header.extend(v.value_type().id().to_le_bytes());
        v.encode(&mut header);
    }
    let mut offset = 0usize;
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        encode_str(&t.name, &mut header);
        header.extend((t.ne.len() as u32).to_le_bytes());
        t.ne.iter()
            .for_each(|&d| header.extend((d as u64).to_le_bytes()));
        header.extend(t.ty.id().to_le_bytes());
        header.extend((offset as u64).to_le_bytes());
        let n = t.nbytes()?;
        sizes.push(n);
        offset = align_up(offset + n, DEFAULT_ALIGNMENT);
    }
    header.resize(align_up(header.len(), DEFAULT_ALIGNMENT), 0);
    let total = (header.len() + offset) as u64;
    write_atomic_with(path, |tmp| {
        let io = |e| FormatError::io(path, e);
        let file = std::fs::File::create(tmp).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(&header).map_err(io)?;
        for (i, (t, &n)) in tensors.iter().zip(&sizes).enumerate() {
            let bytes = data(i)?;
            if bytes.len() != n {
                return Err(FormatError::tensor(
                    &t.name,
                    format!("{} data is {} bytes, expected {n}", t.ty, bytes.len()),
                ));
            }
            w.write_all(&bytes).map_err(io)?;
            let pad = align_up(n, DEFAULT_ALIGNMENT) - n;
            w.write_all(&[0u8; DEFAULT_ALIGNMENT][..pad]).map_err(io)?;
        }
        w.flush().map_err(io)
    })?;
    Ok(total)
}
