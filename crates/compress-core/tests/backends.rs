//! flex and libtorch agree on the forward pass, after one training step and after two distillation
//! steps (teacher in the loop, feature projection). Needs the `tch`
//! feature; the libtorch devices compared come from COMPRESS_TCH_DEVICES (default `tch:cpu`;
//! e.g. `tch:cpu,cuda:0` on a GPU machine).
#![cfg(feature = "tch")]

mod common;

use burn::tensor::Device;
use common::max_abs_diff;
use compress_core::model::weights::{export_tensors, init_random};
use compress_core::model::{tokens_tensor, LlamaConfig};
use compress_core::parse_device;
use compress_core::train::{train, windows, NoHook, RunDir, TrainConfig};

/// Max abs difference allowed between backends.
const TOL: f32 = 1e-4;

fn devices() -> Vec<String> {
    std::env::var("COMPRESS_TCH_DEVICES")
        .unwrap_or_else(|_| "tch:cpu".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn config() -> LlamaConfig {
    let mut cfg = LlamaConfig::preset("tiny").unwrap();
    cfg.vocab_size = 96;
    cfg.hidden_size = 64;
    cfg.intermediate_size = 100;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 16;
    cfg.attention_bias = true;
    cfg
}

fn ids() -> Vec<u32> {
    (0..40u32).map(|i| (i * 37 + 11) % 96).collect()
}

fn logits_on(device: &Device) -> Vec<f32> {
    let model = init_random(&config(), device, 3).unwrap();
    compress_core::tensor_util::to_vec_f32(model.forward(tokens_tensor(&ids(), device)))
}

fn one_step_on(device: &Device) -> (f64, Vec<f32>) {
    let cfg = config();
    let model = init_random(&cfg, device, 3).unwrap();
    let docs = vec![(0..200u32).map(|i| (i * 7 + 3) % 96).collect::<Vec<_>>()];
    let tc = TrainConfig {
        steps: 1,
        batch_size: 2,
        seq_len: 32,
        warmup_steps: 0,
        ..TrainConfig::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: tmp.path().to_path_buf(),
    };
    let out = train(
        model,
        &cfg.to_hf().unwrap(),
        &windows(&docs, 32),
        &tc,
        device,
        &run,
        false,
        None,
        &mut NoHook,
    )
    .unwrap();
    let params = export_tensors(&out.model)
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect();
    (out.metrics[0].loss, params)
}

#[test]
fn forward_agrees_with_flex() {
    let reference = logits_on(&Device::flex());
    for name in devices() {
        let device = parse_device(&name).unwrap();
        let diff = max_abs_diff(&reference, &logits_on(&device));
        eprintln!("forward {name} vs flex: max abs diff {diff:e}");
        assert!(diff < TOL, "{name}: forward differs from flex by {diff}");
    }
}

#[test]
fn training_step_agrees_with_flex() {
    let (loss_ref, params_ref) = one_step_on(&Device::flex());
    for name in devices() {
        let device = parse_device(&name).unwrap();
        let (loss, params) = one_step_on(&device);
        let diff = max_abs_diff(&params_ref, &params);
        eprintln!("train step {name} vs flex: loss {loss} vs {loss_ref}, max param diff {diff:e}");
        assert!(
            (loss - loss_ref).abs() < TOL as f64,
            "{name}: loss {loss} vs {loss_ref}"
        );
        assert!(
            diff < TOL,
            "{name}: parameters after one step differ by {diff}"
        );
    }
}

/// Two distillation steps (α 0.7, T 2, cosine feature term through a learned projection) of a
/// narrower student: loss parts and student weights.
fn distill_on(device: &Device) -> (Vec<f64>, Vec<f32>) {
    use compress_core::stages::distill::features::{uniform_pairs, FeatureDistance};
    use compress_core::stages::distill::{distill, DistillConfig, DistillLoss, FeatureConfig};
    let teacher = init_random(&config(), device, 3).unwrap();
    let mut sc = config();
    sc.hidden_size = 32;
    let student = init_random(&sc, device, 4).unwrap();
    let docs = vec![(0..200u32).map(|i| (i * 7 + 3) % 96).collect::<Vec<_>>()];
    let cfg = DistillConfig {
        loss: DistillLoss::new(0.7, 2.0).unwrap(),
        features: Some(FeatureConfig {
            weight: 0.5,
            distance: FeatureDistance::Cosine,
            pairs: uniform_pairs(2, 2),
        }),
        train: TrainConfig {
            steps: 2,
            batch_size: 2,
            seq_len: 32,
            warmup_steps: 0,
            ..TrainConfig::default()
        },
        teacher_cache: None,
        stop_after: None,
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: tmp.path().to_path_buf(),
    };
    let wins = windows(&docs, 32);
    let d = distill(
        &teacher,
        student,
        &sc.to_hf().unwrap(),
        &cfg,
        &wins,
        &[],
        device,
        &run,
        false,
    )
    .unwrap();
    let parts = d
        .metrics
        .iter()
        .flat_map(|m| [m.loss, m.parts["soft"], m.parts["hard"], m.parts["feature"]])
        .collect();
    let params = export_tensors(&d.model)
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect();
    (parts, params)
}

#[test]
fn distillation_steps_agree_with_flex() {
    let (parts_ref, params_ref) = distill_on(&Device::flex());
    for name in devices() {
        let device = parse_device(&name).unwrap();
        let (parts, params) = distill_on(&device);
        let diff = max_abs_diff(&params_ref, &params);
        eprintln!(
            "distill {name} vs flex: parts {parts:?} vs {parts_ref:?}, max param diff {diff:e}"
        );
        for (a, b) in parts.iter().zip(&parts_ref) {
            assert!(
                (a - b).abs() < TOL as f64,
                "{name}: loss parts {parts:?} vs {parts_ref:?}"
            );
        }
        assert!(
            diff < TOL,
            "{name}: student after two steps differs by {diff}"
        );
    }
}
