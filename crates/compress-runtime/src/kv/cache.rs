//! K/V storage: per layer, `[num_blocks, BLOCK_SIZE, kv_heads, head_dim]` f32 for keys and for
//! values. Sequences address it through block tables (position `p` lives in block
//! `table[p / BLOCK_SIZE]`, slot `p % BLOCK_SIZE`). The storage knows a model only through its
//! [`KvLayout`] (a loaded `Model` converts into one), so the KV cache does not depend on the
//! loader.

use super::{BlockId, BLOCK_SIZE};

/// The shape of a model's K/V: key/value heads per layer and the width of a head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Key/value heads per layer (layers may differ after head pruning).
    pub kv_heads: Vec<usize>,
    /// Values per head.
    pub head_dim: usize,
}

impl KvLayout {
    /// Bytes one block takes across all layers (f32 keys and values).
    pub fn bytes_per_block(&self) -> usize {
        let per_token: usize = self
            .kv_heads
            .iter()
            .map(|h| 2 * h * self.head_dim * 4)
            .sum();
        per_token * BLOCK_SIZE
    }
}

/// The K and V tensors of every layer, in blocks.
#[derive(Debug)]
pub struct KvCache {
    num_blocks: usize,
    head_dim: usize,
    /// Key/value heads per layer (layers may differ after head pruning).
    kv_heads: Vec<usize>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    /// Storage for `num_blocks` blocks of `layout` (or of a `&Model`, which converts).
    pub fn new(layout: impl Into<KvLayout>, num_blocks: usize) -> Self {
        let KvLayout { kv_heads, head_dim } = layout.into();
        let alloc = |h: &usize| vec![0f32; num_blocks * BLOCK_SIZE * h * head_dim];
        Self {
            num_blocks,
            head_dim,
            k: kv_heads.iter().map(alloc).collect(),
            v: kv_heads.iter().map(alloc).collect(),
            kv_heads,
        }
    }

    /// Bytes one block takes across all layers (keys and values) of `layout` (or a `&Model`).
    pub fn bytes_per_block(layout: impl Into<KvLayout>) -> usize {
        layout.into().bytes_per_block()
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn offset(&self, layer: usize, block: BlockId, slot: usize) -> usize {
        (block as usize * BLOCK_SIZE + slot) * self.kv_heads[layer] * self.head_dim
    }

    /// Stores the keys and values (`kv_heads * head_dim` each) of one token.
    pub fn write(&mut self, layer: usize, block: BlockId, slot: usize, k: &[f32], v: &[f32]) {
        let o = self.offset(layer, block, slot);
        let n = k.len();
        self.k[layer][o..o + n].copy_from_slice(k);
        self.v[layer][o..o + n].copy_from_slice(v);
    }

    /// Key of `head` at `(block, slot)`.
    #[inline]
    pub fn key(&self, layer: usize, block: BlockId, slot: usize, head: usize) -> &[f32] {
        let o = self.offset(layer, block, slot) + head * self.head_dim;
        &self.k[layer][o..o + self.head_dim]
    }

    /// Value of `head` at `(block, slot)`.
    #[inline]
    pub fn value(&self, layer: usize, block: BlockId, slot: usize, head: usize) -> &[f32] {
        let o = self.offset(layer, block, slot) + head * self.head_dim;
        &self.v[layer][o..o + self.head_dim]
    }

    /// Copies block `src` into `dst` in every layer (copy-on-write after a fork).
    pub fn copy_block(&mut self, src: BlockId, dst: BlockId) {
        for layer in 0..self.kv_heads.len() {
            let n = BLOCK_SIZE * self.kv_heads[layer] * self.head_dim;
            let (s, d) = (self.offset(layer, src, 0), self.offset(layer, dst, 0));
            self.k[layer].copy_within(s..s + n, d);
            self.v[layer].copy_within(s..s + n, d);
        }
    }
}
