//! The 8-row interleaved int4 layout the prompt (m > 1) kernels read, made once per weight.
//!
//! A row-major [`Int4Weight`] gives each output row its own dot product, so a matrix–matrix
//! product pays a float convert, a scale FMA and (per row) a horizontal sum for every 32
//! columns and token. Interleaving eight rows puts the eight dots of one 32-column block into
//! the eight 32-bit lanes of one vector: a single convert and FMA then serve eight rows, and
//! the integer products are `u8 × i8` quad dots (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`)
//! of four weight columns of eight rows against four activation bytes broadcast to every lane.
//!
//! Layout, for row group `R` (rows `8R..8R + 8`) and 32-column block `b`: 128 bytes at
//! `codes[(R · nb + b) · 128]` (`nb = cols / 32`), four parts `p = 0..4` of 32 bytes each;
//! byte `4i + k` of part `p` holds, for row `8R + i`, the code `u` (`0..16`, as stored in the
//! packed row) of column `32b + 4p + k` in its low nibble and of column `32b + 16 + 4p + k`
//! in its high nibble. `scales[(R · ng + g) · 8 + i]` is row `8R + i`'s scale of group `g`
//! (in the dtype it was stored in), and `offsets` (asymmetric weights only) holds its `o` in
//! the same order (symmetric weights have `o = 8`). The weight is `w = (u − o) · s`, as in
//! [`Int4Weight`]; the copy is as large as the original.

use rayon::prelude::*;

use super::{Int4Weight, Scales, QK};

/// Bytes of one row group's 32-column block.
pub(crate) const BLOCK_BYTES: usize = 8 * QK / 2;

/// An [`Int4Weight`] repacked eight rows at a time (see the module doc).
pub struct Int4x8 {
    /// Output features (a multiple of 8).
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Columns per scale (a multiple of 32).
    pub group_size: usize,
    /// `rows / 8 · cols / 32` blocks of `BLOCK_BYTES` bytes.
    pub codes: Vec<u8>,
    /// `[rows / 8, groups, 8]` scales.
    pub scales: Scales,
    /// `[rows / 8, groups, 8]` offsets `o = 8 + z` (`None`: symmetric, every `o = 8`).
    pub offsets: Option<Vec<u8>>,
}

impl std::fmt::Debug for Int4x8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The shape only: the codes are megabytes.
        f.debug_struct("Int4x8")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("group_size", &self.group_size)
            .field("asymmetric", &self.offsets.is_some())
            .finish()
    }
}

impl Int4x8 {
    /// Repacks `w`, or `None` when its rows are not a multiple of 8 (or it is empty).
    pub fn from_int4(w: &Int4Weight) -> Option<Self> {
        let (rows, cols, gs) = (w.rows, w.cols, w.group_size);
        if rows == 0 || !rows.is_multiple_of(8) || !gs.is_multiple_of(QK) || cols == 0 {
            return None;
        }
        let (nb, ng) = (cols / QK, cols / gs);
        let half = cols / 2;
        let data = &w.data[..rows * half];
        let mut codes = vec![0u8; rows / 8 * nb * BLOCK_BYTES];
        codes
            .par_chunks_mut(nb * BLOCK_BYTES)
            .enumerate()
            .for_each(|(rg, dst)| {
                let code = |i: usize, c: usize| {
                    let byte = data[(8 * rg + i) * half + c / 2];
                    if c.is_multiple_of(2) {
                        byte & 15
                    } else {
                        byte >> 4
                    }
                };
                for (b, blk) in dst.chunks_exact_mut(BLOCK_BYTES).enumerate() {
                    for (p, part) in blk.chunks_exact_mut(32).enumerate() {
                        for i in 0..8 {
                            for k in 0..4 {
                                let c = b * QK + 4 * p + k;
                                part[4 * i + k] = code(i, c) | (code(i, c + 16) << 4);
                            }
                        }
                    }
                }
            });
        // Source index of interleaved position `k` (`[rows / 8, groups, 8]` order).
        let src = |k: usize| {
            let (rg, g, i) = (k / (8 * ng), k / 8 % ng, k % 8);
            (8 * rg + i) * ng + g
        };
        let n = rows * ng;
        let scales = match &w.scales {
            Scales::F32(v) => Scales::F32((0..n).map(|k| v[src(k)]).collect()),
            Scales::F16(v) => Scales::F16((0..n).map(|k| v[src(k)]).collect()),
            Scales::Bf16(v) => Scales::Bf16((0..n).map(|k| v[src(k)]).collect()),
        };
        let offsets = w
            .offsets
            .as_ref()
            .map(|o| (0..n).map(|k| o[src(k)]).collect());
        Some(Self {
            rows,
            cols,
            group_size: gs,
            codes,
            scales,
            offsets,
        })
    }

