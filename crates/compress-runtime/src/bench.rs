//! `compress bench`: prompt and decode throughput, time to first token and KV use at several
//! concurrencies, with the machine's read bandwidth measured in the same run so decode speed
//! can be stated as a fraction of the memory roofline (bandwidth / weight bytes per token).

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::engine::{Engine, EngineConfig, Event, Request};
use crate::error::Result;
use crate::loader::Model;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Prompt tokens per request.
    pub prompt_len: usize,
    /// Generated tokens per request.
    pub gen_len: usize,
    /// Concurrent requests, one run each.
    pub concurrency: Vec<usize>,
    /// Engine settings; `num_blocks` is set per run from `kv_blocks`.
    pub engine: EngineConfig,
    /// KV cache blocks per run; `None`: enough for every request of the run (no preemption).
    pub kv_blocks: Option<usize>,
    /// Seed of the random prompts.
    pub seed: u64,
}

/// Results of one concurrency level.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// Concurrent requests.
    pub concurrency: usize,
    /// Prompt tokens computed per second until every request had its first token.
    pub prompt_tokens_per_s: f64,
    /// Tokens generated per second (all sequences) after every prompt was done.
    pub decode_tokens_per_s: f64,
    /// Generated tokens per second over the whole run.
    pub aggregate_tokens_per_s: f64,
    /// Mean time to first token, ms.
    pub ttft_ms_mean: f64,
    /// Worst time to first token, ms.
    pub ttft_ms_max: f64,
    /// Most KV blocks in use.
    pub kv_blocks_used: usize,
    /// Mean over steps of the unused share of allocated KV slots, %.
    pub kv_waste_pct: f64,
    /// Preemptions (0 unless the cache was made too small).
    pub preemptions: u64,
    /// Wall time, s.
    pub seconds: f64,
}

/// Read bandwidth in bytes/s: sums of a 256 MiB f32 array on all rayon threads (best of 3).
pub fn stream_read_bandwidth() -> f64 {
    let data: Vec<f32> = (0..(64usize << 20)).map(|i| (i % 7) as f32).collect();
    let chunk = data.len() / rayon::current_num_threads().max(1);
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let s: f32 = data.par_chunks(chunk.max(1)).map(sum8).sum();
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(s);
        best = best.max((data.len() * 4) as f64 / secs);
    }
    best
}

/// Sum with eight accumulators (so it vectorizes and is bandwidth- not latency-bound).
fn sum8(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Runs every concurrency level of `opts` on `model`.
pub fn run_bench(
    model: Arc<Model>,
    opts: &BenchOptions,
    mut progress: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    let vocab = model.config.vocab_size as u64;
    for &c in &opts.concurrency {
        let need = c * (opts.prompt_len + opts.gen_len).div_ceil(crate::kv::BLOCK_SIZE);
        let cfg = EngineConfig {
            num_blocks: opts.kv_blocks.unwrap_or(need),
            ..opts.engine.clone()
        };
        let mut engine = Engine::new(model.clone(), cfg)?;
        let mut rng = opts.seed.wrapping_add(c as u64) | 1;
        let mut rxs = Vec::new();
        let t0 = Instant::now();
        for _ in 0..c {
            let prompt: Vec<u32> = (0..opts.prompt_len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % vocab) as u32
                })
                .collect();
            rxs.push(
                engine
                    .add_request(Request::greedy(prompt, opts.gen_len, Vec::new()))?
                    .1,
            );
        }
        let mut first: Vec<Option<f64>> = vec![None; c];
        let mut generated_at_prefill_end = 0u64;
        let mut prefill_end = None;
        let (mut waste_sum, mut waste_n) = (0.0, 0usize);
        while engine.has_work() {
            engine.step()?;
            let now = t0.elapsed().as_secs_f64();
            waste_sum += engine.blocks().waste();
            waste_n += 1;
            for (i, rx) in rxs.iter().enumerate() {
                for ev in rx.try_iter() {
                    if matches!(ev, Event::Token { .. }) && first[i].is_none() {
                        first[i] = Some(now);
                    }
                }
            }
            if prefill_end.is_none() && first.iter().all(Option::is_some) {
                prefill_end = Some(now);
                generated_at_prefill_end = engine.stats().generated_tokens;
            }
        }
        let total = t0.elapsed().as_secs_f64();
        let stats = engine.stats();
        let pe = prefill_end.unwrap_or(total);
        let ttft: Vec<f64> = first.iter().map(|f| f.unwrap_or(total) * 1e3).collect();
        let row = BenchRow {
            concurrency: c,
            prompt_tokens_per_s: (c * opts.prompt_len) as f64 / pe,
            decode_tokens_per_s: (stats.generated_tokens - generated_at_prefill_end) as f64
                / (total - pe).max(1e-9),
            aggregate_tokens_per_s: stats.generated_tokens as f64 / total,
            ttft_ms_mean: ttft.iter().sum::<f64>() / c as f64,
            ttft_ms_max: ttft.iter().cloned().fold(0.0, f64::max),
            kv_blocks_used: stats.peak_blocks_used,
            kv_waste_pct: 100.0 * waste_sum / waste_n.max(1) as f64,
            preemptions: stats.preemptions,
            seconds: total,
        };
        progress(&row);
        rows.push(row);
    }
    Ok(rows)
}
