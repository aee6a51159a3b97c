//! Picks the kernel implementation once (CPU features, `COMPRESS_KERNELS`), prepares the
//! activations per call and runs the row kernels over rayon chunks of output rows.

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::prep::{deinterleave, group_sums, Prep};
use super::{
    reference, scalar, FloatWeight, Input, Int4Weight, Int4x8, Int8Weight, Q8Acts, Weight, QK,
};

/// A kernel implementation (instruction set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar code.
    Scalar,
    /// x86_64 AVX2 + FMA + F16C.
    Avx2,
    /// [`Isa::Avx2`] whose prompt (m > 1) int4 dots use 256-bit VNNI `vpdpbusd` (AVX-512 VL + VNNI).
    Avx2Vnni,
    /// x86_64 AVX-512 (F, BW, VL) on top of AVX2, integer dots with `vpmaddubsw`.
    Avx512,
    /// [`Isa::Avx512`] with AVX-512 VNNI (`vpdpbusd`) integer dots.
    Avx512Vnni,
}

impl Isa {
    /// Every implementation, slowest first.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx2Vnni,
        Isa::Avx512,
        Isa::Avx512Vnni,
    ];

    /// True when this CPU can run the implementation.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Vnni => {
                Isa::Avx2.available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Isa::Avx512.available() && is_x86_feature_detected!("avx512vnni"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Lower-case name (`scalar`, `avx2`, `avx2vnni`, `avx512`, `avx512vnni`), as
    /// `COMPRESS_KERNELS` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx2Vnni => "avx2vnni",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }
}

/// The implementation `Weight::matmul` uses: AVX2 (with VNNI prompt dots where available, else
/// scalar), unless `COMPRESS_KERNELS=scalar|avx2|avx2vnni|avx512|avx512vnni` asks for another
/// (read once).
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        // AVX-512 did not beat AVX2 in the benchmarks (memory-bound decode; 512-bit ops use
        // fewer ports and lower clocks), so it runs only when asked for.
        let best = if Isa::Avx2Vnni.available() {
            Isa::Avx2Vnni
        } else if Isa::Avx2.available() {
            Isa::Avx2
        } else {
            Isa::Scalar
        };
        match std::env::var("COMPRESS_KERNELS") {
            Ok(v) => Isa::ALL
                .into_iter()
                .find(|i| i.name() == v.trim().to_ascii_lowercase() && i.available())
                .unwrap_or(best),
            Err(_) => best,
        }
    })
}

/// Quantizes activations to Q8 blocks with the implementation [`isa`] picks; the codes, scales
/// and sums are identical to [`reference::quantize_q8`] for finite inputs.
pub fn quantize_q8(x: &[f32], m: usize, cols: usize) -> Q8Acts {
    quantize_q8_with(isa(), x, m, cols)
}

/// [`quantize_q8`] with implementation `isa` (scalar when `isa` is not available).
pub(crate) fn quantize_q8_with(isa: Isa, x: &[f32], m: usize, cols: usize) -> Q8Acts {
    let isa = if isa.available() { isa } else { Isa::Scalar };
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 | Isa::Avx512Vnni => {
            super::avx2_q8::quantize_q8(x, m, cols)
        }
        _ => reference::quantize_q8(x, m, cols),
    }
}

/// Raw output pointer shared by the row tasks.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes a disjoint set of output indices (its own rows), see `par_rows`.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Pointer to element `i` (a method, so closures capture the whole `Send` wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Below this many multiply-adds a matmul runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 17;

/// Runs `f(rows, out)` over chunks of output rows (in parallel when worth it); `out` is the
/// chunk's `[m, rows.len()]` block, scattered into `y` (`[m, n_rows]`) afterwards.
fn par_rows<F>(n_rows: usize, m: usize, cols: usize, y: &mut [f32], f: F)
where
    F: Fn(Range<usize>, &mut [f32]) + Sync,
{
    let threads = rayon::current_num_threads();
    if threads == 1 || n_rows * cols * m < PAR_MIN_MACS || n_rows < 8 {
        if m == 1 {
            f(0..n_rows, y);
        } else {
            let mut buf = vec![0f32; m * n_rows];
            f(0..n_rows, &mut buf);
            y.copy_from_slice(&buf);
        }
        return;
    }
    let chunk = n_rows
        .div_ceil(threads * 8)
        .next_multiple_of(8)
        .clamp(8, 512);
    if m == 1 {
        y.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(ci, ys)| f(ci * chunk..ci * chunk + ys.len(), ys));
        return;
    }
    let out = OutPtr(y.as_mut_ptr());
    (0..n_rows.div_ceil(chunk)).into_par_iter().for_each(|ci| {
        let rows = ci * chunk..((ci + 1) * chunk).min(n_rows);
        let n = rows.len();
        let mut buf = vec![0f32; m * n];
        f(rows.clone(), &mut buf);
        for t in 0..m {
            for (i, v) in buf[t * n..(t + 1) * n].iter().enumerate() {
                // SAFETY: `t * n_rows + rows.start + i < m * n_rows == y.len()`, and no other
                // task writes row indices in `rows`.
                unsafe { *out.at(t * n_rows + rows.start + i) = *v };
            }
        }
    });
}

