//! x86_64 AVX-512 (F/BW/VL, optionally VNNI) kernels for the Q8-activation integer dots: two
//! 32-value blocks per zmm register. Other kernels run the AVX2 code on these CPUs.

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{row_scales_f16c, store_with_offsets};
use super::prep::{token_tiles, Prep};
use super::{Int4Weight, Int8Weight, INT4_OFFSET, QK};

/// `Σ u·s` over byte quads (u8 × i8 → i32 lanes) with `vpmaddubsw` + `vpmaddwd`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn dot_bw(u: __m512i, s: __m512i) -> __m512i {
    _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1))
}

/// `Σ u·s` over byte quads (u8 × i8 → i32 lanes) with VNNI `vpdpbusd`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn dot_vnni(u: __m512i, s: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
}

/// Expands the 32 bytes of int4 blocks (`b`, `b + 1`) held in `v` to 64 codes in the 128-bit
/// lanes `[b lo nibbles, b hi nibbles, b+1 lo, b+1 hi]` (the order of `Prep::qp`).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn int4_pair(v: __m256i) -> __m512i {
    let z = _mm512_permutexvar_epi64(
        _mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
        _mm512_castsi256_si512(v),
    );
    _mm512_and_si512(
        _mm512_srlv_epi64(z, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)),
        _mm512_set1_epi8(15),
    )
}

/// `[s[0] × 8, s[1] × 8]`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn pair_scale(s: *const f32) -> __m512 {
    // SAFETY (caller): `s[0..2]` is readable.
    let two = unsafe { _mm_castpd_ps(_mm_load_sd(s.cast())) };
    let idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(two))
}

