//! Round-to-nearest (RTN) quantization of one weight matrix: per group, the min/max scale and
//! zero point of [`super::math`], with the scale rounded to its storage dtype first so the
//! codes are chosen against the scale a loader will actually use.

use compress_format::pack_quantized::{
    round_to_dtype, QuantStrategy, QuantizedLinear, WeightQuant,
};
use compress_format::safetensors::Dtype;

use rayon::prelude::*;

use super::math::{min_max, quantize, zero_point, QuantRange, ScaleZero};

/// Scale and zero point for `[min, max]` with the scale stored as `dtype`.
pub(crate) fn stored_scale_zero(
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
    let range = QuantRange::new(wq.num_bits);
    quantize_groups(weight, out, inn, wq, &|group, values| {
        let (lo, hi) = min_max(values);
        let c = clip.map_or(1.0, |c| c[group]);
        stored_scale_zero(lo, hi, range, wq.symmetric, c, scale_dtype)
    })
}

/// Quantizes a row-major HF weight `[out, inn]` group by group, each group's scale and zero
/// point chosen by `params(group index, group values)` (groups row-major like the scales).
/// Rows are processed in parallel.
pub fn quantize_groups(
    weight: &[f32],
    out: usize,
    inn: usize,
    wq: &WeightQuant,
    params: &(dyn Fn(usize, &[f32]) -> ScaleZero + Sync),
) -> QuantizedLinear {
    assert_eq!(weight.len(), out * inn, "weight is [out, in]");
    let range = QuantRange::new(wq.num_bits);
    let mut q = vec![0i8; out * inn];
    let (scales, zeros): (Vec<f32>, Vec<i8>) = match wq.strategy {
        QuantStrategy::Tensor => {
            let sz = params(0, weight);
            for (c, &w) in q.iter_mut().zip(weight) {
                *c = quantize(w, sz, range) as i8;
            }
            (vec![sz.scale], vec![sz.zero as i8])
        }
        QuantStrategy::Channel | QuantStrategy::Group => {
            let (n_groups, glen) = (wq.num_groups(inn), wq.group_len(inn));
            let per_row: Vec<Vec<ScaleZero>> = q
                .par_chunks_mut(inn.max(1))
                .zip(weight.par_chunks(inn.max(1)))
                .enumerate()
                .map(|(r, (codes, row))| {
                    (0..n_groups)
                        .map(|g| {
                            let cols = g * glen..((g + 1) * glen).min(inn);
                            let sz = params(r * n_groups + g, &row[cols.clone()]);
                            for (c, &w) in codes[cols.clone()].iter_mut().zip(&row[cols]) {
                                *c = quantize(w, sz, range) as i8;
                            }
                            sz
                        })
                        .collect()
                })
                .collect();
            per_row
                .into_iter()
                .flatten()
                .map(|sz| (sz.scale, sz.zero as i8))
                .unzip()
        }
    };
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
