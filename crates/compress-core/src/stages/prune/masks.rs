//! Unstructured and N:M keep-masks over the decoder linears, chosen by score.
//!
//! Weights are handled by HF name in HF layout (`[out, in]`, row-major). A score per weight
//! (`|w|`, or Wanda's `|w| · ‖x_in‖`) ranks them; the lowest are pruned:
//! * unstructured, per layer: exactly `round(s · n)` of each matrix (Wanda: `round(s · in)`
//!   of each output row, the comparison group of the Wanda paper);
//! * unstructured, global: exactly `round(s · N)` over all targeted matrices together;
//! * N:M: the `N` lowest of every `M` consecutive inputs of each row.
//!
//! Weights pruned before stay pruned (masks only grow), whatever their score; ties break by
//! position, so masks are deterministic.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Criterion, Pattern, Scope};
use crate::error::{CoreError, Result};
use crate::model::weights::{param_id, transpose};
use crate::train::ParamMasks;

/// The decoder linears a pruning run may target (HF `…weight` names), in model order.
pub fn linear_names(num_layers: usize) -> Vec<String> {
    let mut out = Vec::new();
    for l in 0..num_layers {
        for p in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            out.push(crate::model::names::in_layer(l, &format!("{p}.weight")));
        }
    }
    out
}

/// Whether HF weight `name` is left alone by an `ignore` list (module names or prefixes).
pub fn ignored(name: &str, ignore: &[String]) -> bool {
    let module = name.strip_suffix(".weight").unwrap_or(name);
    ignore
        .iter()
        .any(|i| module == i || module.starts_with(&format!("{i}.")))
}

/// One matrix's keep-mask, HF layout `[rows = out, cols = in]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMask {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// `true` where the weight is kept.
    pub keep: Vec<bool>,
}

impl LayerMask {
    /// Pruned entries.
    pub fn pruned(&self) -> usize {
        self.keep.iter().filter(|&&k| !k).count()
    }
}

/// Keep-masks by HF weight name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Masks {
    /// Mask of each pruned matrix.
    pub layers: BTreeMap<String, LayerMask>,
}

/// Per-matrix sparsity, for reports.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerSparsity {
    /// HF weight name.
    pub name: String,
    /// Weights in the matrix.
    pub params: usize,
    /// Pruned (held-zero) weights.
    pub pruned: usize,
    /// `pruned / params`.
    pub sparsity: f64,
}

impl Masks {
    /// Pruned entries over all masks.
    pub fn pruned(&self) -> usize {
        self.layers.values().map(LayerMask::pruned).sum()
    }

    /// Entries over all masks.
    pub fn params(&self) -> usize {
        self.layers.values().map(|m| m.keep.len()).sum()
    }

    /// Per-matrix sparsity in name order.
    pub fn per_layer(&self) -> Vec<LayerSparsity> {
        self.layers
            .iter()
            .map(|(name, m)| LayerSparsity {
                name: name.clone(),
                params: m.keep.len(),
                pruned: m.pruned(),
                sparsity: m.pruned() as f64 / m.keep.len().max(1) as f64,
            })
            .collect()
    }

    /// Sets every pruned weight of `tensors` (HF layout) to zero.
    pub fn apply(&self, tensors: &mut HashMap<String, Vec<f32>>) {
        for (name, m) in &self.layers {
            if let Some(w) = tensors.get_mut(name) {
                for (v, &k) in w.iter_mut().zip(&m.keep) {
                    if !k {
                        *v = 0.0;
                    }
                }
            }
        }
    }

    /// The trainer's form: masks by parameter id in burn's `[in, out]` layout.
    pub fn to_param_masks(&self) -> ParamMasks {
        let mut out = ParamMasks::new();
        for (name, m) in &self.layers {
            let as_f: Vec<f32> = m.keep.iter().map(|&k| f32::from(u8::from(k))).collect();
            let t = transpose(&as_f, m.rows, m.cols);
            out.insert(
                param_id(name),
                t.iter().map(|&v| v != 0.0).collect(),
                m.cols,
                m.rows,
            );
        }
        out
    }
}

