//! Tests of the block manager: unit tests of each behaviour, and a property test that runs
//! random operation sequences against a shadow model (tokens, computed counts and the "KV"
//! each block slot holds, modelled as the token prefix it was computed from).

use std::collections::HashMap;

use proptest::prelude::*;

use super::prefix::ROOT_HASH;
use super::*;

/// `len` tokens that all differ from other `tag`s' tokens.
fn toks(tag: u32, len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| tag * 1000 + i).collect()
}

/// `seq`'s (tokens, blocks).
fn shape(m: &BlockManager, seq: SeqId) -> (usize, usize) {
    (
        m.num_tokens(seq).unwrap(),
        m.block_table(seq).unwrap().len(),
    )
}

#[test]
fn allocate_and_append_across_block_boundaries() {
    let mut m = BlockManager::new(8, false);
    assert_eq!(m.blocks_needed(&toks(1, 15)), 1);
    assert_eq!(m.allocate(1, &toks(1, 15)), Ok(0));
    assert_eq!((shape(&m, 1), m.num_free(), m.num_used()), ((15, 1), 7, 1));
    assert_eq!(m.blocks_needed_to_append(1, 1), 0);
    assert_eq!(m.append(1, &[7]), Ok(vec![]));
    assert_eq!(shape(&m, 1), (16, 1));
    assert_eq!(m.blocks_needed_to_append(1, 1), 1);
    assert_eq!(m.append(1, &[8]), Ok(vec![]));
    assert_eq!(shape(&m, 1), (17, 2));
    assert_eq!(m.blocks_needed_to_append(1, 20), 1); // 37 tokens: 3 blocks
    m.append(1, &toks(2, 20)).unwrap();
    assert_eq!(shape(&m, 1), (37, 3));
    assert_eq!(m.num_free(), 5);
    m.check_invariants().unwrap();
    assert_eq!(m.allocate(1, &[1]), Err(KvError::SeqExists(1)));
    assert_eq!(m.allocate(2, &[]), Err(KvError::EmptyPrompt));
    m.free(1).unwrap();
    assert_eq!((m.num_free(), m.num_used(), m.num_seqs()), (8, 0, 0));
    assert_eq!(m.free(1), Err(KvError::UnknownSeq(1)));
    m.check_invariants().unwrap();
}

#[test]
fn fork_then_append_copies_on_write_once_per_sharer() {
    let mut m = BlockManager::new(16, false);
    m.allocate(1, &toks(1, 20)).unwrap();
    let shared = m.block_table(1).unwrap().to_vec();
    m.fork(1, 2).unwrap();
    m.fork(1, 3).unwrap();
    assert_eq!(m.block_table(2).unwrap(), &shared[..]);
    assert_eq!((m.ref_count(shared[0]), m.ref_count(shared[1])), (3, 3));
    assert_eq!(m.num_tokens(3), Ok(20));
    assert_eq!(m.num_used(), 2);
    for (seq, last) in [(2, false), (1, false), (3, true)] {
        let need = m.blocks_needed_to_append(seq, 1);
        let copies = m.append(seq, &[99]).unwrap();
        let table = m.block_table(seq).unwrap();
        if last {
            // The last holder writes in place.
            assert_eq!((need, copies, table), (0, vec![], &shared[..]));
        } else {
            assert_eq!(need, 1);
            assert_eq!(copies, vec![(shared[1], table[1])]);
            assert_eq!(table[0], shared[0]);
            assert_ne!(table[1], shared[1]);
            assert_eq!(m.ref_count(table[1]), 1);
        }
        // Later appends of the same sequence write in place.
        assert_eq!(m.append(seq, &[5]), Ok(vec![]));
        m.check_invariants().unwrap();
    }
    assert_eq!(m.ref_count(shared[1]), 1);
    assert_eq!(m.ref_count(shared[0]), 3);
    assert_eq!(m.stats().cow_copies, 2);
    assert_eq!(m.num_used(), 4);
}

