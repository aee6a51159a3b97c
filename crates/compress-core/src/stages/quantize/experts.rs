//! GPTQ of a mixture-of-experts layer's experts. The burn layer keeps the experts' neurons
//! concatenated; each expert is quantized as its own linears (`mlp.experts.<e>.*`):
//! `gate_proj`/`up_proj` rows with the Hessian of the FFN input (every calibration token, as
//! the dense layer saw them), and `down_proj` columns with the diagonal block of the
//! `down_proj` input's Hessian that belongs to the expert's neurons, so no error is fed back
//! across experts that a token may not both run.

use compress_format::pack_quantized::{QuantizedLinear, WeightQuant};
use compress_format::safetensors::Dtype;

use super::gptq::{gptq_quantize, GptqConfig, Hessian};
use super::ignored;
use super::sequential::set_weight;
use crate::error::{CoreError, Result};
use crate::model::llama::DecoderLayer;
use crate::model::weights::transpose;
use crate::tensor_util::to_vec_f32;

/// One quantized expert linear: HF name (without `.weight`), float weight, and its quantization.
pub(crate) type Quantized = (String, Vec<f32>, QuantizedLinear);

/// Quantizes every non-ignored expert linear of MoE layer `l` with GPTQ, given the Hessians of
/// the FFN input (`h_in`) and of `down_proj`'s input (`h_down`); with `update`, the layer's
/// weights are replaced by their dequantized values (for the next layers' calibration).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gptq_experts(
    layer: &mut DecoderLayer,
    l: usize,
    h_in: &Hessian,
    h_down: &Hessian,
    ignore: &[String],
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &GptqConfig,
    update: bool,
) -> Result<Vec<Quantized>> {
    let sizes = layer
        .mlp
        .experts
        .as_ref()
        .map(|e| e.sizes.clone())
        .ok_or_else(|| CoreError::Invalid(format!("layer {l} has no experts")))?;
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
        let name = |proj: &str| format!("model.layers.{l}.mlp.experts.{e}.{proj}");
        for (proj, m) in [("gate_proj", &mut gate), ("up_proj", &mut up)] {
            let nm = name(proj);
            if ignored(&nm, ignore) {
                continue;
            }
            let rows = m.2[start * hidden..(start + n) * hidden].to_vec();
            let (ql, _) = gptq_quantize(&rows, n, hidden, h_in, wq, scale_dtype, cfg)
                .map_err(|err| CoreError::Invalid(format!("{nm}: {err}")))?;
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
            let (ql, _) = gptq_quantize(
                &cols,
                hidden,
                n,
                &h_down.block(start, n),
                wq,
                scale_dtype,
                cfg,
            )
            .map_err(|err| CoreError::Invalid(format!("{nm}: {err}")))?;
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