macro_rules! q8_kernels {
    ($module:ident, $feat:literal, $dot:ident) => {
        mod $module {
            use super::*;

            /// The weight codes (unsigned) and negative mask of the block pair `k`; `tail`
            /// loads only the first block.
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn load_pair<const INT8: bool>(
                wr: *const u8,
                k: usize,
                tail: bool,
            ) -> (__m512i, __mmask64) {
                // SAFETY (caller): the pair (or with `tail` its first block) is in the row.
                unsafe {
                    if INT8 {
                        let m = if tail { 0xffff_ffff } else { u64::MAX };
                        let v = _mm512_maskz_loadu_epi8(m, wr.add(64 * k).cast());
                        (_mm512_abs_epi8(v), _mm512_movepi8_mask(v))
                    } else {
                        let m = if tail { 0xffff } else { u32::MAX };
                        (
                            int4_pair(_mm256_maskz_loadu_epi8(m, wr.add(32 * k).cast())),
                            0,
                        )
                    }
                }
            }

            /// Products of weight pair `k` (`wu`, negative mask `neg`) with activation row `j`
            /// (converted to f32) and the pair's expanded activation scales.
            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn act<const INT8: bool>(
                qa: *const i8,
                dx: *const f32,
                cols: usize,
                nb: usize,
                k: usize,
                tail: bool,
                j: usize,
                wu: __m512i,
                neg: __mmask64,
            ) -> (__m512, __m512) {
                // SAFETY (caller): the pair (the first block with `tail`) of row `j` exists.
                unsafe {
                    let am = if tail { 0xffff_ffff } else { u64::MAX };
                    let a = _mm512_maskz_loadu_epi8(am, qa.add(j * cols + 64 * k).cast());
                    let a = if INT8 {
                        _mm512_mask_sub_epi8(a, neg, _mm512_setzero_si512(), a)
                    } else {
                        a
                    };
                    let dm = if tail { 0xff } else { 0xffff };
                    (
                        _mm512_cvtepi32_ps($dot(wu, a)),
                        _mm512_maskz_loadu_ps(dm, dx.add((j * nb + 2 * k) * 8)),
                    )
                }
            }

            /// Dots of one weight row with activation rows `t0..t0 + T` (before offsets).
            #[target_feature(enable = $feat)]
            #[inline]
            pub(super) unsafe fn dot<const T: usize, const INT8: bool>(
                wr: *const u8,
                qa: *const i8,
                p: &Prep,
                s: &[f32],
                bpg: usize,
                t0: usize,
                res: &mut [f32; 4],
            ) {
                let (cols, nb) = (p.cols, p.cols / QK);
                let mut acc = [_mm512_setzero_ps(); T];
                // SAFETY (pointer arithmetic below): pairs `k < nb / 2` (and the tail block)
                // lie inside the weight row, inside activation rows `t0..t0 + T` of `qa`
                // (64 codes per pair) and of `dexp` (16 floats per pair); `s` has a scale
                // per group.
                let dx = unsafe { p.dexp.as_ptr().add(t0 * nb * 8) };
                let qa = unsafe { qa.add(t0 * cols) };
                if bpg == 1 {
                    for k in 0..nb / 2 {
                        let (wu, neg) = unsafe { load_pair::<INT8>(wr, k, false) };
                        let sp = unsafe { pair_scale(s.as_ptr().add(2 * k)) };
                        for (j, a) in acc.iter_mut().enumerate() {
                            let (v, d) =
                                unsafe { act::<INT8>(qa, dx, cols, nb, k, false, j, wu, neg) };
                            *a = _mm512_fmadd_ps(v, _mm512_mul_ps(d, sp), *a);
                        }
                    }
                    if nb % 2 == 1 {
                        let k = nb / 2;
                        let (wu, neg) = unsafe { load_pair::<INT8>(wr, k, true) };
                        let sp = _mm512_set1_ps(s[nb - 1]);
                        for (j, a) in acc.iter_mut().enumerate() {
                            let (v, d) =
                                unsafe { act::<INT8>(qa, dx, cols, nb, k, true, j, wu, neg) };
                            *a = _mm512_fmadd_ps(v, _mm512_mul_ps(d, sp), *a);
                        }
                    }
                } else {
                    for (g, &sg) in s.iter().enumerate() {
                        let mut gacc = [_mm512_setzero_ps(); T];
                        for k in g * bpg / 2..(g + 1) * bpg / 2 {
                            let (wu, neg) = unsafe { load_pair::<INT8>(wr, k, false) };
                            for (j, ga) in gacc.iter_mut().enumerate() {
                                let (v, d) =
                                    unsafe { act::<INT8>(qa, dx, cols, nb, k, false, j, wu, neg) };
                                *ga = _mm512_fmadd_ps(v, d, *ga);
                            }
                        }
                        let sv = _mm512_set1_ps(sg);
                        for (a, ga) in acc.iter_mut().zip(gacc) {
                            *a = _mm512_fmadd_ps(ga, sv, *a);
                        }
                    }
                }
                for (r, a) in res.iter_mut().zip(acc) {
                    *r = _mm512_reduce_add_ps(a);
                }
            }

            /// Rows `rows` of `W · x` for all activation rows; `INT8` picks the weight kind.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn rows<const INT8: bool>(
                wr0: *const u8,
                qa: *const i8,
                row_bytes: usize,
                scales: &super::super::Scales,
                offsets: &dyn Fn(usize) -> f32,
                group_size: usize,
                p: &Prep,
                rows: Range<usize>,
                out: &mut [f32],
            ) {
                let (n, m, ng, bpg) = (rows.len(), p.m, p.cols / group_size, group_size / QK);
                let (mut s, mut so) = (vec![0f32; ng], vec![0f32; ng]);
                for tile in token_tiles(m, 5 * p.cols) {
                    for (i, r) in rows.clone().enumerate() {
                        // SAFETY: AVX-512F implies AVX2, FMA and F16C.
                        unsafe { row_scales_f16c(scales, r * ng, &mut s) };
                        for g in 0..ng {
                            so[g] = s[g] * offsets(r * ng + g);
                        }
                        // SAFETY: row `r` lies inside the weight data (callers assert its size).
                        let wr = unsafe { wr0.add(r * row_bytes) };
                        let mut t = tile.start;
                        while t < tile.end {
                            let tn = (tile.end - t).min(4);
                            let mut res = [0f32; 4];
                            // SAFETY: rows `t..t + tn` exist and `wr` holds a full row.
                            unsafe {
                                match tn {
                                    4 => dot::<4, INT8>(wr, qa, p, &s, bpg, t, &mut res),
                                    3 => dot::<3, INT8>(wr, qa, p, &s, bpg, t, &mut res),
                                    2 => dot::<2, INT8>(wr, qa, p, &s, bpg, t, &mut res),
                                    _ => dot::<1, INT8>(wr, qa, p, &s, bpg, t, &mut res),
                                }
                            }
                            store_with_offsets(out, n, i, t, tn, &res, &so, &p.gsum);
                            t += tn;
                        }
                    }
                }
            }
        }
    };
}

