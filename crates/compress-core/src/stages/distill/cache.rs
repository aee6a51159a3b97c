//! The teacher's top-k logits of every training window, computed once and kept on disk, so a
//! large teacher runs a single pass however many students (or epochs) learn from it.
//!
//! File layout (one safetensors file):
//!
//! | tensor    | dtype | shape                   | holds                                   |
//! |-----------|-------|-------------------------|-----------------------------------------|
//! | `indices` | I32   | `[windows, seq_len, k]` | vocabulary ids of the k largest logits  |
//! | `logits`  | F32   | `[windows, seq_len, k]` | those logits (raw, before temperature)  |
//! | `lse`     | F32   | `[windows, seq_len]`    | `logsumexp(z / T)` over the whole vocab |
//!
//! `lse` lets the loss use the teacher's exact probabilities of the top k and of the rest of the
//! vocabulary as one bucket (see [`super::loss::DistillLoss::forward_topk`]).
//! `__metadata__` holds `format: compress-teacher-topk`, `k`, `temperature`, `seq_len`,
//! `vocab_size`, `windows` and `digest` (FNV-1a over every window's tokens); a cache whose
//! settings or digest differ from the run's is an error naming the value, never silently reused.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use compress_format::safetensors::{write_safetensors, Dtype, SafetensorsFile, TensorOut};

use crate::error::{CoreError, Result};
use crate::model::{batch_tensor, LlamaModel};
use crate::tensor_util::{to_vec_f32, top_k_indices};
pub use crate::train::kd::TopK;
use crate::train::kd::TopKSource;

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
    /// The temperature `lse` was taken at.
    pub temperature: f64,
    indices: Vec<i32>,
    logits: Vec<f32>,
    lse: Vec<f32>,
    digest: u64,
}

/// FNV-1a over the windows' tokens (and their count), identifying the data a cache was built on.
pub fn windows_digest(windows: &[Vec<u32>]) -> u64 {
    let mut h = crate::digest::Fnv64::new();
    h.u64(windows.len() as u64);
    for w in windows {
        h.u64(w.len() as u64);
        w.iter().for_each(|&t| {
            h.u64(u64::from(t));
        });
    }
    h.finish()
}

impl TopKCache {
    /// Runs `teacher` over `windows` (each `seq_len + 1` tokens; the inputs are the first
    /// `seq_len`) in batches of `batch_size`, keeping the `k` largest logits per position and
    /// the log-normaliser at `temperature`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        teacher: &LlamaModel,
        windows: &[Vec<u32>],
        seq_len: usize,
        k: usize,
        temperature: f64,
        batch_size: usize,
        on_batch: &mut dyn FnMut(usize),
    ) -> Result<Self> {
        let vocab = teacher.config.vocab_size;
        if k == 0 || k > vocab {
            let msg = format!("must be in 1..={vocab} (the teacher's vocabulary)");
            return Err(CoreError::setting("top_k", k, msg));
        }
        let device = teacher.embed_tokens.weight.val().device();
        let mut indices = Vec::with_capacity(windows.len() * seq_len * k);
        let mut logits = Vec::with_capacity(windows.len() * seq_len * k);
        let mut lse = Vec::with_capacity(windows.len() * seq_len);
        for rows in windows.chunks(batch_size.max(1)) {
            let inputs: Vec<Vec<u32>> = rows.iter().map(|w| w[..seq_len].to_vec()).collect();
            let out = to_vec_f32(teacher.forward(batch_tensor(&inputs, &device)));
            for row in out.chunks(vocab) {
                let top = top_k_indices(row, k);
                let max = f64::from(row[top[0]]) / temperature;
                let sum: f64 = row
                    .iter()
                    .map(|&z| (f64::from(z) / temperature - max).exp())
                    .sum();
                lse.push((max + sum.ln()) as f32);
                for i in top {
                    indices.push(i as i32);
                    logits.push(row[i]);
                }
            }
            on_batch(rows.len());
        }
        Ok(Self {
            k,
            seq_len,
            vocab_size: vocab,
            temperature,
            indices,
            logits,
            lse,
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
        let tensors = [
            TensorOut::new("indices", Dtype::I32, shape.clone(), ids)?,
            TensorOut::from_f32("logits", shape.clone(), &self.logits, Dtype::F32)?,
            TensorOut::from_f32("lse", &shape[..2], &self.lse, Dtype::F32)?,
        ];
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("k", self.k.to_string()),
            ("temperature", self.temperature.to_string()),
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
    /// position at `temperature` on exactly `windows` of `seq_len` inputs by a teacher of
    /// `vocab_size`.
    pub fn load(
        path: &Path,
        windows: &[Vec<u32>],
        seq_len: usize,
        k: usize,
        temperature: f64,
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
            ("temperature", temperature.to_string()),
            ("seq_len", seq_len.to_string()),
            ("vocab_size", vocab_size.to_string()),
            ("windows", windows.len().to_string()),
            ("digest", digest),
        ] {
            let have = get(key)?;
            if have != want {
                return Err(bad(format!(
                    "built with {key} = {have}, this run has {want}; delete it or give another `teacher_cache`"
                )));
            }
        }
        let shape = [windows.len(), seq_len, k];
        let read = |name: &str, dtype: Dtype, shape: &[usize]| {
            let t = file.tensor(name)?;
            if t.dtype != dtype || t.shape != shape {
                return Err(bad(format!(
                    "tensor `{name}`: {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype, t.shape
                )));
            }
            Ok(t.data.to_vec())
        };
        let ids = read("indices", Dtype::I32, &shape)?;
        let f32s = |b: Vec<u8>| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let logits = f32s(read("logits", Dtype::F32, &shape)?);
        let lse = f32s(read("lse", Dtype::F32, &shape[..2])?);
        let indices: Vec<i32> = ids
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = indices.iter().find(|&&i| i < 0 || i as usize >= vocab_size) {
            return Err(bad(format!(
                "index {i} outside the vocabulary of {vocab_size}"
            )));
        }
        Ok(Self {
            k,
            seq_len,
            vocab_size,
            temperature,
            indices,
            logits,
            lse,
            digest: windows_digest(windows),
        })
    }

    /// The cached teacher of windows `rows` on `device`.
    pub fn batch(&self, rows: &[usize], device: &Device) -> TopK {
        let (per, s) = (self.seq_len * self.k, self.seq_len);
        let mut ids = Vec::with_capacity(rows.len() * per);
        let mut vals = Vec::with_capacity(rows.len() * per);
        let mut lse = Vec::with_capacity(rows.len() * s);
        for &r in rows {
            let span = r * per..(r + 1) * per;
            ids.extend(self.indices[span.clone()].iter().map(|&i| i64::from(i)));
            vals.extend_from_slice(&self.logits[span]);
            lse.extend_from_slice(&self.lse[r * s..(r + 1) * s]);
        }
        let shape = [rows.len(), self.seq_len, self.k];
        TopK {
            ids: Tensor::from_data(TensorData::new(ids, shape), device),
            logits: Tensor::from_data(TensorData::new(vals, shape), device),
            lse: Tensor::from_data(TensorData::new(lse, [rows.len(), self.seq_len]), device),
        }
    }
}

impl TopKSource for TopKCache {
    fn batch(&self, rows: &[usize], device: &Device) -> TopK {
        TopKCache::batch(self, rows, device)
    }
}
