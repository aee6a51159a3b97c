//! One training step and one eval forward of the `tiny` config (batch 8 × 128 tokens), the
//! shape `tests/reference/train_step_torch.py` times in PyTorch eager, for side-by-side ratios.
//!
//! `COMPRESS_BENCH_DEVICE=tch:cpu cargo bench --features tch --bench train_step` runs it on
//! libtorch; the default is flex.

use std::time::Duration;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use compress_core::model::weights::init_random;
use compress_core::model::{batch_tensor, LlamaConfig};
use compress_core::train::cross_entropy;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 8;
const SEQ: usize = 128;

fn device() -> Device {
    let name = std::env::var("COMPRESS_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    compress_core::parse_device(&name).expect("COMPRESS_BENCH_DEVICE names a usable device")
}

fn rows(offset: u32) -> Vec<Vec<u32>> {
    (0..BATCH as u32)
        .map(|b| {
            (0..SEQ as u32)
                .map(|i| (b * 131 + i * 17 + offset) % 4096)
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let device = device();
    let cfg = LlamaConfig::preset("tiny").unwrap();
    let mut group = c.benchmark_group(format!(
        "tiny_b{BATCH}x{SEQ}_{}",
        compress_core::device::backend_name(&device)
    ));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements((BATCH * SEQ) as u64));

    let ad = device.clone().autodiff();
    let mut model = init_random(&cfg, &device, 0).unwrap().fork(&ad).train();
    let mut optim = AdamWConfig::new().with_weight_decay(0.1).init();
    let (inputs, targets) = (rows(0), rows(1));
    group.bench_function("train_step", |b| {
        b.iter(|| {
            let logits = model.forward(batch_tensor(&inputs, &ad));
            let loss = cross_entropy(logits, batch_tensor(&targets, &ad));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model.clone(), grads);
        })
    });

    let eval_model = model.valid();
    group.bench_function("eval_forward", |b| {
        b.iter(|| {
            let logits = eval_model.forward(batch_tensor(&inputs, &device));
            compress_core::tensor_util::scalar_f64(logits.sum())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
