//! Helpers shared by compress-core's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use compress_format::safetensors::{Dtype, SafetensorsFile};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A committed fixture dir under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// Reads an I64 tensor as u32 ids.
pub fn read_ids(file: &SafetensorsFile, name: &str) -> Vec<u32> {
    let t = file.tensor(name).unwrap();
    assert_eq!(t.dtype, Dtype::I64, "{name}");
    t.data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

/// Largest absolute difference of two equal-length slices; infinite if either holds a NaN
/// (so a NaN can never pass a tolerance check).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}

/// A micro Llama (vocab 48, hidden 32, 2 layers, 4 query / 2 KV heads) for fast training tests.
pub fn micro_config() -> compress_core::model::LlamaConfig {
    let mut cfg = compress_core::model::LlamaConfig::preset("tiny").unwrap();
    cfg.vocab_size = 48;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 72;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 8;
    cfg
}

/// Documents with learnable structure for [`micro_config`]: counting sequences modulo 48.
pub fn counting_docs() -> Vec<Vec<u32>> {
    (0..12u32)
        .map(|d| (0..40u32).map(|i| (d * 3 + i * (1 + d % 3)) % 48).collect())
        .collect()
}