#[test]
fn prefix_hit_shares_full_computed_blocks() {
    let mut m = BlockManager::new(16, true);
    let p = toks(1, 40);
    assert_eq!(m.allocate(1, &p), Ok(0));
    // Not computed yet: nothing cached, a second prompt gets no hit.
    assert_eq!(m.num_cached(), 0);
    assert_eq!(m.blocks_needed(&p), 3);
    let err = m.mark_computed(1, 41);
    assert!(matches!(
        err,
        Err(KvError::BeyondTokens {
            n: 41,
            tokens: 40,
            ..
        })
    ));
    m.mark_computed(1, 40).unwrap();
    assert_eq!(m.num_cached(), 2); // the partial third block is not cached
    assert_eq!(m.blocks_needed(&p), 1);
    assert_eq!(m.allocate(2, &p), Ok(32));
    let (t1, t2) = (m.block_table(1).unwrap(), m.block_table(2).unwrap());
    assert_eq!(t1[..2], t2[..2]);
    assert_ne!(t1[2], t2[2]);
    let rc = |b| m.ref_count(b);
    assert_eq!((rc(t1[0]), rc(t1[1]), rc(t2[2])), (2, 2, 1));
    assert_eq!(m.num_computed(2), Ok(32));
    let s = m.stats();
    assert_eq!((s.lookups, s.lookup_tokens, s.hit_tokens), (2, 80, 32));
    // A prompt diverging in the second block hits the first only.
    let mut q = p.clone();
    q[20] = 7;
    assert_eq!(m.allocate(3, &q), Ok(16));
    // Caching off: never a hit.
    let mut off = BlockManager::new(16, false);
    off.allocate(1, &p).unwrap();
    off.mark_computed(1, 40).unwrap();
    assert_eq!((off.allocate(2, &p), off.num_cached()), (Ok(0), 0));
    m.check_invariants().unwrap();
}

#[test]
fn duplicate_blocks_keep_the_existing_entry_and_chain_through_it() {
    let mut m = BlockManager::new(16, true);
    let p = toks(1, 40);
    m.allocate(1, &p).unwrap();
    m.allocate(2, &p).unwrap(); // before seq 1 is computed: own blocks
    m.mark_computed(1, 40).unwrap();
    m.mark_computed(2, 40).unwrap();
    let (t1, t2) = (m.block_table(1).unwrap(), m.block_table(2).unwrap());
    let (t1, t2) = (t1.to_vec(), t2.to_vec());
    assert_eq!(m.num_cached(), 2); // seq 2's equal blocks are not registered again
                                   // Seq 2's continuation is cached after seq 1's entries, and a prompt hits all three.
    m.append(2, &toks(2, 9)).unwrap();
    m.mark_computed(2, 49).unwrap();
    assert_eq!(m.num_cached(), 3);
    m.free(2).unwrap(); // only seq 1's 3 blocks stay used
    assert_eq!((m.num_cached(), m.num_free()), (3, 13));
    let mut q = p.clone();
    q.extend(toks(2, 9));
    q.push(1);
    assert_eq!(m.allocate(3, &q), Ok(48));
    assert_eq!(m.block_table(3).unwrap()[..3], [t1[0], t1[1], t2[2]]);
    m.check_invariants().unwrap();
}

#[test]
fn fully_cached_prompt_leaves_its_last_block_to_compute() {
    let mut m = BlockManager::new(8, true);
    let p = toks(1, 32);
    m.allocate(1, &p).unwrap();
    m.mark_computed(1, 32).unwrap();
    assert_eq!(m.num_cached(), 2);
    assert_eq!(m.allocate(2, &p), Ok(16));
    let (t1, t2) = (m.block_table(1).unwrap(), m.block_table(2).unwrap());
    assert_eq!(t1[0], t2[0]);
    assert_ne!(t1[1], t2[1]);
    // After seq 1 is gone its cached blocks stay reusable: a 33-token prompt hits both.
    m.free(1).unwrap();
    assert_eq!(m.num_cached(), 2);
    let mut longer = p.clone();
    longer.push(5);
    assert_eq!(m.allocate(3, &longer), Ok(32));
    m.check_invariants().unwrap();
}

