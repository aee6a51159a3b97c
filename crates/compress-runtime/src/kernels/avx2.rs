//! x86_64 AVX2 + FMA (+ F16C) kernels: the solid path every supported x86 CPU runs. Row
//! kernels compute rows `rows` for every activation row into `out` (`[m, rows.len()]`),
//! handling up to four activation rows per pass over a weight row (weights are unpacked once).

use std::arch::x86_64::*;
use std::ops::Range;

use half::slice::HalfFloatSliceExt;

use super::prep::{row_scales, token_tiles, Prep};
use super::{FloatDtype, FloatWeight, Int4Weight, Int8Weight, Scales, INT4_OFFSET, QK};

/// Horizontal sum of 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The 32 nibbles of 16 bytes at `p` as bytes: low nibbles in lane 0, high nibbles in lane 1.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY (caller): `p..p + 16` is readable.
    let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast()));
    _mm256_and_si256(
        _mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0)),
        _mm256_set1_epi8(15),
    )
}

/// Calls `$f::<T>` with `T = $n` (1..=4) for the activation-row micro-kernels.
macro_rules! by_tokens {
    ($n:expr, $f:ident($($a:expr),*)) => {
        match $n {
            4 => $f::<4>($($a),*),
            3 => $f::<3>($($a),*),
            2 => $f::<2>($($a),*),
            _ => $f::<1>($($a),*),
        }
    };
}

/// Writes `res[j] - Σ_g so[g] · gsum[t + j, g]` for the `tn` rows starting at `t`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn store_with_offsets(
    out: &mut [f32],
    n: usize,
    i: usize,
    t: usize,
    tn: usize,
    res: &[f32; 4],
    so: &[f32],
    gsum: &[f32],
) {
    let ng = so.len();
    for (j, r) in res.iter().enumerate().take(tn) {
        // SAFETY: the caller runs on an AVX2 + FMA CPU.
        let off = unsafe { dot(so, &gsum[(t + j) * ng..(t + j + 1) * ng]) };
        out[(t + j) * n + i] = r - off;
    }
}

/// `Σ a·b` over the shorter slice, 8 lanes at a time.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut k = 0;
    while k + 8 <= n {
        // SAFETY: `k + 8 <= n` elements of both slices.
        unsafe {
            acc = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(k)),
                _mm256_loadu_ps(b.as_ptr().add(k)),
                acc,
            );
        }
        k += 8;
    }
    let mut s = hsum(acc);
    for j in k..n {
        s += a[j] * b[j];
    }
    s
}

/// [`row_scales`] with F16C conversions: scales `start..start + out.len()` as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn row_scales_f16c(s: &Scales, start: usize, out: &mut [f32]) {
    let n = out.len();
    let (bits, is_f16): (&[u16], bool) = match s {
        Scales::F16(v) => (v[start..start + n].reinterpret_cast(), true),
        Scales::Bf16(v) => (v[start..start + n].reinterpret_cast(), false),
        Scales::F32(_) => return row_scales(s, start, out),
    };
    let mut k = 0;
    while k + 8 <= n {
        // SAFETY: `k + 8 <= n` elements of `bits` (8 × 2 bytes) and of `out`.
        unsafe {
            let h = _mm_loadu_si128(bits.as_ptr().add(k).cast());
            let v = if is_f16 {
                _mm256_cvtph_ps(h)
            } else {
                // bf16 is the top half of an f32.
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
            };
            _mm256_storeu_ps(out.as_mut_ptr().add(k), v);
        }
        k += 8;
    }
    if k < n {
        row_scales(s, start + k, &mut out[k..]);
    }
}

/// Per-group `scale · offset` of one row (`offset` 8 + zero point, or 8 when symmetric; 8 is
/// [`INT4_OFFSET`]).
pub(crate) fn scaled_offsets(s: &[f32], offsets: Option<&[u8]>, so: &mut [f32]) {
    match offsets {
        Some(o) => so
            .iter_mut()
            .zip(s.iter().zip(o))
            .for_each(|(d, (s, &o))| *d = s * f32::from(o)),
        None => so
            .iter_mut()
            .zip(s)
            .for_each(|(d, s)| *d = s * f32::from(INT4_OFFSET)),
    }
}

