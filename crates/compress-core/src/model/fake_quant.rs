//! Fake quantization of linear weights with a straight-through estimator: the forward sees
//! exactly the weight that round-to-nearest export gives back on load, the backward passes
//! the gradient through unchanged. The code range and groups come from the scheme
//! ([`WeightQuant`]), as the export's. QAT (`stages::quantize::qat`) trains with it; it lives
//! with the model because the model's linears apply it in their forward.
//!
//! The value is built as `deq.detach() + (w − w.detach())`, which is `deq` bit for bit in the
//! forward (the second term is exactly 0) and the identity in the backward.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{FloatDType, Tensor};
use compress_format::pack_quantized::{QuantStrategy, WeightQuant};
use compress_format::safetensors::Dtype;

use super::LlamaModel;
use crate::error::{CoreError, Result};

/// The fake quantization of one linear weight: scheme and the dtype scales are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeQuant {
    /// Bits, symmetry and granularity (as exported).
    pub weights: WeightQuant,
    /// Scales are rounded to this dtype before the codes are chosen, as the export does
    /// (F32/F64 leave them unrounded).
    pub scale_dtype: Dtype,
}

impl FakeQuant {
    /// `weights` with f32 scales.
    pub fn new(weights: WeightQuant) -> Self {
        Self {
            weights,
            scale_dtype: Dtype::F32,
        }
    }

    /// The same scheme with scales stored as `dtype` (match the export's `--dtype`).
    pub fn with_scale_dtype(mut self, dtype: Dtype) -> Self {
        self.scale_dtype = dtype;
        self
    }
}

/// Fake-quantizes an HF-layout weight `[out, in]` with f32 scales: forward = RTN
/// quantize → dequantize, backward = identity (straight-through).
pub fn fake_quantize(w: Tensor<2>, wq: &WeightQuant) -> Tensor<2> {
    fake_quantize_with(w, &FakeQuant::new(*wq))
}

/// [`fake_quantize`] with the scale dtype of `fq` (scales rounded as the export rounds them).
pub fn fake_quantize_with(w: Tensor<2>, fq: &FakeQuant) -> Tensor<2> {
    let deq = rtn_dequantized(w.clone().detach(), fq);
    deq.detach() + (w.clone() - w.detach())
}

/// The RTN-dequantized value of `w` `[out, in]` (no straight-through; use on detached
/// weights). Groups run along the input dimension; a ragged last group is its own group.
pub fn rtn_dequantized(w: Tensor<2>, fq: &FakeQuant) -> Tensor<2> {
    let [out, inn] = w.dims();
    if out == 0 || inn == 0 {
        return w;
    }
    let wq = &fq.weights;
    match wq.strategy {
        QuantStrategy::Tensor => groups(w.reshape([1, 1, out * inn]), fq).reshape([out, inn]),
        QuantStrategy::Channel => groups(w.reshape([out, 1, inn]), fq).reshape([out, inn]),
        QuantStrategy::Group => {
            let g = wq.group_len(inn).max(1);
            let (full, rem) = (inn / g, inn % g);
            let mut parts = Vec::with_capacity(2);
            if full > 0 {
                let head = w.clone().narrow(1, 0, full * g).reshape([out, full, g]);
                parts.push(groups(head, fq).reshape([out, full * g]));
            }
            if rem > 0 {
                let tail = w.narrow(1, full * g, rem).reshape([out, 1, rem]);
                parts.push(groups(tail, fq).reshape([out, rem]));
            }
            match parts.len() {
                1 => parts.remove(0),
                _ => Tensor::cat(parts, 1),
            }
        }
    }
}

/// Quantize → dequantize `w` `[rows, n, len]`, one scale group per `[r, k, :]`.
fn groups(w: Tensor<3>, fq: &FakeQuant) -> Tensor<3> {
    let wq = WeightQuant {
        num_bits: fq.weights.num_bits.clamp(2, 8),
        ..fq.weights
    };
    let (qmin, qmax) = (wq.qmin() as f32, wq.qmax() as f32);
    let lo = w.clone().min_dim(2).clamp_max(0.0);
    let hi = w.clone().max_dim(2).clamp_min(0.0);
    let scale = if fq.weights.symmetric {
        lo.clone().abs().max_pair(hi.abs()) / ((qmax - qmin) / 2.0)
    } else {
        (hi - lo.clone()) / (qmax - qmin)
    };
    // A zero (all-zero group) or non-finite scale becomes 1, as in `math::scale_zero`.
    let bad = scale.clone().greater_elem(0.0).bool_not();
    let bad = bad.bool_or(scale.clone().is_finite().bool_not());
    let mut scale = scale.mask_fill(bad, 1.0);
    if let Some(dt) = rounding_dtype(fq.scale_dtype) {
        // The stored scale, unless rounding would make it unusable (as `rtn` does).
        let orig = FloatDType::from(scale.dtype());
        let rounded = scale.clone().cast(dt).cast(orig);
        let keep = rounded.clone().greater_elem(0.0);
        let keep = keep.bool_and(rounded.clone().is_finite());
        scale = scale.mask_where(keep, rounded);
    }
    let zero = if fq.weights.symmetric {
        scale.zeros_like()
    } else {
        (lo / scale.clone())
            .neg()
            .add_scalar(qmin)
            .round()
            .clamp(qmin, qmax)
    };
    let q = (w / scale.clone()).round() + zero.clone();
    (q.clamp(qmin, qmax) - zero) * scale
}

