//! Paged attention equals contiguous attention: scattered block tables, chunked prefill across
//! block boundaries, a forked sequence after copy-on-write, and a prefix-cache hit all give the
//! logits of one contiguous pass.

use std::path::Path;

use compress_runtime::forward::{forward, Chunk, Logits};
use compress_runtime::kernels::ActMode;
use compress_runtime::kv::cache::KvCache;
use compress_runtime::kv::{BlockId, BlockManager, BLOCK_SIZE};
use compress_runtime::Model;

const TOL: f32 = 1e-5;

fn demo() -> Model {
    Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo")).unwrap()
}

fn tokens(n: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 53 + salt * 11) % 3900) as u32 + 7)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every position's logits in one chunk over blocks 0, 1, 2, …
fn contiguous(model: &Model, ids: &[u32]) -> Vec<f32> {
    let blocks: Vec<BlockId> = (0..ids.len().div_ceil(BLOCK_SIZE) as u32).collect();
    let mut kv = KvCache::new(model, blocks.len());
    forward(
        model,
        &[Chunk {
            tokens: ids,
            start: 0,
            blocks: &blocks,
            logits: Logits::All,
        }],
        &mut kv,
        ActMode::F32,
    )
}

/// Runs `ids[start..]` in chunks of `step` tokens through `table`; returns their logits.
fn chunked(
    model: &Model,
    kv: &mut KvCache,
    ids: &[u32],
    start: usize,
    step: usize,
    table: &[BlockId],
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < ids.len() {
        let end = (pos + step).min(ids.len());
        let c = Chunk {
            tokens: &ids[pos..end],
            start: pos,
            blocks: table,
            logits: Logits::All,
        };
        out.extend(forward(model, &[c], kv, ActMode::F32));
        pos = end;
    }
    out
}

#[test]
fn scattered_blocks_and_chunks_across_boundaries_match_contiguous() {
    let model = demo();
    let ids = tokens(75, 1);
    let want = contiguous(&model, &ids);
    // Blocks in a shuffled order, chunks of 7 tokens that straddle block boundaries.
    let table: Vec<BlockId> = vec![9, 2, 7, 0, 5];
    let mut kv = KvCache::new(&model, 10);
    let got = chunked(&model, &mut kv, &ids, 0, 7, &table);
    let d = max_diff(&got, &want);
    assert!(d < TOL, "paged chunked vs contiguous: {d}");
}

#[test]
fn batched_sequences_match_their_own_passes() {
    let model = demo();
    let (a, b) = (tokens(40, 2), tokens(23, 3));
    let (ta, tb): (Vec<BlockId>, Vec<BlockId>) = (vec![4, 1, 6], vec![0, 3]);
    let mut kv = KvCache::new(&model, 8);
    let both = forward(
        &model,
        &[
            Chunk {
                tokens: &a,
                start: 0,
                blocks: &ta,
                logits: Logits::All,
            },
            Chunk {
                tokens: &b,
                start: 0,
                blocks: &tb,
                logits: Logits::All,
            },
        ],
        &mut kv,
        ActMode::F32,
    );
    let v = model.config.vocab_size;
    assert!(max_diff(&both[..40 * v], &contiguous(&model, &a)) < TOL);
    assert!(max_diff(&both[40 * v..], &contiguous(&model, &b)) < TOL);
}

#[test]
fn fork_with_copy_on_write_and_prefix_hit_match_contiguous() {
    let model = demo();
    let mut bm = BlockManager::new(16, true);
    let mut kv = KvCache::new(&model, 16);
    // Parent: 37 tokens (2 full blocks + 5 in a shared partial block).
    let parent = tokens(37, 4);
    bm.allocate(1, &parent).unwrap();
    chunked(&model, &mut kv, &parent, 0, 37, bm.block_table(1).unwrap());
    bm.mark_computed(1, 37).unwrap();
    bm.fork(1, 2).unwrap();
    // Each continues with its own 20 tokens; the first write to the shared block copies it.
    let mut seqs = Vec::new();
    for (sid, salt) in [(1u64, 5usize), (2, 6)] {
        let extra = tokens(20, salt);
        let mut full = parent.clone();
        full.extend(&extra);
        for (src, dst) in bm.append(sid, &extra).unwrap() {
            kv.copy_block(src, dst);
        }
        seqs.push((sid, full));
    }
    for (sid, full) in &seqs {
        let got = chunked(&model, &mut kv, full, 37, 6, bm.block_table(*sid).unwrap());
        let v = model.config.vocab_size;
        let d = max_diff(&got, &contiguous(&model, full)[37 * v..]);
        assert!(d < TOL, "seq {sid} after fork: {d}");
        bm.mark_computed(*sid, full.len()).unwrap();
    }
    assert!(bm.stats().cow_copies >= 1);
    // A new sequence sharing the parent's first 32 tokens reuses 2 cached blocks.
    let mut fresh = parent[..32].to_vec();
    fresh.extend(tokens(9, 7));
    let cached = bm.allocate(3, &fresh).unwrap();
    assert_eq!(cached, 32);
    let got = chunked(
        &model,
        &mut kv,
        &fresh,
        cached,
        4,
        bm.block_table(3).unwrap(),
    );
    let v = model.config.vocab_size;
    let d = max_diff(&got, &contiguous(&model, &fresh)[32 * v..]);
    assert!(d < TOL, "prefix-cache hit: {d}");
}
