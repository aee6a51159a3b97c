//! Router training: per layer, a linear `[experts, hidden]` learns from calibration tokens which
//! experts matter most. The target of a token is multi-hot over the `top_k` experts whose
//! outputs `‖down_e(h_e)‖` are largest on the dense computation; the loss is binary
//! cross-entropy on the router's logits (AdamW, seeded mini-batches). Router accuracy is the
//! mean overlap `|chosen ∩ best| / k` on held-out tokens; random routing scores `k / E`.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;

use crate::error::Result;
use crate::model::layers::{linear, param};
use crate::model::weights::param_id;
use crate::model::{batch_tensor, LlamaModel};
use crate::tensor_util::{to_vec_f32, top_k_indices};

/// One layer's router training data.
#[derive(Clone, Debug, Default)]
pub struct RouterData {
    /// Width of an FFN input.
    pub hidden: usize,
    /// Experts of the layer.
    pub experts: usize,
    /// FFN inputs `[tokens, hidden]`.
    pub x: Vec<f32>,
    /// Each expert's output norm per token `[tokens, experts]`.
    pub norms: Vec<f32>,
}

/// Runs `samples` (equal-length rows, batched by `batch`) through `model` (an MoE model with
/// every expert chosen, i.e. the dense computation) and records each layer's FFN inputs and
/// expert output norms.
pub fn collect(model: &LlamaModel, samples: &[Vec<u32>], batch: usize) -> Result<Vec<RouterData>> {
    let device = model.embed_tokens.weight.val().device();
    let mut data = vec![RouterData::default(); model.layers.len()];
    for rows in samples.chunks(batch.max(1)) {
        let len = rows[0].len();
        let (cos, sin) = model.rope.tables(0, len, &device);
        let mut x = model.embed_tokens.forward(batch_tensor(rows, &device));
        for (l, layer) in model.layers.iter().enumerate() {
            let (out, taps) = layer.forward_traced(x, &cos, &sin);
            let sizes = &layer.mlp.experts.as_ref().expect("an MoE model").sizes;
            let [b, s, i] = taps.down_in.dims();
            let down = layer.mlp.down_proj.weight.val(); // [intermediate, hidden]
            let mut start = 0;
            let mut per_expert = Vec::new();
            for &n in sizes {
                let h = taps.down_in.clone().narrow(2, start, n).reshape([b * s, n]);
                let y = h.matmul(down.clone().narrow(0, start, n));
                per_expert.push(y.square().sum_dim(1).sqrt()); // [tokens, 1]
                start += n;
            }
            debug_assert_eq!(start, i);
            let norms = to_vec_f32(Tensor::cat(per_expert, 1));
            let hidden = taps.mlp_in.dims()[2];
            (data[l].hidden, data[l].experts) = (hidden, sizes.len());
            data[l]
                .x
                .extend(to_vec_f32(taps.mlp_in.reshape([b * s, hidden])));
            data[l].norms.extend(norms);
            x = out;
        }
    }
    Ok(data)
}

/// Mean `|top-k(scores) ∩ top-k(norms)| / k` over tokens.
pub fn accuracy(scores: &[f32], norms: &[f32], experts: usize, k: usize) -> f64 {
    let n = scores.len() / experts;
    let mut hit = 0usize;
    for t in 0..n {
        let (a, b) = (
            top_k_indices(&scores[t * experts..(t + 1) * experts], k),
            top_k_indices(&norms[t * experts..(t + 1) * experts], k),
        );
        hit += a.iter().filter(|e| b.contains(e)).count();
    }
    hit as f64 / (n * k).max(1) as f64
}

/// A trained router and how well it picks.
#[derive(Clone, Debug)]
pub struct TrainedRouter {
    /// Weight in HF layout `[experts, hidden]`.
    pub weight: Vec<f32>,
    /// Overlap with the best experts on held-out tokens.
    pub accuracy: f64,
}

/// Trains a router for `data` (targets: the best `k` experts) for `steps` AdamW steps of 256
/// tokens at `lr`; 10% of the tokens are held out for accuracy.
pub fn train_router(
    data: &RouterData,
    k: usize,
    steps: usize,
    lr: f64,
    seed: u64,
    device: &Device,
) -> Result<TrainedRouter> {
    let (hidden, experts) = (data.hidden, data.experts);
    let n = data.x.len() / hidden.max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let held = (n / 10).max(1).min(n);
    let (test, train) = order.split_at(held);
    let labels: Vec<f32> = (0..n)
        .flat_map(|t| {
            let best = top_k_indices(&data.norms[t * experts..(t + 1) * experts], k);
            (0..experts).map(move |e| if best.contains(&e) { 1.0 } else { 0.0 })
        })
        .collect();
    let rows = |idx: &[usize], v: &[f32], w: usize| -> Vec<f32> {
        idx.iter()
            .flat_map(|&t| v[t * w..(t + 1) * w].iter().copied())
            .collect()
    };
    let ad = device.clone().autodiff();
    let zeros = Tensor::<2>::zeros([hidden, experts], device);
    let mut router = linear(param(param_id("router"), zeros), None)
        .fork(&ad)
        .train();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let batch = 256.min(train.len().max(1));
    // With a single token there is nothing left to train on once one is held out.
    let steps = if train.is_empty() { 0 } else { steps };
    for _ in 0..steps {
        let pick: Vec<usize> = (0..batch)
            .map(|_| train[rng.random_range(0..train.len())])
            .collect();
        let x = Tensor::<2>::from_data(
            TensorData::new(rows(&pick, &data.x, hidden), [pick.len(), hidden]),
            &ad,
        );
        let y = Tensor::<2>::from_data(
            TensorData::new(rows(&pick, &labels, experts), [pick.len(), experts]),
            &ad,
        );
        let z = router.forward(x);
        // Binary cross-entropy with logits: max(z, 0) − z·y + log(1 + exp(−|z|)).
        let loss = (z.clone().clamp_min(0.0) - z.clone() * y
            + z.abs().neg().exp().add_scalar(1.0).log())
        .mean();
        let grads = GradientsParams::from_grads(loss.backward(), &router);
        router = optim.step(lr, router, grads);
    }
    let router = router.valid();
    let w = router.weight.val(); // [hidden, experts]
    let x = Tensor::<2>::from_data(
        TensorData::new(rows(test, &data.x, hidden), [test.len(), hidden]),
        device,
    );
    let scores = to_vec_f32(x.matmul(w.clone()));
    let accuracy = accuracy(&scores, &rows(test, &data.norms, experts), experts, k);
    let weight = crate::model::weights::transpose(&to_vec_f32(w), hidden, experts);
    Ok(TrainedRouter { weight, accuracy })
}
