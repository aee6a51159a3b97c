//! Mixture-of-experts FFNs made by `compress moe` (this project's config keys).
//!
//! A layer's FFN neurons are split into `num_experts` experts; expert `e` holds
//! [`expert_sizes`]`[e]` consecutive neurons (equal sizes, the first `I mod E` one larger).
//! Per layer the weights are `mlp.gate.weight` `[E, hidden]` (the router) and
//! `mlp.experts.<e>.{gate,up,down}_proj.weight`. A token runs the `num_experts_per_tok` experts
//! its router scores highest, combined by `compress_moe_routing`:
//!
//! * `sum` (MoEfication, the default): output = Σ of the chosen experts' outputs, unweighted, so
//!   `num_experts_per_tok = num_experts` is exactly the dense FFN;
//! * `softmax` (Mixtral style): weighted by the softmax of the chosen experts' router scores.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{FormatError, Result};

/// Number of experts per layer.
pub const NUM_EXPERTS_KEY: &str = "num_experts";
/// Experts each token runs.
pub const TOP_K_KEY: &str = "num_experts_per_tok";
/// How the chosen experts' outputs are combined (`sum` or `softmax`).
pub const ROUTING_KEY: &str = "compress_moe_routing";

/// How a token's chosen experts are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Unweighted sum (MoEfication): all experts chosen = the dense FFN.
    Sum,
    /// Softmax of the chosen experts' router scores (Mixtral).
    Softmax,
}

impl Routing {
    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sum => "sum",
            Self::Softmax => "softmax",
        }
    }
}

/// The MoE keys of a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Experts per layer.
    pub num_experts: usize,
    /// Experts each token runs.
    pub top_k: usize,
    /// How their outputs are combined.
    pub routing: Routing,
}

/// Neurons of each of `experts` experts over `intermediate` neurons: equal, the first
/// `intermediate mod experts` one larger.
pub fn expert_sizes(intermediate: usize, experts: usize) -> Vec<usize> {
    let (base, extra) = (intermediate / experts.max(1), intermediate % experts.max(1));
    (0..experts)
        .map(|e| base + usize::from(e < extra))
        .collect()
}

/// The routing rule itself, shared by every implementation: each token's chosen experts and
/// their weights from its router `scores` (`[tokens, experts]` row-major). Chosen are the experts
/// scoring at least the `top_k`-th largest score (ties included); weights are 1 under `sum` and
/// the softmax of the chosen scores under `softmax`.
pub fn route(
    scores: &[f32],
    experts: usize,
    top_k: usize,
    routing: Routing,
) -> Vec<Vec<(usize, f32)>> {
    let k = top_k.clamp(1, experts.max(1));
    scores
        .chunks_exact(experts.max(1))
        .map(|s| {
            let mut sorted = s.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let chosen: Vec<usize> = (0..s.len()).filter(|&i| s[i] >= sorted[k - 1]).collect();
            match routing {
                Routing::Sum => chosen.into_iter().map(|i| (i, 1.0)).collect(),
                Routing::Softmax => {
                    let max = chosen.iter().map(|&i| s[i]).fold(f32::MIN, f32::max);
                    let w: Vec<f32> = chosen.iter().map(|&i| (s[i] - max).exp()).collect();
                    let z: f32 = w.iter().sum();
                    chosen.into_iter().zip(w).map(|(i, w)| (i, w / z)).collect()
                }
            }
        })
        .collect()
}

impl MoeConfig {
    /// Checks `1 ≤ top_k ≤ num_experts ≤ intermediate`; errors name the key.
    pub fn validate(&self, intermediate: usize, path: &std::path::Path) -> Result<()> {
        if self.num_experts < 2 || self.num_experts > intermediate {
            return Err(FormatError::invalid(
                path,
                NUM_EXPERTS_KEY,
                format!(
                    "{} experts: need 2 to intermediate_size ({intermediate})",
                    self.num_experts
                ),
            ));
        }
        if self.top_k == 0 || self.top_k > self.num_experts {
            return Err(FormatError::invalid(
                path,
                TOP_K_KEY,
                format!(
                    "{}: need 1 to num_experts ({})",
                    self.top_k, self.num_experts
                ),
            ));
        }
        Ok(())
    }

    /// Reads the keys from a config object (`None` when `num_experts` is absent).
    pub fn parse(
        raw: &serde_json::Map<String, Value>,
        path: &std::path::Path,
    ) -> Result<Option<Self>> {
        let Some(e) = raw.get(NUM_EXPERTS_KEY).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let int = |key: &str, v: &Value| {
            v.as_u64().map(|n| n as usize).ok_or_else(|| {
                FormatError::invalid(path, key, format!("expected a count, got {v}"))
            })
        };
        let num_experts = int(NUM_EXPERTS_KEY, e)?;
        let top_k = match raw.get(TOP_K_KEY) {
            Some(v) => int(TOP_K_KEY, v)?,
            None => {
                return Err(FormatError::invalid(
                    path,
                    TOP_K_KEY,
                    "missing (num_experts is set)",
                ))
            }
        };
        let routing = match raw.get(ROUTING_KEY).and_then(Value::as_str) {
            None | Some("sum") => Routing::Sum,
            Some("softmax") => Routing::Softmax,
            Some(other) => {
                return Err(FormatError::invalid(
                    path,
                    ROUTING_KEY,
                    format!("`{other}`: expected sum or softmax"),
                ))
            }
        };
        Ok(Some(Self {
            num_experts,
            top_k,
            routing,
        }))
    }

    /// Writes the keys into a config object.
    pub fn write(&self, out: &mut serde_json::Map<String, Value>) {
        out.insert(NUM_EXPERTS_KEY.into(), self.num_experts.into());
        out.insert(TOP_K_KEY.into(), self.top_k.into());
        out.insert(ROUTING_KEY.into(), self.routing.name().into());
    }

    /// Removes the keys from a config object.
    pub fn clear(out: &mut serde_json::Map<String, Value>) {
        for k in [NUM_EXPERTS_KEY, TOP_K_KEY, ROUTING_KEY] {
            out.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expert_sizes_cover_every_neuron() {
        assert_eq!(expert_sizes(704, 8), vec![88; 8]);
        assert_eq!(expert_sizes(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(expert_sizes(10, 4).iter().sum::<usize>(), 10);
    }

    #[test]
    fn routing_picks_the_top_k_with_ties_and_weights_them() {
        let s = [0.5, 2.0, 1.0, 2.0];
        assert_eq!(
            route(&s, 4, 1, Routing::Sum),
            vec![vec![(1, 1.0), (3, 1.0)]]
        );
        assert_eq!(route(&s, 4, 3, Routing::Sum)[0].len(), 3);
        let w = &route(&[-5.0, 0.0, 3.0_f32.ln(), -9.0], 4, 2, Routing::Softmax)[0];
        assert_eq!(w.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((w[0].1 - 0.25).abs() < 1e-6 && (w[1].1 - 0.75).abs() < 1e-6);
    }
}
