//! Paged attention: each query token attends to positions `0..=pos` of its own sequence,
//! reading keys and values through the sequence's block table.

use rayon::prelude::*;

use crate::kv::cache::KvCache;
use crate::kv::{BlockId, BLOCK_SIZE};

/// Where one query token sits: its position and its sequence's block table.
#[derive(Clone, Copy, Debug)]
pub struct TokenCtx<'a> {
    /// Position in the sequence.
    pub pos: usize,
    /// The sequence's block table.
    pub blocks: &'a [BlockId],
}

/// Causal softmax attention of `q` (`[t, nh, hd]`, rotated) against the cached K/V of layer
/// `layer`; writes `[t, nh, hd]` into `out`. Query head `h` reads key/value head
/// `h / (nh / nkv)` (grouped-query attention).
#[allow(clippy::too_many_arguments)]
pub fn attend(
    kv: &KvCache,
    layer: usize,
    q: &[f32],
    ctx: &[TokenCtx<'_>],
    nh: usize,
    nkv: usize,
    hd: usize,
    out: &mut [f32],
) {
    let group = nh / nkv;
    let scale = (hd as f64).powf(-0.5) as f32;
    out.par_chunks_mut(hd)
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, o)| {
            let (ti, h) = (i / nh, i % nh);
            let c = ctx[ti];
            let qh = &q[i * hd..(i + 1) * hd];
            let g = h / group;
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for p in 0..=c.pos {
                let k = kv.key(layer, c.blocks[p / BLOCK_SIZE], p % BLOCK_SIZE, g);
                let s = dot(qh, k) * scale;
                max = max.max(s);
                scores.push(s);
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            o.fill(0.0);
            for (p, &w) in scores.iter().enumerate() {
                let v = kv.value(layer, c.blocks[p / BLOCK_SIZE], p % BLOCK_SIZE, g);
                let w = w / sum;
                o.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
            }
        });
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the compiler vectorizes the loop.
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}
