//! The prefix cache of the block manager: full, computed blocks addressed by the hash of their
//! whole token prefix, and the LRU list of cached blocks no sequence holds (evictable).
//!
//! A block's hash is `chain_hash(parent block's hash, its 16 token ids)`, a hash chain, so equal
//! hashes mean equal whole prefixes up to hash collisions. Collisions never return wrong KV: each
//! entry stores its 16 tokens and a link to the entry it was computed after (the parent's block
//! id and registration generation), and a lookup accepts an entry only when its tokens equal the
//! prompt's and its parent link is the entry the lookup matched for the previous block. By
//! induction a hit chain then holds exactly the KV of the prompt's prefix, whatever the hashes.
//! A generation is fresh on every registration, so a link to a block that was evicted and reused
//! since no longer matches (its children become unreachable and age out of the LRU).

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use super::block::{BlockId, BLOCK_SIZE};

/// Hash the chain starts from (the "parent" of a prompt's first block).
pub const ROOT_HASH: u64 = 0;

/// Hash of a block: SipHash (std's `DefaultHasher`, fixed keys, so stable within a process)
/// over the parent block's hash and the block's token ids.
pub fn chain_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Identity of a registered entry: its block and the generation of that registration.
pub(crate) type Link = (BlockId, u64);

/// What the cache knows about one registered block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CacheEntry {
    /// Chain hash the block is registered under.
    pub hash: u64,
    /// Registration generation (unique per registration).
    pub gen: u64,
    /// Entry of the previous block of the prefix (`None` for a prompt's first block).
    pub parent: Option<Link>,
    /// The block's token ids, compared on lookup.
    pub tokens: [u32; BLOCK_SIZE],
    /// Position of the block in its sequence's table.
    pub depth: u32,
}

/// Progress of a sequence through the prefix cache's hash chain (its leading full blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chain {
    /// Leading blocks walked.
    pub blocks: usize,
    /// Chain hash of the last walked block.
    pub hash: u64,
    /// Entry holding the KV of the last walked block (the sequence's own block or an equal one).
    pub canon: Option<Link>,
    /// A block could not be registered (its hash is held by a different entry in use): the
    /// sequence registers no further blocks.
    pub broken: bool,
}

impl Chain {
    /// Before the first block.
    pub const ROOT: Chain = Chain {
        blocks: 0,
        hash: ROOT_HASH,
        canon: None,
        broken: false,
    };
}

/// LRU key: the time the block became free; ties evict deeper blocks first (as vLLM).
type EvictKey = (u64, Reverse<u32>, BlockId);

/// Cache map, per-block entries and the LRU of evictable (refcount 0) cached blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PrefixCache {
    map: HashMap<u64, BlockId>,
    entries: Vec<Option<CacheEntry>>,
    stamps: Vec<Option<u64>>,
    lru: BTreeSet<EvictKey>,
    next_gen: u64,
    hash_mask: u64,
}

impl PrefixCache {
    /// An empty cache over `num_blocks` blocks.
    pub fn new(num_blocks: usize) -> Self {
        Self {
            map: HashMap::new(),
            entries: vec![None; num_blocks],
            stamps: vec![None; num_blocks],
            lru: BTreeSet::new(),
            next_gen: 0,
            hash_mask: u64::MAX,
        }
    }

    /// Test hook: keep only the `mask` bits of every hash, to force collisions.
    #[cfg(test)]
    pub fn set_hash_mask(&mut self, mask: u64) {
        self.hash_mask = mask;
    }

    fn hash(&self, parent: u64, tokens: &[u32]) -> u64 {
        chain_hash(parent, tokens) & self.hash_mask
    }

    /// Hits of `prompt`: its full blocks in order up to the first miss, leaving at least one
    /// token to compute, and the chain state after them.
    pub fn lookup(&self, prompt: &[u32]) -> (Vec<BlockId>, Chain) {
        let mut chain = Chain::ROOT;
        let max_hits = prompt.len().saturating_sub(1) / BLOCK_SIZE;
        let mut hits = Vec::new();
        for tokens in prompt.chunks_exact(BLOCK_SIZE).take(max_hits) {
            let h = self.hash(chain.hash, tokens);
            let Some(link) = self.find(h, tokens, chain.canon) else {
                break;
            };
            hits.push(link.0);
            chain.blocks += 1;
            chain.hash = h;
            chain.canon = Some(link);
        }
        (hits, chain)
    }

    /// Registers the sequence's full blocks of `tokens` (its computed tokens; `table` its block
    /// table) that `chain` has not walked yet. `refcounts` tells which entries are idle.
    /// Returns the evictable blocks displaced by colliding registrations (now unregistered and
    /// no longer evictable: the caller puts them on the free list).
    pub fn extend_chain(
        &mut self,
        chain: &mut Chain,
        tokens: &[u32],
        table: &[BlockId],
        refcounts: &[u32],
    ) -> Vec<BlockId> {
        let mut displaced = Vec::new();
        while !chain.broken && chain.blocks < tokens.len() / BLOCK_SIZE {
            let i = chain.blocks;
            let toks = &tokens[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
            let h = self.hash(chain.hash, toks);
            let parent = chain.canon;
            chain.canon = self.register(table[i], h, toks, parent, i, refcounts, &mut displaced);
            chain.broken = chain.canon.is_none();
            chain.blocks += 1;
            chain.hash = h;
        }
        displaced
    }

    /// Registers block `b` (position `depth`, full and computed) under `hash`; returns the
    /// entry holding its KV (its own or an equal existing one, which is kept), or `None` if
    /// none can. A different entry under `hash` (collision, or computed after an evicted
    /// parent) is displaced if idle, else `b` stays unregistered.
    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        b: BlockId,
        hash: u64,
        tokens: &[u32],
        parent: Option<Link>,
        depth: usize,
        refcounts: &[u32],
        displaced: &mut Vec<BlockId>,
    ) -> Option<Link> {
        if let Some(e) = self.entry(b) {
            let ok = e.hash == hash && Self::matches(e, tokens, parent);
            return ok.then_some((b, e.gen));
        }
        if let Some(q) = self.holder(hash) {
            let e = self.entry(q).expect("map points at a registered block");
            if Self::matches(e, tokens, parent) {
                return Some((q, e.gen));
            }
            if refcounts[q as usize] != 0 {
                return None;
            }
            self.remove_evictable(q);
            self.remove(q);
            displaced.push(q);
        }
        Some(self.insert(b, hash, parent, tokens, depth))
    }

