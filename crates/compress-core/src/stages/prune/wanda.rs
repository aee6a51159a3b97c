//! Wanda's activation statistics (Sun et al. 2023, "A Simple and Effective Pruning Approach
//! for Large Language Models"): the score of weight `W[r, c]` is `|W[r, c]| · ‖X[:, c]‖₂`,
//! the norm of input feature `c` over every calibration token.

use std::collections::HashMap;

use burn::tensor::Tensor;

use crate::error::Result;
use crate::model::{batch_tensor, LlamaModel};
use crate::tensor_util::to_vec_f32;

/// `‖X[:, c]‖₂` of each decoder linear's input, by HF weight name.
#[derive(Clone, Debug, Default)]
pub struct InputNorms {
    /// Norm per input feature, by HF weight name.
    pub norms: HashMap<String, Vec<f32>>,
}

impl InputNorms {
    /// Runs `samples` (token rows, batched by equal length) through the dense `model` and
    /// accumulates the input norms of every decoder linear.
    pub fn collect(model: &LlamaModel, samples: &[Vec<u32>], batch_size: usize) -> Result<Self> {
        let device = model.embed_tokens.weight.val().device();
        let mut sq: HashMap<String, Vec<f64>> = HashMap::new();
        let mut add = |name: String, t: Tensor<3>| {
            let [_, _, d] = t.dims();
            let v = to_vec_f32(t.square().sum_dim(0).sum_dim(1).reshape([d]));
            let acc = sq.entry(name).or_insert_with(|| vec![0.0; d]);
            acc.iter_mut().zip(v).for_each(|(a, x)| *a += f64::from(x));
        };
        let mut i = 0;
        while i < samples.len() {
            let len = samples[i].len();
            let mut j = i;
            while j < samples.len() && j - i < batch_size.max(1) && samples[j].len() == len {
                j += 1;
            }
            let (cos, sin) = model.rope.tables(0, len, &device);
            let mut x = model
                .embed_tokens
                .forward(batch_tensor(&samples[i..j], &device));
            for (l, layer) in model.layers.iter().enumerate() {
                let (out, taps) = layer.forward_traced(x, &cos, &sin);
                let p = crate::model::names::layer(l);
                for proj in ["q_proj", "k_proj", "v_proj"] {
                    add(format!("{p}.self_attn.{proj}.weight"), taps.attn_in.clone());
                }
                add(format!("{p}.self_attn.o_proj.weight"), taps.o_in);
                add(format!("{p}.mlp.gate_proj.weight"), taps.mlp_in.clone());
                add(format!("{p}.mlp.up_proj.weight"), taps.mlp_in);
                add(format!("{p}.mlp.down_proj.weight"), taps.down_in);
                x = out;
            }
            i = j;
        }
        let norms = sq
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|s| s.sqrt() as f32).collect()))
            .collect();
        Ok(Self { norms })
    }
}