#[test]
fn eviction_takes_least_recently_freed_deepest_first() {
    let mut m = BlockManager::new(4, true);
    let (a, b) = (toks(1, 32), toks(2, 32));
    m.allocate(1, &a).unwrap();
    m.mark_computed(1, 32).unwrap();
    let ta = m.block_table(1).unwrap().to_vec();
    m.allocate(2, &b).unwrap();
    m.mark_computed(2, 32).unwrap();
    let tb = m.block_table(2).unwrap().to_vec();
    m.free(1).unwrap(); // a's blocks freed first: older
    m.free(2).unwrap();
    assert_eq!((m.num_free(), m.num_cached(), m.num_used()), (4, 4, 0));
    m.allocate(3, &toks(3, 16)).unwrap();
    assert_eq!(m.block_table(3).unwrap(), &[ta[1]]);
    m.allocate(4, &toks(4, 16)).unwrap();
    assert_eq!(m.block_table(4).unwrap(), &[ta[0]]);
    assert_eq!((m.stats().evictions, m.num_cached()), (2, 2));
    m.free(3).unwrap(); // uncached blocks: free list, not LRU
    m.free(4).unwrap();
    // a is gone from the cache: 0 hits, 3 blocks: the 2 free ones, then b's deeper block.
    let mut a33 = a.clone();
    a33.push(1);
    assert_eq!(m.allocate(5, &a33), Ok(0));
    assert_eq!(m.block_table(5).unwrap()[2], tb[1]);
    assert_eq!((m.stats().evictions, m.num_cached()), (3, 1));
    m.check_invariants().unwrap();
}

#[test]
fn hit_takes_block_out_of_the_lru() {
    let mut m = BlockManager::new(3, true);
    let a = toks(1, 17);
    m.allocate(1, &a).unwrap();
    m.mark_computed(1, 17).unwrap();
    let ta = m.block_table(1).unwrap().to_vec();
    m.free(1).unwrap();
    assert_eq!((m.num_free(), m.num_cached()), (3, 1));
    let mut b = a[..16].to_vec();
    b.extend([5, 6, 7]);
    assert_eq!(m.blocks_needed(&b), 2); // one fresh block and the evictable hit
    assert_eq!(m.allocate(2, &b), Ok(16));
    assert_eq!(m.block_table(2).unwrap()[0], ta[0]);
    assert_eq!((m.ref_count(ta[0]), m.num_free(), m.num_used()), (1, 1, 2));
    // The hit block is not evictable: a 2-block prompt cannot be admitted.
    let err = m.allocate(3, &toks(3, 20));
    assert_eq!(err, Err(KvError::OutOfBlocks { needed: 2, free: 1 }));
    m.check_invariants().unwrap();
}

#[test]
fn out_of_blocks_leaves_state_unchanged() {
    let mut m = BlockManager::new(4, true);
    m.allocate(1, &toks(1, 40)).unwrap();
    m.mark_computed(1, 40).unwrap();
    let before = m.clone();
    let err = m.allocate(2, &toks(2, 40));
    assert_eq!(err, Err(KvError::OutOfBlocks { needed: 3, free: 1 }));
    assert_eq!(m, before);
    assert_eq!(m.blocks_needed_to_append(1, 30), 2);
    let err = m.append(1, &toks(3, 30));
    assert_eq!(err, Err(KvError::OutOfBlocks { needed: 2, free: 1 }));
    assert_eq!(m, before);
    m.allocate(3, &toks(4, 3)).unwrap();
    m.fork(1, 4).unwrap();
    let before = m.clone();
    // Copy-on-write needs a block too.
    assert_eq!(m.blocks_needed_to_append(4, 1), 1);
    let err = Err(KvError::OutOfBlocks { needed: 1, free: 0 });
    assert_eq!(m.append(4, &[1]), err);
    assert_eq!(m, before);
    assert_eq!(m.append(9, &[1]), Err(KvError::UnknownSeq(9)));
    assert_eq!(m.mark_computed(9, 0), Err(KvError::UnknownSeq(9)));
    assert_eq!(m.fork(1, 3), Err(KvError::SeqExists(3)));
    assert_eq!(m, before);
    m.check_invariants().unwrap();
}

