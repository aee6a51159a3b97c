//! The compressed-tensors `pack-quantized` format: integer weight-only
//! quantized Linear layers, as written by `compressed-tensors` 0.15 (the
//! PyPI release `transformers` 5 and vLLM load) for llm-compressor's
//! `W4A16`/`W8A16`-style schemes.
//!
//! # Tensors
//!
//! A Linear layer `P` with weight `W` of shape `[out, in]` (PyTorch layout)
//! quantized to `b` bits (`2..=8`) is stored as
//!
//! ```text
//! P.weight_packed      I32   [out, ceil(in / f)]        f = 32 / b (integer division)
//! P.weight_scale       float tensor: [1]  channel: [out, 1]  group: [out, ceil(in / G)]
//! P.weight_zero_point  asymmetric only; channel/group: I32 [ceil(out / f), n_groups]
//!                      (packed along dim 0); tensor: I8 [1] (not packed)
//! P.weight_shape       I64   [2] = [out, in]
//! ```
//!
//! and `P.weight` is absent. The scale has the model's dtype (F32, F16 or
//! BF16). Symmetric schemes store no zero point at all.
//!
//! # Packing (compressed-tensors 0.15 `pack_to_int32`)
//!
//! Packing is word-aligned: each `i32` word holds `f = 32 / b` values and
//! never straddles a word boundary. Along a packed row, column `j·f + k` sits
//! in word `j` at bits `k·b .. k·b + b − 1` (least significant first), stored
//! unsigned as `q + 2^(b−1)` (so `0 .. 2^b − 1`). A row whose length is not a
//! multiple of `f` is padded with stored zeros; the unused high bits
//! (`32 − f·b`) are zero. Zero points use the same scheme along dim 0: word
//! `[j, g]` holds rows `j·f .. j·f + f − 1` of column `g` ([`pack_cols`]).
//! For 3, 5, 6 and 7 bits this wastes 2, 2, 2 and 4 bits per word (10, 6, 5
//! and 4 values per word). compressed-tensors 0.20 and later pack 3/5/6/7-bit
//! values densely across word boundaries; that variant is not written here.
//! compressed-tensors 0.15 picks `pack-quantized` by itself only for 4 and
//! 8 bits (`can_compress`), but its `PackedQuantizationCompressor` packs and
//! unpacks any width up to 8 (the interop check in `tests/interop/` covers
//! 2..=8). Serving kernels (vLLM's WNA16) are expected to want 4 or 8 bits;
//! that is not checked here.
//!
//! # Dequantization
//!
//! With signed integers `q` in `[qmin, qmax] = [−2^(b−1), 2^(b−1) − 1]`:
//!
//! ```text
//! ŵ[r, c] = (q[r, c] − Z[r, g(c)]) · S[r, g(c)]      g(c) = floor(c / G)
//! ```
//!
//! where `Z = 0` for symmetric schemes; strategy `tensor` has one `S` (and
//! one `Z`), `channel` one per output row, `group` one per row and run of
//! `G` input columns. Loaders compute this product in the scale's dtype, so
//! with F16/BF16 scales they produce the exact f32 product
//! ([`QuantizedLinear::dequantize`]) rounded once to that dtype. Scales are
//! used exactly as stored: round them to the storage dtype
//! ([`round_to_dtype`]) before quantizing and before [`QuantizedLinear::to_tensors`],
//! which refuses scales that the storage dtype would change.
//!
//! # Ragged groups
//!
//! This crate also allows a ragged last group (`in` not a multiple of `G`;
//! scales `[out, ceil(in / G)]`, the last group shorter). compressed-tensors
//! 0.15 does not: compressing such a layer raises `ValueError: tensor column
//! shape must be divisble by the given group_size`, and its decompressor
//! infers `group_size = floor(in / n_groups)` from the scale shape, which
//! raises the same error for most ragged shapes and silently groups wrongly
//! for others (`in = 48, G = 32` decodes as groups of 24). A checkpoint with
//! ragged layers is therefore marked with the top-level key
//! [`RAGGED_GROUPS_KEY`] (`"compress_ragged_groups": true`) in its
//! `quantization_config`; compressed-tensors ignores unknown top-level keys,
//! so only files without ragged layers should be handed to other loaders.
//!
//! # `quantization_config`
//!
//! See [`QuantizationConfig`] for the `config.json` entry.

