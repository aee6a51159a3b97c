//! `compress export --model M --format gguf --type f32|f16|q8_0|q4_0 --out F.gguf`.

use std::time::Instant;

use anyhow::{Context, Result};
use compress_format::gguf::{export_gguf, ExportOptions, ExportReport, ExportType};
use serde::Serialize;

use crate::cli::{Common, ExportArgs};

#[derive(Serialize)]
struct TensorJson {
    name: String,
    source_name: String,
    #[serde(rename = "type")]
    ty: &'static str,
    ne: Vec<usize>,
    source: &'static str,
}

#[derive(Serialize)]
struct ExportJson {
    out: String,
    format: &'static str,
    #[serde(rename = "type")]
    ty: String,
    architecture: &'static str,
    bytes: u64,
    parameters: usize,
    bits_per_weight: f64,
    seconds: f64,
    tensors: Vec<TensorJson>,
}

pub fn run(a: ExportArgs, common: &Common) -> Result<()> {
    let ty = ExportType::from_name(&a.ty)
        .with_context(|| format!("--type {}: expected f32, f16, q8_0 or q4_0", a.ty))?;
    let output_ty = match &a.output_type {
        Some(t) => Some(
            ExportType::from_name(t)
                .with_context(|| format!("--output-type {t}: expected f32, f16, q8_0 or q4_0"))?,
        ),
        None => None,
    };
    if a.out.is_dir() {
        anyhow::bail!(
            "--out {} is a directory; give a file path such as model.gguf",
            a.out.display()
        );
    }
    if a.out.exists() && !a.overwrite {
        anyhow::bail!(
            "output {} exists (pass --overwrite to replace it)",
            a.out.display()
        );
    }
    // --overwrite replaces a GGUF file, never another file (a model's weights, say).
    if a.out.exists() && !is_gguf(&a.out) {
        anyhow::bail!(
            "--out {}: exists and is not a GGUF file; --overwrite only replaces GGUF files",
            a.out.display()
        );
    }
    if !a.model.join("config.json").is_file() {
        anyhow::bail!(
            "{}: not a model directory (no config.json)",
            a.model.display()
        );
    }
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let opts = ExportOptions {
        ty,
        output_ty,
        allow_requantize: a.allow_requantize,
        tokenizer: a.tokenizer.clone(),
        name: a.name.clone(),
    };
    let start = Instant::now();
    let bar = super::progress(common, a.json).bar(0, "export", "tensors");
    let report = export_gguf(&a.model, &a.out, &opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("exporting {} to {}", a.model.display(), a.out.display()))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let bits_per_weight = report.bytes as f64 * 8.0 / report.parameters.max(1) as f64;
    if a.json {
        return super::print_json(&export_json(&a, &report, bits_per_weight, seconds));
    }
    if !common.quiet {
        let mut counts = std::collections::BTreeMap::new();
        for t in &report.tensors {
            *counts
                .entry(format!("{} from {}", t.info.ty, t.source.name()))
                .or_insert(0) += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "wrote {} ({}, {:.1} MB, {bits_per_weight:.2} bits/weight, {seconds:.1} s): {}",
            a.out.display(),
            report.architecture,
            report.bytes as f64 / 1e6,
            summary.join(", ")
        );
    }
    Ok(())
}

/// What `--json` prints.
fn export_json(
    a: &ExportArgs,
    report: &ExportReport,
    bits_per_weight: f64,
    seconds: f64,
) -> ExportJson {
    ExportJson {
        out: a.out.display().to_string(),
        format: "gguf",
        ty: a.ty.to_ascii_lowercase(),
        architecture: report.architecture,
        bytes: report.bytes,
        parameters: report.parameters,
        bits_per_weight,
        seconds,
        tensors: report
            .tensors
            .iter()
            .map(|t| TensorJson {
                name: t.info.name.clone(),
                source_name: t.source_name.clone(),
                ty: t.info.ty.name(),
                ne: t.info.ne.clone(),
                source: t.source.name(),
            })
            .collect(),
    }
}

/// Whether `path` starts with the GGUF magic.
fn is_gguf(path: &std::path::Path) -> bool {
    let mut magic = [0u8; 4];
    let read =
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
    read.is_ok() && &magic == b"GGUF"
}
