//! `compress convert --model M --out O [--dtype D] [--max-shard-size S]`.

use anyhow::{Context, Result};
use compress_core::model::hf::{save_model, SaveOptions};
use compress_core::outdir::check_output_dir;

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
    check_output_dir(&a.out, &[&a.model], a.overwrite)?;
    let device = super::device(common)?;
    let loaded = super::load(&a.model, &device)?;
    let dtype = compress_core::settings::dtype("dtype", a.dtype.as_deref(), loaded.dtype)?;
    let opts = SaveOptions {
        dtype,
        max_shard_bytes: a.max_shard_size.as_deref().map(parse_size).transpose()?,
        tokenizer_from: Some(a.model.clone()),
    };
    save_model(&loaded.model, &loaded.hf_config, &a.out, &opts)?;
    if !common.quiet {
        eprintln!("wrote {} ({dtype:?})", a.out.display());
    }
    Ok(())
}
