//! `compress quantize --model M --out O --bits B [--group-size G|--per-channel|--per-tensor]
//! [--symmetric] [--method rtn|mse|gptq|awq|qat] [--calib F --calib-samples N --seq-len L] [--json]`.
//!
//! The model is streamed from its checkpoint one decoder layer at a time, so memory stays
//! about one layer plus the calibration activations and the packed output.

mod qat;

use anyhow::{Context, Result};
use compress_core::data::load_documents;
use compress_core::model::hf::open_checkpoint;
use compress_core::outdir::check_output_dir;
use compress_core::stages::quantize::awq::AwqConfig;
use compress_core::stages::quantize::gptq::GptqConfig;
use compress_core::stages::quantize::mse::MseConfig;
use compress_core::stages::quantize::{
    quantize_sequential, save_quantized, Calibration, Method, ModelSource, QuantizeConfig,
};
use compress_core::tokenizer::Tokenizer;
use compress_format::pack_quantized::WeightQuant;
use serde::Serialize;

use crate::cli::{Common, QuantMethod, QuantizeArgs};

#[derive(Serialize)]
struct Summary<'a> {
    out: String,
    layers: &'a [compress_core::stages::quantize::LayerReport],
    bytes_before: usize,
    bytes_after: usize,
    bits_per_weight: f64,
    /// Seconds each decoder layer took (calibration pass, method, propagation).
    layer_seconds: Vec<f64>,
    /// Total seconds, including reading the model and writing the output.
    seconds: f64,
}

/// The flag checks that need no file: bits, group size, method and its options. Also run by
/// `compress run` on every quantize stage before any stage starts.
pub(super) fn check(a: &QuantizeArgs) -> Result<(WeightQuant, Method)> {
    if !(2..=8).contains(&a.bits) {
        anyhow::bail!("--bits {}: must be between 2 and 8", a.bits);
    }
    if a.group_size == Some(0) {
        anyhow::bail!("--group-size 0: must be > 0");
    }
    let weights = if a.per_tensor {
        WeightQuant::tensor(a.bits, a.symmetric)
    } else if a.per_channel {
        WeightQuant::channel(a.bits, a.symmetric)
    } else {
        WeightQuant::group(a.bits, a.symmetric, a.group_size.unwrap_or(128))
    };
    qat::check_args(a)?;
    let method = match a.method {
        QuantMethod::Rtn | QuantMethod::Qat => Method::Rtn,
        QuantMethod::Mse => Method::Mse(MseConfig::for_bits(a.bits)),
        QuantMethod::Gptq => Method::Gptq(GptqConfig {
            dampening_frac: a.dampening,
            act_order: a.act_order,
            ..GptqConfig::default()
        }),
        QuantMethod::Awq => Method::Awq(AwqConfig::default()),
    };
    if !(a.dampening.is_finite() && a.dampening >= 0.0) {
        anyhow::bail!("--dampening {}: must be a finite number ≥ 0", a.dampening);
    }
    if a.act_order && !matches!(method, Method::Gptq(_)) {
        anyhow::bail!("--act-order: only applies to --method gptq");
    }
    if a.calib.is_some() && !method.needs_calibration() {
        anyhow::bail!(
            "--calib: --method {} uses no calibration data",
            method.name()
        );
    }
    Ok((weights, method))
}

