//! The paged KV cache: the block ([`block`]: size, id), block bookkeeping ([`blocks`]: block
//! tables, reference counts, copy-on-write, prefix cache) and the K/V storage the attention
//! reads ([`cache`]).

pub mod block;
pub mod blocks;
pub mod cache;
mod prefix;
#[cfg(test)]
mod tests;

pub use block::{BlockId, BLOCK_SIZE};
pub use blocks::{BlockManager, KvError, KvStats, SeqId};
pub use prefix::chain_hash;
