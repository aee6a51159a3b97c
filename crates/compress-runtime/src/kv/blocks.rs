//! The block manager of the paged KV cache (vLLM's design): pure bookkeeping of which physical
//! KV blocks each sequence uses, with reference counts (forks share blocks, copy-on-write on the
//! first write of a shared partial block) and an optional prefix cache (full, computed blocks
//! reused by later prompts with the same prefix; evicted least recently freed first).
//!
//! Every block is in exactly one state: *used* (refcount > 0, in some sequence's table, maybe
//! also registered in the prefix cache), *free* (refcount 0, not cached, on the free list) or
//! *evictable* (refcount 0, cached, on the LRU list). Allocation takes free blocks first, then
//! evicts the least recently freed evictable block.

use std::collections::{HashMap, VecDeque};

/// The block size and id, re-exported from their home [`super::block`] (these paths are kept).
pub use super::block::{BlockId, BLOCK_SIZE};
use super::prefix::{Chain, PrefixCache};

/// Identifier of a sequence (a request, or one branch of a forked request).
pub type SeqId = u64;

/// Errors of the block manager. A failed call changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Not enough allocatable blocks (free + evictable) for the request.
    #[error("out of KV blocks: {needed} needed, {free} free")]
    OutOfBlocks {
        /// Blocks the call would take from the allocatable pool.
        needed: usize,
        /// Blocks allocatable now.
        free: usize,
    },
    /// No sequence has this id.
    #[error("unknown sequence {0}")]
    UnknownSeq(SeqId),
    /// A sequence with this id already exists.
    #[error("sequence {0} already exists")]
    SeqExists(SeqId),
    /// `allocate` was given no prompt tokens.
    #[error("empty prompt")]
    EmptyPrompt,
    /// `mark_computed` was given more tokens than the sequence holds.
    #[error("sequence {seq} holds {tokens} tokens, cannot mark {n} computed")]
    BeyondTokens {
        /// The sequence.
        seq: SeqId,
        /// Tokens asked to be marked computed.
        n: usize,
        /// Tokens the sequence holds.
        tokens: usize,
    },
}

/// Counters of the block manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvStats {
    /// Prefix-cache lookups (successful `allocate` calls with prefix caching on).
    pub lookups: u64,
    /// Prompt tokens looked up.
    pub lookup_tokens: u64,
    /// Prompt tokens whose KV came from the prefix cache.
    pub hit_tokens: u64,
    /// Cached blocks evicted (for reuse, or displaced by a colliding registration).
    pub evictions: u64,
    /// Copy-on-write block copies handed to the KV storage.
    pub cow_copies: u64,
}

/// One sequence: its tokens, block table, computed count and cache registration progress.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seq {
    tokens: Vec<u32>,
    table: Vec<BlockId>,
    computed: usize,
    chain: Chain,
}

fn blocks_for(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_SIZE)
}

/// Allocates KV blocks to sequences (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockManager {
    refcounts: Vec<u32>,
    free: VecDeque<BlockId>,
    used: usize,
    cache: PrefixCache,
    seqs: HashMap<SeqId, Seq>,
    prefix_caching: bool,
    clock: u64,
    stats: KvStats,
}

impl BlockManager {
    /// A manager of `num_blocks` blocks, all free; `prefix_caching` turns the prefix cache on.
    pub fn new(num_blocks: usize, prefix_caching: bool) -> Self {
        assert!(num_blocks <= BlockId::MAX as usize, "too many blocks");
        Self {
            refcounts: vec![0; num_blocks],
            free: (0..num_blocks as BlockId).collect(),
            used: 0,
            cache: PrefixCache::new(num_blocks),
            seqs: HashMap::new(),
            prefix_caching,
            clock: 0,
            stats: KvStats::default(),
        }
    }

    /// Test hook: keep only the `mask` bits of every hash, to force collisions.
    #[cfg(test)]
    pub(crate) fn with_hash_mask(mut self, mask: u64) -> Self {
        self.cache.set_hash_mask(mask);
        self
    }

