//! Round-to-nearest (RTN) quantization of one weight matrix: per group, the min/max scale and
//! zero point of [`super::math`], with the scale rounded to its storage dtype first so the
//! codes are chosen against the scale a loader will actually use.

use compress_format::pack_quantized::{
    round_to_dtype, QuantStrategy, QuantizedLinear, WeightQuant,
};
use compress_format::safetensors::Dtype;

use super::math::{min_max, quantize, zero_point, QuantRange, ScaleZero};

/// Scale and zero point for `[min, max]` with the scale stored as `dtype`.
fn stored_scale_zero(
    min: f32,
    max: f32,
    range: QuantRange,
    symmetric: bool,
    clip: f32,
    dtype: Dtype,
) -> ScaleZero {
    let sz = super::math::scale_zero(min, max, range, symmetric, clip);
    let mut s = [sz.scale];
    round_to_dtype(&mut s, dtype);
    if s[0] <= 0.0 || !s[0].is_finite() {
        return sz;
    }
    let zero = if symmetric {
        0
    } else {
        zero_point(min.min(0.0) * clip, s[0], range)
    };
    ScaleZero { scale: s[0], zero }
}

/// Quantizes a row-major HF weight `[out, inn]` with round-to-nearest; `clip` gives a clip ratio
/// per scale group (row-major like the scales), or 1 everywhere when `None`.
pub fn quantize_rtn(
    weight: &[f32],
    out: usize,
    inn: usize,
    wq: &WeightQuant,
    scale_dtype: Dtype,
    clip: Option<&[f32]>,
) -> QuantizedLinear {
    assert_eq!(weight.len(), out * inn, "weight is [out, in]");
    let range = QuantRange::new(wq.num_bits);
    let n_groups = wq.num_groups(inn);
    let glen = wq.group_len(inn);
    let mut q = vec![0i8; out * inn];
    let (mut scales, mut zeros) = (Vec::new(), Vec::new());
    let mut quantize_span = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, c: f32| {
        let values: Vec<f32> = rows
            .clone()
            .flat_map(|r| {
                weight[r * inn + cols.start..r * inn + cols.end]
                    .iter()
                    .copied()
            })
            .collect();
        let (lo, hi) = min_max(&values);
        let sz = stored_scale_zero(lo, hi, range, wq.symmetric, c, scale_dtype);
        for r in rows {
            for col in cols.clone() {
                q[r * inn + col] = quantize(weight[r * inn + col], sz, range) as i8;
            }
        }
        scales.push(sz.scale);
        zeros.push(sz.zero as i8);
    };
    let clip_at = |i: usize| clip.map_or(1.0, |c| c[i]);
    match wq.strategy {
        QuantStrategy::Tensor => quantize_span(0..out, 0..inn, clip_at(0)),
        QuantStrategy::Channel => {
            (0..out).for_each(|r| quantize_span(r..r + 1, 0..inn, clip_at(r)))
        }
        QuantStrategy::Group => {
            for r in 0..out {
                for g in 0..n_groups {
                    let cols = g * glen..((g + 1) * glen).min(inn);
                    quantize_span(r..r + 1, cols, clip_at(r * n_groups + g));
                }
            }
        }
    }
    QuantizedLinear {
        out_features: out,
        in_features: inn,
        q,
        scales,
        zero_points: (!wq.symmetric).then_some(zeros),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(out: usize, inn: usize) -> Vec<f32> {
        (0..out * inn)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.45) * (1.0 + (i / inn) as f32))
            .collect()
    }

    #[test]
    fn dequantized_error_is_within_half_a_step_per_group() {
        let (out, inn) = (6, 40);
        let w = weight(out, inn);
        for wq in [
            WeightQuant::group(4, false, 16),
            WeightQuant::group(4, true, 16),
            WeightQuant::channel(8, false),
            WeightQuant::tensor(3, true),
        ] {
            for dtype in [Dtype::F32, Dtype::BF16] {
                let ql = quantize_rtn(&w, out, inn, &wq, dtype, None);
                ql.check(&wq, "layer").unwrap();
                let deq = ql.dequantize(&wq);
                for r in 0..out {
                    for c in 0..inn {
                        let s = ql.scales[wq.scale_index(r, c, inn)];
                        let err = (w[r * inn + c] - deq[r * inn + c]).abs();
                        // A bf16 scale is off by at most 2^-9 relative, which over 2^bits
                        // codes can push the range end past the last code by that much.
                        let levels = (1u32 << wq.num_bits) as f32;
                        let slack = if dtype == Dtype::BF16 {
                            s * levels / 512.0
                        } else {
                            1e-6
                        };
                        assert!(
                            err <= s / 2.0 + slack,
                            "{wq:?} {dtype:?} [{r},{c}] err {err} s {s}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ragged_last_group_is_quantized() {
        let wq = WeightQuant::group(4, false, 16);
        let ql = quantize_rtn(&weight(2, 40), 2, 40, &wq, Dtype::F32, None);
        assert_eq!(ql.scales.len(), 2 * 3);
        ql.check(&wq, "layer").unwrap();
    }
}
