//! Noise-robust summary of the int4 kernels: best-of-N timings, implementations interleaved
//! per round, printed as GB/s of weights and % of the stream baseline (m = 1) or GFLOP/s.
//! Run: `cargo bench -p compress-runtime --bench kernels_table` (env: `ROUNDS`, `MS=1,16`,
//! `SPAN_MIB`: weight bytes rotated through; small values measure cache-resident compute).

mod common;

use std::sync::Arc;
use std::time::Instant;

use compress_runtime::kernels::{
    matmul_with, ActMode, Bytes, FloatDtype, FloatWeight, Input, Isa, Weight,
};
use rayon::prelude::*;

use common::{weights, xorshift, SPAN};

/// Bytes of weight copies to rotate through (`SPAN_MIB`, default 256: beyond the caches).
fn span() -> usize {
    std::env::var("SPAN_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256usize)
        << 20
}

/// Best GB/s of summing a `SPAN`-byte f32 array on all rayon threads.
fn stream(rounds: usize) -> f64 {
    let v: Vec<f32> = (0..SPAN / 4).map(|i| (i % 7) as f32).collect();
    let mut best = 0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        let s: f32 = v
            .par_chunks(1 << 18)
            .map(|ch| {
                let mut acc = [0f32; 16];
                for blk in ch.chunks_exact(16) {
                    for (a, x) in acc.iter_mut().zip(blk) {
                        *a += x;
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(s);
        best = best.max(SPAN as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let bw = stream(rounds * 2);
    println!(
        "stream: {bw:.2} GB/s ({} threads)",
        rayon::current_num_threads()
    );
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.available()).collect();
    let mut s = 7u64;
    let buf: Arc<Vec<u8>> = Arc::new(
        (0..span() / 8)
            .flat_map(|_| xorshift(&mut s).to_le_bytes())
            .collect(),
    );
    for (rows, cols) in [(2048, 2048), (5632, 2048), (2048, 5632)] {
        for (gs, asym) in [(32, false), (128, true)] {
            let ws = weights(&buf, rows, cols, gs, asym);
            let ms: Vec<usize> = match std::env::var("MS") {
                Ok(v) => v.split(',').filter_map(|m| m.parse().ok()).collect(),
                Err(_) => vec![1, 16, 128],
            };
            for &m in &ms {
                let x: Vec<f32> = (0..m * cols)
                    .map(|_| (xorshift(&mut s) % 2001) as f32 / 1e3 - 1.0)
                    .collect();
                let input = Input::new(&x, m, cols, ActMode::Q8);
                let mut y = vec![0f32; m * rows];
                // Per round, each implementation sweeps a run of weight copies (m = 1: all
                // 256 MiB, so they come from memory); the best round counts.
                let reps = if m == 1 { ws.len() } else { 4 };
                let mut best = vec![f64::MAX; isas.len()];
                for _ in 0..rounds {
                    for (k, &isa) in isas.iter().enumerate() {
                        if isa == Isa::Scalar && m > 1 {
                            continue;
                        }
                        let t = Instant::now();
                        for w in ws.iter().take(reps) {
                            matmul_with(isa, w, &input, &mut y);
                        }
                        best[k] = best[k].min(t.elapsed().as_secs_f64() / reps as f64);
                    }
                }
                let mut line = format!(
                    "int4 {rows}x{cols} g{gs}{} m={m:<3}",
                    if asym { " asym" } else { " sym " }
                );
                for (k, isa) in isas.iter().enumerate() {
                    if best[k] == f64::MAX {
                        continue;
                    }
                    if m == 1 {
                        let gbs = ws[0].bytes() as f64 / best[k] / 1e9;
                        line += &format!(
                            " | {}: {:6.1} us {:5.2} GB/s {:4.0}%",
                            isa.name(),
                            best[k] * 1e6,
                            gbs,
                            gbs / bw * 100.0
                        );
                    } else {
                        let gf = (2 * m * rows * cols) as f64 / best[k] / 1e9;
                        line += &format!(
                            " | {}: {:7.2} ms {:5.1} GFLOP/s",
                            isa.name(),
                            best[k] * 1e3,
                            gf
                        );
                    }
                }
                println!("{line}");
            }
        }
    }
    head(&buf, &isas, rounds, bw);
}

/// A 16-bit lm_head (`[32000, 2048]` f16, TinyLlama's) at m = 1, in GB/s and % of stream.
fn head(buf: &Arc<Vec<u8>>, isas: &[Isa], rounds: usize, bw: f64) {
    let (rows, cols) = (32000, 2048);
    let size = rows * cols * 2;
    let heads: Vec<Weight> = (0..buf.len() / size)
        .map(|i| {
            let owner: Arc<dyn std::any::Any + Send + Sync> = buf.clone();
            // SAFETY: the slice lies inside `buf`, which `owner` keeps alive and never changes.
            let data = unsafe { Bytes::borrowed(owner, &buf[i * size..(i + 1) * size]) };
            Weight::Float(FloatWeight {
                rows,
                cols,
                dtype: FloatDtype::F16,
                data,
            })
        })
        .collect();
    let x: Vec<f32> = (0..cols).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
    let input = Input::new(&x, 1, cols, ActMode::Q8);
    let mut y = vec![0f32; rows];
    let mut line = format!("f16 head {rows}x{cols} m=1  ");
    for &isa in isas {
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            for w in &heads {
                matmul_with(isa, w, &input, &mut y);
            }
            best = best.min(t.elapsed().as_secs_f64() / heads.len() as f64);
        }
        let gbs = size as f64 / best / 1e9;
        line += &format!(
            " | {}: {:6.1} us {:5.2} GB/s {:4.0}%",
            isa.name(),
            best * 1e6,
            gbs,
            gbs / bw * 100.0
        );
    }
    println!("{line}");
}