#[test]
fn waste_counts_shared_blocks_once() {
    let mut m = BlockManager::new(8, false);
    assert_eq!(m.waste(), 0.0);
    m.allocate(1, &toks(1, 20)).unwrap();
    assert_eq!(m.waste(), 12.0 / 32.0);
    m.fork(1, 2).unwrap();
    assert_eq!(m.waste(), 12.0 / 32.0);
    m.append(2, &[1]).unwrap(); // 16 + 4 (seq 1's copy) + 5 (seq 2's) in 3 blocks
    assert_eq!(m.waste(), 23.0 / 48.0);
    m.append(1, &toks(3, 12)).unwrap(); // seq 1's last block full
    assert_eq!(m.waste(), 11.0 / 48.0);
}

/// With a 2-bit hash, finds two first blocks in different slots and a second block whose
/// chain hash collides after either: the cache must not serve the entry computed after the
/// other first block.
#[test]
fn hash_collisions_never_return_wrong_kv() {
    let mask = 3;
    let h = |parent, t: &[u32]| chain_hash(parent, t) & mask;
    let block = |v: u32| vec![v; BLOCK_SIZE];
    let (p, q, t) = (1..)
        .flat_map(|q| (1..20).map(move |t| (0, q, t)))
        .find(|&(p, q, t)| {
            let (hp, hq) = (h(ROOT_HASH, &block(p)), h(ROOT_HASH, &block(q)));
            let (sp, sq) = (h(hp, &block(t)), h(hq, &block(t)));
            hp != hq && sp == sq && sp != hp && sp != hq
        })
        .unwrap();
    let mut m = BlockManager::new(16, true).with_hash_mask(mask);
    let prompt = |first: u32| [block(first), block(t), vec![9]].concat();
    m.allocate(1, &prompt(q)).unwrap();
    m.mark_computed(1, 33).unwrap();
    m.allocate(2, &prompt(p)).unwrap();
    m.mark_computed(2, 33).unwrap();
    assert_eq!(m.num_cached(), 3); // p's second block collides with q's: not registered
    assert_eq!(m.allocate(3, &prompt(p)), Ok(16));
    assert_eq!(m.allocate(4, &prompt(q)), Ok(32));
    // Once q's second block is evictable, p's displaces it and then hits.
    m.free(1).unwrap();
    m.free(4).unwrap();
    m.mark_computed(3, 33).unwrap();
    assert_eq!(m.allocate(5, &prompt(p)), Ok(32));
    assert_eq!(m.allocate(6, &prompt(q)), Ok(16));
    m.check_invariants().unwrap();
}

/// One operation of the property test (few sequence ids, so most ops hit live sequences).
#[derive(Clone, Debug)]
enum Op {
    /// `allocate(seq, prompt(blocks, tail))`
    Alloc(SeqId, Vec<u32>, Vec<u32>),
    /// `append(seq, tokens)`
    Append(SeqId, Vec<u32>),
    /// `fork(parent, child)`
    Fork(SeqId, SeqId),
    /// `mark_computed(seq, round(frac · tokens))`
    Mark(SeqId, f64),
    /// `free(seq)`
    Free(SeqId),
}

fn op() -> impl Strategy<Value = Op> {
    let seq = 0..6u64;
    let tokens = prop::collection::vec(0..4u32, 1..20);
    prop_oneof![
        3 => (seq.clone(), prop::collection::vec(0..3u32, 0..5), prop::collection::vec(0..4u32, 0..20))
            .prop_map(|(s, b, t)| Op::Alloc(s, b, t)),
        4 => (seq.clone(), tokens).prop_map(|(s, t)| Op::Append(s, t)),
        1 => (seq.clone(), seq.clone()).prop_map(|(p, c)| Op::Fork(p, c)),
        3 => (seq.clone(), 0.0..=1.0f64).prop_map(|(s, f)| Op::Mark(s, f)),
        2 => seq.prop_map(Op::Free),
    ]
}

