//! Distillation end to end on micro models: students derived from the teacher carry its weights
//! (layer subset, narrower, shared blocks cycled through the depth, saved and reloaded), the
//! teacher-in-the-loop run lowers the soft loss and reports its parts, feature distillation
//! with a learned projection resumes exactly, and bad input is refused with clear errors.

mod common;

use burn::tensor::Device;
use common::{counting_docs, max_abs_diff, micro_config};
use compress_core::eval::evaluate;
use compress_core::model::hf::SaveOptions;
use compress_core::model::weights::{build_from_map, init_random, tensor_map};
use compress_core::model::{batch_tensor, load_model, save_model, LlamaModel};
use compress_core::stages::distill::features::{parse_pairs, uniform_pairs, FeatureDistance};
use compress_core::stages::distill::student::{even_layers, keep_layers, narrow, share_layers};
use compress_core::stages::distill::{
    distill, student_hf_config, DistillConfig, DistillLoss, FeatureConfig, StudentSpec,
};
use compress_core::tensor_util::to_vec_f32;
use compress_core::train::{train, windows, NoHook, RunDir, TrainConfig};
use compress_format::safetensors::{Dtype, ModelFiles};

fn teacher(layers: usize, device: &Device) -> LlamaModel {
    let mut cfg = micro_config();
    cfg.num_layers = layers;
    init_random(&cfg, device, 3).unwrap()
}

fn logits(m: &LlamaModel, device: &Device) -> Vec<f32> {
    let ids: Vec<u32> = (0..12).map(|i| (i * 5 + 1) % 48).collect();
    to_vec_f32(m.forward(batch_tensor(&[ids], device)))
}

