//! Compression stages. Each stage is a folder: `mod.rs` holds the stage (config, lifecycle),
//! `math.rs` the pure functions it is built on.

pub mod distill;
pub mod moe;
pub mod prune;
pub mod quantize;
