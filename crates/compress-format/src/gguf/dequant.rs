//! Dequantization of every ggml block type the GGUF import reads, as ggml's reference
//! `dequantize_row_*` (ggml-quants.c) computes it, in f32.
//!
//! ```text
//! type  weights/block bytes  layout (in order)                          weight
//! Q4_1  32            20     f16 d, f16 m, u8 qs[16]                   q·d + m
//! Q5_0  32            22     f16 d, u8 qh[4], u8 qs[16]                (q − 16)·d
//! Q5_1  32            24     f16 d, f16 m, u8 qh[4], u8 qs[16]         q·d + m
//! Q2_K  256           84     u8 scales[16], u8 qs[64], f16 d, f16 dmin  d·(sc&15)·q − dmin·(sc>>4)
//! Q3_K  256           110    u8 hmask[32], u8 qs[64], u8 scales[12], f16 d   d·(s−32)·(q − 4·!h)
//! Q4_K  256           144    f16 d, f16 dmin, u8 scales[12], u8 qs[128]  d·sc·q − dmin·m
//! Q5_K  256           176    f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//! Q6_K  256           210    u8 ql[128], u8 qh[64], i8 scales[16], f16 d  d·sc·(q − 32)
//! ```
//!
//! In the 32-weight types weight `j < 16` takes the low nibble of `qs[j]` (and bit `j` of `qh`),
//! weight `j + 16` the high nibble (and bit `j + 12` of `qh`, shifted to 0x10). Q4_K/Q5_K pack
//! eight 6-bit (scale, min) pairs into 12 bytes (`scale_min_k4`, ggml's `get_scale_min_k4`).

use half::{bf16, f16};

use super::blocks::{dequantize_q4_0, dequantize_q8_0};
use super::GgmlType;

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantizes `data` (whole blocks of `ty`) into `out`.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut Vec<f32>) {
    let per = ty.block_bytes();
    let each = |f: fn(&[u8], &mut Vec<f32>), out: &mut Vec<f32>| {
        data.chunks_exact(per).for_each(|b| f(b, out))
    };
    match ty {
        GgmlType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(data.chunks_exact(2).map(|c| h(c, 0))),
        GgmlType::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        GgmlType::Q4_0 => dequantize_q4_0(data, out),
        GgmlType::Q8_0 => dequantize_q8_0(data, out),
        GgmlType::Q4_1 => each(q4_1, out),
        GgmlType::Q5_0 => each(q5_0, out),
        GgmlType::Q5_1 => each(q5_1, out),
        GgmlType::Q2_K => each(q2_k, out),
        GgmlType::Q3_K => each(q3_k, out),
        GgmlType::Q4_K => each(q4_k, out),
        GgmlType::Q5_K => each(q5_k, out),
        GgmlType::Q6_K => each(q6_k, out),
    }
}

fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m, qs) = (h(b, 0), h(b, 2), &b[4..20]);
    out.extend(qs.iter().map(|&q| f32::from(q & 0xF) * d + m));
    out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
}

/// The 32 five-bit codes of a Q5_0/Q5_1 block from `qh` (4 bytes) and `qs` (16 bytes).
fn five_bit(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0xF) | ((((qh >> j) << 4) & 0x10) as u8);
        q[j + 16] = (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
    }
    q
}

fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = h(b, 0);
    let q = five_bit(&b[2..6], &b[6..22]);
    out.extend(q.iter().map(|&q| (i32::from(q) - 16) as f32 * d));
}

fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (h(b, 0), h(b, 2));
    let q = five_bit(&b[4..8], &b[8..24]);
    out.extend(q.iter().map(|&q| f32::from(q) * d + m));
}

fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs, d, dmin) = (&b[0..16], &b[16..80], h(b, 80), h(b, 82));
    let mut is = 0;
    for half in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for part in half.chunks_exact(16) {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * f32::from(sc & 0xF), dmin * f32::from(sc >> 4));
                out.extend(part.iter().map(|&q| dl * f32::from((q >> shift) & 3) - ml));
            }
        }
    }
}