#[test]
fn layer_subsets_copy_the_teachers_blocks() {
    assert_eq!(even_layers(4, 2), vec![0, 3]);
    assert_eq!(even_layers(12, 4), vec![0, 4, 7, 11]);
    assert_eq!(even_layers(4, 1), vec![0]);
    let device = Device::flex();
    let t = teacher(4, &device);
    let s = keep_layers(&t, &[1, 3]).unwrap();
    assert_eq!(s.config.num_layers, 2);
    let (tm, sm) = (tensor_map(&t), tensor_map(&s));
    for (i, l) in [1, 3].into_iter().enumerate() {
        let name = |l: usize| format!("model.layers.{l}.self_attn.q_proj.weight");
        assert_eq!(
            sm[&name(i)],
            tm[&name(l)],
            "student block {i} is teacher block {l}"
        );
    }
    assert_eq!(sm["lm_head.weight"], tm["lm_head.weight"]);
    assert_eq!(
        StudentSpec::parse_layers("2", 4).unwrap(),
        StudentSpec::Layers(vec![0, 3])
    );
    assert_eq!(
        StudentSpec::parse_layers("0,2", 4).unwrap(),
        StudentSpec::Layers(vec![0, 2])
    );
    for (bad, needle) in [
        ("4", "1 to 3"),
        ("0", "1 to 3"),
        ("0,9", "layer 9 does not exist"),
        ("2,1", "strictly increasing"),
        ("0,1,2,3", "needs fewer"),
        ("x", "layer count"),
    ] {
        let e = StudentSpec::parse_layers(bad, 4).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

#[test]
fn narrow_students_keep_the_most_important_units() {
    let device = Device::flex();
    let t = teacher(2, &device);
    let s = narrow(&t, 0.5, &[]).unwrap();
    assert_eq!(s.config.num_kv_heads, 1);
    assert_eq!(s.config.num_heads, 2);
    assert_eq!(s.config.intermediate_size, 36);
    assert_eq!(s.config.hidden_size, t.config.hidden_size);
    assert!(logits(&s, &device).iter().all(|v| v.is_finite()));
    for f in [0.0, 1.0, 1.5, -0.2] {
        let e = StudentSpec::width(f).unwrap_err().to_string();
        assert!(
            e.contains("student_width = ") && e.contains("wider"),
            "{f}: {e}"
        );
    }
}

#[test]
fn shared_blocks_cycle_through_the_depth_and_round_trip() {
    let device = Device::flex();
    let t = teacher(4, &device);
    let s = share_layers(&t, 2).unwrap();
    assert_eq!((s.layers.len(), s.num_layers()), (2, 4));
    assert!(s.config.num_parameters() < t.config.num_parameters());
    // The same computation unrolled: teacher blocks 0, 1, 0, 1 as four separate layers.
    let mut tensors = tensor_map(&t);
    for l in 0..2 {
        let pre = format!("model.layers.{l}.");
        let copies: Vec<(String, Vec<f32>)> = tensors
            .iter()
            .filter(|(n, _)| n.starts_with(&pre))
            .map(|(n, v)| {
                (
                    n.replacen(&pre, &format!("model.layers.{}.", l + 2), 1),
                    v.clone(),
                )
            })
            .collect();
        tensors.extend(copies);
    }
    let unrolled = build_from_map(&t.config, &mut tensors, &device).unwrap();
    let diff = max_abs_diff(&logits(&s, &device), &logits(&unrolled, &device));
    assert!(diff < 1e-5, "shared vs unrolled logits differ by {diff}");
    // Saved with only the distinct blocks and the config key; loads back the same.
    let tmp = tempfile::tempdir().unwrap();
    let hf = student_hf_config(&t.config.to_hf().unwrap(), &s.config);
    let opts = SaveOptions {
        dtype: Dtype::F32,
        max_shard_bytes: None,
        tokenizer_from: None,
    };
    save_model(&s, &hf, tmp.path(), &opts).unwrap();
    let files = ModelFiles::open_dir(tmp.path()).unwrap();
    assert!(files.contains("model.layers.1.mlp.up_proj.weight"));
    assert!(!files.contains("model.layers.2.mlp.up_proj.weight"));
    let body = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    assert!(body.contains("\"compress_shared_layers\": 2"), "{body}");
    assert!(body.contains("\"num_hidden_layers\": 4"), "{body}");
    let back = load_model(tmp.path(), &device).unwrap().model;
    assert_eq!(logits(&back, &device), logits(&s, &device));
    for k in [0, 4, 9] {
        let e = StudentSpec::shared(k, 4).unwrap_err().to_string();
        assert!(e.contains("share_layers = "), "{k}: {e}");
    }
}

fn config(steps: usize, alpha: f64, features: Option<FeatureConfig>) -> DistillConfig {
    DistillConfig {
        loss: DistillLoss::new(alpha, 2.0).unwrap(),
        features,
        train: TrainConfig {
            steps,
            batch_size: 4,
            seq_len: 16,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 1,
            seed: 5,
            checkpoint_every: 1,
            ..TrainConfig::default()
        },
        teacher_cache: None,
        stop_after: None,
    }
}

/// A 4-layer teacher trained on the counting data, so it has something to teach.
fn trained_teacher(device: &Device) -> LlamaModel {
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: tmp.path().to_path_buf(),
    };
    let mut cfg = config(60, 0.0, None).train;
    cfg.checkpoint_every = 0;
    cfg.lr = 1e-2;
    cfg.min_lr = 1e-3;
    let t = teacher(4, device);
    let hf = t.config.to_hf().unwrap();
    let wins = windows(&counting_docs(), 16);
    train(t, &hf, &wins, &cfg, device, &run, false, None, &mut NoHook)
        .unwrap()
        .model
}

#[test]
fn distillation_lowers_the_soft_loss_and_reports_its_parts() {
    let device = Device::flex();
    let t = trained_teacher(&device);
    let s = keep_layers(&t, &[0, 3]).unwrap();
    let hf = student_hf_config(&t.config.to_hf().unwrap(), &s.config);
    let wins = windows(&counting_docs(), 16);
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: tmp.path().to_path_buf(),
    };
    let kl = |m: &LlamaModel| {
        evaluate(m, Some(&t), &wins[..4], 4, 0, None)
            .unwrap()
            .kld
            .unwrap()
    };
    let kl_before = kl(&s);
    let d = distill(
        &t,
        s,
        &hf,
        &config(12, 1.0, None),
        &wins,
        &wins[..4],
        &device,
        &run,
        false,
    )
    .unwrap();
    let (first, last) = (&d.metrics[0], d.metrics.last().unwrap());
    assert!(
        last.parts["soft"] < 0.7 * first.parts["soft"],
        "soft {} → {}",
        first.parts["soft"],
        last.parts["soft"]
    );
    // α = 1: the loss is the soft part alone.
    assert!((last.loss - last.parts["soft"]).abs() < 1e-4);
    assert!(last.parts.contains_key("hard"));
    assert_eq!(d.report.student.layers, 2);
    assert!(d.report.student.params < d.report.teacher.params);
    assert!(d.report.student.ppl.is_some() && d.report.teacher.ppl.is_some());
    let kl_after = kl(&d.model);
    assert!(
        kl_after < 0.7 * kl_before,
        "KL to the teacher {kl_before} → {kl_after}"
    );
}

