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
    let simd = crate::kernels::isa() != crate::kernels::Isa::Scalar;
    out.par_chunks_mut(hd)
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, o)| {
            let (ti, h) = (i / nh, i % nh);
            let head = Head {
                kv,
                layer,
                ctx: ctx[ti],
                q: &q[i * hd..(i + 1) * hd],
                g: h / group,
                scale,
            };
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: `isa()` is not scalar only on CPUs with AVX2 and FMA.
                return unsafe { head.attend_avx2(scores, o) };
            }
            let _ = simd;
            head.attend(scores, o);
        });
}

/// One query head of one token.
struct Head<'a> {
    kv: &'a KvCache,
    layer: usize,
    ctx: TokenCtx<'a>,
    q: &'a [f32],
    /// Its key/value head.
    g: usize,
    scale: f32,
}

impl Head<'_> {
    /// [`Head::attend`] compiled for AVX2 + FMA (the loops vectorize 8 wide).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn attend_avx2(&self, scores: &mut Vec<f32>, o: &mut [f32]) {
        self.attend(scores, o)
    }

    /// Softmax over positions `0..=pos` of `q · k * scale`, then the weighted sum of values.
    #[inline(always)]
    fn attend(&self, scores: &mut Vec<f32>, o: &mut [f32]) {
        let (kv, layer, c, g) = (self.kv, self.layer, self.ctx, self.g);
        scores.clear();
        let mut max = f32::NEG_INFINITY;
        for p in 0..=c.pos {
            let k = kv.key(layer, c.blocks[p / BLOCK_SIZE], p % BLOCK_SIZE, g);
            let s = dot(self.q, k) * self.scale;
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
