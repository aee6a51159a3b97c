//! The paged KV cache: block bookkeeping and the K/V storage the attention reads.

pub mod cache;

/// Tokens per KV block.
pub const BLOCK_SIZE: usize = 16;
/// Index of a physical KV block.
pub type BlockId = u32;