/// Q3_K's sixteen 6-bit scales from their 12 packed bytes (ggml's kmask shuffle).
fn q3_k_scales(packed: &[u8]) -> [i8; 16] {
    let w = |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (w(0), w(4), w(8));
    let (m1, m2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let aux = [
        (a0 & m2) | ((tmp & m1) << 4),
        (a1 & m2) | (((tmp >> 2) & m1) << 4),
        ((a0 >> 4) & m2) | (((tmp >> 4) & m1) << 4),
        ((a1 >> 4) & m2) | (((tmp >> 6) & m1) << 4),
    ];
    let mut s = [0i8; 16];
    for (i, v) in aux.iter().enumerate() {
        for (k, byte) in v.to_le_bytes().into_iter().enumerate() {
            s[4 * i + k] = byte as i8;
        }
    }
    s
}

fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, d) = (&b[0..32], &b[32..96], h(b, 108));
    let scales = q3_k_scales(&b[96..108]);
    let (mut is, mut m) = (0, 1u8);
    for half in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for (p, part) in half.chunks_exact(16).enumerate() {
                let dl = d * f32::from(i16::from(scales[is]) - 32);
                is += 1;
                let hm = &hmask[16 * p..16 * p + 16];
                out.extend(part.iter().zip(hm).map(|(&q, &hb)| {
                    let low = i16::from((q >> shift) & 3);
                    dl * f32::from(low - if hb & m != 0 { 0 } else { 4 })
                }));
            }
            m <<= 1;
        }
    }
}

/// The `j`-th (scale, min) pair of Q4_K/Q5_K's 12 packed bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(d), f32::from(m))
}

fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin, scales, qs) = (h(b, 0), h(b, 2), &b[4..16], &b[16..144]);
    for (j, q) in qs.chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * j, scales);
        let (s2, m2) = scale_min_k4(2 * j + 1, scales);
        out.extend(q.iter().map(|&q| d * s1 * f32::from(q & 0xF) - dmin * m1));
        out.extend(q.iter().map(|&q| d * s2 * f32::from(q >> 4) - dmin * m2));
    }
}

fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin, scales) = (h(b, 0), h(b, 2), &b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for (j, ql) in qs.chunks_exact(32).enumerate() {
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        let (s1, m1) = scale_min_k4(2 * j, scales);
        let (s2, m2) = scale_min_k4(2 * j + 1, scales);
        let code = |low: u8, hb: u8, u: u8| f32::from(low + if hb & u != 0 { 16 } else { 0 });
        out.extend(
            ql.iter()
                .zip(qh)
                .map(|(&q, &hb)| d * s1 * code(q & 0xF, hb, u1) - dmin * m1),
        );
        out.extend(
            ql.iter()
                .zip(qh)
                .map(|(&q, &hb)| d * s2 * code(q >> 4, hb, u2) - dmin * m2),
        );
    }
}

fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, d) = (&b[0..128], &b[128..192], h(b, 208));
    let sc = &b[192..208];
    let mut y = [0f32; 256];
    for n in 0..2 {
        let (ql, qh, sc, y) = (
            &ql[64 * n..],
            &qh[32 * n..],
            &sc[8 * n..],
            &mut y[128 * n..],
        );
        for l in 0..32 {
            let is = l / 16;
            let code = |low: u8, high: u8| f32::from(i16::from(low | (high << 4)) - 32);
            let s = |k: usize| d * f32::from(sc[is + k] as i8);
            y[l] = s(0) * code(ql[l] & 0xF, qh[l] & 3);
            y[l + 32] = s(2) * code(ql[l + 32] & 0xF, (qh[l] >> 2) & 3);
            y[l + 64] = s(4) * code(ql[l] >> 4, (qh[l] >> 4) & 3);
            y[l + 96] = s(6) * code(ql[l + 32] >> 4, (qh[l] >> 6) & 3);
        }
    }
    out.extend_from_slice(&y);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_type_gives_its_block_length() {
        for ty in GgmlType::ALL {
            let data = vec![0x5Au8; ty.block_bytes() * 3];
            let mut out = Vec::new();
            dequantize(ty, &data, &mut out);
            assert_eq!(out.len(), ty.block_len() * 3, "{ty}");
        }
    }

    #[test]
    fn q4_k_with_unit_scales_gives_the_codes() {
        // d = 1, dmin = 0, every 6-bit scale 1: the weights are the nibbles.
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&f16::ONE.to_le_bytes());
        for j in 0..4 {
            b[4 + j] = 1; // scales 0..4
            b[12 + j] = 1; // scales 4..8 (low nibble of bytes 8..12 of the packed 12)
        }
        for (i, q) in b[16..144].iter_mut().enumerate() {
            *q = (i % 16) as u8 | (((i + 1) % 16) as u8) << 4;
        }
        let mut out = Vec::new();
        q4_k(&b, &mut out);
        assert_eq!(out[0..4], [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(out[32..35], [1.0, 2.0, 3.0]);
        assert_eq!(out[255], ((127 + 1) % 16) as f32);
    }

    #[test]
    fn q6_k_codes_are_centred_on_32() {
        let mut b = vec![0u8; 210];
        b[208..210].copy_from_slice(&f16::ONE.to_le_bytes());
        b[192..208].fill(1);
        let mut out = Vec::new();
        q6_k(&b, &mut out);
        assert!(out.iter().all(|&v| v == -32.0));
    }
}
