//! The building blocks of a decoder layer: [`RmsNorm`], [`Mlp`] (SwiGLU) and
//! [`Attention`] (GQA with rotary embeddings, optional q/k/v/o bias, optional KV cache).

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Tensor};

use super::experts::Experts;
use super::fake_quant::{linear_forward, FakeQuant};
use super::rope::Rope;

/// Makes a trainable parameter with a stable id (so optimizer state survives save → load).
pub fn param<const D: usize>(id: ParamId, value: Tensor<D>) -> Param<Tensor<D>> {
    Param::initialized(id, value).set_require_grad(true)
}

/// A linear layer from an HF weight `[out, in]` (stored transposed, `[in, out]`, as burn does).
pub fn linear(weight: Param<Tensor<2>>, bias: Option<Param<Tensor<1>>>) -> Linear {
    Linear { weight, bias }
}

/// Root-mean-square norm: `w · x / sqrt(mean(x²) + eps)` (HF `LlamaRMSNorm`).
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Per-channel gain `[hidden]`.
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

impl RmsNorm {
    /// Normalizes the last dimension. `x`: `[.., hidden]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let variance = x.clone().square().mean_dim(D - 1);
        let x = x * variance.add_scalar(self.eps).sqrt().recip();
        x * self.weight.val().unsqueeze()
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `gate_proj`: hidden → intermediate.
    pub gate_proj: Linear,
    /// `up_proj`: hidden → intermediate.
    pub up_proj: Linear,
    /// `down_proj`: intermediate → hidden.
    pub down_proj: Linear,
    /// Fake quantization of gate/up/down in the forward (QAT); all `None` for float.
    #[module(skip)]
    pub fake_quant: [Option<FakeQuant>; 3],
    /// The router `mlp.gate` (hidden → experts) of a mixture-of-experts FFN; `None` when dense.
    pub router: Option<Linear>,
    /// The experts (sizes, top-k, routing rule) of a mixture-of-experts FFN.
    #[module(skip)]
    pub experts: Option<Experts>,
}

impl Mlp {
    /// `x`: `[batch, seq, hidden]` → `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match (&self.router, &self.experts) {
            // Fake quantization applies to whole linears: compute every neuron, mask by route.
            (Some(router), Some(experts)) if self.fake_quant.iter().any(Option::is_some) => {
                let scores = router.forward(x.clone());
                self.apply(2, self.hidden(x) * experts.neuron_weights(scores))
            }
            (Some(router), Some(experts)) => {
                let scores = router.forward(x.clone());
                experts.forward(x, scores, &self.gate_proj, &self.up_proj, &self.down_proj)
            }
            _ => self.apply(2, self.hidden(x)),
        }
    }

    /// The input of `down_proj`: `silu(gate(x)) · up(x)`, `[batch, seq, intermediate]`.
    pub fn hidden(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.apply(0, x.clone()));
        gate * self.apply(1, x)
    }

    /// Linear `i` (0 gate, 1 up, 2 down) on `x`, fake-quantized when set.
    fn apply(&self, i: usize, x: Tensor<3>) -> Tensor<3> {
        let lin = [&self.gate_proj, &self.up_proj, &self.down_proj][i];
        linear_forward(lin, self.fake_quant[i].as_ref(), x)
    }
}

/// Cached keys and values of one layer, `[batch, kv_heads, seq, head_dim]` each (after RoPE).
#[derive(Clone, Debug)]
pub struct LayerKv {
    /// Keys.
    pub k: Tensor<4>,
    /// Values.
    pub v: Tensor<4>,
}

/// Multi-head attention with grouped key/value heads and rotary embeddings.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection: hidden → heads·head_dim.
    pub q_proj: Linear,
    /// Key projection: hidden → kv_heads·head_dim.
    pub k_proj: Linear,
    /// Value projection: hidden → kv_heads·head_dim.
    pub v_proj: Linear,
    /// Output projection: heads·head_dim → hidden.
    pub o_proj: Linear,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Fake quantization of q/k/v/o in the forward (QAT); all `None` for float.
    #[module(skip)]
    pub fake_quant: [Option<FakeQuant>; 4],
}

impl Attention {
    /// `x`: `[batch, seq, hidden]` at positions `offset..offset+seq`; `cos`/`sin`: RoPE tables
    /// for those positions. With `cache`, attends over the cached keys too and appends to it.
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        cache: Option<&mut Option<LayerKv>>,
    ) -> Tensor<3> {
        self.apply(3, self.attend(x, cos, sin, cache))
    }

    /// Everything before `o_proj`: the heads' attention outputs, `[batch, seq, heads·head_dim]`.
    pub fn attend(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        cache: Option<&mut Option<LayerKv>>,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |t: Tensor<3>, heads: usize| t.reshape([batch, seq, heads, hd]).swap_dims(1, 2);
        let q = Rope::apply(split(self.apply(0, x.clone()), h), cos, sin);
        let mut k = Rope::apply(split(self.apply(1, x.clone()), kvh), cos, sin);
        let mut v = split(self.apply(2, x), kvh);

        let mut past = 0;
        if let Some(slot) = cache {
            if let Some(prev) = slot.take() {
                past = prev.k.dims()[2];
                k = Tensor::cat(vec![prev.k, k], 2);
                v = Tensor::cat(vec![prev.v, v], 2);
            }
            *slot = Some(LayerKv {
                k: k.clone(),
                v: v.clone(),
            });
        }
        let total = past + seq;
        let k = repeat_kv(k, h / kvh);
        let v = repeat_kv(v, h / kvh);

        let scale = (hd as f64).powf(-0.5);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        let scores = if seq > 1 {
            // Query i (absolute position past+i) may not see keys j > past+i. burn's
            // `tril_mask(offset)` is true outside the lower triangle, i.e. where j - i > offset.
            let mask = Tensor::<2, Bool>::tril_mask([seq, total], past as i64, &scores.device());
            // The most negative finite value, as transformers does: -inf would turn into NaN
            // in backends that blend masked values arithmetically.
            scores.mask_fill(mask.reshape([1, 1, seq, total]), f32::MIN)
        } else {
            scores
        };
        let out = softmax(scores, 3).matmul(v);
        out.swap_dims(1, 2).reshape([batch, seq, h * hd])
    }

    /// Linear `i` (0 q, 1 k, 2 v, 3 o) on `x`, fake-quantized when set.
    fn apply(&self, i: usize, x: Tensor<3>) -> Tensor<3> {
        let lin = [&self.q_proj, &self.k_proj, &self.v_proj, &self.o_proj][i];
        linear_forward(lin, self.fake_quant[i].as_ref(), x)
    }
}

/// Repeats each key/value head `n_rep` times: `[b, kvh, s, d]` → `[b, kvh·n_rep, s, d]`.
fn repeat_kv(x: Tensor<4>, n_rep: usize) -> Tensor<4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kvh, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kvh, n_rep, s, d])
        .reshape([b, kvh * n_rep, s, d])
}
