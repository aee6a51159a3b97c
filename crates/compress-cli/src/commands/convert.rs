//! `compress convert --model M --out O [--dtype D] [--max-shard-size S]`, or
//! `compress convert --from-gguf FILE --out O [--dtype D] [--json]` (a llama.cpp file to an HF
//! directory).

use anyhow::{Context, Result};
use compress_core::model::hf::{save_model, SaveOptions};
use compress_core::outdir::{check_output_dir, write_dir_atomically};
use compress_format::safetensors::Dtype;

use crate::cli::{Common, ConvertArgs};

/// Parses `123`, `10KB`, `5MB`, `2GB` (powers of 1000, as HF's max_shard_size).
fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("GB") {
        (n, 1_000_000_000)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, 1_000_000)
    } else if let Some(n) = t.strip_suffix("KB") {
        (n, 1_000)
    } else {
        (t.as_str(), 1)
    };
    let n: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("--max-shard-size {s}: expected e.g. 500MB"))?;
    if n <= 0.0 {
        anyhow::bail!("--max-shard-size {s}: must be > 0");
    }
    Ok((n * mult as f64) as usize)
}

pub fn run(a: ConvertArgs, common: &Common) -> Result<()> {
    if let Some(src) = &a.from_gguf {
        return from_gguf(src, &a, common);
    }
    if a.json {
        anyhow::bail!("--json: only with --from-gguf (an import prints its report)");
    }
    let model = a.model.clone().context("--model is required")?;
    check_output_dir(&a.out, &[&model], a.overwrite)?;
    let device = super::device(common)?;
    let loaded = super::load(&model, &device)?;
    let dtype = compress_core::settings::dtype("dtype", a.dtype.as_deref(), loaded.dtype)?;
    let opts = SaveOptions {
        dtype,
        max_shard_bytes: a.max_shard_size.as_deref().map(parse_size).transpose()?,
        tokenizer_from: Some(model),
    };
    save_model(&loaded.model, &loaded.hf_config, &a.out, &opts)?;
    if !common.quiet {
        eprintln!("wrote {} ({dtype:?})", a.out.display());
    }
    Ok(())
}

/// `--from-gguf`: imports `src` into `--out`, atomically.
fn from_gguf(src: &std::path::Path, a: &ConvertArgs, common: &Common) -> Result<()> {
    use compress_format::gguf::{import_gguf, ImportOptions};
    check_output_dir(&a.out, &[src], a.overwrite)?;
    let opts = ImportOptions {
        dtype: compress_core::settings::dtype("dtype", a.dtype.as_deref(), Dtype::F32)?,
        max_shard_bytes: a.max_shard_size.as_deref().map(parse_size).transpose()?,
    };
    let mut report = None;
    write_dir_atomically(&a.out, |dir| {
        report = Some(import_gguf(src, dir, &opts)?);
        Ok(())
    })
    .with_context(|| format!("importing {}", src.display()))?;
    let r = report.expect("set by a successful import");
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !common.quiet {
        let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
        eprintln!(
            "wrote {} ({}{}, {} tensors, {:.1}M parameters, {:?}; GGUF tensors: {}; tokenizer: {}{})",
            a.out.display(),
            r.architecture,
            r.name.as_deref().map(|n| format!(" `{n}`")).unwrap_or_default(),
            r.tensors,
            r.parameters as f64 / 1e6,
            opts.dtype,
            types.join(", "),
            r.tokenizer.as_deref().unwrap_or("none"),
            if r.chat_template { ", chat template" } else { "" },
        );
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(())
}
