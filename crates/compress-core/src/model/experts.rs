//! Mixture-of-experts routing for [`super::layers::Mlp`] (see `compress_format::hf_config::moe`).
//!
//! The experts' neurons are kept concatenated in the FFN's `gate/up/down_proj` (expert `e` owns
//! the `sizes[e]` consecutive neurons after the previous experts'). [`Experts::forward`] runs
//! only the chosen experts: the tokens of a batch are grouped by expert, each expert runs on its
//! tokens through its slices of the three weights, and the outputs are added back weighted by
//! the routing weight (1 under `sum`; the softmax over the chosen experts' scores under
//! `softmax`). With every expert chosen under `sum` it is the dense FFN. [`Experts::neuron_weights`]
//! gives the same routing as a per-neuron mask (used where every neuron is computed anyway, e.g.
//! with fake quantization). The choice and the weights match the runtime's.

use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use compress_format::hf_config::moe::{expert_sizes, route, MoeConfig, Routing};

use crate::error::{CoreError, Result};

/// The experts of one MoE FFN.
#[derive(Clone, Debug, PartialEq)]
pub struct Experts {
    /// Neurons of each expert, in order.
    pub sizes: Vec<usize>,
    /// Experts each token runs.
    pub top_k: usize,
    /// How their outputs combine.
    pub routing: Routing,
}

impl Experts {
    /// The experts of a layer of `intermediate` neurons under `moe`.
    pub fn new(moe: &MoeConfig, intermediate: usize) -> Self {
        Self {
            sizes: expert_sizes(intermediate, moe.num_experts),
            top_k: moe.top_k,
            routing: moe.routing,
        }
    }

    /// Sets the experts each token runs; errors unless `1 ≤ k ≤ experts`.
    pub fn set_top_k(&mut self, k: usize) -> Result<()> {
        if k == 0 || k > self.sizes.len() {
            let msg = format!("need 1 to the {} experts per layer", self.sizes.len());
            return Err(CoreError::setting("top_k", k, msg));
        }
        self.top_k = k;
        Ok(())
    }

    /// Each token's chosen experts and their weights, from router scores `[t, experts]` (host),
    /// by the format's rule ([`compress_format::hf_config::moe::route`]).
    pub fn route(&self, scores: &[f32]) -> Vec<Vec<(usize, f32)>> {
        route(scores, self.sizes.len(), self.top_k, self.routing)
    }

    /// The FFN output `[batch, seq, hidden]` of `x` running each token's chosen experts only;
    /// `gate`/`up`/`down` hold every expert's neurons, `scores` are the router's.
    pub fn forward(
        &self,
        x: Tensor<3>,
        scores: Tensor<3>,
        gate: &Linear,
        up: &Linear,
        down: &Linear,
    ) -> Tensor<3> {
        let [b, s, h] = x.dims();
        let device = x.device();
        let routes = self.route(&crate::tensor_util::to_vec_f32(scores));
        let x = x.reshape([b * s, h]);
        let mut out = Tensor::<2>::zeros([b * s, h], &device);
        let (wg, wu, wd) = (gate.weight.val(), up.weight.val(), down.weight.val());
        let mut start = 0;
        for (e, &n) in self.sizes.iter().enumerate() {
            let (rows, weights): (Vec<i64>, Vec<f32>) = routes
                .iter()
                .enumerate()
                .filter_map(|(t, ch)| {
                    ch.iter()
                        .find(|(i, _)| *i == e)
                        .map(|&(_, w)| (t as i64, w))
                })
                .unzip();
            if !rows.is_empty() {
                let m = rows.len();
                let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [m]), &device);
                let xe = x.clone().select(0, idx.clone());
                let hidden = silu(xe.clone().matmul(wg.clone().narrow(1, start, n)))
                    * xe.matmul(wu.clone().narrow(1, start, n));
                let ye = hidden.matmul(wd.clone().narrow(0, start, n));
                let w = Tensor::<2>::from_data(TensorData::new(weights, [m, 1]), &device);
                out = out.select_assign(0, idx, ye * w, IndexingUpdateOp::Add);
            }
            start += n;
        }
        out.reshape([b, s, h])
    }

    /// Routing weight of each neuron per token, `[batch, seq, intermediate]`.
    pub fn neuron_weights(&self, scores: Tensor<3>) -> Tensor<3> {
        let [b, s, e] = scores.dims();
        let device = scores.device();
        let total: usize = self.sizes.iter().sum();
        let starts: Vec<usize> = self
            .sizes
            .iter()
            .scan(0, |acc, &n| {
                let s0 = *acc;
                *acc += n;
                Some(s0)
            })
            .collect();
        let mut w = vec![0f32; b * s * total];
        for (t, chosen) in self
            .route(&crate::tensor_util::to_vec_f32(scores))
            .iter()
            .enumerate()
        {
            for &(x, weight) in chosen {
                let row = &mut w[t * total..(t + 1) * total];
                row[starts[x]..starts[x] + self.sizes[x]].fill(weight);
            }
        }
        debug_assert_eq!(e, self.sizes.len());
        Tensor::from_data(TensorData::new(w, [b, s, total]), &device)
    }
}
