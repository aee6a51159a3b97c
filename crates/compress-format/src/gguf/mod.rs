//! GGUF, the single-file model format of llama.cpp (ggml), version 3.
//!
//! # File layout (all integers little-endian)
//!
//! ```text
//! u32  magic            "GGUF" (0x46554747)
//! u32  version          3
//! u64  tensor_count
//! u64  metadata_kv_count
//! metadata_kv_count × { string key; u32 value_type; value }
//! tensor_count × { string name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type; u64 offset }
//! zero padding to `general.alignment` (default 32)
//! tensor data: each tensor at data_start + offset, offsets multiples of the alignment
//! ```
//!
//! A `string` is `u64 len` + UTF-8 bytes (no terminator). Value types: `0 u8, 1 i8, 2 u16,
//! 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 string, 9 array, 10 u64, 11 i64, 12 f64`;
//! an array is `u32 element_type; u64 count; elements` (homogeneous). `ne` lists dimensions
//! innermost first: a PyTorch `[out, in]` weight has `ne = [in, out]`, row-major as before.
//!
//! # Tensor types written here ([`GgmlType`])
//!
//! ```text
//! F32  (0)  4 bytes per weight
//! F16  (1)  2 bytes per weight, IEEE half
//! Q4_0 (2)  blocks of 32 weights along ne[0]: { f16 d; u8 qs[16] } = 18 bytes;
//!           weight j < 16 is (qs[j] & 0xF) − 8, weight j ≥ 16 is (qs[j−16] >> 4) − 8, times d
//! Q8_0 (8)  blocks of 32 weights along ne[0]: { f16 d; i8 qs[32] } = 34 bytes; weight j is qs[j]·d
//! ```
//!
//! Quantizing from floats follows ggml's reference rows bit for bit ([`blocks`]): Q8_0 uses
//! `d = amax/127` and `roundf(x·(1/d))`; Q4_0 uses `d = max/−8` (the signed value of
//! largest magnitude) and `min(15, trunc(x·(1/d) + 8.5))`.
//!
//! # Modules
//!
//! * [`value`]: metadata values; [`blocks`]: Q8_0/Q4_0 block codecs; [`dequant`]: every
//!   block type read (Q4_1, Q5_0/1, Q2_K…Q6_K, BF16) back to f32;
//! * [`mod@write`]: streaming, atomic writer; [`read`]: memory-mapped reader;
//! * [`vocab`]: `tokenizer.json` → `tokenizer.ggml.*`; [`export`]: an HF Llama-family
//!   directory (float or pack-quantized) → a llama.cpp-loadable file (tensor names, shapes and
//!   the q/k permutation in `tensor_map`).

pub mod blocks;
pub mod dequant;
pub mod export;
pub mod import;
pub mod read;
mod tensor_map;
pub mod value;
pub mod vocab;
pub mod write;

pub use export::{export_gguf, ExportOptions, ExportReport, ExportType, TensorSource};
pub use import::{import_gguf, ImportOptions, ImportReport};
pub use read::GgufFile;
pub use value::{Value, ValueType};
pub use write::{write_gguf, TensorInfo};

/// `"GGUF"` read as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// The GGUF version written (and the only one read).
pub const VERSION: u32 = 3;
/// Default data alignment (`general.alignment` when absent).
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's quantization format version (`general.quantization_version`).
pub const QUANTIZATION_VERSION: u32 = 2;

/// The ggml tensor types this crate reads (all of them) and writes (F32, F16, Q4_0, Q8_0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit blocks of 32 with an f16 scale (4.5 bits per weight).
    Q4_0,
    /// 4-bit blocks of 32 with an f16 scale and min (5 bits per weight).
    Q4_1,
    /// 5-bit blocks of 32 with an f16 scale (5.5 bits per weight).
    Q5_0,
    /// 5-bit blocks of 32 with an f16 scale and min (6 bits per weight).
    Q5_1,
    /// 8-bit blocks of 32 with an f16 scale (8.5 bits per weight).
    Q8_0,
    /// 2-bit super-blocks of 256 (2.625 bits per weight).
    Q2_K,
    /// 3-bit super-blocks of 256 (3.4375 bits per weight).
    Q3_K,
    /// 4-bit super-blocks of 256 (4.5 bits per weight).
    Q4_K,
    /// 5-bit super-blocks of 256 (5.5 bits per weight).
    Q5_K,
    /// 6-bit super-blocks of 256 (6.5625 bits per weight).
    Q6_K,
}

/// Weights per k-quant super-block.
pub const QK_K: usize = 256;

impl GgmlType {
    /// Every type, in `ggml_type` order.
    pub const ALL: [Self; 13] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q2_K,
        Self::Q3_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::BF16,
    ];

    /// The `ggml_type` number stored in tensor infos.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q2_K => 10,
            Self::Q3_K => 11,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::BF16 => 30,
        }
    }

    /// Parses a `ggml_type` number (`None` for types this crate does not handle).
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's name, e.g. `q4_0`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
            Self::Q2_K => "q2_k",
            Self::Q3_K => "q3_k",
            Self::Q4_K => "q4_k",
            Self::Q5_K => "q5_k",
            Self::Q6_K => "q6_k",
        }
    }

    /// Weights per block (1 for float types).
    pub fn block_len(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => blocks::QK,
            Self::Q2_K | Self::Q3_K | Self::Q4_K | Self::Q5_K | Self::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => blocks::Q4_0_BYTES,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => blocks::Q8_0_BYTES,
            Self::Q2_K => 84,
            Self::Q3_K => 110,
            Self::Q4_K => 144,
            Self::Q5_K => 176,
            Self::Q6_K => 210,
        }
    }

    /// Bytes of a tensor with dims `ne` (innermost first), or `None` when `ne[0]` is not a
    /// multiple of the block length or the size overflows.
    pub fn tensor_bytes(self, ne: &[usize]) -> Option<usize> {
        let row = *ne.first()?;
        if row % self.block_len() != 0 {
            return None;
        }
        let rows = ne[1..].iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        (row / self.block_len())
            .checked_mul(self.block_bytes())?
            .checked_mul(rows)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rounds `n` up to a multiple of `align`.
pub(crate) fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}
