//! The cached forward (prefill, then one token at a time) equals the full causal forward.

mod common;

use burn::tensor::Device;
use common::{fixture, max_abs_diff};
use compress_core::model::{load_model, tokens_tensor, KvCache};
use compress_core::tensor_util::to_vec_f32;

#[test]
fn cached_decoding_matches_full_forward() {
    let device = Device::flex();
    let model = load_model(&fixture("llama3_gqa_untied"), &device)
        .unwrap()
        .model;
    let ids: Vec<u32> = (0..12u32).map(|i| (i * 41 + 7) % 512).collect();
    let full = to_vec_f32(model.forward(tokens_tensor(&ids, &device)));
    let vocab = model.config.vocab_size;
    let mut cache = KvCache::new(model.num_layers());
    let mut got = to_vec_f32(model.forward_cached(tokens_tensor(&ids[..5], &device), &mut cache));
    for &t in &ids[5..] {
        got.extend(to_vec_f32(
            model.forward_cached(tokens_tensor(&[t], &device), &mut cache),
        ));
    }
    assert_eq!(cache.len(), ids.len());
    assert_eq!(got.len(), ids.len() * vocab);
    let diff = max_abs_diff(&full, &got);
    assert!(diff < 1e-4, "cached vs full: {diff}");
}