mod config;
mod consts;
mod json;
mod layer;
mod packing;
mod scheme;
mod sparsity;
pub(crate) mod tensor_io;

pub use config::{read_compression, QuantizationConfig};
pub use consts::{
    CT_VERSION, DEFAULT_GROUP_SIZE, DENSE_FORMAT, FORMAT_NAME, QUANT_METHOD, RAGGED_GROUPS_KEY,
};
pub use layer::{PackedLayerView, QuantizedLinear};
pub use packing::{
    code_max, code_min, code_offset, pack_cols, pack_factor, pack_rows, packed_len, unpack_cols,
    unpack_rows,
};
pub use sparsity::{parse_n_m, SparsityConfig};

use crate::error::{FormatError, Result};
use crate::safetensors::{Dtype, ModelFiles};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Granularity of the weight scales (compressed-tensors `strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantStrategy {
    /// One scale (and zero point) for the whole weight.
    Tensor,
    /// One scale per output row.
    Channel,
    /// One scale per output row and run of `group_size` input columns.
    Group,
}

impl QuantStrategy {
    /// All strategies.
    pub const ALL: [QuantStrategy; 3] = [Self::Tensor, Self::Channel, Self::Group];

    /// The JSON name: `"tensor"`, `"channel"` or `"group"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tensor => "tensor",
            Self::Channel => "channel",
            Self::Group => "group",
        }
    }

    /// Parses a JSON name (case-insensitive, as compressed-tensors does).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for QuantStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a layer's weights are quantized (the `weights` entry of a config group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WeightQuant {
    /// Bits per weight, `2..=8`.
    pub num_bits: u8,
    /// Whether the zero point is fixed at 0 (no `weight_zero_point` tensor).
    pub symmetric: bool,
    /// Scale granularity.
    pub strategy: QuantStrategy,
    /// Input columns per group; `Some(G > 0)` exactly when `strategy` is `Group`.
    pub group_size: Option<usize>,
}

impl WeightQuant {
    /// A group-wise scheme with `group_size` columns per group.
    pub fn group(num_bits: u8, symmetric: bool, group_size: usize) -> Self {
        WeightQuant {
            num_bits,
            symmetric,
            strategy: QuantStrategy::Group,
            group_size: Some(group_size),
        }
    }

    /// A per-output-channel scheme.
    pub fn channel(num_bits: u8, symmetric: bool) -> Self {
        WeightQuant {
            num_bits,
            symmetric,
            strategy: QuantStrategy::Channel,
            group_size: None,
        }
    }

    /// A per-tensor scheme.
    pub fn tensor(num_bits: u8, symmetric: bool) -> Self {
        WeightQuant {
            num_bits,
            symmetric,
            strategy: QuantStrategy::Tensor,
            group_size: None,
        }
    }

    /// Checks bits `2..=8` and that `group_size` is `Some(> 0)` exactly for `Group`.
    pub fn validate(&self) -> Result<()> {
        self.validate_at(Path::new("quantization_config"), "weights")
    }

    /// [`Self::validate`] with errors naming `path` and keys under `key_prefix`.
    pub(crate) fn validate_at(&self, path: &Path, key_prefix: &str) -> Result<()> {
        if !(2..=8).contains(&self.num_bits) {
            return Err(FormatError::invalid(
                path,
                format!("{key_prefix}.num_bits"),
                format!(
                    "pack-quantized weights need 2..=8 bits, got {}",
                    self.num_bits
                ),
            ));
        }
        let key = format!("{key_prefix}.group_size");
        match (self.strategy, self.group_size) {
            (QuantStrategy::Group, Some(g)) if g > 0 => Ok(()),
            (QuantStrategy::Group, Some(_)) => Err(FormatError::invalid(
                path,
                key,
                "strategy `group` needs group_size > 0, got 0",
            )),
            (QuantStrategy::Group, None) => Err(FormatError::invalid(
                path,
                key,
                "strategy `group` needs a group_size",
            )),
            (s, Some(g)) => Err(FormatError::invalid(
                path,
                key,
                format!("group_size {g} is only allowed with strategy `group`, not `{s}`"),
            )),
            (_, None) => Ok(()),
        }
    }

    /// Smallest quantized value, `−2^(b−1)` ([`code_min`]).
    pub fn qmin(&self) -> i32 {
        code_min(self.num_bits)
    }

    /// Largest quantized value, `2^(b−1) − 1` ([`code_max`]).
    pub fn qmax(&self) -> i32 {
        code_max(self.num_bits)
    }

