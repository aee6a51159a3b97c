//! GPTQ (Frantar et al., 2022) for one weight matrix `W [out, in]`, given the Hessian
//! `H = 2/N Σ x xᵀ` of the layer's `N` calibration inputs (see [`Hessian`]).
//!
//! GPTQ quantizes the columns of `W` one at a time and spreads each column's rounding error
//! over the columns not yet quantized so that the layer output `X Wᵀ` moves as little as
//! possible (optimal brain surgeon updates with the inverse Hessian):
//!
//! 1. Dead inputs (`H[i,i] = 0`) get `H[i,i] = 1` and `W[:,i] = 0`.
//! 2. With `act_order`, columns are processed by decreasing `H[i,i]` (stable order); `W`'s
//!    columns and `H`'s rows/columns are permuted and the result is permuted back at the end.
//! 3. `H += λ·I` with `λ = dampening_frac · mean(diag H)`; `U` = the upper Cholesky factor of
//!    `H⁻¹` (`H⁻¹ = UᵀU`). We get it without forming `H⁻¹`: with `J` the exchange matrix,
//!    `J H J = L Lᵀ` gives `U = J L⁻¹ J` (one Cholesky and one triangular inverse).
//! 4. Columns go in blocks of `block_size`. For column `i` of a block: `q = quantize(w)`,
//!    `e = (w − ŵ) / U[i,i]`, the block's later columns get `W[:, j] −= e · U[i, j]`; after
//!    the block, the columns right of it get the whole block's update at once,
//!    `W[:, i2:] −= E · U[i1:i2, i2:]` (a matmul, the "lazy batch" update).
//!
//! Quantization parameters: per-tensor and per-channel ones, and group ones with `act_order`
//! ("static groups": each column keeps its original group, so no `g_idx` is needed), are
//! computed up front from `W` (after step 1). Group parameters without `act_order` are
//! computed when the loop reaches a group's first column, from the current weights of that
//! group: the error-updated values for columns already inside the current block, the values
//! as of the block start for columns right of it. Scales are rounded to their storage dtype
//! before codes are chosen, as in [`super::rtn`].
//!
//! All O(n³) work (XᵀX, Cholesky, triangular inverse, the lazy updates) runs in faer's
//! blocked, multi-threaded f32 kernels; the in-block column loop runs rows in parallel.

use compress_format::pack_quantized::{QuantStrategy, QuantizedLinear, WeightQuant};
use compress_format::safetensors::Dtype;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch, LltError};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::math::{dequantize, quantize, QuantRange, ScaleZero};
use super::rtn::{quantize_rtn, stored_scale_zero};
use crate::error::{CoreError, Result};

/// GPTQ options.
#[derive(Clone, Debug)]
pub struct GptqConfig {
    /// Dampening added to the Hessian diagonal, as a fraction of its mean (0.01).
    pub dampening_frac: f64,
    /// Columns per lazy-update block (128).
    pub block_size: usize,
    /// Quantize columns by decreasing Hessian diagonal, with static groups (false).
    pub act_order: bool,
}

impl Default for GptqConfig {
    fn default() -> Self {
        Self {
            dampening_frac: 0.01,
            block_size: 128,
            act_order: false,
        }
    }
}

/// Running Hessian `H = 2/N Σ x xᵀ` of one linear's inputs (f32, lower triangle kept).
#[derive(Clone, Debug)]
pub struct Hessian {
    /// Column-major `[columns, columns]`; only the lower triangle (with diagonal) is valid.
    h: Vec<f32>,
    columns: usize,
    tokens: usize,
}

impl Hessian {
    /// An empty Hessian for a linear with `columns` inputs.
    pub fn new(columns: usize) -> Self {
        Self {
            h: vec![0.0; columns * columns],
            columns,
            tokens: 0,
        }
    }

