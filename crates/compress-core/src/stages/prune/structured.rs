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
//! input feature under Wanda (`|w| · ‖x‖`). With `--scope layer` every layer drops the same
//! number of units, `round(s · units)` (each layer picks its own lowest), so the result is a
//! plain Llama config (`num_attention_heads`, `num_key_value_heads`, `intermediate_size`,
//! explicit `head_dim`) that transformers loads as it is. With `--scope global` the lowest
//! `round(s · all units)` go wherever they are (every layer keeps at least one); layers then
//! differ, and their sizes are listed under `compress_layer_shapes` in config.json (this
//! project's extension: core and the runtime read it, transformers does not).

use std::collections::HashMap;

use serde::Serialize;

use compress_format::hf_config::LayerShape;

use super::wanda::InputNorms;
use super::Scope;
use crate::error::{CoreError, Result};
use crate::model::names;
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
        let least = 0.5 / units as f64;
        let msg = format!("removes no {what} (a layer has {units}; use at least {least:.4})");
        return Err(CoreError::setting("sparsity", s, msg));
    }
    if drop >= units {
        let msg =
            format!("would prune {drop} of the {units} {what} a layer has; at least one must stay");
        return Err(CoreError::setting("sparsity", s, msg));
    }
    Ok(drop)
}

fn get<'a>(t: &'a HashMap<String, Vec<f32>>, name: &str) -> Result<&'a Vec<f32>> {
    t.get(name)
        .ok_or_else(|| CoreError::tensor(name, "missing"))
}

