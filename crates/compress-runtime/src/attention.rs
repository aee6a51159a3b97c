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
///
/// One task takes all query heads of a key/value head, so each cached key and value is read
/// once for the group; with too few tasks for the threads (short batches on many cores) it
/// takes one query head.
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
    let heads = if ctx.len() * nkv >= 2 * rayon::current_num_threads() {
        group
    } else {
        1
    };
    let scale = (hd as f64).powf(-0.5) as f32;
    let simd = crate::kernels::isa() != crate::kernels::Isa::Scalar;
    out.par_chunks_mut(heads * hd)
        .zip(q.par_chunks(heads * hd))
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, (o, q))| {
            let (ti, h0) = (i * heads / nh, i * heads % nh);
            let task = Heads {
                kv,
                layer,
                ctx: ctx[ti],
                q,
                hd,
                g: h0 / group,
                scale,
            };
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: `isa()` is not scalar only on CPUs with AVX2 and FMA.
                return unsafe { task.attend_avx2(scores, o) };
            }
            let _ = simd;
            task.attend(scores, o);
        });
}

/// Consecutive query heads of one token that share key/value head `g`.
struct Heads<'a> {
    kv: &'a KvCache,
    layer: usize,
    ctx: TokenCtx<'a>,
    /// `[heads, hd]` queries.
    q: &'a [f32],
    hd: usize,
    g: usize,
    scale: f32,
}

impl Heads<'_> {
    /// [`Heads::attend`] compiled for AVX2 + FMA (the loops vectorize 8 wide).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn attend_avx2(&self, scores: &mut Vec<f32>, o: &mut [f32]) {
        self.attend(scores, o)
    }

    /// Per head: softmax over positions `0..=pos` of `q · k * scale`, then the weighted sum of
    /// values (`o`: `[heads, hd]`). Each key and value is read once for all the heads.
    #[inline(always)]
    fn attend(&self, scores: &mut Vec<f32>, o: &mut [f32]) {
        let (kv, layer, c, g, hd) = (self.kv, self.layer, self.ctx, self.g, self.hd);
        let (n, heads) = (c.pos + 1, self.q.len() / hd);
        scores.clear();
        scores.resize(heads * n + heads, 0.0);
        let (s, sums) = scores.split_at_mut(heads * n);
        for p in 0..n {
            let k = kv.key(layer, c.blocks[p / BLOCK_SIZE], p % BLOCK_SIZE, g);
            for (j, qh) in self.q.chunks_exact(hd).enumerate() {
                s[j * n + p] = dot(qh, k) * self.scale;
            }
        }
        for (sj, sum) in s.chunks_exact_mut(n).zip(sums.iter_mut()) {
            let max = sj.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            *sum = 0.0;
            for x in sj.iter_mut() {
                *x = (*x - max).exp();
                *sum += *x;
            }
        }
        o.fill(0.0);
        for p in 0..n {
            let v = kv.value(layer, c.blocks[p / BLOCK_SIZE], p % BLOCK_SIZE, g);
            for (j, oh) in o.chunks_exact_mut(hd).enumerate() {
                let w = s[j * n + p] / sums[j];
                oh.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
            }
        }
    }
}

#[inline(always)]
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
