//! Paged KV cache: block bookkeeping ([`blocks`]) with a prefix cache.

pub mod blocks;
mod prefix;
#[cfg(test)]
mod tests;

pub use blocks::{BlockId, BlockManager, KvError, KvStats, SeqId, BLOCK_SIZE};
pub use prefix::chain_hash;