/// A prompt of whole blocks drawn from 3 contents (so equal blocks with different prefixes are
/// common) and a tail (a prompt is never empty).
fn prompt(blocks: &[u32], tail: &[u32]) -> Vec<u32> {
    let body = blocks
        .iter()
        .flat_map(|&v| (0..BLOCK_SIZE as u32).map(move |i| 10 + v * 3 + i % 3));
    let mut p: Vec<u32> = body.chain(tail.iter().copied()).collect();
    if p.is_empty() {
        p.push(0);
    }
    p
}

/// Shadow model: each sequence's tokens and computed count, and each block slot's "KV" (the
/// token prefix it was computed from).
struct Model {
    seqs: HashMap<SeqId, (Vec<u32>, usize)>,
    kv: Vec<Vec<Option<Vec<u32>>>>,
}

impl Model {
    fn slot(&mut self, m: &BlockManager, seq: SeqId, pos: usize) -> &mut Option<Vec<u32>> {
        let b = m.block_table(seq).unwrap()[pos / BLOCK_SIZE];
        &mut self.kv[b as usize][pos % BLOCK_SIZE]
    }

    fn compute(&mut self, m: &BlockManager, seq: SeqId, n: usize) {
        let (tokens, computed) = self.seqs[&seq].clone();
        for pos in computed..n {
            *self.slot(m, seq, pos) = Some(tokens[..=pos].to_vec());
        }
        self.seqs.get_mut(&seq).unwrap().1 = computed.max(n);
    }
}

/// The error `op` must fail with, if any.
fn expected_error(m: &BlockManager, model: &Model, op: &Op) -> Option<KvError> {
    let known = |seq: &SeqId| model.seqs.contains_key(seq);
    let out = |needed, free| (needed > free).then_some(KvError::OutOfBlocks { needed, free });
    match op {
        Op::Alloc(seq, ..) if known(seq) => Some(KvError::SeqExists(*seq)),
        Op::Alloc(_, blocks, tail) => out(m.blocks_needed(&prompt(blocks, tail)), m.num_free()),
        Op::Fork(_, child) if known(child) => Some(KvError::SeqExists(*child)),
        Op::Append(seq, _) | Op::Fork(seq, _) | Op::Mark(seq, _) | Op::Free(seq) if !known(seq) => {
            Some(KvError::UnknownSeq(*seq))
        }
        Op::Append(seq, tokens) => out(m.blocks_needed_to_append(*seq, tokens.len()), m.num_free()),
        _ => None,
    }
}

