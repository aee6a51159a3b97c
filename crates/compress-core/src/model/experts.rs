//! Mixture-of-experts routing for [`super::layers::Mlp`] (see `compress_format::hf_config::moe`).
//!
//! The experts' neurons are kept concatenated in the FFN's `gate/up/down_proj` (expert `e` owns
//! the `sizes[e]` consecutive neurons after the previous experts'), so the burn forward computes
//! every neuron and weights each one by its expert's routing weight: 1 or 0 under the `sum` rule
//! (the chosen experts, unweighted), the softmax over the chosen experts' scores under `softmax`.
//! Since `down_proj` is linear this equals running only the chosen experts; with every expert
//! chosen under `sum` it is the dense FFN exactly. The runtime computes only the chosen experts.

use burn::tensor::{Tensor, TensorData};
use compress_format::hf_config::moe::{expert_sizes, MoeConfig, Routing};

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
            return Err(CoreError::Invalid(format!(
                "--top-k {k}: need 1 to the {} experts per layer",
                self.sizes.len()
            )));
        }
        self.top_k = k;
        Ok(())
    }

    /// Routing weight of each expert per token, `[batch, seq, experts]`, from router scores.
    pub fn expert_weights(&self, scores: Tensor<3>) -> Tensor<3> {
        let [b, s, e] = scores.dims();
        let k = self.top_k.min(e);
        let kth = scores
            .clone()
            .topk(k, 2)
            .narrow(2, k - 1, 1)
            .expand([b, s, e]);
        let chosen = scores.clone().greater_equal(kth).float();
        match self.routing {
            Routing::Sum => chosen,
            Routing::Softmax => {
                let max = scores.clone().max_dim(2);
                let w = (scores - max).exp() * chosen;
                w.clone() / w.sum_dim(2)
            }
        }
    }

    /// Routing weight of each neuron per token, `[batch, seq, intermediate]`.
    pub fn neuron_weights(&self, scores: Tensor<3>) -> Tensor<3> {
        let [b, s, e] = scores.dims();
        let device = scores.device();
        let total: usize = self.sizes.iter().sum();
        let mut onehot = vec![0f32; e * total];
        let mut start = 0;
        for (x, &n) in self.sizes.iter().enumerate() {
            onehot[x * total + start..x * total + start + n].fill(1.0);
            start += n;
        }
        let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [e, total]), &device);
        self.expert_weights(scores)
            .reshape([b * s, e])
            .matmul(onehot)
            .reshape([b, s, total])
    }
}