    /// Scale columns per output row: 1 for tensor/channel, `ceil(in / G)` for group.
    pub fn num_groups(&self, in_features: usize) -> usize {
        match self.strategy {
            QuantStrategy::Tensor | QuantStrategy::Channel => 1,
            QuantStrategy::Group => in_features.div_ceil(self.group_len(in_features).max(1)),
        }
    }

    /// Input columns per group: `G` for group (the last may be shorter), `in` otherwise.
    pub fn group_len(&self, in_features: usize) -> usize {
        match (self.strategy, self.group_size) {
            (QuantStrategy::Group, Some(g)) => g,
            _ => in_features,
        }
    }

    /// Group of input column `col`: `floor(col / G)` for group, 0 otherwise.
    pub fn group_of(&self, col: usize) -> usize {
        match (self.strategy, self.group_size) {
            (QuantStrategy::Group, Some(g)) => col / g.max(1),
            _ => 0,
        }
    }

    /// Input columns of group `g` of a layer with `in_features` columns (the last may be short).
    pub fn group_range(&self, g: usize, in_features: usize) -> std::ops::Range<usize> {
        let len = self.group_len(in_features);
        let start = (g * len).min(in_features);
        start..(start + len).min(in_features)
    }

    /// Width of group `g`: `G`, except a ragged last group's `in − (n_groups − 1) · G`.
    pub fn group_width(&self, g: usize, in_features: usize) -> usize {
        self.group_range(g, in_features).len()
    }

    /// Whether a layer with `in_features` columns has a ragged last group.
    pub fn is_ragged(&self, in_features: usize) -> bool {
        self.strategy == QuantStrategy::Group
            && !in_features.is_multiple_of(self.group_len(in_features).max(1))
    }

    /// Shape of `weight_scale` (and of the unpacked zero points) for an `[out, in]` weight.
    pub fn scale_shape(&self, out_features: usize, in_features: usize) -> Vec<usize> {
        match self.strategy {
            QuantStrategy::Tensor => vec![1],
            QuantStrategy::Channel => vec![out_features, 1],
            QuantStrategy::Group => vec![out_features, self.num_groups(in_features)],
        }
    }

    /// Index into the flattened scales of the scale covering weight element `[r, c]`.
    pub fn scale_index(&self, r: usize, c: usize, in_features: usize) -> usize {
        match self.strategy {
            QuantStrategy::Tensor => 0,
            QuantStrategy::Channel => r,
            QuantStrategy::Group => r * self.num_groups(in_features) + self.group_of(c),
        }
    }
}

/// Rounds `values` in place to the nearest `dtype` value (F16/BF16 round-to-nearest-even).
///
/// F32 and F64 leave the values unchanged (f32 → f64 is exact). Use it on
/// scales before quantizing, so that the stored scales are the ones used.
/// Non-float dtypes are a caller bug (debug assertion); they leave the values unchanged.
pub fn round_to_dtype(values: &mut [f32], dtype: Dtype) {
    debug_assert!(
        dtype.is_float(),
        "round_to_dtype: {dtype} is not a float dtype"
    );
    match dtype {
        Dtype::F16 => values
            .iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32()),
        Dtype::BF16 => values
            .iter_mut()
            .for_each(|v| *v = half::bf16::from_f32(*v).to_f32()),
        _ => {}
    }
}

/// Whether `files` holds a packed layer at `prefix` (has `prefix.weight_packed`).
pub fn is_packed_layer(files: &ModelFiles, prefix: &str) -> bool {
    files.contains(&format!("{prefix}.weight_packed"))
}

