//! `compress quantize --model M --out O --bits B [--group-size G|--per-channel|--per-tensor] [--symmetric] [--json]`.

use anyhow::Result;
use compress_core::outdir::check_output_dir;
use compress_core::stages::quantize::{quantize_model, save_quantized, QuantizeConfig};
use compress_format::pack_quantized::WeightQuant;
use serde::Serialize;

use crate::cli::{Common, QuantizeArgs};

#[derive(Serialize)]
struct Summary<'a> {
    out: String,
    layers: &'a [compress_core::stages::quantize::LayerReport],
    bytes_before: usize,
    bytes_after: usize,
    bits_per_weight: f64,
}

pub fn run(a: QuantizeArgs, common: &Common) -> Result<()> {
    if !(2..=8).contains(&a.bits) {
        anyhow::bail!("--bits {}: must be between 2 and 8", a.bits);
    }
    if a.group_size == Some(0) {
        anyhow::bail!("--group-size 0: must be > 0");
    }
    check_output_dir(&a.out, &[&a.model], a.overwrite)?;
    let weights = if a.per_tensor {
        WeightQuant::tensor(a.bits, a.symmetric)
    } else if a.per_channel {
        WeightQuant::channel(a.bits, a.symmetric)
    } else {
        WeightQuant::group(a.bits, a.symmetric, a.group_size.unwrap_or(128))
    };
    let device = super::device(common)?;
    let loaded = super::load(&a.model, &device)?;
    if loaded.quantization.is_some() {
        anyhow::bail!(
            "{}: is already quantized (quantization_config in config.json); quantize the float model",
            a.model.display()
        );
    }
    let dtype = match &a.dtype {
        Some(d) => super::parse_dtype(d)?,
        None => loaded.dtype,
    };
    let cfg = QuantizeConfig {
        weights,
        ignore: a.ignore.clone(),
    };
    let q = quantize_model(&loaded.model, &cfg, dtype, loaded.dtype)?;
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
    save_quantized(&loaded.hf_config, &q, &a.out, dtype, Some(a.model.clone()))?;
    let before: usize = q.reports.iter().map(|r| r.bytes_before).sum();
    let after: usize = q.reports.iter().map(|r| r.bytes_after).sum();
    let weights_n: usize = q.layers.iter().map(|(_, l)| l.q.len()).sum();
    let summary = Summary {
        out: a.out.display().to_string(),
        layers: &q.reports,
        bytes_before: before,
        bytes_after: after,
        bits_per_weight: after as f64 * 8.0 / weights_n.max(1) as f64,
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
