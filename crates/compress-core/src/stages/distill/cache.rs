//! The teacher's top-k logits of every training window, computed once and kept on disk, so a
//! large teacher runs a single pass however many students (or epochs) learn from it.
//!
//! File layout (one safetensors file):
//!
//! | tensor    | dtype | shape                   | holds                                   |
//! |-----------|-------|-------------------------|-----------------------------------------|
//! | `indices` | I32   | `[windows, seq_len, k]` | vocabulary ids of the k largest logits  |
//! | `logits`  | F16   | `[windows, seq_len, k]` | those logits (raw, before temperature)  |
//!
//! `__metadata__` holds `format: compress-teacher-topk`, `k`, `seq_len`, `vocab_size`, `windows`
//! and `digest` (FNV-1a over every window's tokens); a cache whose settings or digest differ from
//! the run's is an error naming the value, never silently reused.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use compress_format::safetensors::{write_safetensors, Dtype, SafetensorsFile, TensorOut};
use half::f16;

use crate::error::{CoreError, Result};
use crate::model::{batch_tensor, LlamaModel};
use crate::tensor_util::to_vec_f32;

const FORMAT: &str = "compress-teacher-topk";

/// Top-k teacher logits for each position of each training window.
#[derive(Clone, Debug)]
pub struct TopKCache {
    /// Logits kept per position.
    pub k: usize,
    /// Positions per window (the training `seq_len`).
    pub seq_len: usize,
    /// The teacher's vocabulary size.
    pub vocab_size: usize,
    indices: Vec<i32>,
    logits: Vec<f16>,
    digest: u64,
}

/// FNV-1a over the windows' tokens (and their count), identifying the data a cache was built on.
pub fn windows_digest(windows: &[Vec<u32>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(windows.len() as u64);
    for w in windows {
        eat(w.len() as u64);
        w.iter().for_each(|&t| eat(u64::from(t)));
    }
    h
}

/// Indices of the `k` largest values of `row`, largest first (ties: lower index first).
fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let by = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by);
        idx.truncate(k);
    }
    idx.sort_by(by);
    idx
}

impl TopKCache {
    /// Runs `teacher` over `windows` (each `seq_len + 1` tokens; the inputs are the first
    /// `seq_len`) in batches of `batch_size`, keeping the `k` largest logits per position.
    pub fn build(
        teacher: &LlamaModel,
        windows: &[Vec<u32>],
        seq_len: usize,
        k: usize,
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let vocab = teacher.config.vocab_size;
        if k == 0 || k > vocab {
            return Err(CoreError::Invalid(format!(
                "--top-k {k}: must be in 1..={vocab} (the teacher's vocabulary)"
            )));
        }
        let device = teacher.embed_tokens.weight.val().device();
        let mut indices = Vec::with_capacity(windows.len() * seq_len * k);
        let mut logits = Vec::with_capacity(windows.len() * seq_len * k);
        for rows in windows.chunks(batch_size.max(1)) {
            let inputs: Vec<Vec<u32>> = rows.iter().map(|w| w[..seq_len].to_vec()).collect();
            let out = to_vec_f32(teacher.forward(batch_tensor(&inputs, &device)));
            for row in out.chunks(vocab) {
                for i in top_k(row, k) {
                    indices.push(i as i32);
                    logits.push(f16::from_f32(row[i]));
                }
            }
            on_batch(rows.len());
        }
        Ok(Self {
            k,
            seq_len,
            vocab_size: vocab,
            indices,
            logits,
            digest: windows_digest(windows),
        })
    }

    /// Number of windows covered.
    pub fn windows(&self) -> usize {
        self.indices.len() / (self.seq_len * self.k).max(1)
    }

    /// Writes the cache to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let shape = vec![self.windows(), self.seq_len, self.k];
        let ids: Vec<u8> = self.indices.iter().flat_map(|v| v.to_le_bytes()).collect();
        let vals: Vec<u8> = self
            .logits
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        let tensors = [
            TensorOut::new("indices", Dtype::I32, shape.clone(), ids)?,
            TensorOut::new("logits", Dtype::F16, shape, vals)?,
        ];
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("k", self.k.to_string()),
            ("seq_len", self.seq_len.to_string()),
            ("vocab_size", self.vocab_size.to_string()),
            ("windows", self.windows().to_string()),
            ("digest", format!("{:016x}", self.digest)),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b))
        .collect();
        Ok(write_safetensors(path, &tensors, Some(meta))?)
    }

    /// Reads a cache written by [`Self::save`], checking it was built with `k` logits per
    /// position on exactly `windows` of `seq_len` inputs by a teacher of `vocab_size`.
    pub fn load(
        path: &Path,
        windows: &[Vec<u32>],
        seq_len: usize,
        k: usize,
        vocab_size: usize,
    ) -> Result<Self> {
        let file = SafetensorsFile::open(path)?;
        let bad = |msg: String| CoreError::Data {
            path: path.to_path_buf(),
            msg,
        };
        let meta = file.metadata().cloned().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key).cloned().ok_or_else(|| {
                bad(format!(
                    "metadata `{key}` missing (not a teacher top-k cache)"
                ))
            })
        };
        if get("format")? != FORMAT {
            return Err(bad(format!("metadata `format` is not {FORMAT}")));
        }
        let digest = format!("{:016x}", windows_digest(windows));
        for (key, want) in [
            ("k", k.to_string()),
            ("seq_len", seq_len.to_string()),
            ("vocab_size", vocab_size.to_string()),
            ("windows", windows.len().to_string()),
            ("digest", digest),
        ] {
            let have = get(key)?;
            if have != want {
                return Err(bad(format!(
                    "built with {key} = {have}, this run has {want}; delete it or pass another --teacher-cache"
                )));
            }
        }
        let shape = [windows.len(), seq_len, k];
        let read = |name: &str, dtype: Dtype| {
            let t = file.tensor(name)?;
            if t.dtype != dtype || t.shape != shape {
                return Err(bad(format!(
                    "tensor `{name}`: {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype, t.shape
                )));
            }
            Ok(t.data.to_vec())
        };
        let ids = read("indices", Dtype::I32)?;
        let vals = read("logits", Dtype::F16)?;
        let indices: Vec<i32> = ids
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = indices.iter().find(|&&i| i < 0 || i as usize >= vocab_size) {
            return Err(bad(format!(
                "index {i} outside the vocabulary of {vocab_size}"
            )));
        }
        let logits = vals
            .chunks_exact(2)
            .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        Ok(Self {
            k,
            seq_len,
            vocab_size,
            indices,
            logits,
            digest: windows_digest(windows),
        })
    }

    /// The cached `(indices [b, seq, k], logits [b, seq, k])` of windows `rows`, on `device`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> (Tensor<3, Int>, Tensor<3>) {
        let per = self.seq_len * self.k;
        let mut ids = Vec::with_capacity(rows.len() * per);
        let mut vals = Vec::with_capacity(rows.len() * per);
        for &r in rows {
            ids.extend(
                self.indices[r * per..(r + 1) * per]
                    .iter()
                    .map(|&i| i64::from(i)),
            );
            vals.extend(
                self.logits[r * per..(r + 1) * per]
                    .iter()
                    .map(|v| v.to_f32()),
            );
        }
        let shape = [rows.len(), self.seq_len, self.k];
        (
            Tensor::from_data(TensorData::new(ids, shape), device),
            Tensor::from_data(TensorData::new(vals, shape), device),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_picks_the_largest_first() {
        let row = [0.5, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k(&row, 3), vec![1, 3, 4]);
        assert_eq!(top_k(&row, 5), vec![1, 3, 4, 0, 2]);
    }
}
