//! Quantization-aware training (QAT): fake quantization of linear weights with a
//! straight-through estimator.
//!
//! [`fake_quantize`] returns, in the forward, exactly the weight round-to-nearest export
//! gives back on load (`quantize_rtn(..).dequantize()`: the same min/max range with 0
//! included, scale, zero point and half-to-even rounding as [`super::math`]), and passes the
//! gradient through unchanged (`∂ŵ/∂w = I`). The value is built as
//! `deq.detach() + (w − w.detach())`, which is `deq` bit for bit in the forward (the second
//! term is exactly 0) and the identity in the backward.
//!
//! Use it three ways:
//! - [`fake_quantize`] / [`fake_quantize_with`] on any `[out, in]` weight;
//! - [`FakeQuantLinear`], a drop-in `burn::nn::Linear` wrapper for your own training loop;
//! - [`LlamaModel::set_fake_quant`], which makes the model's attention/MLP linears
//!   fake-quantize their weights in every forward (what `compress quantize --method qat`
//!   trains with before exporting through [`super::quantize_model`]).

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use compress_format::hf_config::HfConfig;

use crate::error::{CoreError, Result};
pub use crate::model::fake_quant::{
    fake_quantize, fake_quantize_with, linear_forward, rtn_dequantized, FakeQuant, FakeQuantLinear,
};
use crate::model::{batch_tensor, LlamaModel, ModelOutput};
use crate::train::{train, Batch, RunDir, TrainConfig, TrainHook, TrainOutcome};

/// Settings of [`train_qat`].
#[derive(Clone, Debug)]
pub struct QatConfig {
    /// The simulated quantization; use the export's scheme and scale dtype so the exported
    /// model computes exactly what was trained.
    pub quant: FakeQuant,
    /// Linears left in floating point besides `lm_head` (HF names or prefixes).
    pub ignore: Vec<String>,
    /// Optimizer, schedule and batch settings.
    pub train: TrainConfig,
    /// Weight of the distillation loss `KL(float model ‖ fake-quantized model)` per token;
    /// the next-token loss gets `1 − distill`. `1` (pure distillation) keeps the model
    /// closest to the float one; `0` is plain fine-tuning on the data.
    pub distill: f64,
}

/// Distillation from the float model (on the plain device) plus the LM loss.
struct Distill<'a> {
    teacher: &'a LlamaModel,
    device: Device,
    weight: f64,
}

impl TrainHook for Distill<'_> {
    fn loss(&mut self, batch: &Batch, out: &ModelOutput, lm_loss: Tensor<1>) -> Result<Tensor<1>> {
        if self.weight <= 0.0 {
            return Ok(lm_loss);
        }
        let teacher = self
            .teacher
            .forward(batch_tensor(&batch.inputs, &self.device))
            .autodiff();
        let kl = kl_divergence(teacher, out.logits.clone()).mul_scalar(self.weight);
        if self.weight >= 1.0 {
            return Ok(kl);
        }
        Ok(lm_loss.mul_scalar(1.0 - self.weight) + kl)
    }
}

/// Mean over positions of `KL(softmax(teacher) ‖ softmax(student))`, logits `[b, s, v]`.
pub fn kl_divergence(teacher: Tensor<3>, student: Tensor<3>) -> Tensor<1> {
    crate::train::kd::kl_per_token(teacher, student).mean()
}

fn trainable<const D: usize>(p: Param<Tensor<D>>, on: bool) -> Param<Tensor<D>> {
    p.set_require_grad(on)
}

/// Lets the optimizer update only the fake-quantized linears (`only_quantized`), or every
/// parameter again. Norms, embeddings, biases, `lm_head` and ignored linears are exported as
/// they are, so freezing them keeps the export identical to the trained forward.
fn set_trainable(mut m: LlamaModel, only_quantized: bool) -> LlamaModel {
    let all = !only_quantized;
    m.embed_tokens.weight = trainable(m.embed_tokens.weight, all);
    m.norm.weight = trainable(m.norm.weight, all);
    if let Some(head) = m.lm_head.as_mut() {
        head.weight = trainable(head.weight.clone(), all);
    }
    let lin = |l: &mut Linear, quantized: bool| {
        l.weight = trainable(l.weight.clone(), all || quantized);
        l.bias = l.bias.take().map(|b| trainable(b, all));
    };
    for layer in m.layers.iter_mut() {
        layer.input_layernorm.weight = trainable(layer.input_layernorm.weight.clone(), all);
        layer.post_attention_layernorm.weight =
            trainable(layer.post_attention_layernorm.weight.clone(), all);
        let a = &mut layer.self_attn;
        let fq = a.fake_quant;
        for (l, q) in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj]
            .into_iter()
            .zip(fq)
        {
            lin(l, q.is_some());
        }
        let mlp = &mut layer.mlp;
        let fq = mlp.fake_quant;
        for (l, q) in [&mut mlp.gate_proj, &mut mlp.up_proj, &mut mlp.down_proj]
            .into_iter()
            .zip(fq)
        {
            lin(l, q.is_some());
        }
    }
    m
}

/// Quantization-aware fine-tuning: fake-quantizes the target linears of `model` (every
/// attention/MLP linear but `cfg.ignore`), trains only their float weights with the
/// [`train`] loop (progress bar, metrics JSONL and checkpoint in `run`) against
/// `cfg.distill`·KL to the float model + (1 − `cfg.distill`)·LM loss, and returns the trained
/// model with fake quantization switched off and every parameter trainable again.
///
/// Export it with [`super::quantize_model`] (RTN, same scheme, scales as `cfg.quant.scale_dtype`):
/// the packed model then computes what the last training forward computed.
pub fn train_qat(
    model: LlamaModel,
    hf_config: &HfConfig,
    windows: &[Vec<u32>],
    cfg: &QatConfig,
    device: &Device,
    run: &RunDir,
) -> Result<TrainOutcome> {
    if !(0.0..=1.0).contains(&cfg.distill) {
        return Err(CoreError::Invalid(format!(
            "QAT distillation weight {} is outside 0..=1",
            cfg.distill
        )));
    }
    let teacher = model.clone();
    let mut model = model;
    let n = model.set_fake_quant(Some(cfg.quant), &cfg.ignore)?;
    if n == 0 {
        return Err(CoreError::Invalid(
            "QAT: every linear is ignored, nothing to train".into(),
        ));
    }
    let mut hook = Distill {
        teacher: &teacher,
        device: device.clone(),
        weight: cfg.distill,
    };
    let model = set_trainable(model, true);
    let mut outcome = train(
        model, hf_config, windows, &cfg.train, device, run, false, None, &mut hook,
    )?;
    let mut model = set_trainable(outcome.model, false);
    model.set_fake_quant(None, &[])?;
    outcome.model = model;
    Ok(outcome)
}
