//! Structured pruning: whole attention heads or FFN neurons removed, tensors physically shrunk.
//!
//! * **Heads** respect grouped-query attention: key/value head `g` serves query heads
//!   `g · rep .. (g + 1) · rep` (`rep = heads / kv_heads`, transformers' `repeat_kv`), so a
//!   group (one KV head and its query heads) goes as a unit: its q/k/v rows (and biases) and
//!   its `o_proj` input columns. With `kv_heads = heads` each head is its own group.
//! * **Neurons**: FFN intermediate unit `i` is `gate_proj`/`up_proj` row `i` with `down_proj`
//!   column `i`.
//!
//! Units are scored by the L2 norm of all their weights, each weight scaled by the norm of its
//! input feature under Wanda (`|w| · ‖x‖`). Every layer drops the same number of units,
//! `round(s · units)` (each layer picks its own lowest), so the result is a plain Llama config
//! (`num_attention_heads`, `num_key_value_heads`, `intermediate_size`, explicit `head_dim`)
//! that transformers loads as it is.

use std::collections::HashMap;

use serde::Serialize;

use super::wanda::InputNorms;
use crate::error::{CoreError, Result};
use crate::model::LlamaConfig;

/// What one layer kept.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerUnits {
    /// Decoder layer.
    pub layer: usize,
    /// Units (KV groups or neurons) before.
    pub before: usize,
    /// Indices of the units kept, ascending.
    pub kept: Vec<usize>,
}

/// `Σ (w[r, c] · n[c])²` over rows `rows` of a row-major `[_, cols]` matrix.
fn rows_energy(w: &[f32], cols: usize, rows: std::ops::Range<usize>, n: Option<&[f32]>) -> f64 {
    let mut e = 0.0;
    for r in rows {
        for (c, &v) in w[r * cols..(r + 1) * cols].iter().enumerate() {
            let s = n.map_or(1.0, |n| n[c]);
            e += f64::from(v * s).powi(2);
        }
    }
    e
}

/// `Σ (w[r, c] · n[c])²` over columns `cols_range` of a row-major `[rows, cols]` matrix.
fn cols_energy(w: &[f32], cols: usize, range: std::ops::Range<usize>, n: Option<&[f32]>) -> f64 {
    let mut e = 0.0;
    for row in w.chunks_exact(cols) {
        for c in range.clone() {
            let s = n.map_or(1.0, |n| n[c]);
            e += f64::from(row[c] * s).powi(2);
        }
    }
    e
}

/// Keeps the `units - drop` highest-scoring units, ascending.
fn keep_best(scores: &[f64], drop: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept = idx[..scores.len() - drop].to_vec();
    kept.sort_unstable();
    kept
}

/// Rows `r` of each kept block of `block` rows (row-major `[_, cols]`).
fn take_rows(w: &[f32], cols: usize, block: usize, kept: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(kept.len() * block * cols);
    for &k in kept {
        out.extend_from_slice(&w[k * block * cols..(k + 1) * block * cols]);
    }
    out
}

/// Columns of each kept block of `block` columns (row-major `[_, cols]`).
fn take_cols(w: &[f32], cols: usize, block: usize, kept: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(w.len() / cols * kept.len() * block);
    for row in w.chunks_exact(cols) {
        for &k in kept {
            out.extend_from_slice(&row[k * block..(k + 1) * block]);
        }
    }
    out
}

/// Units to drop per layer for sparsity `s` of `units`, or an error naming the limit.
fn drop_count(s: f64, units: usize, what: &str) -> Result<usize> {
    let drop = (s * units as f64).round() as usize;
    if drop == 0 {
        return Err(CoreError::Invalid(format!(
            "--sparsity {s}: removes no {what} (a layer has {units}; use at least {:.4})",
            0.5 / units as f64
        )));
    }
    if drop >= units {
        return Err(CoreError::Invalid(format!(
            "--sparsity {s}: would prune {drop} of the {units} {what} a layer has; at least one must stay"
        )));
    }
    Ok(drop)
}

fn get<'a>(t: &'a HashMap<String, Vec<f32>>, name: &str) -> Result<&'a Vec<f32>> {
    t.get(name)
        .ok_or_else(|| CoreError::Invalid(format!("tensor `{name}` missing")))
}