/// Asks for the `bytes` at `p` to be brought into the caches (no fault if out of bounds).
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn prefetch(p: *const u8, bytes: usize) {
    for k in (0..bytes).step_by(64) {
        // Prefetching never faults; `wrapping_add` keeps the pointer math defined.
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(k).cast());
    }
}

/// Int4 weights × Q8 activations (`p.qp`: blocks reordered even/odd, matching the nibbles).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `p` must be prepared for `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn int4_q8(w: &Int4Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, m) = (w.cols, rows.len(), p.m);
    let (bpg, ng) = (w.group_size / QK, cols / w.group_size);
    assert!(w.data.len() >= w.rows * cols / 2 && p.qp.len() >= m * cols && p.gsum.len() >= m * ng);
    let (mut s, mut so) = (vec![0f32; ng], vec![0f32; ng]);
    let mut sd = vec![0f32; 4 * (cols / QK)];
    for tile in token_tiles(m, cols) {
        for (i, r) in rows.clone().enumerate() {
            // SAFETY: this CPU has AVX2 + F16C (the caller's contract).
            unsafe { row_scales_f16c(&w.scales, r * ng, &mut s) };
            let offs = w.offsets.as_ref().map(|o| &o[r * ng..(r + 1) * ng]);
            scaled_offsets(&s, offs, &mut so);
            // SAFETY: row `r < w.rows` starts `r * cols / 2` bytes into `data` (asserted above).
            let wr = unsafe { w.data.as_ptr().add(r * cols / 2) };
            // Two rows ahead: decode streams the weights once, so keep the loads in flight.
            // SAFETY: prefetching never faults.
            unsafe { prefetch(wr.wrapping_add(cols), cols / 2) };
            let mut t = tile.start;
            while t < tile.end {
                let tn = (tile.end - t).min(4);
                let mut res = [0f32; 4];
                // SAFETY: rows `t..t + tn` of the activations exist; `wr` holds a full row.
                unsafe { q8_dot_n::<false>(tn, wr, &p.qp, p, &s, &mut sd, bpg, t, &mut res) };
                // SAFETY: AVX2 + FMA (the caller's contract).
                unsafe { store_with_offsets(out, n, i, t, tn, &res, &so, &p.gsum) };
                t += tn;
            }
        }
    }
}

/// Adds block `b` of the weight row (`INT8`: signed bytes, else int4 nibbles) times activation
/// rows `j < T`, scaled by `d[j, b]` (times `scale[b]` when given), into `acc`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_block<const T: usize, const INT8: bool>(
    wr: *const u8,
    qa: *const i8,
    d: *const f32,
    cols: usize,
    b: usize,
    scale: Option<&f32>,
    acc: &mut [__m256; T],
) {
    // SAFETY (caller): block `b` lies inside the weight row and activation rows `j < T`.
    unsafe {
        let nb = cols / QK;
        let wv = if INT8 {
            _mm256_loadu_si256(wr.add(b * QK).cast())
        } else {
            nibbles(wr.add(b * 16))
        };
        let wu = if INT8 { _mm256_sign_epi8(wv, wv) } else { wv };
        for (j, a) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_si256(qa.add(j * cols + b * QK).cast());
            let x = if INT8 { _mm256_sign_epi8(x, wv) } else { x };
            let pr = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, x), _mm256_set1_epi16(1));
            let mut dv = _mm256_set1_ps(*d.add(j * nb + b));
            if let Some(sc) = scale {
                dv = _mm256_mul_ps(dv, _mm256_set1_ps(*sc));
            }
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pr), dv, *a);
        }
    }
}

/// [`q8_dot`] for `tn` (1 to 4) activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_dot_n<const INT8: bool>(
    tn: usize,
    wr: *const u8,
    q: &[i8],
    p: &Prep,
    s: &[f32],
    sd: &mut [f32],
    bpg: usize,
    t0: usize,
    res: &mut [f32; 4],
) {
    // SAFETY: the caller's contract is `q8_dot`'s.
    unsafe {
        match tn {
            4 => q8_dot::<4, INT8>(wr, q, p, s, sd, bpg, t0, res),
            3 => q8_dot::<3, INT8>(wr, q, p, s, sd, bpg, t0, res),
            2 => q8_dot::<2, INT8>(wr, q, p, s, sd, bpg, t0, res),
            _ => q8_dot::<1, INT8>(wr, q, p, s, sd, bpg, t0, res),
        }
    }
}

