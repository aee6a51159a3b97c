//! ggml's Q8_0 and Q4_0 blocks: quantization exactly as ggml's reference rows
//! (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), dequantization, and blocks built
//! from integer codes that were already chosen (a pack-quantized layer).

use half::f16;

/// Weights per Q8_0 / Q4_0 block.
pub const QK: usize = 32;
/// Bytes of one Q8_0 block: f16 scale + 32 × i8.
pub const Q8_0_BYTES: usize = 2 + QK;
/// Bytes of one Q4_0 block: f16 scale + 16 bytes of nibbles.
pub const Q4_0_BYTES: usize = 2 + QK / 2;

/// Appends the Q8_0 blocks of `x` (`x.len()` a multiple of [`QK`]) to `out`.
///
/// `d = amax / 127`, `q = roundf(x · (1/d))` (ties away from zero), `d` stored as f16.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len() % QK, 0);
    out.reserve(x.len() / QK * Q8_0_BYTES);
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
    }
}

/// Appends the Q4_0 blocks of `x` (`x.len()` a multiple of [`QK`]) to `out`.
///
/// `d = max / −8` with `max` the first value of largest magnitude, `q = min(15,
/// trunc(x · (1/d) + 8.5))`; the low nibbles hold weights 0..16, the high nibbles 16..32.
pub fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len() % QK, 0);
    out.reserve(x.len() / QK * Q4_0_BYTES);
    for block in x.chunks_exact(QK) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in block {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(f16::from_f32(d).to_le_bytes());
        let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
        let (lo, hi) = block.split_at(QK / 2);
        out.extend(lo.iter().zip(hi).map(|(&a, &b)| code(a) | (code(b) << 4)));
    }
}

/// Appends Q8_0 blocks holding codes `q` (one block per 32 codes) with per-block `scales`.
pub fn q8_0_from_codes(q: &[i8], scales: &[f16], out: &mut Vec<u8>) {
    debug_assert_eq!(q.len(), scales.len() * QK);
    for (block, d) in q.chunks_exact(QK).zip(scales) {
        out.extend(d.to_le_bytes());
        out.extend(block.iter().map(|&v| v as u8));
    }
}

/// Appends Q4_0 blocks holding codes `q` (each in `-8..=7`) with per-block `scales`.
pub fn q4_0_from_codes(q: &[i8], scales: &[f16], out: &mut Vec<u8>) {
    debug_assert_eq!(q.len(), scales.len() * QK);
    for (block, d) in q.chunks_exact(QK).zip(scales) {
        debug_assert!(block.iter().all(|v| (-8..=7).contains(v)));
        out.extend(d.to_le_bytes());
        let (lo, hi) = block.split_at(QK / 2);
        let nib = |v: i8| (v + 8) as u8;
        out.extend(lo.iter().zip(hi).map(|(&a, &b)| nib(a) | (nib(b) << 4)));
    }
}

fn scale(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[0], block[1]]).to_f32()
}

/// Appends the weights of Q8_0 blocks to `out`.
pub fn dequantize_q8_0(data: &[u8], out: &mut Vec<f32>) {
    for block in data.chunks_exact(Q8_0_BYTES) {
        let d = scale(block);
        out.extend(block[2..].iter().map(|&q| f32::from(q as i8) * d));
    }
}

/// Appends the weights of Q4_0 blocks to `out`.
pub fn dequantize_q4_0(data: &[u8], out: &mut Vec<f32>) {
    for block in data.chunks_exact(Q4_0_BYTES) {
        let d = scale(block);
        let qs = &block[2..];
        out.extend(qs.iter().map(|&b| f32::from((b & 0xF) as i8 - 8) * d));
        out.extend(qs.iter().map(|&b| f32::from((b >> 4) as i8 - 8) * d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn q4_0_layout_matches_ggml() {
        // Largest magnitude is -4.0 (negative): d = 0.5, so x = -4 maps to code 0 and 3.5 to 15.
        let mut x = [0.0f32; QK];
        x[0] = -4.0;
        x[16] = 3.5;
        x[1] = 1.0;
        let mut out = Vec::new();
        quantize_q4_0(&x, &mut out);
        assert_eq!(out.len(), Q4_0_BYTES);
        assert_eq!(f16::from_le_bytes([out[0], out[1]]).to_f32(), 0.5);
        // d = 0.5 and id = 2: x[0] = -4 → trunc(-8 + 8.5) = 0; x[16] = 3.5 → trunc(15.5) = 15.
        assert_eq!(out[2], 0xF0);
        // x[1] = 1 → trunc(10.5) = 10; x[17] = 0 → 8.
        assert_eq!(out[3], 0x8A);
        let mut back = Vec::new();
        dequantize_q4_0(&out, &mut back);
        assert_eq!(back[0], -4.0);
        assert_eq!(back[16], 3.5);
        assert_eq!(back[1], 1.0);
    }

    #[test]
    fn q8_0_rounds_ties_away_and_handles_zero_blocks() {
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        let mut out = Vec::new();
        quantize_q8_0(&x, &mut out);
        quantize_q8_0(&[0.0; QK], &mut out);
        assert_eq!(out.len(), 2 * Q8_0_BYTES);
        assert_eq!(&out[2..5], &[127u8, 3, (-3i8) as u8]);
        assert!(out[Q8_0_BYTES..].iter().all(|&b| b == 0));
    }

    proptest! {
        #[test]
        fn codes_round_trip_through_blocks(
            codes in prop::collection::vec(-8i8..=7, QK * 3),
            s in prop::collection::vec(1e-4f32..1.0, 3),
        ) {
            let scales: Vec<f16> = s.iter().map(|&v| f16::from_f32(v)).collect();
            let expect: Vec<f32> = codes.iter().enumerate()
                .map(|(i, &q)| f32::from(q) * scales[i / QK].to_f32()).collect();
            let (mut b4, mut b8) = (Vec::new(), Vec::new());
            q4_0_from_codes(&codes, &scales, &mut b4);
            q8_0_from_codes(&codes, &scales, &mut b8);
            let (mut d4, mut d8) = (Vec::new(), Vec::new());
            dequantize_q4_0(&b4, &mut d4);
            dequantize_q8_0(&b8, &mut d8);
            prop_assert_eq!(&d4, &expect);
            prop_assert_eq!(&d8, &expect);
        }

        #[test]
        fn quantization_error_is_within_half_a_step(x in prop::collection::vec(-3.0f32..3.0, QK * 2)) {
            let (mut b4, mut b8) = (Vec::new(), Vec::new());
            quantize_q4_0(&x, &mut b4);
            quantize_q8_0(&x, &mut b8);
            let (mut d4, mut d8) = (Vec::new(), Vec::new());
            dequantize_q4_0(&b4, &mut d4);
            dequantize_q8_0(&b8, &mut d8);
            for (blk, chunk) in x.chunks(QK).enumerate() {
                let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (j, &v) in chunk.iter().enumerate() {
                    let i = blk * QK + j;
                    // Q8_0: half a step (amax/127) plus the f16 rounding of d (≤ 2^-11 relative).
                    prop_assert!((d8[i] - v).abs() <= amax / 127.0 * 0.5 + amax * 1e-3);
                    // Q4_0: half a step (amax/8), or a full step at the clipped +8 end.
                    prop_assert!((d4[i] - v).abs() <= amax / 8.0 * 1.0 + amax * 1e-3);
                }
            }
        }
    }
}