    /// Adds `tokens` input rows `x` (`[tokens, columns]`, row-major f32), keeping the running
    /// mean like GPTQ: `H *= n/(n+t); H += 2/(n+t) XᵀX`.
    pub fn add_batch(&mut self, x: &[f32], tokens: usize) -> Result<()> {
        let n = self.columns;
        if tokens.checked_mul(n) != Some(x.len()) {
            return Err(CoreError::Invalid(format!(
                "GPTQ Hessian: batch has {} values, expected {tokens} tokens × {n} columns",
                x.len()
            )));
        }
        if tokens == 0 || n == 0 {
            self.tokens += tokens;
            return Ok(());
        }
        let total = self.tokens + tokens;
        let keep = (self.tokens as f64 / total as f64) as f32;
        if keep != 1.0 {
            self.h
                .par_chunks_mut(n)
                .enumerate()
                .for_each(|(j, col)| col[j..].iter_mut().for_each(|v| *v *= keep));
        }
        let x = MatRef::from_row_major_slice(x, tokens, n);
        triangular::matmul(
            MatMut::from_column_major_slice_mut(&mut self.h, n, n),
            BlockStructure::TriangularLower,
            Accum::Add,
            x.transpose(),
            BlockStructure::Rectangular,
            x,
            BlockStructure::Rectangular,
            (2.0 / total as f64) as f32,
            Par::rayon(0),
        );
        self.tokens = total;
        Ok(())
    }

    /// Number of inputs (columns of the weight).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Number of tokens added so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The Hessian of inputs `start .. start + len` alone (the diagonal block), e.g. one expert's
    /// share of a `down_proj` whose inputs are several experts' neurons.
    pub fn block(&self, start: usize, len: usize) -> Self {
        let mut h = vec![0.0; len * len];
        for j in 0..len {
            for i in j..len {
                h[j * len + i] = self.at(start + i, start + j);
            }
        }
        Self {
            h,
            columns: len,
            tokens: self.tokens,
        }
    }

    /// `H[a, b]` from the stored lower triangle.
    fn at(&self, a: usize, b: usize) -> f32 {
        let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
        self.h[lo * self.columns + hi]
    }
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::Invalid(format!("GPTQ: {}", msg.into()))
}

fn not_positive_definite(column: usize) -> CoreError {
    invalid(format!(
        "the damped Hessian is not positive definite (pivot of input column {column}); \
         use more calibration samples or a larger dampening_frac"
    ))
}

