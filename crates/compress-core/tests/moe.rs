//! MoEfication in core: with every expert chosen under the `sum` rule the MoE model is the
//! dense model (neurons only moved), it saves as `mlp.gate` + `mlp.experts.<e>.*` and loads back
//! the same, fewer experts change the output, and bad settings are refused naming the flag.

mod common;

use burn::tensor::Device;
use common::{max_abs_diff, micro_config};
use compress_core::model::hf::SaveOptions;
use compress_core::model::weights::init_random;
use compress_core::model::{batch_tensor, load_model, save_model, LlamaModel};
use compress_core::stages::moe::{moefy, random_routers, set_top_k, MoeStageConfig, SplitBy};
use compress_core::tensor_util::to_vec_f32;
use compress_format::hf_config::moe::Routing;
use compress_format::safetensors::{Dtype, ModelFiles};

fn logits(m: &LlamaModel, device: &Device) -> Vec<f32> {
    let ids: Vec<u32> = (0..16).map(|i| (i * 7 + 3) % 48).collect();
    to_vec_f32(m.forward(batch_tensor(&[ids], device)))
}

fn cfg(experts: usize, top_k: usize) -> MoeStageConfig {
    MoeStageConfig {
        experts,
        top_k,
        routing: Routing::Sum,
        split: SplitBy::Weights,
        kmeans_iters: 5,
        router_steps: 0,
        router_lr: 1e-2,
        seed: 0,
    }
}

#[test]
fn every_expert_chosen_is_the_dense_model_and_round_trips() {
    let device = Device::flex();
    let dense = init_random(&micro_config(), &device, 5).unwrap();
    // 72 neurons into 5 experts: sizes 15, 15, 14, 14, 14.
    let (mut moe, report) = moefy(&dense, &cfg(5, 5), &[]).unwrap();
    assert_eq!(report[0].expert_sizes, vec![15, 15, 14, 14, 14]);
    let diff = max_abs_diff(&logits(&moe, &device), &logits(&dense, &device));
    assert!(diff < 1e-5, "top-k = E vs dense: {diff}");

    let tmp = tempfile::tempdir().unwrap();
    let hf = moe.config.to_hf().unwrap();
    let opts = SaveOptions {
        dtype: Dtype::F32,
        max_shard_bytes: None,
        tokenizer_from: None,
    };
    save_model(&moe, &hf, tmp.path(), &opts).unwrap();
    let files = ModelFiles::open_dir(tmp.path()).unwrap();
    assert!(files.contains("model.layers.1.mlp.gate.weight"));
    assert!(files.contains("model.layers.1.mlp.experts.4.down_proj.weight"));
    assert!(!files.contains("model.layers.1.mlp.gate_proj.weight"));
    let body = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    for key in [
        "\"num_experts\": 5",
        "\"num_experts_per_tok\": 5",
        "\"compress_moe_routing\": \"sum\"",
    ] {
        assert!(body.contains(key), "{key} in {body}");
    }
    let back = load_model(tmp.path(), &device).unwrap().model;
    assert_eq!(logits(&back, &device), logits(&moe, &device));

    // Fewer experts per token with random routers: a different function.
    set_top_k(&mut moe, 2).unwrap();
    let routed = random_routers(&moe, 1).unwrap();
    let diff = max_abs_diff(&logits(&routed, &device), &logits(&dense, &device));
    assert!(diff > 1e-4, "top-2 of 5 should change the logits ({diff})");
    for k in [0, 6] {
        let e = set_top_k(&mut moe, k).unwrap_err().to_string();
        assert!(e.contains("top_k = "), "{e}");
    }
}

#[test]
fn softmax_routing_weights_the_chosen_experts() {
    let device = Device::flex();
    let dense = init_random(&micro_config(), &device, 5).unwrap();
    let mut c = cfg(4, 4);
    c.routing = Routing::Softmax;
    let (moe, _) = moefy(&dense, &c, &[]).unwrap();
    // Zero routers: every expert weighs 1/4, so the FFN output is a quarter of the dense one.
    let ids: Vec<u32> = (0..8).collect();
    let x = dense.embed_tokens.forward(batch_tensor(&[ids], &device));
    let want = to_vec_f32(dense.layers[0].mlp.forward(x.clone()).div_scalar(4.0));
    let got = to_vec_f32(moe.layers[0].mlp.forward(x));
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 1e-5, "softmax over equal scores: {diff}");
}

#[test]
fn bad_settings_are_refused_naming_the_flag() {
    let device = Device::flex();
    let dense = init_random(&micro_config(), &device, 5).unwrap();
    for (e, k, needle) in [
        (1, 1, "experts = 1"),
        (100, 2, "experts = 100"),
        (4, 0, "top_k = 0"),
        (4, 5, "top_k = 5"),
    ] {
        let err = moefy(&dense, &cfg(e, k), &[]).unwrap_err().to_string();
        assert!(err.contains(needle), "{e} {k}: {err}");
    }
    let mut c = cfg(4, 2);
    c.router_steps = 10;
    let err = moefy(&dense, &c, &[]).unwrap_err().to_string();
    assert!(err.contains("router_steps = "), "{err}");
    let (moe, _) = moefy(&dense, &cfg(4, 2), &[]).unwrap();
    let err = moefy(&moe, &cfg(4, 2), &[]).unwrap_err().to_string();
    assert!(err.contains("dense"), "{err}");
}
