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
use burn::tensor::{Tensor, TensorData};
use compress_format::pack_quantized::WeightQuant;
use compress_format::safetensors::Dtype;

use super::LlamaModel;
use crate::error::{CoreError, Result};
use crate::quant::rtn::quantize_rtn;
use crate::tensor_util::to_vec_f32;

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
/// weights): [`crate::quant::rtn::quantize_rtn`] itself, run on the host, so the forward sees
/// exactly the weight the export writes (on an accelerator this copies the weight to the host
/// and back each call).
pub fn rtn_dequantized(w: Tensor<2>, fq: &FakeQuant) -> Tensor<2> {
    let [out, inn] = w.dims();
    if out == 0 || inn == 0 {
        return w;
    }
    let (device, dtype) = (w.device(), w.dtype());
    let values = to_vec_f32(w);
    let wq = WeightQuant {
        num_bits: fq.weights.num_bits.clamp(2, 8),
        ..fq.weights
    };
    let deq = quantize_rtn(&values, out, inn, &wq, fq.scale_dtype, None).dequantize(&wq);
    Tensor::<2>::from_data(TensorData::new(deq, [out, inn]), &device).cast(dtype)
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