/// Dots of one weight row with activation rows `t0..t0 + T` (before offsets), with two
/// independent accumulator chains (even and odd blocks) so FMA latency does not bind.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_dot<const T: usize, const INT8: bool>(
    wr: *const u8,
    q: &[i8],
    p: &Prep,
    s: &[f32],
    sd: &mut [f32],
    bpg: usize,
    t0: usize,
    res: &mut [f32; 4],
) {
    let (cols, nb) = (p.cols, p.cols / QK);
    let z = _mm256_setzero_ps();
    let (mut acc0, mut acc1) = ([z; T], [z; T]);
    // SAFETY (all calls below): blocks `b < nb` of activation rows `t0..t0 + T` lie inside
    // `q` / `d`, and block `b` of the weight row inside `wr`.
    let (qa, d) = unsafe { (q.as_ptr().add(t0 * cols), p.d.as_ptr().add(t0 * nb)) };
    if bpg == 1 {
        // One weight scale per block: fold it into the activation scales once per pass
        // (vectorized) rather than per block and token in the inner loop.
        let sd = &mut sd[..T * nb];
        for (sdj, dj) in sd.chunks_exact_mut(nb).zip(p.d[t0 * nb..].chunks_exact(nb)) {
            sdj.iter_mut()
                .zip(dj.iter().zip(s))
                .for_each(|(o, (d, s))| *o = d * s);
        }
        let d = sd.as_ptr();
        let mut b = 0;
        while b + 2 <= nb {
            unsafe { q8_block::<T, INT8>(wr, qa, d, cols, b, None, &mut acc0) };
            unsafe { q8_block::<T, INT8>(wr, qa, d, cols, b + 1, None, &mut acc1) };
            b += 2;
        }
        if b < nb {
            unsafe { q8_block::<T, INT8>(wr, qa, d, cols, b, None, &mut acc0) };
        }
    } else {
        for (g, &sg) in s.iter().enumerate() {
            let (mut g0, mut g1) = ([z; T], [z; T]);
            let (mut b, end) = (g * bpg, (g + 1) * bpg);
            while b + 2 <= end {
                unsafe { q8_block::<T, INT8>(wr, qa, d, cols, b, None, &mut g0) };
                unsafe { q8_block::<T, INT8>(wr, qa, d, cols, b + 1, None, &mut g1) };
                b += 2;
            }
            if b < end {
                unsafe { q8_block::<T, INT8>(wr, qa, d, cols, b, None, &mut g0) };
            }
            let sv = _mm256_set1_ps(sg);
            for j in 0..T {
                acc0[j] = _mm256_fmadd_ps(_mm256_add_ps(g0[j], g1[j]), sv, acc0[j]);
            }
        }
    }
    for j in 0..T {
        res[j] = hsum(_mm256_add_ps(acc0[j], acc1[j]));
    }
}

