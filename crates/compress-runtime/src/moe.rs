//! Mixture-of-experts FFNs (`compress moe`; format in `compress_format::hf_config::moe`): a
//! router scores the experts per token, each token runs only its top-k experts, and the tokens
//! of a batch are grouped by expert so every chosen expert's weights are read once per step.
//! Choice and weights follow the burn model exactly: the experts scoring at least the k-th
//! largest score are chosen (ties included), combined unweighted (`sum`) or by the softmax of
//! their scores (`softmax`).

use compress_format::hf_config::moe::{route, Routing};
use rayon::prelude::*;

use crate::kernels::{ActMode, Input};
/// The linear product, re-exported from its home [`crate::linear`] (this path is kept).
pub use crate::linear::linear;
use crate::linear::Linear;

/// One SwiGLU FFN: the dense layer's, or one expert.
#[derive(Debug)]
pub struct Ffn {
    /// SwiGLU gate.
    pub gate: Linear,
    /// SwiGLU up.
    pub up: Linear,
    /// SwiGLU down.
    pub down: Linear,
}

impl Ffn {
    /// `down(silu(gate(x)) · up(x))` for the `m` rows of `x` (`[m, hidden]`).
    pub fn forward(&self, x: &[f32], m: usize, hidden: usize, mode: ActMode) -> Vec<f32> {
        let input = Input::new(x, m, hidden, mode);
        let mut g = linear(&self.gate, &input);
        let u = linear(&self.up, &input);
        g.par_iter_mut()
            .zip(&u)
            .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
        let inter = self.gate.weight.rows();
        linear(&self.down, &Input::new(&g, m, inter, mode))
    }

    /// The three linears.
    pub fn linears(&self) -> [&Linear; 3] {
        [&self.gate, &self.up, &self.down]
    }
}

/// A mixture-of-experts FFN.
#[derive(Debug)]
pub struct MoeFfn {
    /// Router `[experts, hidden]` (run on f32 activations).
    pub router: Linear,
    /// The experts.
    pub experts: Vec<Ffn>,
    /// Experts each token runs.
    pub top_k: usize,
    /// How the chosen experts combine.
    pub routing: Routing,
}

impl MoeFfn {
    /// Each token's chosen experts and their weights, from router scores `[t, experts]`, by the
    /// format's rule ([`compress_format::hf_config::moe::route`]).
    pub fn route(&self, scores: &[f32]) -> Vec<Vec<(usize, f32)>> {
        route(scores, self.experts.len(), self.top_k, self.routing)
    }

    /// Adds the FFN output of the `t` rows of `xn` (`[t, hidden]`) into `x`.
    pub fn forward_add(&self, xn: &[f32], t: usize, hidden: usize, mode: ActMode, x: &mut [f32]) {
        let scores = linear(&self.router, &Input::new(xn, t, hidden, ActMode::F32));
        let routes = self.route(&scores);
        for (e, expert) in self.experts.iter().enumerate() {
            let rows: Vec<(usize, f32)> = routes
                .iter()
                .enumerate()
                .filter_map(|(r, ch)| ch.iter().find(|(i, _)| *i == e).map(|&(_, w)| (r, w)))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let gathered: Vec<f32> = rows
                .iter()
                .flat_map(|&(r, _)| xn[r * hidden..(r + 1) * hidden].iter().copied())
                .collect();
            let y = expert.forward(&gathered, rows.len(), hidden, mode);
            for (&(r, w), yr) in rows.iter().zip(y.chunks_exact(hidden)) {
                x[r * hidden..(r + 1) * hidden]
                    .iter_mut()
                    .zip(yr)
                    .for_each(|(a, b)| *a += w * b);
            }
        }
    }
}
