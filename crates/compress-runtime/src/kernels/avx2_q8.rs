//! x86_64 AVX2 quantization of activations to ggml's Q8_0 blocks (the input of every Q8 kernel).

use std::arch::x86_64::*;

use super::{Q8Acts, QK};

/// Vectorized [`super::reference::quantize_q8`]: identical codes, scales and sums.
pub(crate) fn quantize_q8(x: &[f32], m: usize, cols: usize) -> Q8Acts {
    assert_eq!(
        cols % QK,
        0,
        "quantize_q8: cols {cols} is not a multiple of {QK}"
    );
    assert_eq!(x.len(), m * cols, "quantize_q8: x is not [{m}, {cols}]");
    let nb = m * cols / QK;
    let mut out = Q8Acts {
        q: vec![0; m * cols],
        d: vec![0.0; nb],
        sums: vec![0.0; nb],
    };
    for (((xb, qb), d), s) in x
        .chunks_exact(QK)
        .zip(out.q.chunks_exact_mut(QK))
        .zip(&mut out.d)
        .zip(&mut out.sums)
    {
        // SAFETY: the dispatcher calls this only when AVX2 is available; `xb`/`qb` are 32 long.
        unsafe { quantize_block(xb, qb, d, s) };
    }
    out
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_block(xb: &[f32], qb: &mut [i8], d_out: &mut f32, s_out: &mut f32) {
    // SAFETY: `xb` and `qb` hold 32 elements (callers pass `chunks_exact(32)`).
    unsafe {
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let v = [0, 8, 16, 24].map(|k| _mm256_loadu_ps(xb.as_ptr().add(k)));
        let mx = _mm256_max_ps(
            _mm256_max_ps(_mm256_and_ps(v[0], abs), _mm256_and_ps(v[1], abs)),
            _mm256_max_ps(_mm256_and_ps(v[2], abs), _mm256_and_ps(v[3], abs)),
        );
        let h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        let amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        // Round half away from zero exactly: truncate, then step away from zero when the
        // (exact) remainder is at least one half.
        let q = v.map(|vi| {
            let t = _mm256_mul_ps(vi, id);
            let tr = _mm256_round_ps(t, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let big = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(t, tr), abs), half, _CMP_GE_OQ);
            let step = _mm256_and_ps(big, _mm256_or_ps(_mm256_and_ps(t, sign), one));
            let q = _mm256_cvttps_epi32(_mm256_add_ps(tr, step));
            _mm256_max_epi32(
                _mm256_min_epi32(q, _mm256_set1_epi32(127)),
                _mm256_set1_epi32(-128),
            )
        });
        let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b10_11_00_01));
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(qb.as_mut_ptr().cast(), packed);
        *d_out = d;
        *s_out = d * _mm_cvtsi128_si32(s4) as f32;
    }
}