/// Int4 weights × f32 activations (`p.xp`: runs of 16 reordered even/odd).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `p` must be prepared for `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn int4_f32(w: &Int4Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, m, ng) = (w.cols, rows.len(), p.m, w.cols / w.group_size);
    assert!(w.data.len() >= w.rows * cols / 2 && p.xp.len() >= m * cols);
    let mut s = vec![0f32; ng];
    let mut o = vec![i32::from(INT4_OFFSET); ng];
    for tile in token_tiles(m, 4 * cols) {
        for (i, r) in rows.clone().enumerate() {
            // SAFETY: this CPU has AVX2 + F16C (the caller's contract).
            unsafe { row_scales_f16c(&w.scales, r * ng, &mut s) };
            if let Some(offs) = &w.offsets {
                for (d, &v) in o.iter_mut().zip(&offs[r * ng..(r + 1) * ng]) {
                    *d = i32::from(v);
                }
            }
            // SAFETY: row `r` lies inside `data` (asserted above).
            let wr = unsafe { w.data.as_ptr().add(r * cols / 2) };
            let mut t = tile.start;
            while t < tile.end {
                let tn = (tile.end - t).min(4);
                let mut res = [0f32; 4];
                // SAFETY: rows `t..t + tn` exist; `wr` holds a full row.
                unsafe { by_tokens!(tn, int4_f32_dot(wr, p, &s, &o, w.group_size, t, &mut res)) };
                for j in 0..tn {
                    out[(t + j) * n + i] = res[j];
                }
                t += tn;
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn int4_f32_dot<const T: usize>(
    wr: *const u8,
    p: &Prep,
    s: &[f32],
    o: &[i32],
    gs: usize,
    t0: usize,
    res: &mut [f32; 4],
) {
    let cols = p.cols;
    let mask = _mm256_set1_epi32(15);
    let mut acc = [_mm256_setzero_ps(); T];
    // SAFETY (pointer arithmetic below): units `k < cols / 16` lie inside the weight row
    // (8 bytes each) and inside activation rows `t0..t0 + T` of `xp` (16 floats each).
    let xa = unsafe { p.xp.as_ptr().add(t0 * cols) };
    for (g, (&sg, &og)) in s.iter().zip(o).enumerate() {
        let ov = _mm256_set1_epi32(og);
        let (mut lo_acc, mut hi_acc) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
        for k in g * gs / 16..(g + 1) * gs / 16 {
            let b = unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(wr.add(k * 8).cast())) };
            let lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b, mask), ov));
            let hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 4), ov));
            for j in 0..T {
                let x = unsafe { xa.add(j * cols + k * 16) };
                lo_acc[j] = _mm256_fmadd_ps(lo, unsafe { _mm256_loadu_ps(x) }, lo_acc[j]);
                hi_acc[j] = _mm256_fmadd_ps(hi, unsafe { _mm256_loadu_ps(x.add(8)) }, hi_acc[j]);
            }
        }
        let sv = _mm256_set1_ps(sg);
        for j in 0..T {
            acc[j] = _mm256_fmadd_ps(_mm256_add_ps(lo_acc[j], hi_acc[j]), sv, acc[j]);
        }
    }
    for (r, a) in res.iter_mut().zip(acc) {
        *r = hsum(a);
    }
}

/// Int8 weights × Q8 activations (ggml's q8_0 × q8_0 sign trick).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `p` must be prepared for `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn int8_q8(w: &Int8Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, m) = (w.cols, rows.len(), p.m);
    let (bpg, ng) = (w.group_size / QK, cols / w.group_size);
    assert!(w.data.len() >= w.rows * cols && p.q.len() >= m * cols && p.gsum.len() >= m * ng);
    let (mut s, mut so) = (vec![0f32; ng], vec![0f32; ng]);
    let mut sd = vec![0f32; 4 * (cols / QK)];
    for tile in token_tiles(m, cols) {
        for (i, r) in rows.clone().enumerate() {
            // SAFETY: this CPU has AVX2 + F16C (the caller's contract).
            unsafe { row_scales_f16c(&w.scales, r * ng, &mut s) };
            match &w.zeros {
                Some(z) => so
                    .iter_mut()
                    .zip(s.iter().zip(&z[r * ng..(r + 1) * ng]))
                    .for_each(|(o, (s, &z))| *o = s * f32::from(z)),
                None => so.fill(0.0),
            }
            // SAFETY: row `r` lies inside `data` (asserted above).
            let wr = unsafe { w.data.as_ptr().add(r * cols) };
            // SAFETY: prefetching never faults.
            unsafe { prefetch(wr.wrapping_add(2 * cols).cast(), cols) };
            let mut t = tile.start;
            while t < tile.end {
                let tn = (tile.end - t).min(4);
                let mut res = [0f32; 4];
                // SAFETY: rows `t..t + tn` exist; `wr` holds a full row.
                unsafe { q8_dot_n::<true>(tn, wr.cast(), p.q, p, &s, &mut sd, bpg, t, &mut res) };
                // SAFETY: AVX2 + FMA (the caller's contract).
                unsafe { store_with_offsets(out, n, i, t, tn, &res, &so, &p.gsum) };
                t += tn;
            }
        }
    }
}

