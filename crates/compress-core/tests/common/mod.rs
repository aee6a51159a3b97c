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