q8_kernels!(bw, "avx512f,avx512bw,avx512vl,avx2,fma,f16c", dot_bw);
q8_kernels!(
    vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    dot_vnni
);

/// Int4 weights × Q8 activations (`p.qp` reordered, `p.dexp` expanded); `vnni` picks `vpdpbusd`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and AVX2/FMA/F16C, plus AVX-512 VNNI when `vnni`.
pub(crate) unsafe fn int4_q8(
    vnni: bool,
    w: &Int4Weight,
    p: &Prep,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let bpg = w.group_size / QK;
    if bpg > 1 && bpg % 2 == 1 {
        // SAFETY: AVX-512 CPUs have AVX2/FMA/F16C (checked by `Isa::available`).
        return unsafe { super::avx2::int4_q8(w, p, rows, out) };
    }
    let (ng, m) = (w.cols / w.group_size, p.m);
    assert!(w.data.len() >= w.rows * w.cols / 2 && p.qp.len() >= m * w.cols);
    assert!(p.dexp.len() >= m * w.cols / QK * 8 && p.gsum.len() >= m * ng);
    let off = |i: usize| {
        w.offsets
            .as_ref()
            .map_or(f32::from(INT4_OFFSET), |o| f32::from(o[i]))
    };
    let (wr, qa) = (w.data.as_ptr(), p.qp.as_ptr());
    // SAFETY: sizes asserted above; the features are the caller's contract.
    unsafe {
        if vnni {
            vnni::rows::<false>(
                wr,
                qa,
                w.cols / 2,
                &w.scales,
                &off,
                w.group_size,
                p,
                rows,
                out,
            )
        } else {
            bw::rows::<false>(
                wr,
                qa,
                w.cols / 2,
                &w.scales,
                &off,
                w.group_size,
                p,
                rows,
                out,
            )
        }
    }
}

/// Int8 weights × Q8 activations (sign moved onto the activations); `vnni` picks `vpdpbusd`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL and AVX2/FMA/F16C, plus AVX-512 VNNI when `vnni`.
pub(crate) unsafe fn int8_q8(
    vnni: bool,
    w: &Int8Weight,
    p: &Prep,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let bpg = w.group_size / QK;
    if (bpg > 1 && bpg % 2 == 1) || p.dexp.is_empty() {
        // SAFETY: AVX-512 CPUs have AVX2/FMA/F16C (checked by `Isa::available`).
        return unsafe { super::avx2::int8_q8(w, p, rows, out) };
    }
    let (ng, m) = (w.cols / w.group_size, p.m);
    assert!(w.data.len() >= w.rows * w.cols && p.q.len() >= m * w.cols);
    assert!(p.dexp.len() >= m * w.cols / QK * 8 && p.gsum.len() >= m * ng);
    let off = |i: usize| w.zeros.as_ref().map_or(0.0, |z| f32::from(z[i]));
    let (wr, qa) = (w.data.as_ptr().cast::<u8>(), p.q.as_ptr());
    // SAFETY: sizes asserted above; the features are the caller's contract.
    unsafe {
        if vnni {
            vnni::rows::<true>(wr, qa, w.cols, &w.scales, &off, w.group_size, p, rows, out)
        } else {
            bw::rows::<true>(wr, qa, w.cols, &w.scales, &off, w.group_size, p, rows, out)
        }
    }
}
