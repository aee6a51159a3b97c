//! MSE clipping: per group, search a clip ratio `p` of the min/max range that minimises the
//! reconstruction error `Σ h_j · |w_j − ŵ_j|^norm` of that group, then round to nearest with it.
//! `h_j` is 1 without calibration data; with it, the input channel's activation energy
//! `Σ x_j²` over the calibration tokens (the diagonal of GPTQ's Hessian `XᵀX`), so the search
//! minimises (a diagonal approximation of) the layer's output error rather than the weights'.
//!
//! The candidates are `p = 1 − i/grid` for `i = 0..max_shrink·grid` (llm-compressor's MSE
//! observer: grid 100, max shrink 0.2, norm 2.4). `p = 1` is always a candidate, so the error
//! of every group is at most RTN's. Low bit widths gain from clipping harder, so at 2–3 bits
//! the default search reaches down to `p = 0.5`.

use compress_format::pack_quantized::{QuantStrategy, QuantizedLinear, WeightQuant};
use compress_format::safetensors::Dtype;

use super::math::{dequantize, quantize, QuantRange, ScaleZero};
use super::rtn::{quantize_groups, stored_scale_zero};

/// Search space of the clip ratio.
#[derive(Clone, Debug, PartialEq)]
pub struct MseConfig {
    /// Steps per unit of shrink (candidates are `1 − i/grid`).
    pub grid: usize,
    /// Largest fraction of the range that may be clipped away.
    pub max_shrink: f32,
    /// Exponent of the error norm.
    pub norm: f32,
}

impl MseConfig {
    /// The defaults for `bits`: llm-compressor's (shrink ≤ 0.2) from 4 bits up, ≤ 0.5 below.
    pub fn for_bits(bits: u8) -> Self {
        Self {
            grid: 100,
            max_shrink: if bits <= 3 { 0.5 } else { 0.2 },
            norm: 2.4,
        }
    }

    /// The clip ratios searched, largest first: `1 − i/grid` for `i < max_shrink·grid`, > 0.
    pub fn candidates(&self) -> impl Iterator<Item = f32> + '_ {
        let steps = ((self.max_shrink * self.grid as f32).round() as usize).max(1);
        (0..steps)
            .map(|i| 1.0 - i as f32 / self.grid as f32)
            .take_while(|p| *p > 0.0)
    }
}

/// The scale/zero of `values` whose clip ratio minimises the group's `norm`-error, each value's
/// error weighted by `importance` (aligned with `values`; 1 when `None`).
fn best_params(
    values: &[f32],
    importance: Option<&[f32]>,
    range: QuantRange,
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &MseConfig,
) -> ScaleZero {
    let mut best = (f32::INFINITY, None);
    for p in cfg.candidates() {
        let sz = stored_scale_zero(values, range, wq.symmetric, p, scale_dtype);
        let err: f32 = values
            .iter()
            .enumerate()
            .map(|(j, &w)| {
                let e = (w - dequantize(quantize(w, sz, range), sz))
                    .abs()
                    .powf(cfg.norm);
                importance.map_or(e, |h| h[j] * e)
            })
            .sum();
        if err < best.0 {
            best = (err, Some(sz));
        }
    }
    best.1
        .unwrap_or_else(|| stored_scale_zero(values, range, wq.symmetric, 1.0, scale_dtype))
}

/// Quantizes a row-major HF weight `[out, inn]` with a searched clip ratio per group; with
/// `importance` (one weight per input column, e.g. `Σ x²` of the calibration inputs) each
/// column's error counts that much.
pub fn quantize_mse(
    weight: &[f32],
    out: usize,
    inn: usize,
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &MseConfig,
    importance: Option<&[f32]>,
) -> QuantizedLinear {
    let range = QuantRange::new(wq.num_bits);
    // Per-tensor groups span every row: the column weights repeat.
    let tiled: Option<Vec<f32>> = match (wq.strategy, importance) {
        (QuantStrategy::Tensor, Some(h)) => {
            Some(h.iter().copied().cycle().take(out * inn).collect())
        }
        _ => None,
    };
    let n_groups = wq.num_groups(inn).max(1);
    quantize_groups(weight, out, inn, wq, &|g, values| {
        let h = match (wq.strategy, importance) {
            (_, None) => None,
            (QuantStrategy::Tensor, Some(_)) => tiled.as_deref(),
            (QuantStrategy::Channel, Some(h)) => Some(h),
            (QuantStrategy::Group, Some(h)) => Some(&h[wq.group_range(g % n_groups, inn)]),
        };
        best_params(values, h, range, wq, scale_dtype, cfg)
    })
}

