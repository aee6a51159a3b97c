//! Sparse activation: a dense FFN converted into a mixture of experts with a trained router
//! (MoEfication).
//!
//! Per layer the FFN's neurons are split into `E` experts of equal size ([`split`]: balanced
//! k-means over the neurons' gate/up weights; neurons are moved, never changed), a router
//! `[E, hidden]` is trained on calibration tokens to pick the experts whose outputs are largest
//! ([`router`]), and each token then runs only its top-k experts. Under the default `sum` rule
//! (the chosen experts' outputs added, unweighted) top-k = E is the dense model exactly. The
//! format is in `compress_format::hf_config::moe`.

pub mod config;
pub mod router;
pub mod run;
pub mod split;

pub use config::MoeRunConfig;
pub use run::{run, MoeRunReport};

use std::collections::HashMap;

use burn::tensor::Device;
use compress_format::hf_config::moe::{expert_sizes, MoeConfig, Routing};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::model::weights::{build_from_map, normal, tensor_map};
use crate::model::{names, LlamaModel};

/// What the neurons are clustered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitBy {
    /// Their weights: `gate_proj` row ⊕ `up_proj` row.
    Weights,
    /// Their activations on calibration tokens (co-activation).
    Activations,
}

/// Settings of a conversion.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MoeStageConfig {
    /// Experts per layer.
    pub experts: usize,
    /// Experts each token runs.
    pub top_k: usize,
    /// How the chosen experts combine.
    pub routing: Routing,
    /// What the neurons are clustered by.
    pub split: SplitBy,
    /// Balanced k-means rounds.
    pub kmeans_iters: usize,
    /// Router training steps per layer (0 = leave the router at zero: every expert ties, i.e.
    /// the dense model under `sum`).
    pub router_steps: usize,
    /// Router learning rate.
    pub router_lr: f64,
    /// Seed of k-means initialisation and router batches.
    pub seed: u64,
}

impl MoeStageConfig {
    /// Checks the settings against a layer of `intermediate` neurons; errors name the field.
    pub fn validate(&self, intermediate: usize) -> Result<()> {
        if self.experts < 2 || self.experts > intermediate {
            let msg = format!("need 2 to the {intermediate} FFN neurons per layer");
            return Err(CoreError::setting("experts", self.experts, msg));
        }
        if self.top_k == 0 || self.top_k > self.experts {
            let msg = format!("need 1 to `experts` {}", self.experts);
            return Err(CoreError::setting("top_k", self.top_k, msg));
        }
        Ok(())
    }
}

/// What the conversion did to one layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// Decoder layer.
    pub layer: usize,
    /// Neurons per expert.
    pub expert_sizes: Vec<usize>,
    /// Router accuracy on held-out calibration tokens: mean `|chosen ∩ best| / k`.
    pub router_accuracy: Option<f64>,
    /// What random routing would score: `k / E`.
    pub random_accuracy: f64,
}

