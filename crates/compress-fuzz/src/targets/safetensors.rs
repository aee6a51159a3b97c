//! `safetensors`: [`SafetensorsFile::open`] then every tensor's data decoded, and the same
//! file opened as a model dir ([`ModelFiles::open_dir`]).

use compress_format::safetensors::{
    write_safetensors, Dtype, ModelFiles, SafetensorsFile, TensorOut,
};

use rand::rngs::StdRng;
use rand::Rng;

use super::{default_mutate, read_repo, Kind, Scratch, Target, DEFAULT_FLOOR, TREE_FACTOR};
use crate::mutate::MAX_INPUT;
use crate::structured::{collect_keys, mutate_json};

/// The safetensors reader.
pub struct SafetensorsTarget {
    scratch: Scratch,
}

impl SafetensorsTarget {
    /// A target writing cases to `model.safetensors` in a scratch dir.
    pub fn new() -> Self {
        Self {
            scratch: Scratch::new(compress_format::safetensors::SINGLE_FILE),
        }
    }
}

impl Default for SafetensorsTarget {
    fn default() -> Self {
        Self::new()
    }
}

fn tensor(name: &str, dtype: Dtype, shape: &[usize]) -> TensorOut {
    let n: usize = shape.iter().product::<usize>() * dtype.size();
    TensorOut {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data: (0..n).map(|i| (i * 37 % 251) as u8).collect(),
    }
}

/// Small valid files of every dtype, written with the project's writer.
fn written_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("seed.safetensors");
    let sets: Vec<(Vec<TensorOut>, bool)> = vec![
        (vec![tensor("w", Dtype::F32, &[4, 3])], false),
        (
            vec![
                tensor(
                    "model.layers.0.self_attn.q_proj.weight",
                    Dtype::BF16,
                    &[8, 8],
                ),
                tensor("model.norm.weight", Dtype::F16, &[8]),
                tensor("lm_head.weight", Dtype::F64, &[2, 8]),
            ],
            true,
        ),
        (
            Dtype::ALL
                .iter()
                .enumerate()
                .map(|(i, &d)| tensor(&format!("t{i}"), d, &[2, i + 1]))
                .collect(),
            true,
        ),
        (
            vec![
                tensor("scalar", Dtype::F32, &[]),
                tensor("empty", Dtype::F32, &[0, 5]),
            ],
            false,
        ),
    ];
    sets.into_iter()
        .filter_map(|(ts, meta)| {
            let m = meta.then(|| [("format".to_string(), "pt".to_string())].into());
            write_safetensors(&p, &ts, m).ok()?;
            std::fs::read(&p).ok()
        })
        .collect()
}

/// The JSON header and the data section of a safetensors file, when its length prefix fits.
fn split_header(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u64::from_le_bytes(input.get(..8)?.try_into().ok()?);
    let end = usize::try_from(n).ok()?.checked_add(8)?;
    (end <= input.len()).then(|| (&input[8..end], &input[end..]))
}

impl Target for SafetensorsTarget {
    fn name(&self) -> &'static str {
        "safetensors"
    }

    fn kind(&self) -> Kind {
        Kind::Binary
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = written_seeds();
        for f in [
            "tests/fixtures/mistral_headdim/reference.safetensors",
            "tests/fixtures/qwen2_bias_tied/reference.safetensors",
        ] {
            seeds.extend(read_repo(f));
        }
        seeds
    }

    /// The header is JSON, parsed into a tree ([`TREE_FACTOR`] per byte); the data section
    /// is binary (2× per byte: BF16/F16 decode to f32).
    fn alloc_limit(&self, input: &[u8]) -> usize {
        let header = split_header(input).map_or(0, |(h, _)| h.len());
        (TREE_FACTOR * header + 2 * (input.len() - header)).max(DEFAULT_FLOOR)
    }

    fn keys(&self, seeds: &[Vec<u8>]) -> Vec<String> {
        let mut keys = Vec::new();
        for (h, _) in seeds.iter().filter_map(|s| split_header(s)) {
            if let Ok(v) = serde_json::from_slice(h) {
                collect_keys(&v, &mut keys);
            }
        }
        keys
    }

    /// Half the time the header at the value level (length prefix rewritten), else bytes.
    fn mutate(&self, rng: &mut StdRng, base: &[u8], pool: &[Vec<u8>], keys: &[String]) -> Vec<u8> {
        if rng.random_bool(0.5) {
            if let Some((h, data)) = split_header(base) {
                if let Some(h) = mutate_json(rng, h, keys) {
                    let mut out = (h.len() as u64).to_le_bytes().to_vec();
                    out.extend(h);
                    out.extend_from_slice(data);
                    out.truncate(MAX_INPUT);
                    return out;
                }
            }
        }
        default_mutate(Kind::Binary, rng, base, pool, keys)
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let path = self.scratch.write(input);
        let Ok(f) = SafetensorsFile::open(path) else {
            return false;
        };
        let _ = f.metadata().map(|m| m.len());
        for name in f.names() {
            if let Ok(t) = f.tensor(name) {
                let _ = (t.numel(), t.to_f32().map(|v| v.len()));
            }
        }
        drop(f);
        let Ok(files) = ModelFiles::open_dir(self.scratch.dir.path()) else {
            return false;
        };
        let _ = (files.dtype(), files.num_shards());
        files.names().iter().all(|n| files.tensor(n).is_ok())
    }
}
