//! Matrix kernels: `y = x · Wᵀ` for the weight kinds the runtime holds.
//!
//! * [`Int4Weight`]: compressed-tensors `pack-quantized` 4-bit rows used in place (zero copy
//!   from the memory map): byte `k` of a row holds column `2k` in its low nibble and column
//!   `2k + 1` in its high nibble, each stored unsigned as `u = q + 8`. The weight is
//!   `w = (u − o) · s` with `o = 8 + z` per group (`z` = 0 when symmetric).
//! * [`Int8Weight`]: signed 8-bit codes `q` (any `b ≤ 8`-bit scheme fits), `w = (q − z) · s`.
//! * [`FloatWeight`]: f32, f16 or bf16 rows, used in place.
//!
//! Quantized kernels need `group_size % 32 == 0` and `cols % group_size == 0`; the loader
//! turns any other scheme into a [`FloatWeight`]. Two activation modes ([`ActMode`]):
//! `F32` multiplies the exact dequantized weights by f32 activations (agrees with the burn
//! model to float rounding); `Q8` first quantizes each row of activations to 8 bits in blocks
//! of 32 (`d = max|x| / 127`, `q = round(x / d)`, as ggml's Q8_0) and runs integer dot
//! products, which is what makes int4 decode fast. [`mod@reference`] holds the scalar definition
//! of every kernel; the fast paths must agree with it to float rounding.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_q8;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod bytes;
mod dispatch;
mod int4x8;
mod prep;
pub mod reference;
mod scalar;
#[cfg(test)]
mod tests;

pub use bytes::Bytes;
pub use dispatch::{isa, matmul_with, quantize_q8, Isa};
pub use int4x8::Int4x8;
use std::sync::OnceLock;

use compress_format::pack_quantized::code_offset;
use half::{bf16, f16};

/// Activation block length of the quantized kernels.
pub const QK: usize = 32;

/// Storage offset of 4-bit codes (`u = q + 8`): compress-format's [`code_offset`]`(4)`.
pub const INT4_OFFSET: u8 = code_offset(4) as u8;

/// How activations enter the quantized kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ActMode {
    /// f32 activations times exactly dequantized weights.
    F32,
    /// Activations quantized to 8 bits per block of 32 (fast; ggml's Q8_0 scheme).
    #[default]
    Q8,
}

/// Per-group weight scales in the dtype they were stored in.
#[derive(Clone, Debug)]
pub enum Scales {
    /// 32-bit float scales.
    F32(Vec<f32>),
    /// IEEE half scales.
    F16(Vec<f16>),
    /// bfloat16 scales.
    Bf16(Vec<bf16>),
}

impl Scales {
    /// Scale `i` as f32.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Self::F32(v) => v[i],
            Self::F16(v) => v[i].to_f32(),
            Self::Bf16(v) => v[i].to_f32(),
        }
    }

    /// Number of scales.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::Bf16(v) => v.len(),
        }
    }

    /// True when there are no scales.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 4-bit group-quantized weight `[rows, cols]` in compressed-tensors' packed layout.
#[derive(Debug)]
pub struct Int4Weight {
    /// Output features.
    pub rows: usize,
    /// Input features (a multiple of `group_size`).
    pub cols: usize,
    /// Columns per scale (a multiple of 32; `cols` for per-channel).
    pub group_size: usize,
    /// `rows * cols / 2` bytes, row-major, nibbles as described in the module doc.
    pub data: Bytes,
    /// `[rows, cols / group_size]` scales.
    pub scales: Scales,
    /// `[rows, cols / group_size]` offsets `o = 8 + z` (`None`: symmetric, every `o = 8`; 8 is
    /// [`INT4_OFFSET`]).
    pub offsets: Option<Vec<u8>>,
    /// The interleaved copy for prompt products, made on first use ([`Int4Weight::interleaved`]).
    x8: OnceLock<Option<Int4x8>>,
}

impl Int4Weight {
    /// A weight over `data` (see the field docs for the layouts).
    pub fn new(
        rows: usize,
        cols: usize,
        group_size: usize,
        data: Bytes,
        scales: Scales,
        offsets: Option<Vec<u8>>,
    ) -> Self {
        Self {
            rows,
            cols,
            group_size,
            data,
            scales,
            offsets,
            x8: OnceLock::new(),
        }
    }

    /// The 8-row interleaved copy the prompt kernels read, repacked on the first call (`None`
    /// when the rows are not a multiple of 8).
    pub fn interleaved(&self) -> Option<&Int4x8> {
        self.x8.get_or_init(|| Int4x8::from_int4(self)).as_ref()
    }
}

/// An 8-bit (or narrower) group-quantized weight `[rows, cols]` as signed codes.
#[derive(Debug)]
pub struct Int8Weight {
    /// Output features.
    pub rows: usize,
    /// Input features (a multiple of `group_size`).
    pub cols: usize,
    /// Columns per scale (a multiple of 32; `cols` for per-channel).
    pub group_size: usize,
    /// `rows * cols` signed codes, row-major.
    pub data: Vec<i8>,
    /// `[rows, cols / group_size]` scales.
    pub scales: Scales,
    /// `[rows, cols / group_size]` zero points (`None`: symmetric).
    pub zeros: Option<Vec<i8>>,
}

/// Element type of a [`FloatWeight`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatDtype {
    /// Little-endian f32.
    F32,
    /// Little-endian IEEE half.
    F16,
    /// Little-endian bfloat16.
    Bf16,
}

