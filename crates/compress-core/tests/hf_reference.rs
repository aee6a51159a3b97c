//! Logits and greedy generation of our burn model against HF transformers (fp32), from the
//! fixtures made once by tests/reference/make_fixtures.py.

mod common;

use burn::tensor::Device;
use common::{fixture, max_abs_diff, read_ids, repo_root};
use compress_core::generate::{generate, SamplingConfig};
use compress_core::model::{load_model, tokens_tensor};
use compress_core::tensor_util::to_vec_f32;
use compress_format::safetensors::SafetensorsFile;

/// Max abs logit difference allowed against transformers in fp32.
const LOGITS_TOL: f32 = 1e-4;

fn check_against_reference(model_dir: &std::path::Path, reference: &std::path::Path) {
    let device = Device::flex();
    let loaded = load_model(model_dir, &device).unwrap();
    let r = SafetensorsFile::open(reference).unwrap();
    let ids = read_ids(&r, "input_ids");
    let expected = r.tensor("logits").unwrap().to_f32().unwrap();
    let logits = to_vec_f32(loaded.model.forward(tokens_tensor(&ids, &device)));
    let diff = max_abs_diff(&logits, &expected);
    assert!(
        diff < LOGITS_TOL,
        "{}: max abs logit diff {diff} ≥ {LOGITS_TOL}",
        model_dir.display()
    );

    let prompt = read_ids(&r, "greedy_prompt");
    let want = read_ids(&r, "greedy_tokens");
    let got = generate(
        &loaded.model,
        &prompt,
        &SamplingConfig::greedy(want.len()),
        |_| {},
    )
    .unwrap();
    assert_eq!(got, want, "{}: greedy tokens differ", model_dir.display());
}

#[test]
fn qwen2_bias_tied_matches_transformers() {
    let dir = fixture("qwen2_bias_tied");
    check_against_reference(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn llama3_rope_scaling_gqa_untied_matches_transformers() {
    let dir = fixture("llama3_gqa_untied");
    check_against_reference(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn explicit_head_dim_matches_transformers() {
    let dir = fixture("mistral_headdim");
    check_against_reference(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn demo_model_matches_transformers() {
    let model = repo_root().join("examples/models/demo");
    let reference = fixture("demo_reference/reference.safetensors");
    check_against_reference(&model, &reference);
}
