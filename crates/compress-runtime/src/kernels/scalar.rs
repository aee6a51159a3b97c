//! Portable scalar row kernels: the fallback where no SIMD path runs. Each computes rows
//! `rows` for every activation row into `out` (`[m, rows.len()]`).

use std::ops::Range;

use super::prep::{row_scales, Prep};
use super::{FloatWeight, Int4Weight, Int8Weight, INT4_OFFSET, QK};

/// Int4 weights × Q8 activations.
pub(crate) fn int4_q8(w: &Int4Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n) = (w.cols, rows.len());
    let (nb, bpg, ng) = (cols / QK, w.group_size / QK, cols / w.group_size);
    let mut s = vec![0f32; ng];
    for (i, r) in rows.enumerate() {
        row_scales(&w.scales, r * ng, &mut s);
        let row = &w.data[r * cols / 2..(r + 1) * cols / 2];
        for t in 0..p.m {
            let (q, d) = (&p.q[t * cols..(t + 1) * cols], &p.d[t * nb..(t + 1) * nb]);
            let mut acc = 0f32;
            for g in 0..ng {
                let o = w
                    .offsets
                    .as_ref()
                    .map_or(f32::from(INT4_OFFSET), |o| f32::from(o[r * ng + g]));
                let mut gacc = 0f32;
                for b in g * bpg..(g + 1) * bpg {
                    let (wb, qb) = (&row[b * 16..b * 16 + 16], &q[b * QK..b * QK + QK]);
                    let mut dot = 0i32;
                    for (k, &byte) in wb.iter().enumerate() {
                        dot += i32::from(byte & 15) * i32::from(qb[2 * k])
                            + i32::from(byte >> 4) * i32::from(qb[2 * k + 1]);
                    }
                    gacc += d[b] * dot as f32;
                }
                acc += s[g] * (gacc - o * p.gsum[t * ng + g]);
            }
            out[t * n + i] = acc;
        }
    }
}

/// Int4 weights × f32 activations.
pub(crate) fn int4_f32(w: &Int4Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, ng) = (w.cols, rows.len(), w.cols / w.group_size);
    let mut s = vec![0f32; ng];
    for (i, r) in rows.enumerate() {
        row_scales(&w.scales, r * ng, &mut s);
        let row = &w.data[r * cols / 2..(r + 1) * cols / 2];
        for t in 0..p.m {
            let x = &p.x[t * cols..(t + 1) * cols];
            let mut acc = 0f32;
            for g in 0..ng {
                let o = w
                    .offsets
                    .as_ref()
                    .map_or(i32::from(INT4_OFFSET), |o| i32::from(o[r * ng + g]));
                let c0 = g * w.group_size;
                let mut gacc = 0f32;
                for (k, &byte) in row[c0 / 2..(c0 + w.group_size) / 2].iter().enumerate() {
                    gacc += (i32::from(byte & 15) - o) as f32 * x[c0 + 2 * k]
                        + (i32::from(byte >> 4) - o) as f32 * x[c0 + 2 * k + 1];
                }
                acc += s[g] * gacc;
            }
            out[t * n + i] = acc;
        }
    }
}

/// Int8 weights × Q8 activations.
pub(crate) fn int8_q8(w: &Int8Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n) = (w.cols, rows.len());
    let (nb, bpg, ng) = (cols / QK, w.group_size / QK, cols / w.group_size);
    let mut s = vec![0f32; ng];
    for (i, r) in rows.enumerate() {
        row_scales(&w.scales, r * ng, &mut s);
        let row = &w.data[r * cols..(r + 1) * cols];
        for t in 0..p.m {
            let (q, d) = (&p.q[t * cols..(t + 1) * cols], &p.d[t * nb..(t + 1) * nb]);
            let mut acc = 0f32;
            for g in 0..ng {
                let z = w.zeros.as_ref().map_or(0.0, |z| f32::from(z[r * ng + g]));
                let mut gacc = 0f32;
                for b in g * bpg..(g + 1) * bpg {
                    let dot: i32 = row[b * QK..b * QK + QK]
                        .iter()
                        .zip(&q[b * QK..b * QK + QK])
                        .map(|(&a, &b)| i32::from(a) * i32::from(b))
                        .sum();
                    gacc += d[b] * dot as f32;
                }
                acc += s[g] * (gacc - z * p.gsum[t * ng + g]);
            }
            out[t * n + i] = acc;
        }
    }
}

/// Int8 weights × f32 activations.
pub(crate) fn int8_f32(w: &Int8Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, gs, ng) = (w.cols, rows.len(), w.group_size, w.cols / w.group_size);
    let mut s = vec![0f32; ng];
    for (i, r) in rows.enumerate() {
        row_scales(&w.scales, r * ng, &mut s);
        let row = &w.data[r * cols..(r + 1) * cols];
        for t in 0..p.m {
            let x = &p.x[t * cols..(t + 1) * cols];
            let mut acc = 0f32;
            for g in 0..ng {
                let z = w.zeros.as_ref().map_or(0, |z| i32::from(z[r * ng + g]));
                let gacc: f32 = row[g * gs..(g + 1) * gs]
                    .iter()
                    .zip(&x[g * gs..(g + 1) * gs])
                    .map(|(&q, &x)| (i32::from(q) - z) as f32 * x)
                    .sum();
                acc += s[g] * gacc;
            }
            out[t * n + i] = acc;
        }
    }
}

/// Float weights × f32 activations.
pub(crate) fn float(w: &FloatWeight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n) = (w.cols, rows.len());
    let mut wr = vec![0f32; cols];
    for (i, r) in rows.enumerate() {
        w.row_into(r, &mut wr);
        for t in 0..p.m {
            let x = &p.x[t * cols..(t + 1) * cols];
            out[t * n + i] = wr.iter().zip(x).map(|(a, b)| a * b).sum();
        }
    }
}