/// The units each layer keeps, ascending, given per-layer `scores` (higher is kept first).
/// `Layer`: every layer drops `round(s · units)` of its own. `Global`: `round(s · total)` over
/// all layers by score, every layer keeping at least one.
fn choose(scores: &[Vec<f64>], s: f64, scope: Scope, what: &str) -> Result<Vec<Vec<usize>>> {
    if scope == Scope::Layer {
        return scores
            .iter()
            .map(|sc| Ok(keep_best(sc, drop_count(s, sc.len(), what)?)))
            .collect();
    }
    let total: usize = scores.iter().map(Vec::len).sum();
    let drop = (s * total as f64).round() as usize;
    if drop == 0 || drop > total - scores.len() {
        let msg = format!(
            "with `scope` global would prune {drop} of the {total} {what} of the model; at least \
             one per layer must stay and at least one must go"
        );
        return Err(CoreError::setting("sparsity", s, msg));
    }
    let mut all: Vec<(f64, usize, usize)> = scores
        .iter()
        .enumerate()
        .flat_map(|(l, sc)| sc.iter().enumerate().map(move |(u, &v)| (v, l, u)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut left: Vec<usize> = scores.iter().map(Vec::len).collect();
    let mut dropped: Vec<Vec<bool>> = scores.iter().map(|sc| vec![false; sc.len()]).collect();
    let mut n = 0;
    for (_, l, u) in all {
        if n == drop {
            break;
        }
        if left[l] > 1 {
            dropped[l][u] = true;
            left[l] -= 1;
            n += 1;
        }
    }
    Ok(dropped
        .iter()
        .map(|d| (0..d.len()).filter(|&u| !d[u]).collect())
        .collect())
}

/// The config after layer `l` kept `(kv_heads, heads, intermediate)` = `sizes[l]`: uniform
/// sizes at the top level, or per-layer `layer_shapes` (top level: the largest layer).
fn shrunk_config(cfg: &LlamaConfig, sizes: &[LayerShape]) -> LlamaConfig {
    let mut out = cfg.clone();
    let max = |f: fn(&LayerShape) -> usize| sizes.iter().map(f).max().unwrap_or(0);
    out.num_heads = max(|x| x.num_attention_heads);
    out.num_kv_heads = max(|x| x.num_key_value_heads);
    out.intermediate_size = max(|x| x.intermediate_size);
    let uniform = sizes.windows(2).all(|w| w[0] == w[1]);
    out.layer_shapes = if uniform { Vec::new() } else { sizes.to_vec() };
    out
}

/// Drops KV groups (each with its query heads) from `tensors` (HF layout): `round(s · kv_heads)`
/// per layer, or `round(s · all groups)` by global rank; returns the shrunk config and what each
/// layer kept.
pub fn prune_heads(
    cfg: &LlamaConfig,
    tensors: &mut HashMap<String, Vec<f32>>,
    s: f64,
    scope: Scope,
    norms: Option<&InputNorms>,
) -> Result<(LlamaConfig, Vec<LayerUnits>)> {
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let name = |l: usize, x: &str| names::attn(l, x);
    let n = |l: usize, x: &str| norms.and_then(|n| n.norms.get(&name(l, x)).map(Vec::as_slice));
    let mut scores = Vec::new();
    for l in 0..cfg.num_layers {
        let ls = cfg.layer(l);
        let (kvh, rep) = (
            ls.num_key_value_heads,
            ls.num_attention_heads / ls.num_key_value_heads,
        );
        let (q, k) = (
            get(tensors, &name(l, "q_proj.weight"))?,
            get(tensors, &name(l, "k_proj.weight"))?,
        );
        let (v, o) = (
            get(tensors, &name(l, "v_proj.weight"))?,
            get(tensors, &name(l, "o_proj.weight"))?,
        );
        let qw = ls.num_attention_heads * hd;
        scores.push(
            (0..kvh)
                .map(|g| {
                    let (q0, q1) = (g * rep * hd, (g + 1) * rep * hd);
                    rows_energy(q, h, q0..q1, n(l, "q_proj.weight"))
                        + rows_energy(k, h, g * hd..(g + 1) * hd, n(l, "k_proj.weight"))
                        + rows_energy(v, h, g * hd..(g + 1) * hd, n(l, "v_proj.weight"))
                        + cols_energy(o, qw, q0..q1, n(l, "o_proj.weight"))
                })
                .collect::<Vec<f64>>(),
        );
    }
    let kept = choose(
        &scores,
        s,
        scope,
        "key/value heads (each with its query heads)",
    )?;
    let mut report = Vec::new();
    let mut sizes = Vec::new();
    for (l, kept) in kept.into_iter().enumerate() {
        let ls = cfg.layer(l);
        let rep = ls.num_attention_heads / ls.num_key_value_heads;
        let qw = ls.num_attention_heads * hd;
        let shrink =
            |t: &mut HashMap<String, Vec<f32>>, x: &str, f: &dyn Fn(&[f32]) -> Vec<f32>| {
                if let Some(w) = t.get(&name(l, x)) {
                    let out = f(w);
                    t.insert(name(l, x), out);
                }
            };
        shrink(tensors, "q_proj.weight", &|w| {
            take_rows(w, h, rep * hd, &kept)
        });
        shrink(tensors, "k_proj.weight", &|w| take_rows(w, h, hd, &kept));
        shrink(tensors, "v_proj.weight", &|w| take_rows(w, h, hd, &kept));
        shrink(tensors, "o_proj.weight", &|w| {
            take_cols(w, qw, rep * hd, &kept)
        });
        shrink(tensors, "q_proj.bias", &|b| {
            take_rows(b, 1, rep * hd, &kept)
        });
        shrink(tensors, "k_proj.bias", &|b| take_rows(b, 1, hd, &kept));
        shrink(tensors, "v_proj.bias", &|b| take_rows(b, 1, hd, &kept));
        sizes.push(LayerShape {
            num_attention_heads: kept.len() * rep,
            num_key_value_heads: kept.len(),
            intermediate_size: ls.intermediate_size,
        });
        report.push(LayerUnits {
            layer: l,
            before: ls.num_key_value_heads,
            kept,
        });
    }
    Ok((shrunk_config(cfg, &sizes), report))
}

/// Drops FFN neurons from `tensors` (HF layout): `round(s · intermediate)` per layer, or
/// `round(s · all neurons)` by global rank; returns the shrunk config and what each layer kept.
pub fn prune_neurons(
    cfg: &LlamaConfig,
    tensors: &mut HashMap<String, Vec<f32>>,
    s: f64,
    scope: Scope,
    norms: Option<&InputNorms>,
) -> Result<(LlamaConfig, Vec<LayerUnits>)> {
    let h = cfg.hidden_size;
    let name = |l: usize, x: &str| names::weight(&names::join(&names::mlp(l), x));
    let n = |l: usize, x: &str| norms.and_then(|n| n.norms.get(&name(l, x)).map(Vec::as_slice));
    let mut scores = Vec::new();
    for l in 0..cfg.num_layers {
        let units = cfg.layer(l).intermediate_size;
        let gate = get(tensors, &name(l, "gate_proj"))?;
        let up = get(tensors, &name(l, "up_proj"))?;
        let down = get(tensors, &name(l, "down_proj"))?;
        scores.push(
            (0..units)
                .map(|i| {
                    rows_energy(gate, h, i..i + 1, n(l, "gate_proj"))
                        + rows_energy(up, h, i..i + 1, n(l, "up_proj"))
                        + cols_energy(down, units, i..i + 1, n(l, "down_proj"))
                })
                .collect::<Vec<f64>>(),
        );
    }
    let kept = choose(&scores, s, scope, "FFN neurons")?;
    let mut report = Vec::new();
    let mut sizes = Vec::new();
    for (l, kept) in kept.into_iter().enumerate() {
        let ls = cfg.layer(l);
        let units = ls.intermediate_size;
        let gate = take_rows(get(tensors, &name(l, "gate_proj"))?, h, 1, &kept);
        let up = take_rows(get(tensors, &name(l, "up_proj"))?, h, 1, &kept);
        let down = take_cols(get(tensors, &name(l, "down_proj"))?, units, 1, &kept);
        tensors.insert(name(l, "gate_proj"), gate);
        tensors.insert(name(l, "up_proj"), up);
        tensors.insert(name(l, "down_proj"), down);
        sizes.push(LayerShape {
            intermediate_size: kept.len(),
            ..ls
        });
        report.push(LayerUnits {
            layer: l,
            before: units,
            kept,
        });
    }
    Ok((shrunk_config(cfg, &sizes), report))
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