#[test]
fn feature_distillation_with_a_projection_resumes_exactly() {
    let device = Device::flex();
    let t = teacher(2, &device);
    // A narrower student of its own shape: hidden 16, so the projection is learned.
    let mut sc = micro_config();
    sc.hidden_size = 16;
    let student = || init_random(&sc, &device, 11).unwrap();
    let hf = sc.to_hf().unwrap();
    let pairs = uniform_pairs(2, 2);
    assert_eq!(pairs, vec![(1, 1), (2, 2)]);
    assert_eq!(parse_pairs("1:2", 2, 2).unwrap(), vec![(1, 2)]);
    assert!(parse_pairs("3:1", 2, 2)
        .unwrap_err()
        .to_string()
        .contains("1..=2"));
    let features = Some(FeatureConfig {
        weight: 0.5,
        distance: FeatureDistance::Cosine,
        pairs,
    });
    let wins = windows(&counting_docs(), 16);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |dir: &std::path::Path, stop: Option<usize>, resume: bool| {
        let mut cfg = config(4, 0.5, features.clone());
        cfg.stop_after = stop;
        let run = RunDir {
            dir: dir.to_path_buf(),
        };
        distill(&t, student(), &hf, &cfg, &wins, &[], &device, &run, resume).unwrap()
    };
    let full = run(a.path(), None, false);
    assert!(full.metrics.iter().all(|m| m.parts.contains_key("feature")));
    let part = run(b.path(), Some(2), false);
    assert!(!part.finished);
    assert!(b
        .path()
        .join("checkpoint/feature_projector.safetensors")
        .is_file());
    let rest = run(b.path(), None, true);
    assert!(rest.finished);
    for (x, y) in full.metrics[2..].iter().zip(&rest.metrics) {
        assert!(
            (x.loss - y.loss).abs() < 1e-5
                && (x.parts["feature"] - y.parts["feature"]).abs() < 1e-5,
            "resumed step {}: {} vs {}",
            y.step,
            y.loss,
            x.loss
        );
    }
}

#[test]
fn mismatched_vocabularies_are_refused() {
    let device = Device::flex();
    let t = teacher(2, &device);
    let mut sc = micro_config();
    sc.vocab_size = 40;
    let s = init_random(&sc, &device, 1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: tmp.path().to_path_buf(),
    };
    let wins = windows(&counting_docs(), 16);
    let e = distill(
        &t,
        s,
        &sc.to_hf().unwrap(),
        &config(2, 0.5, None),
        &wins,
        &[],
        &device,
        &run,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("vocab_size") && e.contains("48") && e.contains("40"),
        "{e}"
    );
}
