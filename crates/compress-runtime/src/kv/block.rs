//! The KV block itself: its size in tokens and the id of a physical block, shared by the block
//! manager ([`super::blocks`]), the prefix cache and the K/V storage ([`super::cache`]).

/// Tokens per KV block.
pub const BLOCK_SIZE: usize = 16;

/// Index of a physical KV block.
pub type BlockId = u32;
