//! Names and constants of the pack-quantized format, defined once for its modules and users.

/// `quant_method` of compressed-tensors checkpoints.
pub const QUANT_METHOD: &str = "compressed-tensors";
/// `format` of packed integer weights.
pub const FORMAT_NAME: &str = "pack-quantized";
/// compressed-tensors release whose layout is written (stored under `version`).
pub const CT_VERSION: &str = "0.15.0.1";
/// Top-level key (our extension) marking checkpoints with ragged last groups.
pub const RAGGED_GROUPS_KEY: &str = "compress_ragged_groups";
/// The only sparsity format handled: zeros stored in dense tensors.
pub const DENSE_FORMAT: &str = "dense";
/// Input columns per group of compressed-tensors' `W4A16` presets, and this project's default.
pub const DEFAULT_GROUP_SIZE: usize = 128;
