//! The trainer: loss goes down, and a run interrupted and resumed from its checkpoint gives
//! the same losses as an uninterrupted one.

mod common;

use burn::tensor::Device;
use common::{counting_docs, micro_config};
use compress_core::model::weights::init_random;
use compress_core::train::{train, windows, NoHook, RunDir, TrainConfig};

fn run(cfg: &TrainConfig, dir: &std::path::Path, resume: bool, stop: Option<usize>) -> Vec<f64> {
    let device = Device::flex();
    let mc = micro_config();
    let model = init_random(&mc, &device, 7).unwrap();
    let wins = windows(&counting_docs(), cfg.seq_len);
    let run = RunDir {
        dir: dir.to_path_buf(),
    };
    let out = train(
        model,
        &mc.to_hf().unwrap(),
        &wins,
        cfg,
        &device,
        &run,
        resume,
        stop,
        &mut NoHook,
    )
    .unwrap();
    out.metrics.iter().map(|m| m.loss).collect()
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 4,
        seq_len: 16,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 2,
        grad_accum: 2,
        checkpoint_every: 3,
        seed: 5,
        ..TrainConfig::default()
    }
}

#[test]
fn loss_goes_down() {
    let tmp = tempfile::tempdir().unwrap();
    let losses = run(&config(40), tmp.path(), false, None);
    let first = losses[0];
    let last: f64 = losses[35..].iter().sum::<f64>() / 5.0;
    assert!(first > 3.5, "starts near ln(48) = 3.87: {first}");
    assert!(last < first - 1.0, "loss fell from {first} to {last}");
}

#[test]
fn resume_gives_the_same_losses() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full = run(&config(6), a.path(), false, None);
    let first = run(&config(6), b.path(), false, Some(3));
    assert_eq!(first.len(), 3);
    assert_eq!(&first[..], &full[..3]);
    let rest = run(&config(6), b.path(), true, None);
    assert_eq!(rest.len(), 3);
    for (x, y) in rest.iter().zip(&full[3..]) {
        assert!(
            (x - y).abs() <= 1e-6 * y.abs(),
            "resumed {rest:?} vs uninterrupted {full:?}"
        );
    }
}

#[test]
fn resume_with_other_settings_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    run(&config(3), tmp.path(), false, None);
    let mut other = config(6);
    other.lr = 1e-2;
    let device = Device::flex();
    let mc = micro_config();
    let model = init_random(&mc, &device, 7).unwrap();
    let run_dir = RunDir {
        dir: tmp.path().to_path_buf(),
    };
    let wins = windows(&counting_docs(), other.seq_len);
    let err = train(
        model,
        &mc.to_hf().unwrap(),
        &wins,
        &other,
        &device,
        &run_dir,
        true,
        None,
        &mut NoHook,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("other training settings"), "{err}");
}
