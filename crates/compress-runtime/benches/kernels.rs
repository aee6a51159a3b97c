//! Int4 matvec/matmul throughput on TinyLlama-1.1B shapes per kernel implementation, next to a
//! memory-bandwidth baseline (sum of a 256 MiB f32 array on all rayon threads).
//!
//! m = 1 reports bytes of weight read per second (compare with `stream`); m = 16 / 128 report
//! elements as FLOPs (2·m·rows·cols), i.e. GFLOP/s. Weights rotate over copies spanning
//! 256 MiB so that m = 1 reads from memory, not from the last-level cache.

mod common;

use std::sync::Arc;
use std::time::Duration;

use compress_runtime::kernels::{matmul_with, ActMode, Input, Isa};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;

use common::{weights, xorshift, SPAN};

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
