//! Calibrated quantization of a mixture-of-experts layer's experts. The burn layer keeps the
//! experts' neurons concatenated; each expert is quantized as its own linears
//! (`mlp.experts.<e>.*`: `gate_proj`/`up_proj` rows, `down_proj` columns):
//!
//! * GPTQ ([`gptq_expert`]): gate/up with the Hessian of the FFN input (every calibration token,
//!   as the dense layer saw them); down with the diagonal block of the `down_proj` input's
//!   Hessian that belongs to the expert's neurons, so no error is fed back across experts that a
//!   token may not both run;
//! * AWQ: the scales are searched and folded on the whole layer as for a dense FFN (the experts
//!   share the norm and each neuron keeps its own up/down scale); gate/up rows keep their clip
//!   ratios, down columns are rounded without clipping (its clip groups span experts).

use compress_format::pack_quantized::{QuantizedLinear, WeightQuant};
use compress_format::safetensors::Dtype;

use super::gptq::{gptq_quantize, GptqConfig, Hessian};
use super::ignored;
use super::rtn::quantize_rtn;
use crate::error::{CoreError, Result};
use crate::model::llama::DecoderLayer;
use crate::model::weights::set_weight;
use crate::model::weights::transpose;
use crate::tensor_util::to_vec_f32;

/// One quantized expert linear: HF name (without `.weight`), float weight, and its quantization.
pub(crate) type Quantized = (String, Vec<f32>, QuantizedLinear);

/// How one expert linear is quantized: `(proj, first neuron, neurons, weight [out, in], out, in)`.
pub(crate) type ExpertQuantizer<'a> =
    dyn Fn(&str, usize, usize, &[f32], usize, usize) -> Result<QuantizedLinear> + 'a;

/// GPTQ of one expert linear given the Hessians of the FFN input and of `down_proj`'s input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gptq_expert(
    proj: &str,
    start: usize,
    n: usize,
    w: &[f32],
    out: usize,
    inn: usize,
    (h_in, h_down): (&Hessian, &Hessian),
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &GptqConfig,
) -> Result<QuantizedLinear> {
    let h = match proj {
        "down_proj" => &h_down.block(start, n),
        _ => h_in,
    };
    Ok(gptq_quantize(w, out, inn, h, wq, scale_dtype, cfg)?.0)
}

/// RTN of one expert linear of an AWQ-scaled layer: gate/up rows with their slice of the
/// layer's clip ratios (`clips[0]` gate, `clips[1]` up), down without clipping.
#[allow(clippy::too_many_arguments)]
pub(crate) fn awq_expert(
    proj: &str,
    start: usize,
    n: usize,
    w: &[f32],
    out: usize,
    inn: usize,
    clips: [Option<&[f32]>; 2],
    wq: &WeightQuant,
    scale_dtype: Dtype,
) -> QuantizedLinear {
    let per_row = match wq.strategy {
        compress_format::pack_quantized::QuantStrategy::Group => wq.num_groups(inn),
        compress_format::pack_quantized::QuantStrategy::Channel => 1,
        compress_format::pack_quantized::QuantStrategy::Tensor => 0,
    };
    let clip = match (proj, per_row) {
        (_, 0) | ("down_proj", _) => None,
        ("gate_proj", _) => clips[0],
        _ => clips[1],
    }
    .map(|c| &c[start * per_row..(start + n) * per_row]);
    quantize_rtn(w, out, inn, wq, scale_dtype, clip)
}

/// Quantizes every non-ignored expert linear of MoE layer `l` with `quantize`; with `update`,
/// the layer's weights are replaced by their dequantized values (for the next layers'
/// calibration).
pub(crate) fn quantize_experts(
    layer: &mut DecoderLayer,
    l: usize,
    ignore: &[String],
    wq: &WeightQuant,
    update: bool,
    quantize: &ExpertQuantizer<'_>,
) -> Result<Vec<Quantized>> {
    let sizes = layer
        .mlp
        .experts
        .as_ref()
        .map(|e| e.sizes.clone())
        .ok_or_else(|| CoreError::tensor(crate::model::names::mlp(l), "has no experts"))?;
    // HF layout [out, in] of the concatenated linears.
    let hf = |lin: &burn::nn::Linear| {
        let w = lin.weight.val();
        let [i, o] = w.dims();
        (o, i, transpose(&to_vec_f32(w), i, o))
    };
    let (mut gate, mut up, mut down) = (
        hf(&layer.mlp.gate_proj),
        hf(&layer.mlp.up_proj),
        hf(&layer.mlp.down_proj),
    );
    let hidden = gate.1;
    let inter = down.1;
    let mut out = Vec::new();
    let mut start = 0;
    for (e, &n) in sizes.iter().enumerate() {
        let name = |proj: &str| crate::model::names::join(&crate::model::names::expert(l, e), proj);
        for (proj, m) in [("gate_proj", &mut gate), ("up_proj", &mut up)] {
            let nm = name(proj);
            if ignored(&nm, ignore) {
                continue;
            }
            let rows = m.2[start * hidden..(start + n) * hidden].to_vec();
            let ql = quantize(proj, start, n, &rows, n, hidden)
                .map_err(|err| CoreError::tensor(&nm, err))?;
            m.2[start * hidden..(start + n) * hidden].copy_from_slice(&ql.dequantize(wq));
            out.push((nm, rows, ql));
        }
        let nm = name("down_proj");
        if !ignored(&nm, ignore) {
            let cols: Vec<f32> = (0..hidden)
                .flat_map(|r| {
                    down.2[r * inter + start..r * inter + start + n]
                        .iter()
                        .copied()
                })
                .collect();
            let ql = quantize("down_proj", start, n, &cols, hidden, n)
                .map_err(|err| CoreError::tensor(&nm, err))?;
            let deq = ql.dequantize(wq);
            for r in 0..hidden {
                down.2[r * inter + start..r * inter + start + n]
                    .copy_from_slice(&deq[r * n..(r + 1) * n]);
            }
            out.push((nm, cols, ql));
        }
        start += n;
    }
    if update {
        set_weight(&mut layer.mlp.gate_proj, &gate.2, gate.0, gate.1);
        set_weight(&mut layer.mlp.up_proj, &up.2, up.0, up.1);
        set_weight(&mut layer.mlp.down_proj, &down.2, down.0, down.1);
    }
    Ok(out)
}