/// Applies `op` to the manager and the model, checking what the op itself promises.
fn run(m: &mut BlockManager, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let before = m.clone();
    let expected = expected_error(m, model, op);
    // Allocate's computed count or mark's n, and append's copies.
    let result = match op {
        Op::Alloc(seq, blocks, tail) => {
            m.allocate(*seq, &prompt(blocks, tail)).map(|c| (c, vec![]))
        }
        Op::Append(seq, tokens) => m.append(*seq, tokens).map(|v| (0, v)),
        Op::Fork(parent, child) => m.fork(*parent, *child).map(|_| (0, vec![])),
        Op::Mark(seq, frac) => {
            let len = model.seqs.get(seq).map_or(0, |s| s.0.len());
            let n = (len as f64 * frac).round() as usize;
            m.mark_computed(*seq, n).map(|_| (n, vec![]))
        }
        Op::Free(seq) => m.free(*seq).map(|_| (0, vec![])),
    };
    if let Some(e) = expected {
        prop_assert_eq!(result, Err(e));
        prop_assert_eq!(m, &before, "a failed call changed the manager");
        return Ok(());
    }
    let (n, copies) = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
    let freed = before.num_free() - m.num_free().min(before.num_free());
    match op {
        Op::Alloc(seq, blocks, tail) => {
            let p = prompt(blocks, tail);
            prop_assert_eq!(freed, before.blocks_needed(&p));
            prop_assert!(n.is_multiple_of(BLOCK_SIZE) && n < p.len());
            model.seqs.insert(*seq, (p, n));
        }
        Op::Append(seq, tokens) => {
            prop_assert_eq!(freed, before.blocks_needed_to_append(*seq, tokens.len()));
            let old_len = model.seqs[seq].0.len();
            let (old, new) = (
                before.block_table(*seq).unwrap(),
                m.block_table(*seq).unwrap(),
            );
            let k = old_len / BLOCK_SIZE;
            if k < old.len() && old[k] != new[k] {
                // Copy-on-write of the shared partial last block: the model copies its KV.
                prop_assert!(!old_len.is_multiple_of(BLOCK_SIZE) && before.ref_count(old[k]) > 1);
                prop_assert_eq!(copies, vec![(old[k], new[k])]);
                model.kv[new[k] as usize] = model.kv[old[k] as usize].clone();
            } else {
                prop_assert_eq!(copies, vec![]);
            }
            prop_assert_eq!(&new[..k], &old[..k]);
            model.seqs.get_mut(seq).unwrap().0.extend_from_slice(tokens);
            // The blocks this append writes are held by this sequence alone.
            for pos in old_len..old_len + tokens.len() {
                prop_assert_eq!(m.ref_count(new[pos / BLOCK_SIZE]), 1);
            }
        }
        Op::Fork(parent, child) => {
            prop_assert_eq!(
                m.block_table(*child).unwrap(),
                m.block_table(*parent).unwrap()
            );
            let s = model.seqs[parent].clone();
            model.seqs.insert(*child, s);
        }
        Op::Mark(seq, _) => {
            prop_assert_eq!(m.num_free(), before.num_free());
            model.compute(m, *seq, n);
        }
        Op::Free(seq) => {
            let table = before.block_table(*seq).unwrap();
            let released = table.iter().filter(|&&b| before.ref_count(b) == 1).count();
            prop_assert_eq!(m.num_free(), before.num_free() + released);
            model.seqs.remove(seq);
        }
    }
    Ok(())
}

fn check(m: &BlockManager, model: &Model) -> Result<(), TestCaseError> {
    if let Err(e) = m.check_invariants() {
        return Err(TestCaseError::fail(e));
    }
    prop_assert_eq!(m.num_used() + m.num_free(), m.num_blocks());
    prop_assert_eq!(m.num_seqs(), model.seqs.len());
    let mut refs = vec![0; m.num_blocks()];
    for (&seq, (tokens, computed)) in &model.seqs {
        prop_assert_eq!(m.num_tokens(seq), Ok(tokens.len()));
        prop_assert_eq!(m.num_computed(seq), Ok(*computed));
        let table = m.block_table(seq).unwrap();
        prop_assert_eq!(table.len(), tokens.len().div_ceil(BLOCK_SIZE));
        for &b in table {
            refs[b as usize] += 1;
        }
        // Every computed slot still holds the KV of exactly this sequence's prefix.
        for pos in 0..*computed {
            let kv = &model.kv[table[pos / BLOCK_SIZE] as usize][pos % BLOCK_SIZE];
            prop_assert_eq!(
                kv.as_deref(),
                Some(&tokens[..=pos]),
                "seq {} pos {}",
                seq,
                pos
            );
        }
    }
    for (b, &r) in refs.iter().enumerate() {
        prop_assert_eq!(m.ref_count(b as BlockId), r, "block {}", b);
    }
    let w = m.waste();
    prop_assert!((0.0..1.0).contains(&w));
    Ok(())
}

fn run_all(mut m: BlockManager, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model {
        seqs: HashMap::new(),
        kv: vec![vec![None; BLOCK_SIZE]; m.num_blocks()],
    };
    for op in ops {
        run(&mut m, &mut model, op)?;
        check(&m, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_operations_keep_invariants(
        num_blocks in 8..64usize,
        caching in any::<bool>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run_all(BlockManager::new(num_blocks, caching), &ops)?;
    }

    #[test]
    fn random_operations_with_colliding_hashes_keep_kv_right(
        num_blocks in 8..64usize,
        mask in prop::sample::select(vec![0u64, 1, 3, 7]),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run_all(BlockManager::new(num_blocks, true).with_hash_mask(mask), &ops)?;
    }
}