    /// Bytes read per full pass (codes, scales, offsets).
    pub fn bytes(&self) -> usize {
        let scale = match self.scales {
            Scales::F32(_) => 4,
            Scales::F16(_) | Scales::Bf16(_) => 2,
        };
        self.codes.len() + self.scales.len() * scale + self.offsets.as_ref().map_or(0, Vec::len)
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{int4x8_q8_avx2, int4x8_q8_vnni};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Int4x8, BLOCK_BYTES};
    use crate::kernels::avx2::load8;
    use crate::kernels::prep::Prep;
    use crate::kernels::{Scales, INT4_OFFSET, QK};

    /// Integer dots of one row group's block at `wb` with activation rows `j < T` (codes at
    /// `xa + j · cols`): lane `i` of result `j` is `Σ_c u[8R + i, c] · q[j, c]` over the block.
    /// `vpmaddubsw` pairs stay within i16: eight of them sum to at most 8 · 2 · 15 · 127.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn block_avx2<const T: usize>(
        wb: *const u8,
        xa: *const i8,
        cols: usize,
    ) -> [__m256i; T] {
        let mask = _mm256_set1_epi8(15);
        let mut s16 = [_mm256_setzero_si256(); T];
        for p in 0..4 {
            // SAFETY (caller): the block's 128 bytes and 32 codes per activation row exist.
            unsafe {
                let v = _mm256_loadu_si256(wb.add(32 * p).cast());
                let lo = _mm256_and_si256(v, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                for (j, s) in s16.iter_mut().enumerate() {
                    let x = xa.add(j * cols + 4 * p);
                    let xl = _mm256_set1_epi32(x.cast::<i32>().read_unaligned());
                    let xh = _mm256_set1_epi32(x.add(16).cast::<i32>().read_unaligned());
                    let pr = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, xl),
                        _mm256_maddubs_epi16(hi, xh),
                    );
                    *s = _mm256_add_epi16(*s, pr);
                }
            }
        }
        s16.map(|s| _mm256_madd_epi16(s, _mm256_set1_epi16(1)))
    }

    /// [`block_avx2`] with 256-bit VNNI `vpdpbusd` (AVX-512 VL + VNNI).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn block_vnni<const T: usize>(
        wb: *const u8,
        xa: *const i8,
        cols: usize,
    ) -> [__m256i; T] {
        let mask = _mm256_set1_epi8(15);
        let mut acc = [_mm256_setzero_si256(); T];
        for p in 0..4 {
            // SAFETY (caller): as for `block_avx2`.
            unsafe {
                let v = _mm256_loadu_si256(wb.add(32 * p).cast());
                let lo = _mm256_and_si256(v, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                for (j, a) in acc.iter_mut().enumerate() {
                    let x = xa.add(j * cols + 4 * p);
                    let xl = _mm256_set1_epi32(x.cast::<i32>().read_unaligned());
                    let xh = _mm256_set1_epi32(x.add(16).cast::<i32>().read_unaligned());
                    *a = _mm256_dpbusd_epi32(*a, lo, xl);
                    *a = _mm256_dpbusd_epi32(*a, hi, xh);
                }
            }
        }
        acc
    }

    macro_rules! x8_kernel {
        ($name:ident, $run:ident, $tile:ident, $feat:literal, $block:ident) => {
            /// `out[m, rows.len()]` for the rows `rows` (multiples of 8) of `w`, Q8 activations.
            ///
            /// # Safety
            /// The CPU must have the enabled features; `p` must hold Q8 codes, block scales and
            /// group sums for `w` (`p.q`, `p.d`, `p.gsum`).
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn $name(w: &Int4x8, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
                // SAFETY: the caller's contract; the dtype parameter matches `w.scales`.
                unsafe {
                    match w.scales {
                        Scales::F32(_) => $run::<0>(w, p, rows, out),
                        Scales::F16(_) => $run::<1>(w, p, rows, out),
                        Scales::Bf16(_) => $run::<2>(w, p, rows, out),
                    }
                }
            }

            /// The kernel for scales of dtype `D` (0 f32, 1 f16, 2 bf16).
            #[target_feature(enable = $feat)]
            unsafe fn $run<const D: u8>(w: &Int4x8, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
                let (cols, m, n) = (w.cols, p.m, rows.len());
                let (nb, ng) = (cols / QK, cols / w.group_size);
                assert!(rows.start % 8 == 0 && rows.end % 8 == 0 && rows.end <= w.rows);
                assert!(p.q.len() >= m * cols && p.d.len() >= m * nb && p.gsum.len() >= m * ng);
                assert!(w.codes.len() >= w.rows / 8 * nb * BLOCK_BYTES && out.len() >= m * n);
                assert!(w.scales.len() >= w.rows * ng);
                assert!(w.offsets.as_ref().is_none_or(|o| o.len() >= w.rows * ng));
                // Activation rows per pass over the row groups: about 256 KiB of codes (L2).
                let tt = ((256 << 10) / cols).max(4) / 4 * 4;
                for t0 in (0..m).step_by(tt) {
                    let tend = (t0 + tt).min(m);
                    for (gi, rg) in (rows.start / 8..rows.end / 8).enumerate() {
                        let mut t = t0;
                        while t < tend {
                            let tn = (tend - t).min(4);
                            // SAFETY: the asserts above bound every index the tile reads and
                            // writes: row group `rg`, activation rows `t..t + tn`, and output
                            // columns `8 gi..8 gi + 8` of rows `t..t + tn` of `out`.
                            unsafe {
                                match tn {
                                    4 => $tile::<4, D>(w, p, rg, t, out, n, 8 * gi),
                                    3 => $tile::<3, D>(w, p, rg, t, out, n, 8 * gi),
                                    2 => $tile::<2, D>(w, p, rg, t, out, n, 8 * gi),
                                    _ => $tile::<1, D>(w, p, rg, t, out, n, 8 * gi),
                                }
                            }
                            t += tn;
                        }
                    }
                }
            }

            /// Eight rows (group `rg`) times activation rows `t..t + T`, into columns
            /// `col..col + 8` of `out` (`[m, n]`).
            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $tile<const T: usize, const D: u8>(
                w: &Int4x8,
                p: &Prep,
                rg: usize,
                t: usize,
                out: &mut [f32],
                n: usize,
                col: usize,
            ) {
                let cols = w.cols;
                let (nb, ng, bpg) = (cols / QK, cols / w.group_size, w.group_size / QK);
                let z = _mm256_setzero_ps();
                let mut acc = [z; T];
                // SAFETY (caller): row group `rg` and activation rows `t..t + T` are in bounds.
                unsafe {
                    let codes = w.codes.as_ptr().add(rg * nb * BLOCK_BYTES);
                    let sc: *const u8 = match &w.scales {
                        Scales::F32(v) => v.as_ptr().cast(),
                        Scales::F16(v) => v.as_ptr().cast(),
                        Scales::Bf16(v) => v.as_ptr().cast(),
                    };
                    let s0 = rg * ng * 8;
                    let offs = w.offsets.as_ref().map(|v| v.as_ptr().add(s0));
                    let xa = p.q.as_ptr().add(t * cols);
                    let d = p.d.as_ptr().add(t * nb);
                    let gsum = p.gsum.as_ptr().add(t * ng);
                    for g in 0..ng {
                        let sv = load8::<D>(sc, s0 + 8 * g);
                        if bpg == 1 {
                            let dot = $block::<T>(codes.add(g * BLOCK_BYTES), xa.add(g * QK), cols);
                            for j in 0..T {
                                let sd = _mm256_mul_ps(sv, _mm256_set1_ps(*d.add(j * nb + g)));
                                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[j]), sd, acc[j]);
                            }
                        } else {
                            let mut ga = [z; T];
                            for b in g * bpg..(g + 1) * bpg {
                                let dot =
                                    $block::<T>(codes.add(b * BLOCK_BYTES), xa.add(b * QK), cols);
                                for j in 0..T {
                                    let dv = _mm256_set1_ps(*d.add(j * nb + b));
                                    ga[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[j]), dv, ga[j]);
                                }
                            }
                            for j in 0..T {
                                acc[j] = _mm256_fmadd_ps(ga[j], sv, acc[j]);
                            }
                        }
                        let ov = match offs {
                            Some(o) => _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                                o.add(8 * g).cast(),
                            ))),
                            None => _mm256_set1_ps(f32::from(INT4_OFFSET)),
                        };
                        let sov = _mm256_mul_ps(sv, ov);
                        for j in 0..T {
                            let gs = _mm256_set1_ps(*gsum.add(j * ng + g));
                            acc[j] = _mm256_fnmadd_ps(sov, gs, acc[j]);
                        }
                    }
                    for (j, a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(out.as_mut_ptr().add((t + j) * n + col), *a);
                    }
                }
            }
        };
    }

    x8_kernel!(
        int4x8_q8_avx2,
        run_avx2,
        tile_avx2,
        "avx2,fma,f16c",
        block_avx2
    );
    x8_kernel!(
        int4x8_q8_vnni,
        run_vnni,
        tile_vnni,
        "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
        block_vnni
    );
}