/// The dtype scales are rounded through, `None` when storing them keeps them exact.
fn rounding_dtype(dtype: Dtype) -> Option<FloatDType> {
    match dtype {
        Dtype::F16 => Some(FloatDType::F16),
        Dtype::BF16 => Some(FloatDType::BF16),
        _ => None,
    }
}

/// `linear(x)`, with the weight fake-quantized by `fq` when set (the plain forward otherwise).
pub fn linear_forward<const D: usize>(
    linear: &Linear,
    fq: Option<&FakeQuant>,
    x: Tensor<D>,
) -> Tensor<D> {
    match fq {
        None => linear.forward(x),
        Some(fq) => {
            // burn stores [in, out]; the scheme's groups run along HF's `in` (dim 1 of [out, in]).
            let w = fake_quantize_with(linear.weight.val().transpose(), fq).transpose();
            burn::tensor::module::linear(x, w, linear.bias.as_ref().map(|b| b.val()))
        }
    }
}

/// A `burn::nn::Linear` whose weight is fake-quantized in every forward: train it in your
/// own loop, then export the inner `linear` with RTN at the same scheme.
#[derive(Module, Debug)]
pub struct FakeQuantLinear {
    /// The float layer being trained (weight `[in, out]`, as burn stores it).
    pub linear: Linear,
    /// The quantization the forward simulates.
    #[module(skip)]
    pub quant: FakeQuant,
}

impl FakeQuantLinear {
    /// Wraps an existing layer; errors if `wq` is not a valid scheme.
    pub fn new(linear: Linear, wq: WeightQuant) -> Result<Self> {
        Self::with_quant(linear, FakeQuant::new(wq))
    }

    /// Wraps an existing layer with a full [`FakeQuant`] (e.g. bf16 scales).
    pub fn with_quant(linear: Linear, quant: FakeQuant) -> Result<Self> {
        quant.weights.validate()?;
        Ok(Self { linear, quant })
    }

    /// `x @ fake_quantize(W) + b`; `x`: `[.., in]` → `[.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear_forward(&self.linear, Some(&self.quant), x)
    }

    /// The weight the forward uses, HF layout `[out, in]` (what RTN export dequantizes to).
    pub fn quantized_weight(&self) -> Tensor<2> {
        rtn_dequantized(self.linear.weight.val().transpose().detach(), &self.quant)
    }

    /// The float layer.
    pub fn into_linear(self) -> Linear {
        self.linear
    }
}

fn matches(name: &str, ignore: &[String]) -> bool {
    ignore
        .iter()
        .any(|i| name == i || name.starts_with(&format!("{i}.")))
}

impl LlamaModel {
    /// Makes every attention/MLP linear fake-quantize its weight in the forward (`None`:
    /// back to the float forward). `lm_head` never is; `ignore` holds HF module names or
    /// prefixes (e.g. `model.layers.0.mlp.down_proj`, `model.layers.1`) to leave in float.
    /// Returns how many linears are fake-quantized; errors on an invalid scheme or an
    /// `ignore` entry that names no linear.
    pub fn set_fake_quant(&mut self, quant: Option<FakeQuant>, ignore: &[String]) -> Result<usize> {
        if let Some(q) = &quant {
            q.weights.validate()?;
        }
        use super::names::{in_layer, ATTN_PROJS as ATTN, MLP_PROJS as MLP};
        let name = |l: usize, block: &str, proj: &str| in_layer(l, &format!("{block}.{proj}"));
        let mut names: Vec<String> = (0..self.layers.len())
            .flat_map(|l| {
                let attn = ATTN.iter().map(move |p| name(l, "self_attn", p));
                attn.chain(MLP.iter().map(move |p| name(l, "mlp", p)))
            })
            .collect();
        if self.lm_head.is_some() {
            names.push("lm_head".into());
        }
        if let Some(i) = ignore
            .iter()
            .find(|i| !names.iter().any(|n| matches(n, std::slice::from_ref(i))))
        {
            let msg = "names no linear layer (e.g. model.layers.0.mlp.down_proj)";
            return Err(CoreError::setting("ignore", i, msg));
        }
        let mut count = 0;
        let mut set = |slot: &mut Option<FakeQuant>, name: String| {
            *slot = quant.filter(|_| !matches(&name, ignore));
            count += usize::from(slot.is_some());
        };
        for (l, layer) in self.layers.iter_mut().enumerate() {
            for (slot, proj) in layer.self_attn.fake_quant.iter_mut().zip(ATTN) {
                set(slot, name(l, "self_attn", proj));
            }
            for (slot, proj) in layer.mlp.fake_quant.iter_mut().zip(MLP) {
                set(slot, name(l, "mlp", proj));
            }
        }
        Ok(count)
    }
}