/// A matrix to prune: HF name, shape and per-weight scores (lower is pruned first).
pub struct Scored {
    /// HF weight name.
    pub name: String,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// `rows · cols` scores, HF layout.
    pub scores: Vec<f32>,
}

/// Indices of the `k` lowest `(score, index)` pairs among `idx` (forced entries, score
/// `-inf`, come first).
fn lowest(scores: &[f32], idx: &mut [usize], k: usize) {
    if k == 0 || k >= idx.len() {
        return;
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| {
        scores[a].total_cmp(&scores[b]).then(a.cmp(&b))
    });
}

/// Keep-masks at `sparsity` for `pattern`/`scope` over `matrices`; `previous` masks are
/// kept (their pruned weights rank first).
pub fn select(
    matrices: Vec<Scored>,
    pattern: Pattern,
    scope: Scope,
    criterion: Criterion,
    sparsity: f64,
    previous: Option<&Masks>,
) -> Result<Masks> {
    let mut matrices = matrices;
    for m in &mut matrices {
        if let Some(prev) = previous.and_then(|p| p.layers.get(&m.name)) {
            for (s, &k) in m.scores.iter_mut().zip(&prev.keep) {
                if !k {
                    *s = f32::NEG_INFINITY;
                }
            }
        }
    }
    let mut out = Masks::default();
    match (pattern, scope) {
        (Pattern::NM { n, m: group }, _) => {
            for s in matrices {
                if s.cols % group != 0 {
                    let msg = format!(
                        "{} has {} inputs, not a multiple of {group}",
                        s.name, s.cols
                    );
                    return Err(CoreError::setting(
                        "pattern",
                        format_args!("{n}:{group}"),
                        msg,
                    ));
                }
                let mut keep = vec![true; s.scores.len()];
                for g0 in (0..s.scores.len()).step_by(group) {
                    let mut idx: Vec<usize> = (g0..g0 + group).collect();
                    lowest(&s.scores, &mut idx, n);
                    idx[..n].iter().for_each(|&i| keep[i] = false);
                }
                out.layers.insert(s.name, mask(s.rows, s.cols, keep));
            }
        }
        (Pattern::Unstructured, Scope::Layer) => {
            for s in matrices {
                // Wanda compares weights within each output row; magnitude within the matrix.
                let group = match criterion {
                    Criterion::Wanda => s.cols,
                    Criterion::Magnitude => s.scores.len(),
                };
                let mut keep = vec![true; s.scores.len()];
                for g0 in (0..s.scores.len()).step_by(group) {
                    let k = (sparsity * group as f64).round() as usize;
                    let mut idx: Vec<usize> = (g0..g0 + group).collect();
                    lowest(&s.scores, &mut idx, k);
                    idx[..k.min(group)].iter().for_each(|&i| keep[i] = false);
                }
                out.layers.insert(s.name, mask(s.rows, s.cols, keep));
            }
        }
        (Pattern::Unstructured, Scope::Global) => {
            let total: usize = matrices.iter().map(|s| s.scores.len()).sum();
            let k = (sparsity * total as f64).round() as usize;
            let all: Vec<f32> = matrices
                .iter()
                .flat_map(|s| s.scores.iter().copied())
                .collect();
            let mut idx: Vec<usize> = (0..total).collect();
            lowest(&all, &mut idx, k);
            let mut keep_all = vec![true; total];
            idx[..k.min(total)]
                .iter()
                .for_each(|&i| keep_all[i] = false);
            let mut off = 0;
            for s in matrices {
                let n = s.scores.len();
                let keep = keep_all[off..off + n].to_vec();
                off += n;
                out.layers.insert(s.name, mask(s.rows, s.cols, keep));
            }
        }
        (Pattern::Heads | Pattern::Neurons, _) => {
            return Err(CoreError::Invalid(
                "structured patterns shrink tensors; they have no keep-masks".into(),
            ))
        }
    }
    Ok(out)
}