/// Quantizes a row-major HF weight `[out, inn]` with GPTQ against `hessian` (weights that are
/// exactly zero, as pruning leaves them, quantize to exactly zero); returns the layer
/// (codes, scales and zero points laid out as [`quantize_rtn`] does) and the GPTQ loss
/// `Σ (w − ŵ)² / U[i,i]² / 2` (as the reference implementations report it).
pub fn gptq_quantize(
    weight: &[f32],
    out: usize,
    inn: usize,
    hessian: &Hessian,
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &GptqConfig,
) -> Result<(QuantizedLinear, f64)> {
    wq.validate()?;
    if !(cfg.dampening_frac.is_finite() && cfg.dampening_frac >= 0.0) {
        return Err(invalid(format!(
            "dampening_frac must be finite and ≥ 0, got {}",
            cfg.dampening_frac
        )));
    }
    if cfg.block_size == 0 {
        return Err(invalid("block_size must be > 0"));
    }
    if out.checked_mul(inn) != Some(weight.len()) {
        return Err(invalid(format!(
            "weight has {} values, expected [{out}, {inn}]",
            weight.len()
        )));
    }
    if hessian.columns != inn {
        return Err(invalid(format!(
            "Hessian has {} columns but the weight has {inn} inputs",
            hessian.columns
        )));
    }
    if out == 0 || inn == 0 {
        return Ok((quantize_rtn(weight, out, inn, wq, scale_dtype, None), 0.0));
    }
    if hessian.tokens == 0 {
        return Err(invalid("the Hessian has no calibration tokens"));
    }
    if let Some(i) = weight.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "weight value {} at [{}, {}] is not finite",
            weight[i],
            i / inn,
            i % inn
        )));
    }
    let range = QuantRange::new(wq.num_bits);
    let par = Par::rayon(0);

    // Dead inputs, then the processing order.
    let mut diag: Vec<f32> = (0..inn).map(|i| hessian.at(i, i)).collect();
    let mut w = weight.to_vec();
    for (i, d) in diag.iter_mut().enumerate() {
        if *d == 0.0 {
            *d = 1.0;
            w.iter_mut().skip(i).step_by(inn).for_each(|v| *v = 0.0);
        }
    }
    let mut perm: Vec<usize> = (0..inn).collect();
    if cfg.act_order {
        perm.sort_by(|&a, &b| diag[b].total_cmp(&diag[a]));
    }
    let n_groups = wq.num_groups(inn);
    let glen = wq.group_len(inn).max(1);
    let lazy_groups = wq.strategy == QuantStrategy::Group && !cfg.act_order;
    let params = initial_params(&w, out, inn, wq, range, scale_dtype, lazy_groups);
    let mut wp: Vec<f32> = w
        .chunks_exact(inn)
        .flat_map(|row| perm.iter().map(|&c| row[c]))
        .collect();
    drop(w);

    let hinv = inverse_cholesky_upper(hessian, &diag, &perm, cfg.dampening_frac, par)?;
    let mut params = params;
    let mut codes = vec![0i8; out * inn];
    let mut row_loss = vec![0f64; out];
    let cols_of = |j: usize| perm[j];
    for i1 in (0..inn).step_by(cfg.block_size) {
        let i2 = (i1 + cfg.block_size).min(inn);
        let count = i2 - i1;
        // U[i1:i2, i1:i2], row-major.
        let mut ublk = vec![0f32; count * count];
        for (k, row) in ublk.chunks_exact_mut(count).enumerate() {
            for (m, v) in row.iter_mut().enumerate().skip(k) {
                *v = hinv[(i1 + m) * inn + i1 + k];
            }
        }
        let mut err = vec![0f32; out * count];
        wp.par_chunks_mut(inn)
            .zip(err.par_chunks_mut(count))
            .zip(codes.par_chunks_mut(inn))
            .zip(params.par_chunks_mut(n_groups))
            .zip(row_loss.par_iter_mut())
            .zip(weight.par_chunks(inn))
            .for_each(|(((((wrow, erow), crow), prow), loss), orig)| {
                for k in 0..count {
                    let j = i1 + k;
                    let c = cols_of(j);
                    let g = wq.group_of(c);
                    if lazy_groups && c % glen == 0 {
                        let values = &wrow[wq.group_range(g, inn)];
                        prow[g] = stored_scale_zero(values, range, wq.symmetric, 1.0, scale_dtype);
                    }
                    let sz = prow[g];
                    let v = wrow[j];
                    // A pruned (exactly zero) weight stays zero; its value is still
                    // compensated by the columns after it, as SparseGPT does.
                    let q = quantize(if orig[c] == 0.0 { 0.0 } else { v }, sz, range);
                    crow[j] = q as i8;
                    let d = ublk[k * count + k];
                    let e = (v - dequantize(q, sz)) / d;
                    *loss += f64::from(e) * f64::from(e);
                    erow[k] = e;
                    let urow = &ublk[k * count..(k + 1) * count];
                    for m in k + 1..count {
                        wrow[i1 + m] -= e * urow[m];
                    }
                }
            });
        if i2 < inn {
            let hinv = MatRef::from_column_major_slice(&hinv, inn, inn);
            matmul(
                MatMut::from_row_major_slice_mut(&mut wp, out, inn).subcols_mut(i2, inn - i2),
                Accum::Add,
                MatRef::from_row_major_slice(&err, out, count),
                hinv.submatrix(i1, i2, count, inn - i2),
                -1.0f32,
                par,
            );
        }
    }

    let mut q = vec![0i8; out * inn];
    for (dst, src) in q.chunks_exact_mut(inn).zip(codes.chunks_exact(inn)) {
        perm.iter().zip(src).for_each(|(&c, &v)| dst[c] = v);
    }
    let params: Vec<ScaleZero> = match wq.strategy {
        QuantStrategy::Tensor => params[..1].to_vec(),
        _ => params,
    };
    let layer = QuantizedLinear {
        out_features: out,
        in_features: inn,
        q,
        scales: params.iter().map(|p| p.scale).collect(),
        zero_points: (!wq.symmetric).then(|| params.iter().map(|p| p.zero as i8).collect()),
    };
    Ok((layer, row_loss.iter().sum::<f64>() / 2.0))
}