/// Converts the dense `model` into an MoE model as `cfg` says, training routers on `calib`
/// (token rows of equal length; may be empty when `router_steps` is 0).
pub fn moefy(
    model: &LlamaModel,
    cfg: &MoeStageConfig,
    calib: &[Vec<u32>],
) -> Result<(LlamaModel, Vec<LayerReport>)> {
    let mc = &model.config;
    if mc.moe.is_some() || mc.shared_layers > 0 || !mc.layer_shapes.is_empty() {
        return Err(CoreError::Invalid(
            "compress moe: needs a dense model whose layers all have one shape (not already MoE, shared or non-uniformly pruned)".into(),
        ));
    }
    cfg.validate(mc.intermediate_size)?;
    if cfg.split == SplitBy::Activations && calib.is_empty() {
        let msg = "needs calibration data (`data`)";
        return Err(CoreError::setting("split", "activations", msg));
    }
    if cfg.router_steps > 0 && calib.is_empty() {
        let msg = "training routers needs calibration data (`data`)";
        return Err(CoreError::setting("router_steps", cfg.router_steps, msg));
    }
    let (h, i) = (mc.hidden_size, mc.intermediate_size);
    let sizes = expert_sizes(i, cfg.experts);
    let acts = match cfg.split {
        SplitBy::Activations => Some(split::activation_features(model, calib, 4096)?),
        SplitBy::Weights => None,
    };
    let mut dense = tensor_map(model);
    let mut tensors: HashMap<String, Vec<f32>> = HashMap::new();
    for l in 0..mc.num_layers {
        let p = names::mlp(l);
        let take = |t: &mut HashMap<String, Vec<f32>>, n: &str| {
            t.remove(&format!("{p}.{n}.weight"))
                .ok_or_else(|| CoreError::tensor(format!("{p}.{n}.weight"), "missing"))
        };
        let (gate, up, down) = (
            take(&mut dense, "gate_proj")?,
            take(&mut dense, "up_proj")?,
            take(&mut dense, "down_proj")?,
        );
        let (features, dim) = match &acts {
            Some(a) => (a[l].0.clone(), a[l].1),
            None => (
                (0..i)
                    .flat_map(|r| {
                        gate[r * h..(r + 1) * h]
                            .iter()
                            .chain(&up[r * h..(r + 1) * h])
                            .copied()
                    })
                    .collect(),
                2 * h,
            ),
        };
        let assign = split::balanced_kmeans(
            &features,
            dim,
            &sizes,
            cfg.kmeans_iters,
            cfg.seed ^ l as u64,
        );
        let order = split::grouped_order(&assign, cfg.experts);
        let (gate, up) = (
            split::permute_rows(&gate, h, &order),
            split::permute_rows(&up, h, &order),
        );
        let down = split::permute_cols(&down, i, &order);
        let mut start = 0;
        for (e, &n) in sizes.iter().enumerate() {
            let x = format!("{p}.experts.{e}");
            tensors.insert(
                format!("{x}.gate_proj.weight"),
                gate[start * h..(start + n) * h].to_vec(),
            );
            tensors.insert(
                format!("{x}.up_proj.weight"),
                up[start * h..(start + n) * h].to_vec(),
            );
            let cols: Vec<f32> = (0..h)
                .flat_map(|r| down[r * i + start..r * i + start + n].iter().copied())
                .collect();
            tensors.insert(format!("{x}.down_proj.weight"), cols);
            start += n;
        }
        tensors.insert(format!("{p}.gate.weight"), vec![0.0; cfg.experts * h]);
    }
    tensors.extend(dense);
    let mut config = mc.clone();
    config.moe = Some(MoeConfig {
        num_experts: cfg.experts,
        top_k: cfg.experts,
        routing: cfg.routing,
    });
    let device = model.embed_tokens.weight.val().device();
    let mut moe = build_from_map(&config, &mut tensors, &device)?;
    let mut reports: Vec<LayerReport> = (0..mc.num_layers)
        .map(|layer| LayerReport {
            layer,
            expert_sizes: sizes.clone(),
            router_accuracy: None,
            random_accuracy: cfg.top_k as f64 / cfg.experts as f64,
        })
        .collect();
    if cfg.router_steps > 0 {
        let data = router::collect(&moe, calib, 8)?;
        let mut t = tensor_map(&moe);
        for (l, d) in data.iter().enumerate() {
            let r = router::train_router(
                d,
                cfg.top_k,
                cfg.router_steps,
                cfg.router_lr,
                cfg.seed ^ l as u64,
                &device,
            )?;
            t.insert(names::weight(&names::router(l)), r.weight);
            reports[l].router_accuracy = Some(r.accuracy);
        }
        moe = build_from_map(&config, &mut t, &device)?;
    }
    set_top_k(&mut moe, cfg.top_k)?;
    Ok((moe, reports))
}

/// Sets the experts each token runs in every layer (and the config), e.g. `--top-k` at load time.
pub fn set_top_k(model: &mut LlamaModel, k: usize) -> Result<()> {
    let Some(m) = model.config.moe.as_mut() else {
        let msg = "the model has no experts (num_experts is not in its config.json)";
        return Err(CoreError::setting("top_k", k, msg));
    };
    for layer in model.layers.iter_mut() {
        if let Some(e) = layer.mlp.experts.as_mut() {
            e.set_top_k(k)?;
        }
    }
    m.top_k = k;
    Ok(())
}

/// The same MoE model with routers drawn at random (N(0, 1)), the baseline a trained router
/// must beat.
pub fn random_routers(model: &LlamaModel, seed: u64) -> Result<LlamaModel> {
    let mut t = tensor_map(model);
    let mut rng = StdRng::seed_from_u64(seed);
    for l in 0..model.config.num_layers {
        if let Some(w) = t.get_mut(&names::weight(&names::router(l))) {
            w.iter_mut().for_each(|v| *v = normal(&mut rng));
        }
    }
    let device: Device = model.embed_tokens.weight.val().device();
    let top_k = model.config.moe.map(|m| m.top_k);
    let mut out = build_from_map(&model.config, &mut t, &device)?;
    if let Some(k) = top_k {
        set_top_k(&mut out, k)?;
    }
    Ok(out)
}