/// Int8 weights × f32 activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn int8_f32(w: &Int8Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, m, gs, ng) = (w.cols, rows.len(), p.m, w.group_size, w.cols / w.group_size);
    assert!(w.data.len() >= w.rows * cols && p.x.len() >= m * cols);
    let mut s = vec![0f32; ng];
    for (i, r) in rows.enumerate() {
        // SAFETY: this CPU has AVX2 + F16C (the caller's contract).
        unsafe { row_scales_f16c(&w.scales, r * ng, &mut s) };
        // SAFETY: row `r` lies inside `data` (asserted above).
        let wr = unsafe { w.data.as_ptr().add(r * cols) };
        for t in 0..m {
            // SAFETY: activation row `t` lies inside `x`.
            let x = unsafe { p.x.as_ptr().add(t * cols) };
            let mut acc = _mm256_setzero_ps();
            for g in 0..ng {
                let zv =
                    _mm256_set1_epi32(w.zeros.as_ref().map_or(0, |z| i32::from(z[r * ng + g])));
                let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for k in (g * gs..(g + 1) * gs).step_by(16) {
                    // SAFETY: `k + 16 <= cols` (group sizes are multiples of 32).
                    unsafe {
                        let w0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(wr.add(k).cast()));
                        let w1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(wr.add(k + 8).cast()));
                        let w0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(w0, zv));
                        let w1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(w1, zv));
                        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x.add(k)), a0);
                        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x.add(k + 8)), a1);
                    }
                }
                acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(s[g]), acc);
            }
            out[t * n + i] = hsum(acc);
        }
    }
}

/// Eight weights at element `i` of `p` (dtype `D`: 0 f32, 1 f16, 2 bf16) as f32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load8<const D: u8>(p: *const u8, i: usize) -> __m256 {
    // SAFETY (caller): elements `i..i + 8` are readable.
    unsafe {
        match D {
            0 => _mm256_loadu_ps(p.add(4 * i).cast()),
            1 => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i).cast())),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * i).cast())),
                16,
            )),
        }
    }
}

/// Float weights × f32 activations.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn float(w: &FloatWeight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    // SAFETY: same features as this function.
    unsafe {
        match w.dtype {
            FloatDtype::F32 => float_d::<0>(w, p, rows, out),
            FloatDtype::F16 => float_d::<1>(w, p, rows, out),
            FloatDtype::Bf16 => float_d::<2>(w, p, rows, out),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn float_d<const D: u8>(w: &FloatWeight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    let (cols, n, m) = (w.cols, rows.len(), p.m);
    assert!(w.data.len() >= w.rows * cols * w.dtype.size() && p.x.len() >= m * cols);
    let main = cols / 8 * 8;
    let row_bytes = cols * w.dtype.size();
    for (i, r) in rows.enumerate() {
        // SAFETY: element `r * cols` starts row `r` inside `data` (asserted above).
        let base = unsafe { w.data.as_ptr().add(r * row_bytes) };
        if m == 1 {
            // Decode: stream the row with four independent FMA chains, the next rows prefetched.
            // SAFETY: prefetching never faults.
            unsafe { prefetch(base.wrapping_add(2 * row_bytes), row_bytes) };
            let mut acc = [_mm256_setzero_ps(); 4];
            let main32 = cols / 32 * 32;
            for c in (0..main32).step_by(32) {
                for (k, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `c + 32 <= cols`: elements `c + 8k .. c + 8k + 8` exist.
                    unsafe {
                        let wv = load8::<D>(base, c + 8 * k);
                        *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.x.as_ptr().add(c + 8 * k)), *a);
                    }
                }
            }
            for c in (main32..main).step_by(8) {
                // SAFETY: `c + 8 <= cols`.
                unsafe {
                    let wv = load8::<D>(base, c);
                    acc[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.x.as_ptr().add(c)), acc[0]);
                }
            }
            let tail: f32 = (main..cols).map(|c| w.get(r, c) * p.x[c]).sum();
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            out[i] = hsum(sum) + tail;
            continue;
        }
        let mut t = 0;
        while t < m {
            let tn = (m - t).min(4);
            let mut acc = [_mm256_setzero_ps(); 4];
            for c in (0..main).step_by(8) {
                // SAFETY: `c + 8 <= cols`; activation rows `t..t + tn` exist.
                unsafe {
                    let wv = load8::<D>(base, c);
                    for (j, a) in acc.iter_mut().enumerate().take(tn) {
                        *a = _mm256_fmadd_ps(
                            wv,
                            _mm256_loadu_ps(p.x.as_ptr().add((t + j) * cols + c)),
                            *a,
                        );
                    }
                }
            }
            for j in 0..tn {
                let x = &p.x[(t + j) * cols..(t + j + 1) * cols];
                let tail: f32 = (main..cols).map(|c| w.get(r, c) * x[c]).sum();
                out[(t + j) * n + i] = hsum(acc[j]) + tail;
            }
            t += tn;
        }
    }
}