impl FloatDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// An unquantized weight `[rows, cols]` (f32/f16/bf16 little-endian bytes, row-major).
#[derive(Debug)]
pub struct FloatWeight {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Element type of `data`.
    pub dtype: FloatDtype,
    /// `rows * cols * dtype.size()` bytes (not necessarily aligned).
    pub data: Bytes,
}

impl FloatWeight {
    /// Element `(r, c)` as f32.
    #[inline]
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let i = r * self.cols + c;
        let d = &self.data;
        match self.dtype {
            FloatDtype::F32 => {
                f32::from_le_bytes([d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]])
            }
            FloatDtype::F16 => {
                f16::from_bits(u16::from_le_bytes([d[2 * i], d[2 * i + 1]])).to_f32()
            }
            FloatDtype::Bf16 => {
                bf16::from_bits(u16::from_le_bytes([d[2 * i], d[2 * i + 1]])).to_f32()
            }
        }
    }

    /// Row `r` converted to f32 into `out` (`cols` long).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate().take(self.cols) {
            *o = self.get(r, c);
        }
    }
}

/// A linear layer's weight in one of the runtime's kernel forms.
#[derive(Debug)]
pub enum Weight {
    /// 4-bit packed.
    Int4(Int4Weight),
    /// 8-bit codes.
    Int8(Int8Weight),
    /// Unquantized.
    Float(FloatWeight),
}

impl Weight {
    /// Output features.
    pub fn rows(&self) -> usize {
        match self {
            Self::Int4(w) => w.rows,
            Self::Int8(w) => w.rows,
            Self::Float(w) => w.rows,
        }
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        match self {
            Self::Int4(w) => w.cols,
            Self::Int8(w) => w.cols,
            Self::Float(w) => w.cols,
        }
    }

    /// Bytes read from memory per full pass over the weight (codes, scales, offsets).
    pub fn bytes(&self) -> usize {
        match self {
            Self::Int4(w) => match w.x8.get() {
                Some(Some(x8)) => x8.bytes(),
                _ => {
                    w.data.len()
                        + w.scales.len() * scale_size(&w.scales)
                        + w.offsets.as_ref().map_or(0, Vec::len)
                }
            },
            Self::Int8(w) => {
                w.data.len()
                    + w.scales.len() * scale_size(&w.scales)
                    + w.zeros.as_ref().map_or(0, Vec::len)
            }
            Self::Float(w) => w.data.len(),
        }
    }

    /// Builds what the kernels of [`isa`] read besides the stored bytes (the interleaved copy
    /// of an int4 weight), so that the first product does not pay for it.
    pub fn prepare(&self) {
        if let Self::Int4(w) = self {
            if dispatch::x8_kernel(isa()).is_some() {
                w.interleaved();
            }
        }
    }

    /// `y[m, rows] = x[m, cols] · Wᵀ` for the activations in `input`.
    pub fn matmul(&self, input: &Input<'_>, y: &mut [f32]) {
        dispatch::matmul_with(dispatch::isa(), self, input, y)
    }
}

fn scale_size(s: &Scales) -> usize {
    match s {
        Scales::F32(_) => 4,
        Scales::F16(_) | Scales::Bf16(_) => 2,
    }
}

/// Activations quantized to 8 bits per block of [`QK`] values.
#[derive(Clone, Debug, Default)]
pub struct Q8Acts {
    /// Codes, `[m, cols]` row-major.
    pub q: Vec<i8>,
    /// Block scales `d = max|x| / 127`, `[m, cols / 32]`.
    pub d: Vec<f32>,
    /// `d · Σ q` per block, `[m, cols / 32]` (for zero-point corrections).
    pub sums: Vec<f32>,
}

/// The activations of one matmul: `m` rows of `cols` f32 values, plus their Q8 form when the
/// mode asks for it (prepared once and shared by every weight that reads the same input).
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// `[m, cols]` f32 activations.
    pub x: &'a [f32],
    /// Rows.
    pub m: usize,
    /// Columns.
    pub cols: usize,
    /// Mode the quantized kernels use.
    pub mode: ActMode,
    /// Q8 form (present when `mode == Q8` and `cols % 32 == 0`).
    pub q8: Option<Q8Acts>,
}

impl<'a> Input<'a> {
    /// Wraps `x` (`[m, cols]`), quantizing it when `mode` is `Q8`.
    pub fn new(x: &'a [f32], m: usize, cols: usize, mode: ActMode) -> Self {
        assert_eq!(x.len(), m * cols, "Input: x is not [{m}, {cols}]");
        let q8 = (mode == ActMode::Q8 && cols.is_multiple_of(QK)).then(|| quantize_q8(x, m, cols));
        Self {
            x,
            m,
            cols,
            mode,
            q8,
        }
    }
}

/// Panics unless `input` has `w`'s columns and `y` is `[input.m, w.rows()]` (a caller bug).
pub(crate) fn check_shapes(w: &Weight, input: &Input<'_>, y: &[f32]) {
    let rows = w.rows();
    assert_eq!(
        input.cols,
        w.cols(),
        "matmul: input has {} columns, weight {}",
        input.cols,
        w.cols()
    );
    assert_eq!(
        y.len(),
        input.m * rows,
        "matmul: y is not [{}, {rows}]",
        input.m
    );
}
