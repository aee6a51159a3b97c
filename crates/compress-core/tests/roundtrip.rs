//! Load → save → load is bit-exact for f32, f16 and bf16, single-file and sharded.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::fixture;
use compress_core::model::hf::{save_model, SaveOptions};
use compress_core::model::load_model;
use compress_format::safetensors::{Dtype, ModelFiles};

fn assert_same_tensors(a: &Path, b: &Path) {
    let fa = ModelFiles::open_dir(a).unwrap();
    let fb = ModelFiles::open_dir(b).unwrap();
    assert_eq!(fa.names(), fb.names());
    for name in fa.names() {
        let (ta, tb) = (fa.tensor(name).unwrap(), fb.tensor(name).unwrap());
        assert_eq!(ta.dtype, tb.dtype, "{name}");
        assert_eq!(ta.shape, tb.shape, "{name}");
        assert!(ta.data == tb.data, "{name}: bytes differ");
    }
}

fn save(src: &Path, out: &Path, dtype: Dtype, shard: Option<usize>) {
    let device = Device::flex();
    let loaded = load_model(src, &device).unwrap();
    let opts = SaveOptions {
        dtype,
        max_shard_bytes: shard,
        tokenizer_from: None,
    };
    save_model(&loaded.model, &loaded.hf_config, out, &opts).unwrap();
}

#[test]
fn f32_single_file_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("llama3_gqa_untied");
    save(&src, &tmp.path().join("a"), Dtype::F32, None);
    assert_same_tensors(&src, &tmp.path().join("a"));
    let loaded = load_model(&tmp.path().join("a"), &Device::flex()).unwrap();
    assert_eq!(loaded.dtype, Dtype::F32);
}

#[test]
fn half_dtypes_round_trip_bit_exact() {
    for dtype in [Dtype::F16, Dtype::BF16] {
        let tmp = tempfile::tempdir().unwrap();
        let src = fixture("qwen2_bias_tied");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        save(&src, &a, dtype, None);
        let loaded = load_model(&a, &Device::flex()).unwrap();
        assert_eq!(loaded.dtype, dtype, "the saved dtype is kept on load");
        save(&a, &b, loaded.dtype, None);
        assert_same_tensors(&a, &b);
    }
}

#[test]
fn sharded_round_trip_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("mistral_headdim");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    save(&src, &a, Dtype::BF16, Some(40_000));
    let files = ModelFiles::open_dir(&a).unwrap();
    assert!(
        files.is_sharded() && files.num_shards() > 1,
        "{} shards",
        files.num_shards()
    );
    save(&a, &b, Dtype::BF16, Some(40_000));
    assert_same_tensors(&a, &b);
    save(&a, &c, Dtype::BF16, None);
    assert!(!ModelFiles::open_dir(&c).unwrap().is_sharded());
    assert_same_tensors(&a, &c);
}