pub fn run(a: QuantizeArgs, common: &Common) -> Result<()> {
    let started = std::time::Instant::now();
    let (weights, method) = check(&a)?;
    check_output_dir(&a.out, &[&a.model], a.overwrite)?;
    let device = super::device(common)?;
    let ck = open_checkpoint(&a.model)
        .with_context(|| format!("loading model {}", a.model.display()))?;
    if ck.quantization.is_some() {
        anyhow::bail!(
            "{}: is already quantized (quantization_config in config.json); quantize the float model",
            a.model.display()
        );
    }
    if ck.sparsity.is_some() && a.method == QuantMethod::Qat {
        anyhow::bail!(
            "{}: is pruned (sparsity_config); --method qat would train its zeros away, use rtn, mse, gptq or awq",
            a.model.display()
        );
    }
    let calib = match (&a.calib, method.needs_calibration()) {
        (None, true) => anyhow::bail!(
            "--method {}: needs calibration data (--calib FILE; .txt, .json or .jsonl)",
            method.name()
        ),
        (Some(path), true) => {
            if !path.is_file() {
                anyhow::bail!("--calib {}: file not found", path.display());
            }
            let tokenizer = Tokenizer::from_model_dir(&a.model)?;
            let docs = load_documents(path, tokenizer.as_ref(), ck.config.vocab_size)?;
            // No calibration sequence longer than the model's context.
            let seq_len = a.seq_len.min(ck.config.max_position_embeddings);
            let c = Calibration::from_documents(&docs, a.calib_samples, seq_len)
                .with_context(|| format!("--calib {}", path.display()))?;
            if !common.quiet && !a.json {
                eprintln!(
                    "calibration: {} sequences, {} tokens from {}",
                    c.samples.len(),
                    c.tokens(),
                    path.display()
                );
            }
            Some(c)
        }
        _ => None,
    };
    let dtype = match &a.dtype {
        Some(d) => super::parse_dtype(d)?,
        None => ck.dtype,
    };
    let cfg = QuantizeConfig {
        weights,
        ignore: a.ignore.clone(),
        method,
    };
    // QAT fine-tunes the float model in memory; the export below is then plain RTN of it.
    let trained = match a.method {
        QuantMethod::Qat => Some(qat::train(&a, common, &ck, weights, dtype, &device)?),
        _ => None,
    };
    let source = match &trained {
        Some(t) => ModelSource::Model(&t.model),
        None => ModelSource::Checkpoint(&ck, device),
    };
    let mut layer_seconds = Vec::new();
    let mut last = std::time::Instant::now();
    let bar = super::progress_bar(
        ck.config.num_layers as u64,
        "quantize",
        "layers",
        common.quiet,
    );
    let q = quantize_sequential(
        &source,
        &cfg,
        calib.as_ref(),
        dtype,
        ck.dtype,
        &mut |done, _| {
            layer_seconds.push(last.elapsed().as_secs_f64());
            last = std::time::Instant::now();
            bar.set_position(done as u64)
        },
    )?;
    bar.finish_and_clear();
    let q = match &trained {
        Some(_) => qat::label(q),
        None => q,
    };
    if q.config.ragged_groups {
        let inn: Vec<usize> = q.layers.iter().map(|(_, l)| l.in_features).collect();
        let g = cfg.weights.group_size.unwrap_or(0);
        let divisors: Vec<usize> = [32usize, 64, 128, 256]
            .into_iter()
            .filter(|d| inn.iter().all(|i| i % d == 0))
            .collect();
        let hint = match divisors.as_slice() {
            [] => "none of 32, 64, 128, 256 divides them all; try --per-channel".to_string(),
            d => format!("group sizes that divide: {d:?}"),
        };
        let msg = format!(
            "--group-size {g} does not divide every layer's input width; such a dir loads only \
             in compress ({hint})"
        );
        if a.strict_compat {
            anyhow::bail!("{msg}");
        }
        eprintln!("warning: {msg}");
    }
    save_quantized(&ck.hf_config, &q, &a.out, dtype, Some(a.model.clone()))?;
    if let Some(t) = &trained {
        super::write_metrics(&a.out, &t.metrics)?;
    }
    let before: usize = q.reports.iter().map(|r| r.bytes_before).sum();
    let after: usize = q.reports.iter().map(|r| r.bytes_after).sum();
    let weights_n: usize = q.layers.iter().map(|(_, l)| l.q.len()).sum();
    let summary = Summary {
        out: a.out.display().to_string(),
        layers: &q.reports,
        bytes_before: before,
        bytes_after: after,
        bits_per_weight: after as f64 * 8.0 / weights_n.max(1) as f64,
        layer_seconds,
        seconds: started.elapsed().as_secs_f64(),
    };
    if a.json {
        return super::print_json(&summary);
    }
    if !common.quiet {
        println!(
            "{:<36} {:>6} {:>4} {:>6} {:>10} {:>10} {:>10} {:>6}",
            "layer", "method", "bits", "group", "rel.err", "before", "after", "bpw"
        );
        for r in &q.reports {
            println!(
                "{:<36} {:>6} {:>4} {:>6} {:>10.2e} {:>10} {:>10} {:>6.2}",
                r.name,
                r.method,
                r.bits,
                r.group_size.map_or("-".to_string(), |g| g.to_string()),
                r.rel_error,
                r.bytes_before,
                r.bytes_after,
                r.bits_per_weight
            );
        }
        println!(
            "{} layers: {:.2} MB → {:.2} MB ({:.2} bits/weight incl. scales); wrote {}",
            q.reports.len(),
            before as f64 / 1e6,
            after as f64 / 1e6,
            summary.bits_per_weight,
            a.out.display()
        );
    }
    Ok(())
}