#[cfg(test)]
mod tests {
    use super::super::rtn::quantize_rtn;
    use super::*;

    fn sq_err(w: &[f32], ql: &QuantizedLinear, wq: &WeightQuant) -> f64 {
        w.iter()
            .zip(ql.dequantize(wq))
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum()
    }

    /// Heavy-tailed rows: a few outliers make min/max ranges wasteful.
    fn weight(out: usize, inn: usize) -> Vec<f32> {
        (0..out * inn)
            .map(|i| {
                let u = ((i * 2654435761usize) % 10007) as f32 / 10007.0 - 0.5;
                if i % 61 == 0 {
                    u * 8.0
                } else {
                    u
                }
            })
            .collect()
    }

    #[test]
    fn mse_error_is_below_rtn() {
        let (out, inn) = (16, 200);
        let w = weight(out, inn);
        for wq in [
            WeightQuant::group(4, false, 64),
            WeightQuant::group(3, true, 32),
            WeightQuant::channel(2, false),
        ] {
            let rtn = quantize_rtn(&w, out, inn, &wq, Dtype::F32, None);
            let mse = quantize_mse(
                &w,
                out,
                inn,
                &wq,
                Dtype::F32,
                &MseConfig::for_bits(wq.num_bits),
                None,
            );
            mse.check(&wq, "layer").unwrap();
            let (e_rtn, e_mse) = (sq_err(&w, &rtn, &wq), sq_err(&w, &mse, &wq));
            assert!(e_mse < e_rtn, "{wq:?}: mse {e_mse} rtn {e_rtn}");
        }
    }

    #[test]
    fn no_shrink_is_rtn() {
        let (out, inn) = (4, 50);
        let w = weight(out, inn);
        let wq = WeightQuant::group(4, false, 16);
        let cfg = MseConfig {
            grid: 100,
            max_shrink: 0.01,
            norm: 2.0,
        };
        let rtn = quantize_rtn(&w, out, inn, &wq, Dtype::BF16, None);
        let mse = quantize_mse(&w, out, inn, &wq, Dtype::BF16, &cfg, None);
        assert_eq!(rtn.q, mse.q);
        assert_eq!(rtn.scales, mse.scales);
    }

    #[test]
    fn importance_weights_the_search_toward_heavy_columns() {
        let (out, inn) = (8, 64);
        let w = weight(out, inn);
        let wq = WeightQuant::group(3, false, 32);
        let cfg = MseConfig::for_bits(3);
        // Every fourth input column carries most of the activation energy.
        let h: Vec<f32> = (0..inn)
            .map(|j| if j % 4 == 0 { 100.0 } else { 0.01 })
            .collect();
        let weighted_err = |ql: &QuantizedLinear| -> f64 {
            let deq = ql.dequantize(&wq);
            (0..out * inn)
                .map(|i| f64::from(h[i % inn]) * f64::from(w[i] - deq[i]).powi(2))
                .sum()
        };
        let plain = quantize_mse(&w, out, inn, &wq, Dtype::F32, &cfg, None);
        let with_h = quantize_mse(&w, out, inn, &wq, Dtype::F32, &cfg, Some(&h));
        with_h.check(&wq, "layer").unwrap();
        assert!(
            weighted_err(&with_h) < weighted_err(&plain),
            "{} vs {}",
            weighted_err(&with_h),
            weighted_err(&plain)
        );
        // Per-tensor and per-channel groups take the weights too.
        for wq in [WeightQuant::tensor(4, true), WeightQuant::channel(4, false)] {
            quantize_mse(&w, out, inn, &wq, Dtype::F32, &cfg, Some(&h))
                .check(&wq, "layer")
                .unwrap();
        }
    }
}