    /// Number of registered blocks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Number of evictable blocks (registered, refcount 0).
    pub fn num_evictable(&self) -> usize {
        self.lru.len()
    }

    /// The entry of block `b`, if registered.
    pub fn entry(&self, b: BlockId) -> Option<&CacheEntry> {
        self.entries[b as usize].as_ref()
    }

    /// The block registered under `hash`.
    pub fn holder(&self, hash: u64) -> Option<BlockId> {
        self.map.get(&hash).copied()
    }

    /// Whether `b` is in the evictable list.
    pub fn is_evictable(&self, b: BlockId) -> bool {
        self.stamps[b as usize].is_some()
    }

    /// Whether `entry` holds `tokens` computed after the entry `parent`.
    pub fn matches(entry: &CacheEntry, tokens: &[u32], parent: Option<Link>) -> bool {
        entry.tokens[..] == *tokens && entry.parent == parent
    }

    /// Lookup: the entry under `hash` if it holds `tokens` computed after `parent`.
    pub fn find(&self, hash: u64, tokens: &[u32], parent: Option<Link>) -> Option<Link> {
        let b = self.holder(hash)?;
        let e = self.entry(b).expect("map points at a registered block");
        Self::matches(e, tokens, parent).then_some((b, e.gen))
    }

    /// Registers unregistered block `b` under the free `hash`; returns its link.
    pub fn insert(
        &mut self,
        b: BlockId,
        hash: u64,
        parent: Option<Link>,
        tokens: &[u32],
        depth: usize,
    ) -> Link {
        debug_assert!(self.entries[b as usize].is_none() && !self.map.contains_key(&hash));
        let gen = self.next_gen;
        self.next_gen += 1;
        let mut toks = [0; BLOCK_SIZE];
        toks.copy_from_slice(tokens);
        self.entries[b as usize] = Some(CacheEntry {
            hash,
            gen,
            parent,
            tokens: toks,
            depth: depth as u32,
        });
        self.map.insert(hash, b);
        (b, gen)
    }

    fn key(&self, b: BlockId) -> Option<EvictKey> {
        let stamp = self.stamps[b as usize]?;
        let depth = self.entry(b).map_or(0, |e| e.depth);
        Some((stamp, Reverse(depth), b))
    }

    /// Puts registered block `b` (refcount now 0) at the young end of the LRU.
    pub fn push_evictable(&mut self, b: BlockId, stamp: u64) {
        debug_assert!(self.entry(b).is_some() && !self.is_evictable(b));
        self.stamps[b as usize] = Some(stamp);
        let key = self.key(b).expect("stamp just set");
        self.lru.insert(key);
    }

    /// Takes `b` out of the LRU (a lookup hit it); it stays registered.
    pub fn remove_evictable(&mut self, b: BlockId) {
        if let Some(key) = self.key(b) {
            self.lru.remove(&key);
            self.stamps[b as usize] = None;
        }
    }

    /// Unregisters `b` (which must not be evictable).
    pub fn remove(&mut self, b: BlockId) {
        debug_assert!(!self.is_evictable(b));
        if let Some(e) = self.entries[b as usize].take() {
            self.map.remove(&e.hash);
        }
    }

    /// Evicts the least recently freed block: out of the LRU and unregistered.
    pub fn pop_lru(&mut self) -> Option<BlockId> {
        let (_, _, b) = self.lru.pop_first()?;
        self.stamps[b as usize] = None;
        self.remove(b);
        Some(b)
    }

    /// Internal consistency: map and entries agree, LRU keys agree with the stamps.
    pub fn check(&self) -> Result<(), String> {
        for (&h, &b) in &self.map {
            match self.entry(b) {
                Some(e) if e.hash == h => {}
                Some(e) => {
                    return Err(format!(
                        "map {h:#x} -> block {b} whose hash is {:#x}",
                        e.hash
                    ))
                }
                None => return Err(format!("map {h:#x} -> unregistered block {b}")),
            }
        }
        let registered = self.entries.iter().filter(|e| e.is_some()).count();
        if registered != self.map.len() {
            return Err(format!(
                "{registered} entries but {} map keys",
                self.map.len()
            ));
        }
        let stamped = (0..self.stamps.len() as BlockId).filter(|&b| self.is_evictable(b));
        let mut n = 0;
        for b in stamped {
            n += 1;
            if self.entry(b).is_none() {
                return Err(format!("evictable block {b} is not registered"));
            }
            if !self.lru.contains(&self.key(b).expect("stamped")) {
                return Err(format!("evictable block {b} missing from the LRU set"));
            }
        }
        if n != self.lru.len() {
            return Err(format!(
                "{n} stamped blocks but LRU holds {}",
                self.lru.len()
            ));
        }
        Ok(())
    }
}
