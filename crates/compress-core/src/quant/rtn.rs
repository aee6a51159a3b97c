//! Round-to-nearest (RTN) quantization of one weight matrix: per group, the min/max scale and
//! zero point of [`super::math`], with the scale rounded to its storage dtype first so the
//! codes are chosen against the scale a loader will actually use.

use compress_format::pack_quantized::{
    round_to_dtype, QuantStrategy, QuantizedLinear, WeightQuant,
};
use compress_format::safetensors::Dtype;

use rayon::prelude::*;

use super::math::{
    min_max, quantize, squared_error, symmetric_candidates, zero_point, QuantRange, ScaleZero,
};

/// Scale and zero point of the group `values` (clipped by `clip`) with the scale stored as
/// `dtype`. Symmetric groups take whichever of [`symmetric_candidates`] and their
/// least-squares refits gives the smallest squared error (ties keep the first: compressed-tensors'
/// rule), so RTN is not worse than ggml's Q4_0 rule on a group.
pub(crate) fn stored_scale_zero(
    values: &[f32],
    range: QuantRange,
    symmetric: bool,
    clip: f32,
    dtype: Dtype,
) -> ScaleZero {
    let (min, max) = min_max(values);
    if !symmetric {
        let sz = super::math::scale_zero(min, max, range, false, clip);
        let s = stored(sz.scale, dtype);
        if s == sz.scale || s == 0.0 || !s.is_finite() {
            return sz;
        }
        let zero = zero_point(min.min(0.0) * clip, s, range);
        return ScaleZero { scale: s, zero };
    }
    let [ct, ggml] = symmetric_candidates(min, max, range, clip).map(|sz| {
        let s = stored(sz.scale, dtype);
        match s != 0.0 && s.is_finite() {
            true => ScaleZero { scale: s, zero: 0 },
            false => sz,
        }
    });
    let mut best = (squared_error(values, ct, range), ct);
    for sz in [
        ggml,
        refit(values, ct, range, dtype),
        refit(values, ggml, range, dtype),
    ] {
        let e = squared_error(values, sz, range);
        if e < best.0 {
            best = (e, sz);
        }
    }
    best.1
}

/// The least-squares scale for the codes `sz` gives `values` (`Σ w·q / Σ q²`), stored as
/// `dtype`; `sz` itself when no code is nonzero.
fn refit(values: &[f32], sz: ScaleZero, range: QuantRange, dtype: Dtype) -> ScaleZero {
    let (mut wq, mut qq) = (0.0f64, 0.0f64);
    for &w in values {
        let q = f64::from(quantize(w, sz, range));
        wq += f64::from(w) * q;
        qq += q * q;
    }
    let s = stored((wq / qq) as f32, dtype);
    match qq > 0.0 && s != 0.0 && s.is_finite() {
        true => ScaleZero { scale: s, zero: 0 },
        false => sz,
    }
}

/// `scale` as stored in `dtype`.
fn stored(scale: f32, dtype: Dtype) -> f32 {
    let mut s = [scale];
    round_to_dtype(&mut s, dtype);
    s[0]
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
        let c = clip.map_or(1.0, |c| c[group]);
        stored_scale_zero(values, range, wq.symmetric, c, scale_dtype)
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
    fn dequantized_error_is_within_half_a_step_per_group_or_a_clamped_step() {
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
                        // ggml's symmetric rule maps the largest magnitude to qmin, so the
                        // other end may be clamped by up to one step; the other rules round.
                        let s = ql.scales[wq.scale_index(r, c, inn)].abs();
                        let s = if wq.symmetric { 2.0 * s } else { s };
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

    #[test]
    fn symmetric_int4_group_32_is_never_worse_than_ggml_q4_0() {
        use compress_format::gguf::blocks::{dequantize_q4_0, quantize_q4_0};
        let (out, inn) = (16, 128);
        let w = weight(out, inn);
        let wq = WeightQuant::group(4, true, 32);
        let deq = quantize_rtn(&w, out, inn, &wq, Dtype::F32, None).dequantize(&wq);
        let (mut bytes, mut q4) = (Vec::new(), Vec::new());
        quantize_q4_0(&w, &mut bytes);
        dequantize_q4_0(&bytes, &mut q4);
        let sq = |a: &[f32]| -> f32 { a.iter().zip(&w).map(|(x, y)| (x - y) * (x - y)).sum() };
        let mut better = 0;
        for g in 0..out * inn / 32 {
            let r = g * 32..(g + 1) * 32;
            let (ours, ggml) = (sq_range(&deq, &w, &r), sq_range(&q4, &w, &r));
            // Q4_0 rounds its scale to f16 after choosing the codes (and rounds halves up);
            // ours is f32 here, so a group can land either side of it by a little.
            assert!(ours <= ggml * 1.01 + 1e-12, "group {g}: {ours} vs {ggml}");
            better += usize::from(ours < ggml * 0.999);
        }
        assert!(sq(&deq) < sq(&q4), "{} vs {}", sq(&deq), sq(&q4));
        assert!(better > 0, "the compressed-tensors rule wins some groups");
    }

    fn sq_range(a: &[f32], w: &[f32], r: &std::ops::Range<usize>) -> f32 {
        a[r.clone()]
            .iter()
            .zip(&w[r.clone()])
            .map(|(x, y)| (x - y) * (x - y))
            .sum()
    }
}
