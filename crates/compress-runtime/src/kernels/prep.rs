//! Per-call preparation the row kernels of every instruction set share: the [`Prep`] the
//! dispatcher fills from the activations, and the helpers the kernels read it with.

use std::ops::Range;

use half::slice::HalfFloatSliceExt;

use super::{Q8Acts, Scales, QK};

/// Scales of one row (`start..start + out.len()`) as f32.
pub(crate) fn row_scales(s: &Scales, start: usize, out: &mut [f32]) {
    let n = out.len();
    match s {
        Scales::F32(v) => out.copy_from_slice(&v[start..start + n]),
        Scales::F16(v) => v[start..start + n].convert_to_f32_slice(out),
        Scales::Bf16(v) => v[start..start + n].convert_to_f32_slice(out),
    }
}

/// Per-call activation data the row kernels share.
#[derive(Default)]
pub(crate) struct Prep<'a> {
    /// Activation rows.
    pub m: usize,
    /// Columns.
    pub cols: usize,
    /// `[m, cols]` f32 activations.
    pub x: &'a [f32],
    /// `[m, cols]` Q8 codes in natural order (empty in f32 mode).
    pub q: &'a [i8],
    /// `[m, cols / 32]` Q8 block scales.
    pub d: &'a [f32],
    /// Q8 codes with each block of 32 reordered to even columns then odd columns (int4).
    pub qp: Vec<i8>,
    /// f32 activations with each run of `unit` values reordered to even then odd (int4, f32).
    pub xp: Vec<f32>,
    /// `[m, groups]` sums of the Q8 block sums `d · Σ q` over each weight group.
    pub gsum: Vec<f32>,
    /// `[m, cols / 32, 8]`: each block scale repeated 8 times (AVX-512 int4).
    pub dexp: Vec<f32>,
}

/// Reorders every run of `unit` values to its even-index values, then its odd-index ones.
pub(super) fn deinterleave<T: Copy + Default>(v: &[T], unit: usize) -> Vec<T> {
    let mut out = vec![T::default(); v.len()];
    for (src, dst) in v.chunks_exact(unit).zip(out.chunks_exact_mut(unit)) {
        let h = unit / 2;
        for j in 0..h {
            dst[j] = src[2 * j];
            dst[h + j] = src[2 * j + 1];
        }
    }
    out
}

/// `[m, cols / group]`: per activation row, the Q8 block sums `d · Σ q` added up over each
/// weight group of `group` columns (for the zero-point / offset corrections).
pub(super) fn group_sums(q8: &Q8Acts, m: usize, cols: usize, group: usize) -> Vec<f32> {
    let (nb, bpg) = (cols / QK, group / QK);
    let mut out = Vec::with_capacity(m * cols / group);
    for t in 0..m {
        for g in q8.sums[t * nb..(t + 1) * nb].chunks_exact(bpg) {
            out.push(g.iter().sum());
        }
    }
    out
}

/// Activation rows per tile: as many as keep `bytes_per_row`-sized rows within about 32 KiB
/// (L1), in multiples of 4, so each weight row is reused from L1/L2 across the tile.
pub(crate) fn token_tiles(m: usize, bytes_per_row: usize) -> impl Iterator<Item = Range<usize>> {
    let tt = ((32 << 10) / bytes_per_row.max(1) / 4 * 4).max(4);
    (0..m).step_by(tt).map(move |t| t..(t + tt).min(m))
}
