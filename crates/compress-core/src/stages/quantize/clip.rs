//! Output-aware clipping (AutoAWQ's `auto_clip`): per scale group, the clip ratio `p` that
//! minimises the error the group adds to the layer's outputs on calibration inputs,
//! `Σ_t (x_t,g · (w_g − ŵ_g))² = d_gᵀ H_g d_g` with `H_g = X_gᵀ X_g` over the group's input
//! columns, instead of the weight error MSE clipping uses. Candidates as [`super::mse`].

use compress_format::pack_quantized::{QuantStrategy, WeightQuant};
use compress_format::safetensors::Dtype;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::math::{dequantize, quantize, QuantRange};
use super::mse::MseConfig;
use super::rtn::stored_scale_zero;

/// `X[:, cols]ᵀ X[:, cols]` (row-major `[n, n]`) for row-major `x` `[tokens, inn]`.
fn gram(x: &[f32], tokens: usize, inn: usize, cols: std::ops::Range<usize>) -> Vec<f32> {
    let n = cols.len();
    let mut h = vec![0.0f32; n * n];
    let xg = MatRef::from_row_major_slice(x, tokens, inn).subcols(cols.start, n);
    matmul(
        MatMut::from_row_major_slice_mut(&mut h, n, n),
        Accum::Replace,
        xg.transpose(),
        xg,
        1.0f32,
        Par::rayon(0),
    );
    h
}

/// The clip ratio per scale group (row-major like the scales) of HF weight `w` `[out, inn]`
/// minimising the output error on inputs `x` (`[tokens, inn]`, row-major). Tensor-wide
/// quantization gets 1.
pub fn search_output_clip(
    w: &[f32],
    out: usize,
    inn: usize,
    x: &[f32],
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &MseConfig,
) -> Vec<f32> {
    if wq.strategy == QuantStrategy::Tensor {
        return vec![1.0];
    }
    let (n_groups, glen) = (wq.num_groups(inn), wq.group_len(inn));
    let tokens = x.len() / inn.max(1);
    let range = QuantRange::new(wq.num_bits);
    let candidates: Vec<f32> = cfg.candidates().collect();
    let mut clips = vec![1.0f32; out * n_groups];
    for g in 0..n_groups {
        let cols = g * glen..((g + 1) * glen).min(inn);
        let n = cols.len();
        let h = gram(x, tokens, inn, cols.clone());
        let best: Vec<f32> = (0..out)
            .into_par_iter()
            .map(|r| {
                let wg = &w[r * inn + cols.start..r * inn + cols.end];
                let mut d = vec![0.0f32; n];
                let mut best = (f32::INFINITY, 1.0f32);
                for &p in &candidates {
                    let sz = stored_scale_zero(wg, range, wq.symmetric, p, scale_dtype);
                    for (di, &v) in d.iter_mut().zip(wg) {
                        *di = v - dequantize(quantize(v, sz, range), sz);
                    }
                    let err: f32 = h
                        .chunks_exact(n)
                        .zip(&d)
                        .map(|(row, di)| di * row.iter().zip(&d).map(|(a, b)| a * b).sum::<f32>())
                        .sum();
                    if err < best.0 {
                        best = (err, p);
                    }
                }
                best.1
            })
            .collect();
        for (r, p) in best.into_iter().enumerate() {
            clips[r * n_groups + g] = p;
        }
    }
    clips
}

#[cfg(test)]
mod tests {
    use super::super::rtn::quantize_rtn;
    use super::*;

    fn output_err(w: &[f32], x: &[f32], out: usize, inn: usize, deq: &[f32]) -> f64 {
        let tokens = x.len() / inn;
        let mut e = 0.0f64;
        for t in 0..tokens {
            for r in 0..out {
                let s: f32 = (0..inn)
                    .map(|c| x[t * inn + c] * (w[r * inn + c] - deq[r * inn + c]))
                    .sum();
                e += (s as f64).powi(2);
            }
        }
        e
    }

    #[test]
    fn output_clip_does_not_lose_to_rtn() {
        let (out, inn, tokens) = (8, 48, 64);
        let w: Vec<f32> = (0..out * inn)
            .map(|i| {
                let u = ((i * 2654435761usize) % 1009) as f32 / 1009.0 - 0.5;
                if i % 23 == 0 {
                    u * 6.0
                } else {
                    u
                }
            })
            .collect();
        let x: Vec<f32> = (0..tokens * inn)
            .map(|i| ((i * 40503usize) % 997) as f32 / 997.0 - 0.5 + (i % inn) as f32 / inn as f32)
            .collect();
        for wq in [
            WeightQuant::group(3, false, 16),
            WeightQuant::channel(2, true),
        ] {
            let cfg = MseConfig::for_bits(wq.num_bits);
            let clip = search_output_clip(&w, out, inn, &x, &wq, Dtype::F32, &cfg);
            assert_eq!(clip.len(), out * wq.num_groups(inn).max(1));
            let rtn = quantize_rtn(&w, out, inn, &wq, Dtype::F32, None).dequantize(&wq);
            let clipped = quantize_rtn(&w, out, inn, &wq, Dtype::F32, Some(&clip)).dequantize(&wq);
            let (e_rtn, e_clip) = (
                output_err(&w, &x, out, inn, &rtn),
                output_err(&w, &x, out, inn, &clipped),
            );
            assert!(
                e_clip <= e_rtn * (1.0 + 1e-5),
                "{wq:?}: clip {e_clip} rtn {e_rtn}"
            );
            assert!(
                clip.iter().any(|&p| p < 1.0),
                "{wq:?}: something is clipped"
            );
        }
    }
}
