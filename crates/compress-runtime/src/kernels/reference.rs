//! Scalar definitions of every kernel: the fast paths are tested against these.

use super::{FloatWeight, Input, Int4Weight, Int8Weight, Q8Acts, Weight, INT4_OFFSET, QK};

/// Quantizes `x` (`[m, cols]`, `cols % 32 == 0`) to 8 bits per block of 32 (ggml's Q8_0:
/// `d = max|x| / 127`, `q = round(x / d)`, half away from zero).
pub fn quantize_q8(x: &[f32], m: usize, cols: usize) -> Q8Acts {
    assert_eq!(
        cols % QK,
        0,
        "quantize_q8: cols {cols} is not a multiple of {QK}"
    );
    let nb = m * cols / QK;
    let mut out = Q8Acts {
        q: vec![0; m * cols],
        d: Vec::with_capacity(nb),
        sums: Vec::with_capacity(nb),
    };
    for (xb, qb) in x.chunks_exact(QK).zip(out.q.chunks_exact_mut(QK)) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += i32::from(*q);
        }
        out.d.push(d);
        out.sums.push(d * sum as f32);
    }
    out
}

/// `y[m, rows] = x · Wᵀ`, one output at a time.
pub fn matmul(w: &Weight, input: &Input<'_>, y: &mut [f32]) {
    let rows = w.rows();
    super::check_shapes(w, input, y);
    for t in 0..input.m {
        for r in 0..rows {
            y[t * rows + r] = dot(w, input, t, r);
        }
    }
}

/// Output `(t, r)`: row `r` of the weight against activation row `t`.
pub fn dot(w: &Weight, input: &Input<'_>, t: usize, r: usize) -> f32 {
    let x = &input.x[t * input.cols..(t + 1) * input.cols];
    match (w, &input.q8) {
        (Weight::Float(w), _) => dot_float(w, r, x),
        (Weight::Int4(w), Some(q8)) => dot_int4_q8(w, r, q8, t),
        (Weight::Int4(w), None) => dot_int4_f32(w, r, x),
        (Weight::Int8(w), Some(q8)) => dot_int8_q8(w, r, q8, t),
        (Weight::Int8(w), None) => dot_int8_f32(w, r, x),
    }
}

fn dot_float(w: &FloatWeight, r: usize, x: &[f32]) -> f32 {
    (0..w.cols).map(|c| w.get(r, c) * x[c]).sum()
}

/// Stored nibble `u` of column `c` in row `r`.
#[inline]
pub fn int4_code(w: &Int4Weight, r: usize, c: usize) -> u8 {
    let byte = w.data[r * w.cols / 2 + c / 2];
    if c.is_multiple_of(2) {
        byte & 0x0f
    } else {
        byte >> 4
    }
}

fn int4_offset(w: &Int4Weight, gi: usize) -> i32 {
    w.offsets
        .as_ref()
        .map_or(i32::from(INT4_OFFSET), |o| i32::from(o[gi]))
}

fn dot_int4_f32(w: &Int4Weight, r: usize, x: &[f32]) -> f32 {
    let ng = w.cols / w.group_size;
    let mut acc = 0.0;
    for g in 0..ng {
        let gi = r * ng + g;
        let o = int4_offset(w, gi);
        let cols = g * w.group_size..(g + 1) * w.group_size;
        let s: f32 = cols
            .map(|c| (i32::from(int4_code(w, r, c)) - o) as f32 * x[c])
            .sum();
        acc += w.scales.get(gi) * s;
    }
    acc
}

fn dot_int4_q8(w: &Int4Weight, r: usize, q8: &Q8Acts, t: usize) -> f32 {
    let ng = w.cols / w.group_size;
    let nb_row = w.cols / QK;
    let mut acc = 0.0;
    for g in 0..ng {
        let gi = r * ng + g;
        let o = int4_offset(w, gi) as f32;
        let mut s = 0.0;
        for b in g * w.group_size / QK..(g + 1) * w.group_size / QK {
            let bi = t * nb_row + b;
            let d: i32 = (0..QK)
                .map(|i| i32::from(int4_code(w, r, b * QK + i)) * i32::from(q8.q[bi * QK + i]))
                .sum();
            s += q8.d[bi] * d as f32 - o * q8.sums[bi];
        }
        acc += w.scales.get(gi) * s;
    }
    acc
}

fn int8_zero(w: &Int8Weight, gi: usize) -> i32 {
    w.zeros.as_ref().map_or(0, |z| i32::from(z[gi]))
}

fn dot_int8_f32(w: &Int8Weight, r: usize, x: &[f32]) -> f32 {
    let ng = w.cols / w.group_size;
    let row = &w.data[r * w.cols..(r + 1) * w.cols];
    let mut acc = 0.0;
    for g in 0..ng {
        let gi = r * ng + g;
        let z = int8_zero(w, gi);
        let cols = g * w.group_size..(g + 1) * w.group_size;
        let s: f32 = cols.map(|c| (i32::from(row[c]) - z) as f32 * x[c]).sum();
        acc += w.scales.get(gi) * s;
    }
    acc
}

fn dot_int8_q8(w: &Int8Weight, r: usize, q8: &Q8Acts, t: usize) -> f32 {
    let ng = w.cols / w.group_size;
    let nb_row = w.cols / QK;
    let row = &w.data[r * w.cols..(r + 1) * w.cols];
    let mut acc = 0.0;
    for g in 0..ng {
        let gi = r * ng + g;
        let z = int8_zero(w, gi) as f32;
        let mut s = 0.0;
        for b in g * w.group_size / QK..(g + 1) * w.group_size / QK {
            let bi = t * nb_row + b;
            let d: i32 = (0..QK)
                .map(|i| i32::from(row[b * QK + i]) * i32::from(q8.q[bi * QK + i]))
                .sum();
            s += q8.d[bi] * d as f32 - z * q8.sums[bi];
        }
        acc += w.scales.get(gi) * s;
    }
    acc
}