/// Per row, `n_groups` parameters (tensor: the tensor's in every row; channel: the row's).
/// Lazily computed groups are left as placeholders.
fn initial_params(
    w: &[f32],
    out: usize,
    inn: usize,
    wq: &WeightQuant,
    range: QuantRange,
    dtype: Dtype,
    lazy_groups: bool,
) -> Vec<ScaleZero> {
    let of = |values: &[f32]| stored_scale_zero(values, range, wq.symmetric, 1.0, dtype);
    match wq.strategy {
        QuantStrategy::Tensor => vec![of(w); out],
        QuantStrategy::Channel => w.chunks_exact(inn).map(of).collect(),
        QuantStrategy::Group if lazy_groups => vec![
            ScaleZero {
                scale: 1.0,
                zero: 0
            };
            out * wq.num_groups(inn)
        ],
        QuantStrategy::Group => w
            .chunks_exact(inn)
            .flat_map(|row| row.chunks(wq.group_len(inn).max(1)).map(of))
            .collect(),
    }
}

/// `U` with `H⁻¹ = UᵀU` for the permuted, damped Hessian, column-major `[n, n]` (upper
/// triangle valid): reverse-permuted `H` → Cholesky `L` → `L⁻¹` → reversed back.
fn inverse_cholesky_upper(
    hessian: &Hessian,
    diag: &[f32],
    perm: &[usize],
    dampening_frac: f64,
    par: Par,
) -> Result<Vec<f32>> {
    let n = diag.len();
    let damp = (dampening_frac * diag.iter().map(|&d| f64::from(d)).sum::<f64>() / n as f64) as f32;
    // A = J Pᵀ H P J (lower triangle), A[i, j] = H[perm[n-1-i], perm[n-1-j]].
    let mut a = vec![0f32; n * n];
    a.par_chunks_mut(n).enumerate().for_each(|(j, col)| {
        let cj = perm[n - 1 - j];
        for (i, v) in col.iter_mut().enumerate().skip(j + 1) {
            *v = hessian.at(perm[n - 1 - i], cj);
        }
        col[j] = diag[cj] + damp;
    });
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        let (r, c) = (perm[n - 1 - i % n], perm[n - 1 - i / n]);
        return Err(invalid(format!(
            "Hessian entry [{r}, {c}] is not finite (NaN or infinite calibration inputs)"
        )));
    }
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f32>(n, par, Default::default()));
    let factor = cholesky_in_place(
        MatMut::from_column_major_slice_mut(&mut a, n, n),
        Default::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    drop(mem);
    if let Err(LltError::NonPositivePivot { index }) = factor {
        return Err(not_positive_definite(perm[n - 1 - index.min(n - 1)]));
    }
    let mut u = vec![0f32; n * n];
    invert_lower_triangular(
        MatMut::from_column_major_slice_mut(&mut u, n, n),
        MatRef::from_column_major_slice(&a, n, n),
        par,
    );
    drop(a);
    // Reversing the flat column-major buffer maps [i, j] to [n-1-i, n-1-j].
    u.reverse();
    if let Some(i) = (0..n).find(|&i| !(u[i * n + i].is_finite() && u[i * n + i] > 0.0)) {
        return Err(not_positive_definite(perm[i]));
    }
    if u.par_iter().any(|v| !v.is_finite()) {
        return Err(not_positive_definite(perm[0]));
    }
    Ok(u)
}

#[cfg(test)]
mod tests;