fn mask(rows: usize, cols: usize, keep: Vec<bool>) -> LayerMask {
    LayerMask { rows, cols, keep }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(name: &str, rows: usize, cols: usize, f: impl Fn(usize) -> f32) -> Scored {
        Scored {
            name: name.into(),
            rows,
            cols,
            scores: (0..rows * cols).map(f).collect(),
        }
    }

    #[test]
    fn unstructured_prunes_exactly_the_lowest() {
        let s = scored("a", 4, 5, |i| ((i * 7) % 20) as f32);
        let m = select(
            vec![s],
            Pattern::Unstructured,
            Scope::Layer,
            Criterion::Magnitude,
            0.35,
            None,
        )
        .unwrap();
        let a = &m.layers["a"];
        assert_eq!(a.pruned(), 7);
        for (i, &k) in a.keep.iter().enumerate() {
            assert_eq!(k, ((i * 7) % 20) >= 7, "entry {i}");
        }
    }

    #[test]
    fn wanda_prunes_per_row_and_global_spans_layers() {
        let s = scored("a", 3, 4, |i| i as f32);
        let m = select(
            vec![s],
            Pattern::Unstructured,
            Scope::Layer,
            Criterion::Wanda,
            0.5,
            None,
        )
        .unwrap();
        let keep = &m.layers["a"].keep;
        for r in 0..3 {
            assert_eq!(&keep[r * 4..r * 4 + 4], &[false, false, true, true]);
        }
        let (a, b) = (
            scored("a", 2, 2, |i| i as f32),
            scored("b", 2, 2, |i| 10.0 + i as f32),
        );
        let m = select(
            vec![a, b],
            Pattern::Unstructured,
            Scope::Global,
            Criterion::Magnitude,
            0.5,
            None,
        )
        .unwrap();
        assert_eq!(m.layers["a"].pruned(), 4);
        assert_eq!(m.layers["b"].pruned(), 0);
    }

    #[test]
    fn n_m_and_previous_masks_are_respected() {
        let s = scored("a", 2, 8, |i| ((i * 5) % 8) as f32);
        let m = select(
            vec![s],
            Pattern::NM { n: 2, m: 4 },
            Scope::Layer,
            Criterion::Magnitude,
            0.5,
            None,
        )
        .unwrap();
        for g in m.layers["a"].keep.chunks(4) {
            assert_eq!(g.iter().filter(|&&k| !k).count(), 2);
        }
        // A weight pruned before stays pruned even with the highest score.
        let mut prev = Masks::default();
        let mut keep = vec![true; 4];
        keep[3] = false;
        prev.layers.insert("a".into(), mask(2, 2, keep));
        let s = scored("a", 2, 2, |i| i as f32);
        let m = select(
            vec![s],
            Pattern::Unstructured,
            Scope::Layer,
            Criterion::Magnitude,
            0.5,
            Some(&prev),
        )
        .unwrap();
        assert_eq!(m.layers["a"].keep, vec![false, true, true, false]);
        let bad = scored("a", 1, 6, |i| i as f32);
        assert!(select(
            vec![bad],
            Pattern::NM { n: 2, m: 4 },
            Scope::Layer,
            Criterion::Magnitude,
            0.5,
            None
        )
        .is_err());
    }

    #[test]
    fn ignore_matches_modules_and_prefixes() {
        let n = "model.layers.1.mlp.down_proj.weight";
        assert!(ignored(n, &["model.layers.1".into()]));
        assert!(ignored(n, &["model.layers.1.mlp.down_proj".into()]));
        assert!(!ignored(n, &["model.layers.1.mlp.down".into()]));
        assert!(!ignored(n, &["model.layers.10".into()]));
    }
}