/// `y[m, rows] = x · Wᵀ` with implementation `isa` (falls back to scalar when `isa` is not
/// available on this CPU); same semantics as [`reference::matmul`].
pub fn matmul_with(isa: Isa, w: &Weight, input: &Input<'_>, y: &mut [f32]) {
    let rows = w.rows();
    super::check_shapes(w, input, y);
    if input.m == 0 || rows == 0 {
        return;
    }
    let isa = if isa.available() { isa } else { Isa::Scalar };
    let (m, cols) = (input.m, input.cols);
    let mut p = Prep {
        m,
        cols,
        x: input.x,
        ..Prep::default()
    };
    if let Some(q8) = &input.q8 {
        p.q = &q8.q;
        p.d = &q8.d;
    }
    match (w, &input.q8) {
        (Weight::Int4(w), Some(q8)) => {
            p.gsum = group_sums(q8, m, cols, w.group_size);
            let x8 = (m >= X8_MIN_M).then(|| x8_kernel(isa)).flatten();
            if let Some((kernel, x8)) = x8.and_then(|k| Some((k, w.interleaved()?))) {
                // SAFETY: `isa` is available, so the CPU has the kernel's features; `p` holds
                // the Q8 codes, scales and group sums the kernel reads.
                par_rows(rows, m, cols, y, |r, out| unsafe { kernel(x8, &p, r, out) });
                return;
            }
            if isa != Isa::Scalar {
                p.qp = deinterleave(&q8.q, QK);
            }
            if matches!(isa, Isa::Avx512 | Isa::Avx512Vnni) {
                p.dexp = q8.d.iter().flat_map(|&d| [d; 8]).collect();
            }
            par_rows(rows, m, cols, y, |r, out| int4_q8(isa, w, &p, r, out));
        }
        (Weight::Int4(w), None) => {
            if isa != Isa::Scalar {
                p.xp = deinterleave(input.x, 16);
            }
            par_rows(rows, m, cols, y, |r, out| int4_f32(isa, w, &p, r, out));
        }
        (Weight::Int8(w), Some(q8)) => {
            p.gsum = group_sums(q8, m, cols, w.group_size);
            if matches!(isa, Isa::Avx512 | Isa::Avx512Vnni) {
                p.dexp = q8.d.iter().flat_map(|&d| [d; 8]).collect();
            }
            par_rows(rows, m, cols, y, |r, out| int8_q8(isa, w, &p, r, out));
        }
        (Weight::Int8(w), None) => {
            par_rows(rows, m, cols, y, |r, out| int8_f32(isa, w, &p, r, out))
        }
        (Weight::Float(w), _) => par_rows(rows, m, cols, y, |r, out| float(isa, w, &p, r, out)),
    }
}

fn int4_q8(isa: Isa, w: &Int4Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    match isa {
        Isa::Scalar => scalar::int4_q8(w, p, rows, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is available (checked in `matmul_with`), so the CPU has the features.
        Isa::Avx2 | Isa::Avx2Vnni => unsafe { super::avx2::int4_q8(w, p, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { super::avx512::int4_q8(false, w, p, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512Vnni => unsafe { super::avx512::int4_q8(true, w, p, rows, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => scalar::int4_q8(w, p, rows, out),
    }
}

/// Activation rows from which int4 × Q8 products use the interleaved [`Int4x8`] layout.
const X8_MIN_M: usize = 1;

/// An interleaved int4 × Q8 kernel.
pub(crate) type X8Kernel = unsafe fn(&Int4x8, &Prep, Range<usize>, &mut [f32]);

/// The interleaved int4 × Q8 kernel of `isa` (which must be available), if it has one.
pub(crate) fn x8_kernel(isa: Isa) -> Option<X8Kernel> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni | Isa::Avx512Vnni => Some(super::int4x8::int4x8_q8_vnni),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => Some(super::int4x8::int4x8_q8_avx2),
        _ => None,
    }
}

fn int4_f32(isa: Isa, w: &Int4Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` (AVX2 or AVX-512, which implies AVX2) is available.
        Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 | Isa::Avx512Vnni => unsafe {
            super::avx2::int4_f32(w, p, rows, out)
        },
        _ => scalar::int4_f32(w, p, rows, out),
    }
}

fn int8_q8(isa: Isa, w: &Int8Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is available.
        Isa::Avx2 | Isa::Avx2Vnni => unsafe { super::avx2::int8_q8(w, p, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` is available.
        Isa::Avx512 => unsafe { super::avx512::int8_q8(false, w, p, rows, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512Vnni => unsafe { super::avx512::int8_q8(true, w, p, rows, out) },
        _ => scalar::int8_q8(w, p, rows, out),
    }
}

fn int8_f32(isa: Isa, w: &Int8Weight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` (AVX2 or AVX-512, which implies AVX2) is available.
        Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 | Isa::Avx512Vnni => unsafe {
            super::avx2::int8_f32(w, p, rows, out)
        },
        _ => scalar::int8_f32(w, p, rows, out),
    }
}

fn float(isa: Isa, w: &FloatWeight, p: &Prep, rows: Range<usize>, out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` (AVX2 or AVX-512, which implies AVX2) is available.
        Isa::Avx2 | Isa::Avx2Vnni | Isa::Avx512 | Isa::Avx512Vnni => unsafe {
            super::avx2::float(w, p, rows, out)
        },
        _ => scalar::float(w, p, rows, out),
    }
}
