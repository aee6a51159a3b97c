//! `compress bench --model M [--prompt-len 512] [--gen-len 128] [--concurrency 1,4,16] [--json]`.

use std::sync::Arc;

use anyhow::{Context, Result};
use compress_runtime::bench::{run_bench, stream_read_bandwidth, BenchOptions};
use compress_runtime::{EngineConfig, Model};
use serde::Serialize;

use super::generate::act_mode;
use crate::cli::{BenchArgs, Common};

#[derive(Serialize)]
struct Report {
    model: String,
    threads: usize,
    weight_bytes_per_token: usize,
    read_bandwidth_gb_s: Option<f64>,
    roofline_decode_tokens_per_s: Option<f64>,
    prompt_len: usize,
    gen_len: usize,
    runs: Vec<compress_runtime::bench::BenchRow>,
}

/// The flag checks that need no model.
fn check_args(a: &BenchArgs, common: &Common) -> Result<()> {
    if common.device != "cpu" {
        anyhow::bail!(
            "compress bench measures the CPU runtime; --device {} is not supported",
            common.device
        );
    }
    if a.prompt_len == 0 || a.gen_len == 0 {
        anyhow::bail!("--prompt-len and --gen-len must be at least 1");
    }
    if a.concurrency.is_empty() || a.concurrency.contains(&0) {
        anyhow::bail!("--concurrency must list positive numbers, e.g. 1,4,16");
    }
    if a.kv_blocks == Some(0) || a.max_batched_tokens == 0 {
        anyhow::bail!("--kv-blocks and --max-batched-tokens must be at least 1");
    }
    Ok(())
}

/// One result row of the table.
fn print_row(r: &compress_runtime::bench::BenchRow) {
    println!(
        "{:>5} {:>10.1} {:>10.1} {:>10.1} {:>9.0} {:>9.0} {:>7} {:>7.2} {:>6}",
        r.concurrency,
        r.prompt_tokens_per_s,
        r.decode_tokens_per_s,
        r.aggregate_tokens_per_s,
        r.ttft_ms_mean,
        r.ttft_ms_max,
        r.kv_blocks_used,
        r.kv_waste_pct,
        r.preemptions
    )
}

pub fn run(a: BenchArgs, common: &Common) -> Result<()> {
    check_args(&a, common)?;
    let mut model =
        Model::load(&a.model).with_context(|| format!("loading model {}", a.model.display()))?;
    if let Some(k) = a.top_k.top_k {
        model.set_top_k(k)?;
    }
    let model = Arc::new(model);
    let ctx = model.config.max_position_embeddings;
    if a.prompt_len + a.gen_len > ctx {
        anyhow::bail!(
            "--prompt-len {} + --gen-len {} exceeds the model's context of {ctx} tokens",
            a.prompt_len,
            a.gen_len
        );
    }
    // `run_bench` sets the blocks per run.
    let mut engine = EngineConfig::with_blocks(0);
    engine.max_batched_tokens = a.max_batched_tokens;
    engine.max_num_seqs = a.concurrency.iter().copied().max().unwrap_or(1);
    engine.prefix_caching = false;
    engine.act_mode = act_mode(a.activations);
    let opts = BenchOptions {
        prompt_len: a.prompt_len,
        gen_len: a.gen_len,
        concurrency: a.concurrency.clone(),
        engine,
        kv_blocks: a.kv_blocks,
        seed: common.seed,
    };
    let bw = (!a.no_bandwidth).then(stream_read_bandwidth);
    let wb = model.weight_bytes_per_token();
    if !a.json {
        println!(
            "{}: {:.0} MB of weights read per token, {} threads{}",
            a.model.display(),
            wb as f64 / 1e6,
            rayon::current_num_threads(),
            bw.map_or(String::new(), |b| format!(
                ", read bandwidth {:.1} GB/s → decode roofline {:.1} tok/s",
                b / 1e9,
                b / wb as f64
            ))
        );
        println!(
            "{:>5} {:>10} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>6}",
            "conc",
            "prompt/s",
            "decode/s",
            "aggr/s",
            "ttft ms",
            "ttft max",
            "blocks",
            "waste%",
            "preempt"
        );
    }
    // A spinner on stderr while a run goes (one run at 16 × 512 prompt tokens takes minutes).
    let spinner = if common.quiet || a.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut pending = a.concurrency.iter();
    let mut announce = |spinner: &indicatif::ProgressBar| {
        if let Some(c) = pending.next() {
            spinner.set_message(format!("{c} concurrent requests…"));
        }
    };
    announce(&spinner);
    let rows = run_bench(model, &opts, |r| {
        announce(&spinner);
        if !a.json {
            spinner.suspend(|| print_row(r));
        }
    })?;
    spinner.finish_and_clear();
    if a.json {
        super::print_json(&Report {
            model: a.model.display().to_string(),
            threads: rayon::current_num_threads(),
            weight_bytes_per_token: wb,
            read_bandwidth_gb_s: bw.map(|b| b / 1e9),
            roofline_decode_tokens_per_s: bw.map(|b| b / wb as f64),
            prompt_len: a.prompt_len,
            gen_len: a.gen_len,
            runs: rows,
        })?;
    }
    Ok(())
}
