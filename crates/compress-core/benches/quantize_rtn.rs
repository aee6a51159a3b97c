//! Round-to-nearest throughput: int4 g128 asymmetric on a 4096 × 4096 weight (bf16 scales),
//! in parameters per second; the anchor is llama-quantize's ~200 M parameters/s F16 → Q4_0
//! on 2 cores. `pack` adds the int32 packing of the codes into the on-disk layout.

use std::time::Duration;

use compress_core::stages::quantize::mse::{quantize_mse, MseConfig};
use compress_core::stages::quantize::rtn::quantize_rtn;
use compress_format::pack_quantized::WeightQuant;
use compress_format::safetensors::Dtype;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const OUT: usize = 4096;
const IN: usize = 4096;

fn weight() -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..OUT * IN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let w = weight();
    let wq = WeightQuant::group(4, false, 128);
    let mut group = c.benchmark_group(format!("int4_g128_{OUT}x{IN}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements((OUT * IN) as u64));
    group.bench_function("rtn", |b| {
        b.iter(|| quantize_rtn(&w, OUT, IN, &wq, Dtype::BF16, None))
    });
    group.bench_function("rtn+pack", |b| {
        b.iter(|| {
            quantize_rtn(&w, OUT, IN, &wq, Dtype::BF16, None)
                .to_tensors("layer", &wq, Dtype::BF16)
                .unwrap()
        })
    });
    group.bench_function("mse", |b| {
        b.iter(|| quantize_mse(&w, OUT, IN, &wq, Dtype::BF16, &MseConfig::for_bits(4), None))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
