//! A report row per model of a run: size and parameters from the dir, ppl/KL/top-1 against the
//! original with the same evaluation as `compress eval --reference` (core's `evaluate` on the
//! same windows), and decode tokens/s from the caller's speed probe (the CLI passes the
//! runtime's `compress bench` measurement; this crate does not depend on the runtime).

use std::path::Path;

use compress_format::hf_config::HfConfig;

use super::{Recipe, Row};
use crate::data::{chunk, TokenData};
use crate::error::Result;
use crate::eval::evaluate;
use crate::model::hf::{load_model, weight_bytes};
use crate::model::LlamaConfig;

/// Decode tokens/s of the model in a dir, generating `gen_len` tokens.
pub type SpeedProbe<'a> = &'a dyn Fn(&Path, usize) -> Result<f64>;

/// Parameters, active parameters (MoE: only `top_k` of `num_experts` experts run per token)
/// and the sparsity the dir's `quantization_config.sparsity_config` declares.
fn shape_of(dir: &Path) -> Result<(usize, usize, f64)> {
    let hf = HfConfig::from_file(&dir.join("config.json"))?;
    let cfg = LlamaConfig::from_hf(&hf);
    let params = cfg.num_parameters();
    let active = match cfg.moe {
        Some(m) => {
            let idle: usize = (0..cfg.stored_layers())
                .map(|l| {
                    let ffn = 3 * cfg.hidden_size * cfg.layer(l).intermediate_size;
                    ffn * (m.num_experts - m.top_k) / m.num_experts
                })
                .sum();
            params - idle
        }
        None => params,
    };
    // compressed-tensors keeps it inside quantization_config.
    let sparsity = hf
        .raw
        .get("quantization_config")
        .and_then(|q| q.get("sparsity_config"))
        .and_then(|s| s.get("global_sparsity"))
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    Ok((params, active, sparsity))
}

/// The rows of a finished run: the original, then each stage (`timings`: seconds and whether
/// it was resumed, per stage).
pub fn rows(
    recipe: &Recipe,
    timings: &[(f64, bool)],
    device: &str,
    speed: Option<SpeedProbe>,
) -> Result<Vec<Row>> {
    let device = crate::parse_device(device)?;
    let original = load_model(&recipe.model, &device)?;
    let cfg = &original.model.config;
    let eval = recipe.data.eval.as_deref().unwrap_or(Path::new(""));
    let docs = TokenData::for_model(&recipe.model, cfg.vocab_size)?.documents(eval)?;
    let seq_len = recipe.eval.seq_len.min(cfg.max_position_embeddings);
    let mut seqs = chunk(&docs, seq_len, 2);
    seqs.truncate(recipe.eval.max_seqs);
    let mut dirs = vec![(
        "original".to_string(),
        "model".to_string(),
        recipe.model.clone(),
    )];
    for (i, s) in recipe.stages.iter().enumerate() {
        dirs.push((s.name.clone(), s.kind.clone(), recipe.stage_dir(i)));
    }
    let mut rows = Vec::with_capacity(dirs.len());
    for (i, (name, kind, dir)) in dirs.into_iter().enumerate() {
        let report = match i {
            0 => evaluate(&original.model, Some(&original.model), &seqs, 4, 0, None)?,
            _ => {
                let m = load_model(&dir, &device)?;
                evaluate(&m.model, Some(&original.model), &seqs, 4, 0, None)?
            }
        };
        let size_bytes = weight_bytes(&dir)?;
        let (parameters, active_parameters, sparsity) = shape_of(&dir)?;
        let (stage_seconds, resumed) = match i {
            0 => (0.0, false),
            _ => timings[i - 1],
        };
        let decode = match (recipe.eval.speed, speed) {
            (true, Some(probe)) => Some(probe(&dir, recipe.eval.gen_len)?),
            _ => None,
        };
        rows.push(Row {
            name,
            kind,
            size_bytes,
            parameters,
            active_parameters,
            bits_per_param: size_bytes as f64 * 8.0 / parameters.max(1) as f64,
            sparsity,
            ppl: report.ppl,
            kld: report.kld.unwrap_or(0.0),
            top1_agree: report.top1_agree.unwrap_or(1.0),
            decode_tokens_per_s: decode,
            stage_seconds,
            resumed,
        });
    }
    Ok(rows)
}
