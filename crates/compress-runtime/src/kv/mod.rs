//! The paged KV cache: block bookkeeping ([`blocks`]: block tables, reference counts,
//! copy-on-write, prefix cache) and the K/V storage the attention reads ([`cache`]).

pub mod blocks;
pub mod cache;
mod prefix;
#[cfg(test)]
mod tests;

pub use blocks::{BlockId, BlockManager, KvError, KvStats, SeqId, BLOCK_SIZE};
pub use prefix::chain_hash;
