//! `compress run RECIPE.toml [--resume] [--overwrite] [--out DIR] [--check] [--json]`: the
//! recipe runner of compress-core (each stage through its stage's `run`), with the runtime's
//! decode-speed measurement for the report.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use compress_core::recipe::{self, Recipe, RunOptions, StageDefaults};
use compress_core::CoreError;
use compress_runtime::bench::{run_bench, BenchOptions};
use compress_runtime::{EngineConfig, Model};

use crate::cli::{Common, RunArgs};

/// Decode tokens/s of one sequence after a 16-token prompt (as `compress bench` measures it).
fn decode_speed(dir: &Path, gen_len: usize) -> compress_core::Result<f64> {
    let fail = |e: String| CoreError::Invalid(format!("{}: decode speed: {e}", dir.display()));
    let model = Arc::new(Model::load(dir).map_err(|e| fail(e.to_string()))?);
    let opts = BenchOptions {
        prompt_len: 16,
        gen_len,
        concurrency: vec![1],
        engine: EngineConfig::with_blocks(1),
        kv_blocks: None,
        seed: 0,
    };
    let rows = run_bench(model, &opts, |_| {}).map_err(|e| fail(e.to_string()))?;
    Ok(rows.first().map_or(0.0, |r| r.decode_tokens_per_s))
}

pub fn run(a: RunArgs, common: &Common) -> Result<()> {
    let mut recipe = Recipe::from_file(&a.recipe)?;
    if let Some(out) = a.out {
        recipe.out = out;
    }
    let stages = StageDefaults {
        device: common.device.clone(),
        seed: common.seed,
    };
    if a.check {
        recipe::check(&recipe, &stages)?;
        let names: Vec<&str> = recipe.stages.iter().map(|s| s.name.as_str()).collect();
        let (path, n) = (recipe.path.display(), names.len());
        println!("{path}: ok ({n} stages: {})", names.join(" → "));
        return Ok(());
    }
    let opts = RunOptions {
        resume: a.resume,
        overwrite: a.overwrite,
        stages,
    };
    let report = recipe::run(
        &recipe,
        &opts,
        &super::progress(common, false),
        Some(&decode_speed),
    )?;
    match a.json {
        true => super::print_json(&report)?,
        false => {
            println!("{}", report.markdown());
            let report_md = recipe.out.join("report.md");
            let final_dir = recipe::final_dir(&recipe);
            println!(
                "report: {}; final model: {}",
                report_md.display(),
                final_dir.display()
            );
        }
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} (limit {}, got {:.4})", c.name, c.limit, c.value))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "recipe {}: thresholds failed: {}",
            recipe.name,
            failed.join("; ")
        );
    }
    Ok(())
}