    /// Total number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.refcounts.len()
    }

    /// Blocks allocatable now: truly free plus evictable cached blocks (refcount 0).
    pub fn num_free(&self) -> usize {
        self.free.len() + self.cache.num_evictable()
    }

    /// Blocks with refcount > 0.
    pub fn num_used(&self) -> usize {
        self.used
    }

    /// Blocks currently registered in the prefix cache (any refcount).
    pub fn num_cached(&self) -> usize {
        self.cache.len()
    }

    /// Number of live sequences.
    pub fn num_seqs(&self) -> usize {
        self.seqs.len()
    }

    /// Number of (sequence, table position) references to `block` (0 when free or evictable).
    /// Panics if `block >= num_blocks()`.
    pub fn ref_count(&self, block: BlockId) -> usize {
        self.refcounts[block as usize] as usize
    }

    /// Counters: prefix-cache hit tokens, lookups, evictions, copy-on-write copies.
    pub fn stats(&self) -> KvStats {
        self.stats
    }

    /// Prefix-cache hits of `prompt` (none with caching off) and the chain state after them.
    fn lookup(&self, prompt: &[u32]) -> (Vec<BlockId>, Chain) {
        if self.prefix_caching {
            self.cache.lookup(prompt)
        } else {
            (Vec::new(), Chain::ROOT)
        }
    }

    fn seq(&self, seq: SeqId) -> Result<&Seq, KvError> {
        self.seqs.get(&seq).ok_or(KvError::UnknownSeq(seq))
    }

    /// Blocks needed to admit a new sequence with this prompt now (after prefix-cache hits):
    /// the fresh blocks plus the hit blocks that are evictable now (a hit takes them out of the
    /// allocatable pool). `allocate` succeeds exactly when this is at most `num_free()`, and
    /// `num_free()` drops by this much.
    pub fn blocks_needed(&self, prompt: &[u32]) -> usize {
        let (hits, _) = self.lookup(prompt);
        let idle_hits = hits.iter().filter(|&&b| self.refcounts[b as usize] == 0);
        blocks_for(prompt.len()) - hits.len() + idle_hits.count()
    }

    /// Registers sequence `seq` with prompt tokens `prompt`; allocates blocks for all of them,
    /// reusing prefix-cached full blocks whose hash chain (and stored tokens) match. Returns the
    /// number of prompt tokens whose KV is already computed (a multiple of 16, always
    /// `< prompt.len()` so at least the last token is computed to produce logits).
    /// All-or-nothing: on error nothing changes.
    pub fn allocate(&mut self, seq: SeqId, prompt: &[u32]) -> Result<usize, KvError> {
        if self.seqs.contains_key(&seq) {
            return Err(KvError::SeqExists(seq));
        }
        if prompt.is_empty() {
            return Err(KvError::EmptyPrompt);
        }
        let needed = self.blocks_needed(prompt);
        if needed > self.num_free() {
            return Err(KvError::OutOfBlocks {
                needed,
                free: self.num_free(),
            });
        }
        let (hits, chain) = self.lookup(prompt);
        let mut table = Vec::with_capacity(blocks_for(prompt.len()));
        for &b in &hits {
            self.acquire(b);
            table.push(b);
        }
        while table.len() < blocks_for(prompt.len()) {
            table.push(self.take_free());
        }
        let computed = hits.len() * BLOCK_SIZE;
        if self.prefix_caching {
            self.stats.lookups += 1;
            self.stats.lookup_tokens += prompt.len() as u64;
            self.stats.hit_tokens += computed as u64;
        }
        let s = Seq {
            tokens: prompt.to_vec(),
            table,
            computed,
            chain,
        };
        self.seqs.insert(seq, s);
        Ok(computed)
    }

    /// Blocks `append(seq, n tokens)` would take from `num_free()` now, including a
    /// copy-on-write block. 0 for an unknown sequence (whose `append` fails with `UnknownSeq`).
    pub fn blocks_needed_to_append(&self, seq: SeqId, n: usize) -> usize {
        match self.seqs.get(&seq) {
            Some(s) if n > 0 => {
                let cur = s.tokens.len();
                let fresh = blocks_for(cur + n) - blocks_for(cur);
                fresh + usize::from(self.needs_cow(s))
            }
            _ => 0,
        }
    }

    /// Whether writing the next token of `s` needs a copy of its (shared, partial) last block.
    fn needs_cow(&self, s: &Seq) -> bool {
        !s.tokens.len().is_multiple_of(BLOCK_SIZE)
            && s.table
                .last()
                .is_some_and(|&b| self.refcounts[b as usize] > 1)
    }

    /// Appends `tokens` to `seq`'s token list (e.g. one sampled token), allocating new blocks as
    /// needed. If the sequence's last block is shared (refcount > 1, after a fork) and will be
    /// written, copy-on-write: a fresh block replaces it in the table and the old one loses a
    /// reference; returns the `(src, dst)` block copies the KV storage must perform before
    /// writing. All-or-nothing on error.
    pub fn append(
        &mut self,
        seq: SeqId,
        tokens: &[u32],
    ) -> Result<Vec<(BlockId, BlockId)>, KvError> {
        let s = self.seq(seq)?;
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let cow = self.needs_cow(s);
        let fresh = blocks_for(s.tokens.len() + tokens.len()) - s.table.len();
        let needed = fresh + usize::from(cow);
        if needed > self.num_free() {
            return Err(KvError::OutOfBlocks {
                needed,
                free: self.num_free(),
            });
        }
        let mut copies = Vec::new();
        let mut new_blocks: Vec<BlockId> = (0..needed).map(|_| self.take_free()).collect();
        let s = self.seqs.get_mut(&seq).expect("checked above");
        if cow {
            let dst = new_blocks.remove(0);
            let src = std::mem::replace(s.table.last_mut().expect("partial block"), dst);
            self.refcounts[src as usize] -= 1; // was > 1: still used
            copies.push((src, dst));
            self.stats.cow_copies += 1;
        }
        s.table.extend(new_blocks);
        s.tokens.extend_from_slice(tokens);
        Ok(copies)
    }

    /// `child` shares all of `parent`'s blocks (refcount +1 each), its tokens and its computed
    /// count.
    pub fn fork(&mut self, parent: SeqId, child: SeqId) -> Result<(), KvError> {
        if self.seqs.contains_key(&child) {
            return Err(KvError::SeqExists(child));
        }
        let s = self.seq(parent)?.clone();
        for &b in &s.table {
            self.refcounts[b as usize] += 1;
        }
        self.seqs.insert(child, s);
        Ok(())
    }

    /// Drops `seq` at once: refcounts −1; blocks reaching 0 go to the free list, or, if they are
    /// registered in the prefix cache, to the LRU list of evictable cached blocks.
    pub fn free(&mut self, seq: SeqId) -> Result<(), KvError> {
        let s = self.seqs.remove(&seq).ok_or(KvError::UnknownSeq(seq))?;
        self.clock += 1;
        for b in s.table {
            self.release(b);
        }
        Ok(())
    }

    /// Tells the manager the KV of `seq`'s first `n` tokens is computed (a smaller `n` than
    /// before is a no-op). With prefix caching on, every fully covered block is registered in
    /// the cache under its chain hash, in order; a block whose hash another entry holds is not
    /// registered (an equal entry stays canonical; a different one, i.e. a collision or a stale
    /// entry, is displaced if evictable, else registration of the sequence stops there).
    pub fn mark_computed(&mut self, seq: SeqId, n: usize) -> Result<(), KvError> {
        let s = self.seq(seq)?;
        if n > s.tokens.len() {
            return Err(KvError::BeyondTokens {
                seq,
                n,
                tokens: s.tokens.len(),
            });
        }
        if n <= s.computed {
            return Ok(());
        }
        let mut s = self.seqs.remove(&seq).expect("checked above");
        s.computed = n;
        if self.prefix_caching {
            let (s_tokens, s_table) = (&s.tokens[..n], &s.table[..]);
            let displaced =
                self.cache
                    .extend_chain(&mut s.chain, s_tokens, s_table, &self.refcounts);
            self.stats.evictions += displaced.len() as u64;
            self.free.extend(displaced);
        }
        self.seqs.insert(seq, s);
        Ok(())
    }

    /// Adds a reference to `b` (a prefix hit); an evictable block leaves the LRU.
    fn acquire(&mut self, b: BlockId) {
        if self.refcounts[b as usize] == 0 {
            self.cache.remove_evictable(b);
            self.used += 1;
        }
        self.refcounts[b as usize] += 1;
    }

    /// Drops a reference to `b`; at 0 it goes to the LRU if cached, else to the free list.
    fn release(&mut self, b: BlockId) {
        let rc = &mut self.refcounts[b as usize];
        *rc = rc.checked_sub(1).expect("block released more than held");
        if *rc == 0 {
            self.used -= 1;
            if self.cache.entry(b).is_some() {
                self.cache.push_evictable(b, self.clock);
            } else {
                self.free.push_back(b);
            }
        }
    }

    /// Takes a block with refcount 0 (free list first, else evicting the LRU cached block) and
    /// gives it refcount 1. The caller has checked `num_free() > 0`.
    fn take_free(&mut self) -> BlockId {
        let b = match self.free.pop_front() {
            Some(b) => b,
            None => {
                self.stats.evictions += 1;
                self.cache.pop_lru().expect("caller checked num_free")
            }
        };
        self.refcounts[b as usize] = 1;
        self.used += 1;
        b
    }

    /// `seq`'s block table: block `i` holds tokens `16 i .. 16 (i + 1)`.
    pub fn block_table(&self, seq: SeqId) -> Result<&[BlockId], KvError> {
        Ok(&self.seq(seq)?.table)
    }

    /// Number of tokens of `seq`.
    pub fn num_tokens(&self, seq: SeqId) -> Result<usize, KvError> {
        Ok(self.seq(seq)?.tokens.len())
    }

    /// Number of leading tokens of `seq` whose KV is computed.
    pub fn num_computed(&self, seq: SeqId) -> Result<usize, KvError> {
        Ok(self.seq(seq)?.computed)
    }

    /// KV waste: allocated token slots not holding a token / allocated slots (shared blocks
    /// counted once). 0 when nothing is allocated.
    pub fn waste(&self) -> f64 {
        let mut fill = vec![0usize; self.num_blocks()];
        for s in self.seqs.values() {
            for (i, &b) in s.table.iter().enumerate() {
                let held = (s.tokens.len() - i * BLOCK_SIZE).min(BLOCK_SIZE);
                fill[b as usize] = fill[b as usize].max(held);
            }
        }
        let slots = self.used * BLOCK_SIZE;
        if slots == 0 {
            return 0.0;
        }
        (slots - fill.iter().sum::<usize>()) as f64 / slots as f64
    }

    /// Checks every internal invariant (for tests): each block is in exactly one of used,
    /// free list, evictable (so used + free + evictable = total); refcounts equal the number of
    /// (sequence, table position) references; the cache map, entries and LRU agree; each table
    /// has `ceil(tokens / 16)` blocks; each cached block in a table holds that table's tokens.
    /// Returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.cache.check()?;
        let n = self.num_blocks();
        let mut refs = vec![0u32; n];
        for (&id, s) in &self.seqs {
            if s.table.len() != blocks_for(s.tokens.len()) {
                let (t, k) = (s.tokens.len(), s.table.len());
                return Err(format!("seq {id}: {t} tokens in {k} blocks"));
            }
            if s.computed > s.tokens.len() || s.chain.blocks > s.computed / BLOCK_SIZE {
                return Err(format!("seq {id}: computed/chain beyond tokens"));
            }
            for (i, &b) in s.table.iter().enumerate() {
                refs[b as usize] += 1;
                if let Some(e) = self.cache.entry(b) {
                    let toks = s.tokens.get(i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE);
                    if toks != Some(&e.tokens[..]) || e.depth as usize != i {
                        return Err(format!("seq {id}: cached block {b} at {i} disagrees"));
                    }
                }
            }
        }
        let mut on_free = vec![false; n];
        for &b in &self.free {
            if std::mem::replace(&mut on_free[b as usize], true) {
                return Err(format!("block {b} twice on the free list"));
            }
        }
        let mut used = 0;
        for b in 0..n {
            let id = b as BlockId;
            let (rc, cached, lru) = (
                self.refcounts[b],
                self.cache.entry(id).is_some(),
                self.cache.is_evictable(id),
            );
            if rc != refs[b] {
                return Err(format!("block {b}: refcount {rc}, {} references", refs[b]));
            }
            used += usize::from(rc > 0);
            let states = usize::from(rc > 0) + usize::from(on_free[b]) + usize::from(lru);
            if states != 1 {
                return Err(format!(
                    "block {b}: rc {rc}, free {}, lru {lru}",
                    on_free[b]
                ));
            }
            if on_free[b] && cached {
                return Err(format!("block {b} on the free list but cached"));
            }
            if rc == 0 && !on_free[b] && !cached {
                return Err(format!("block {b} lost"));
            }
        }
        if used != self.used {
            return Err(format!("used counter {} but {used} blocks used", self.used));
        }
        if self.used + self.free.len() + self.cache.num_evictable() != n {
            return Err("used + free + evictable != total".into());
        }
        Ok(())
    }
}