/// Drops `round(s · kv_heads)` KV groups per layer from `tensors` (HF layout) and returns the
/// shrunk config and what each layer kept.
pub fn prune_heads(
    cfg: &LlamaConfig,
    tensors: &mut HashMap<String, Vec<f32>>,
    s: f64,
    norms: Option<&InputNorms>,
) -> Result<(LlamaConfig, Vec<LayerUnits>)> {
    let (h, hd, kvh) = (cfg.hidden_size, cfg.head_dim, cfg.num_kv_heads);
    let rep = cfg.num_heads / kvh;
    let drop = drop_count(s, kvh, "key/value heads (each with its query heads)")?;
    let mut report = Vec::new();
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}.self_attn");
        let name = |x: &str| format!("{p}.{x}");
        let n = |x: &str| norms.and_then(|n| n.norms.get(&name(x)).map(Vec::as_slice));
        let (q, k, v, o) = (
            get(tensors, &name("q_proj.weight"))?,
            get(tensors, &name("k_proj.weight"))?,
            get(tensors, &name("v_proj.weight"))?,
            get(tensors, &name("o_proj.weight"))?,
        );
        let qw = cfg.num_heads * hd;
        let scores: Vec<f64> = (0..kvh)
            .map(|g| {
                let (q0, q1) = (g * rep * hd, (g + 1) * rep * hd);
                rows_energy(q, h, q0..q1, n("q_proj.weight"))
                    + rows_energy(k, h, g * hd..(g + 1) * hd, n("k_proj.weight"))
                    + rows_energy(v, h, g * hd..(g + 1) * hd, n("v_proj.weight"))
                    + cols_energy(o, qw, q0..q1, n("o_proj.weight"))
            })
            .collect();
        let kept = keep_best(&scores, drop);
        let q = take_rows(q, h, rep * hd, &kept);
        let k = take_rows(k, h, hd, &kept);
        let v = take_rows(v, h, hd, &kept);
        let o = take_cols(o, qw, rep * hd, &kept);
        tensors.insert(name("q_proj.weight"), q);
        tensors.insert(name("k_proj.weight"), k);
        tensors.insert(name("v_proj.weight"), v);
        tensors.insert(name("o_proj.weight"), o);
        for (b, block) in [
            ("q_proj.bias", rep * hd),
            ("k_proj.bias", hd),
            ("v_proj.bias", hd),
        ] {
            if let Some(bias) = tensors.get(&name(b)) {
                let shrunk = take_rows(bias, 1, block, &kept);
                tensors.insert(name(b), shrunk);
            }
        }
        report.push(LayerUnits {
            layer: l,
            before: kvh,
            kept,
        });
    }
    let mut out = cfg.clone();
    out.num_kv_heads = kvh - drop;
    out.num_heads = (kvh - drop) * rep;
    Ok((out, report))
}

/// Drops `round(s · intermediate)` FFN neurons per layer from `tensors` (HF layout) and returns
/// the shrunk config and what each layer kept.
pub fn prune_neurons(
    cfg: &LlamaConfig,
    tensors: &mut HashMap<String, Vec<f32>>,
    s: f64,
    norms: Option<&InputNorms>,
) -> Result<(LlamaConfig, Vec<LayerUnits>)> {
    let (h, units) = (cfg.hidden_size, cfg.intermediate_size);
    let drop = drop_count(s, units, "FFN neurons")?;
    let mut report = Vec::new();
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}.mlp");
        let name = |x: &str| format!("{p}.{x}.weight");
        let n = |x: &str| norms.and_then(|n| n.norms.get(&name(x)).map(Vec::as_slice));
        let (gate, up, down) = (
            get(tensors, &name("gate_proj"))?,
            get(tensors, &name("up_proj"))?,
            get(tensors, &name("down_proj"))?,
        );
        let scores: Vec<f64> = (0..units)
            .map(|i| {
                rows_energy(gate, h, i..i + 1, n("gate_proj"))
                    + rows_energy(up, h, i..i + 1, n("up_proj"))
                    + cols_energy(down, units, i..i + 1, n("down_proj"))
            })
            .collect();
        let kept = keep_best(&scores, drop);
        let gate = take_rows(gate, h, 1, &kept);
        let up = take_rows(up, h, 1, &kept);
        let down = take_cols(down, units, 1, &kept);
        tensors.insert(name("gate_proj"), gate);
        tensors.insert(name("up_proj"), up);
        tensors.insert(name("down_proj"), down);
        report.push(LayerUnits {
            layer: l,
            before: units,
            kept,
        });
    }
    let mut out = cfg.clone();
    out.intermediate_size = units - drop;
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_helpers_keep_the_right_blocks() {
        // [3, 4]: rows 0..3, cols 0..4.
        let w: Vec<f32> = (0..12).map(|i| i as f32).collect();
        assert_eq!(
            take_rows(&w, 4, 1, &[0, 2]),
            vec![0., 1., 2., 3., 8., 9., 10., 11.]
        );
        assert_eq!(take_cols(&w, 4, 2, &[1]), vec![2., 3., 6., 7., 10., 11.]);
        assert_eq!(keep_best(&[3.0, 1.0, 2.0, 5.0], 2), vec![0, 3]);
        assert!(drop_count(0.9, 4, "heads")
            .unwrap_err()
            .to_string()
            .contains("at least one"));
        assert!(drop_count(0.05, 4, "heads")
            .unwrap_err()
            .to_string()
            .contains("removes no"));
        assert_eq!(drop_count(0.5, 4, "heads").unwrap(), 2);
    }
}
