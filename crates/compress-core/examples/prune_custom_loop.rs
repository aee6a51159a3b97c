//! Pruning inside your own burn training loop: a 2-layer MLP is trained to reproduce a fixed
//! "teacher" MLP while its weights are pruned to 70% on the AGP cubic schedule (4 mask
//! updates in the first half of training). The loop uses the stage's building blocks:
//! [`select`] picks magnitude masks (pruned weights stay pruned), [`agp_sparsity`] gives the
//! schedule, and [`ParamMasks`] holds the masks: gradients and AdamW moments of pruned weights
//! are zeroed and the weights are set back to exactly zero after every step.
//!
//! ```text
//! cargo run -p compress-core --example prune_custom_loop [-- STEPS]
//! ```
//!
//! Prints the loss and sparsity at each mask update and checks at the end that exactly 70%
//! of each weight matrix is zero.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use compress_core::stages::prune::masks::{select, Masks, Scored};
use compress_core::stages::prune::schedule::agp_sparsity;
use compress_core::stages::prune::{Criterion, Pattern, Scope};
use compress_core::tensor_util::{scalar_f64, to_vec_f32};
use compress_core::train::ParamMasks;

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }

    fn weights(&self) -> [(&'static str, &Param<Tensor<2>>); 2] {
        [("fc1", &self.fc1.weight), ("fc2", &self.fc2.weight)]
    }
}

/// Magnitude masks at sparsity `s` over the model's weights (burn layout `[in, out]`, used
/// as the matrix as it is), keeping `prev`'s pruned weights pruned.
fn masks_at(model: &Mlp, s: f64, prev: &Masks) -> (Masks, ParamMasks) {
    let scored = model
        .weights()
        .iter()
        .map(|(name, w)| {
            let [rows, cols] = w.val().dims();
            let scores = to_vec_f32(w.val()).iter().map(|v| v.abs()).collect();
            Scored {
                name: name.to_string(),
                rows,
                cols,
                scores,
            }
        })
        .collect();
    let masks = select(
        scored,
        Pattern::Unstructured,
        Scope::Layer,
        Criterion::Magnitude,
        s,
        Some(prev),
    )
    .expect("unstructured masks");
    let mut held = ParamMasks::new();
    for (name, w) in model.weights() {
        let m = &masks.layers[name];
        held.insert(w.id, m.keep.clone(), m.rows, m.cols);
    }
    (masks, held)
}

fn main() {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let (target, updates) = (0.7, 4);
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let make = || Mlp {
        fc1: LinearConfig::new(32, 64).init(&device),
        fc2: LinearConfig::new(64, 8).init(&device),
    };
    let teacher = make();
    let mut model = make().fork(&ad).train();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut masks = Masks::default();
    let mut held: Option<ParamMasks> = None;
    let dt = steps / (2 * updates);
    for step in 0..steps {
        if step > 0 && step % dt == 0 && step / dt <= updates {
            let s = agp_sparsity(target, step / dt, updates);
            let (m, h) = masks_at(&model.valid(), s, &masks);
            model = h.apply(model);
            optim = h.mask_optimizer_state(optim).expect("optimizer record");
            println!(
                "step {step:4}: sparsity {:.3} ({} weights pruned)",
                s,
                m.pruned()
            );
            masks = m;
            held = Some(h);
        }
        let x = Tensor::<2>::random([128, 32], Distribution::Normal(0.0, 1.0), &ad);
        let y = teacher.forward(x.clone().inner());
        let loss = (model.forward(x) - Tensor::from_inner(y)).square().mean();
        if step % 50 == 0 || step + 1 == steps {
            println!("step {step:4}: loss {:.5}", scalar_f64(loss.clone()));
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(h) = &held {
            h.mask_grads(&mut grads);
        }
        model = optim.step(1e-3, model, grads);
        if let Some(h) = &held {
            model = h.apply(model);
        }
    }
    let model = model.valid();
    for (name, w) in model.weights() {
        let v = to_vec_f32(w.val());
        let zeros = v.iter().filter(|&&x| x == 0.0).count();
        let want = (target * v.len() as f64).round() as usize;
        println!(
            "{name}: {zeros} of {} weights are zero (target {want})",
            v.len()
        );
        assert_eq!(zeros, want, "{name}: the mask did not hold");
    }
}