/// Every tensor a packed layer at `prefix` may hold (`weight_zero_point` only when asymmetric).
pub fn packed_tensor_names(prefix: &str) -> [String; 4] {
    [
        "weight_packed",
        "weight_scale",
        "weight_shape",
        "weight_zero_point",
    ]
    .map(|s| format!("{prefix}.{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_groups_and_shapes() {
        let w4 = WeightQuant::group(4, true, 32);
        assert_eq!((w4.qmin(), w4.qmax()), (-8, 7));
        let w8 = WeightQuant::channel(8, false);
        assert_eq!((w8.qmin(), w8.qmax()), (-128, 127));
        assert_eq!(
            (
                WeightQuant::tensor(2, true).qmin(),
                WeightQuant::tensor(2, true).qmax()
            ),
            (-2, 1)
        );
        assert_eq!(w4.num_groups(64), 2);
        assert_eq!(w4.num_groups(65), 3);
        assert_eq!(w4.num_groups(16), 1);
        assert_eq!(w4.group_len(64), 32);
        assert!(w4.is_ragged(65) && !w4.is_ragged(64));
        assert_eq!(w8.num_groups(100), 1);
        assert_eq!(w8.group_len(100), 100);
        assert!(!w8.is_ragged(101));
        assert_eq!(w4.scale_shape(5, 65), vec![5, 3]);
        assert_eq!(w8.scale_shape(5, 65), vec![5, 1]);
        assert_eq!(WeightQuant::tensor(4, true).scale_shape(5, 65), vec![1]);
        assert_eq!(w4.scale_index(2, 64, 65), 2 * 3 + 2);
        assert_eq!(w8.scale_index(4, 64, 65), 4);
        assert_eq!(WeightQuant::tensor(4, false).scale_index(4, 64, 65), 0);
        assert_eq!(
            (w4.group_of(31), w4.group_of(32), w4.group_of(64)),
            (0, 1, 2)
        );
        assert_eq!(w8.group_of(99), 0);
        assert_eq!(w4.group_range(2, 65), 64..65);
        assert_eq!((w4.group_width(0, 65), w4.group_width(2, 65)), (32, 1));
        assert_eq!((w4.group_width(1, 64), w8.group_width(0, 100)), (32, 100));
        for (wq, inn) in [(w4, 65), (w4, 64), (w8, 100)] {
            let widths: usize = (0..wq.num_groups(inn))
                .map(|g| wq.group_width(g, inn))
                .sum();
            assert_eq!(widths, inn);
            for c in 0..inn {
                assert!(wq.group_range(wq.group_of(c), inn).contains(&c));
            }
        }
    }

    #[test]
    fn validate_rejects_bad_bits_and_group_sizes() {
        for b in 2..=8 {
            WeightQuant::group(b, true, 128).validate().unwrap();
            WeightQuant::channel(b, false).validate().unwrap();
            WeightQuant::tensor(b, false).validate().unwrap();
        }
        for b in [0, 1, 9, 16] {
            let e = WeightQuant::channel(b, true).validate().unwrap_err();
            let s = e.to_string();
            assert!(
                s.contains("num_bits") && s.contains(&format!("got {b}")),
                "{s}"
            );
        }
        let e = WeightQuant::group(4, true, 0)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("group_size") && e.contains("> 0"), "{e}");
        let mut w = WeightQuant::group(4, true, 8);
        w.group_size = None;
        assert!(w.validate().unwrap_err().to_string().contains("group_size"));
        let mut w = WeightQuant::channel(4, true);
        w.group_size = Some(8);
        let e = w.validate().unwrap_err().to_string();
        assert!(e.contains("only allowed with strategy `group`"), "{e}");
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in QuantStrategy::ALL {
            assert_eq!(QuantStrategy::from_name(s.name()), Some(s));
            let j = serde_json::to_value(s).unwrap();
            assert_eq!(j, serde_json::Value::from(s.name()));
            assert_eq!(serde_json::from_value::<QuantStrategy>(j).unwrap(), s);
        }
        assert_eq!(
            QuantStrategy::from_name("GROUP"),
            Some(QuantStrategy::Group)
        );
        assert_eq!(QuantStrategy::from_name("block"), None);
    }

    #[test]
    fn round_to_dtype_matches_half_crates() {
        let orig = [0.1f32, 1.0 / 3.0, 65504.0, 1e-8, -2.5e-3];
        let mut v = orig;
        round_to_dtype(&mut v, Dtype::F32);
        assert_eq!(v, orig);
        round_to_dtype(&mut v, Dtype::F64);
        assert_eq!(v, orig);
        round_to_dtype(&mut v, Dtype::BF16);
        for (a, b) in v.iter().zip(orig) {
            assert_eq!(*a, half::bf16::from_f32(b).to_f32());
        }
        assert_ne!(v[0], 0.1);
        let mut v = orig;
        round_to_dtype(&mut v, Dtype::F16);
        for (a, b) in v.iter().zip(orig) {
            assert_eq!(*a, half::f16::from_f32(b).to_f32());
        }
        // Idempotent.
        let again = v;
        round_to_dtype(&mut v, Dtype::F16);
        assert_eq!(v, again);
    }
}
