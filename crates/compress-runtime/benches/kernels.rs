//! Int4 matvec/matmul throughput on TinyLlama-1.1B shapes per kernel implementation, next to a
//! memory-bandwidth baseline (sum of a 256 MiB f32 array on all rayon threads).
//!
//! m = 1 reports bytes of weight read per second (compare with `stream`); m = 16 / 128 report
//! elements as FLOPs (2·m·rows·cols), i.e. GFLOP/s. Weights rotate over copies spanning
//! 256 MiB so that m = 1 reads from memory, not from the last-level cache.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use compress_runtime::kernels::{
    matmul_with, ActMode, Bytes, Input, Int4Weight, Isa, Scales, Weight,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use rayon::prelude::*;

const SPAN: usize = 256 << 20;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn stream(c: &mut Criterion) {
    let v: Vec<f32> = (0..SPAN / 4).map(|i| (i % 7) as f32).collect();
    let mut g = c.benchmark_group("stream");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::BytesDecimal(SPAN as u64));
    g.bench_function("sum_256MiB", |b| {
        b.iter(|| {
            v.par_chunks(1 << 16)
                .map(|ch| {
                    let mut acc = [0f32; 16];
                    for blk in ch.chunks_exact(16) {
                        for (a, x) in acc.iter_mut().zip(blk) {
                            *a += x;
                        }
                    }
                    acc.iter().sum::<f32>()
                })
                .sum::<f32>()
        })
    });
    g.finish();
}

/// Copies of an int4 `[rows, cols]` weight (group `gs`, f16 scales) spanning about `SPAN`
/// bytes, borrowing one shared random buffer.
fn weights(buf: &Arc<Vec<u8>>, rows: usize, cols: usize, gs: usize, asym: bool) -> Vec<Weight> {
    let size = rows * cols / 2;
    let ng = rows * cols / gs;
    let mut s = 1u64;
    (0..buf.len() / size)
        .map(|i| {
            let owner: Arc<dyn Any + Send + Sync> = buf.clone();
            // SAFETY: the slice lies inside `buf`, which `owner` keeps alive and never changes.
            let data = unsafe { Bytes::borrowed(owner, &buf[i * size..(i + 1) * size]) };
            let scales: Vec<f16> = (0..ng)
                .map(|_| f16::from_f32(0.001 + (xorshift(&mut s) % 100) as f32 * 1e-4))
                .collect();
            let offsets = asym.then(|| (0..ng).map(|_| (xorshift(&mut s) % 16) as u8).collect());
            Weight::Int4(Int4Weight {
                rows,
                cols,
                group_size: gs,
                data,
                scales: Scales::F16(scales),
                offsets,
            })
        })
        .collect()
}

fn int4(c: &mut Criterion) {
    let mut s = 7u64;
    let buf: Arc<Vec<u8>> = Arc::new(
        (0..SPAN / 8)
            .flat_map(|_| xorshift(&mut s).to_le_bytes())
            .collect(),
    );
    let isas: Vec<Isa> = [Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Scalar]
        .into_iter()
        .filter(|i| i.available())
        .collect();
    for (rows, cols) in [(2048, 2048), (5632, 2048), (2048, 5632)] {
        for (gs, asym) in [(32, false), (128, true)] {
            let ws = weights(&buf, rows, cols, gs, asym);
            let name = format!(
                "int4_{rows}x{cols}_g{gs}{}",
                if asym { "_asym" } else { "_sym" }
            );
            let mut g = c.benchmark_group(&name);
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1));
            for m in [1usize, 16, 128] {
                let x: Vec<f32> = (0..m * cols)
                    .map(|_| (xorshift(&mut s) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let input = Input::new(&x, m, cols, ActMode::Q8);
                let mut y = vec![0f32; m * rows];
                g.throughput(if m == 1 {
                    Throughput::BytesDecimal(ws[0].bytes() as u64)
                } else {
                    Throughput::Elements((2 * m * rows * cols) as u64)
                });
                for &isa in &isas {
                    if isa == Isa::Scalar && m > 1 {
                        continue;
                    }
                    let mut i = 0;
                    g.bench_with_input(
                        BenchmarkId::new(isa.name(), format!("m{m}")),
                        &m,
                        |b, _| {
                            b.iter(|| {
                                i = (i + 1) % ws.len();
                                matmul_with(isa, &ws[i], &input, &mut y);
                            })
                        },
                    );
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, stream, int4);
criterion_main!(benches);
