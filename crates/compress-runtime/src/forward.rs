//! The transformer forward pass over a batch of sequence chunks that share one pass over the
//! weights: every linear runs once on all the batch's tokens (prefill chunks and decode tokens
//! alike), attention reads each sequence's K/V through its block table.

use crate::attention::{attend, TokenCtx};
use crate::kernels::{ActMode, Input};
use crate::kv::cache::KvCache;
use crate::kv::{BlockId, BLOCK_SIZE};
use crate::linear::linear;
use crate::loader::{Mlp, Model};

/// Which logits a chunk wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (a prefill chunk that does not end the prompt).
    None,
    /// The last token's.
    Last,
    /// Every token's (evaluation).
    All,
}

/// Consecutive tokens of one sequence to run, at positions `start..start + tokens.len()`.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// Token ids.
    pub tokens: &'a [u32],
    /// Position of `tokens[0]` (the number of tokens before it whose K/V are in the cache).
    pub start: usize,
    /// The sequence's block table; it must cover every position up to the chunk's end.
    pub blocks: &'a [BlockId],
    /// Logits wanted.
    pub logits: Logits,
}

/// Runs `chunks` through the model, writing their K/V into `kv`; returns the wanted logits,
/// `[rows, vocab]` row-major, in chunk order.
pub fn forward(model: &Model, chunks: &[Chunk<'_>], kv: &mut KvCache, mode: ActMode) -> Vec<f32> {
    let cfg = &model.config;
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let ctx: Vec<TokenCtx<'_>> = chunks
        .iter()
        .flat_map(|c| {
            (0..c.tokens.len()).map(move |i| TokenCtx {
                pos: c.start + i,
                blocks: c.blocks,
            })
        })
        .collect();
    let t = ctx.len();
    for c in chunks {
        let end = c.start + c.tokens.len();
        assert!(
            c.blocks.len() * BLOCK_SIZE >= end,
            "forward: block table too short for position {end}"
        );
    }
    let mut x = vec![0f32; t * h];
    for (row, &tok) in x
        .chunks_exact_mut(h)
        .zip(chunks.iter().flat_map(|c| c.tokens))
    {
        model.embed.row_into(tok as usize, row);
    }
    let (cos, sin) = rope_tables(&cfg.inv_freq, &ctx);
    let mut xn = vec![0f32; t * h];
    for (li, layer) in model.layers.iter().enumerate() {
        let (nh, nkv) = (layer.num_heads, layer.num_kv_heads);
        rms_norm(&x, &layer.input_norm, cfg.rms_norm_eps, &mut xn);
        let input = Input::new(&xn, t, h, mode);
        let mut q = linear(&layer.q, &input);
        let mut k = linear(&layer.k, &input);
        let v = linear(&layer.v, &input);
        apply_rope(&mut q, nh, hd, &cos, &sin);
        apply_rope(&mut k, nkv, hd, &cos, &sin);
        let kvw = nkv * hd;
        for (i, c) in ctx.iter().enumerate() {
            let (b, s) = (c.blocks[c.pos / BLOCK_SIZE], c.pos % BLOCK_SIZE);
            kv.write(
                li,
                b,
                s,
                &k[i * kvw..(i + 1) * kvw],
                &v[i * kvw..(i + 1) * kvw],
            );
        }
        let mut att = vec![0f32; t * nh * hd];
        attend(kv, li, &q, &ctx, nh, nkv, hd, &mut att);
        let o = linear(&layer.o, &Input::new(&att, t, nh * hd, mode));
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

        rms_norm(&x, &layer.post_norm, cfg.rms_norm_eps, &mut xn);
        match &layer.mlp {
            Mlp::Dense(ffn) => {
                let d = ffn.forward(&xn, t, h, mode);
                x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
            }
            Mlp::Moe(moe) => moe.forward_add(&xn, t, h, mode, &mut x),
        }
    }
    // Final norm and head only for the rows whose logits are wanted.
    let mut rows = Vec::new();
    let mut base = 0;
    for c in chunks {
        let n = c.tokens.len();
        match c.logits {
            Logits::None => {}
            Logits::Last => rows.push(base + n - 1),
            Logits::All => rows.extend(base..base + n),
        }
        base += n;
    }
    if rows.is_empty() {
        return Vec::new();
    }
    let sel: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * h..(r + 1) * h].iter().copied())
        .collect();
    let mut normed = vec![0f32; sel.len()];
    rms_norm(&sel, &model.norm, cfg.rms_norm_eps, &mut normed);
    // The head runs on f32 activations: its logits feed sampling directly.
    let input = Input::new(&normed, rows.len(), h, ActMode::F32);
    let mut logits = vec![0f32; rows.len() * cfg.vocab_size];
    model.lm_head.matmul(&input, &mut logits);
    logits
}

/// Logits of every position of `ids` (`[len, vocab]`), one sequence in a fresh cache: scoring
/// a text without the engine.
pub fn sequence_logits(model: &Model, ids: &[u32], mode: ActMode) -> Vec<f32> {
    let blocks: Vec<BlockId> = (0..ids.len().div_ceil(BLOCK_SIZE) as BlockId).collect();
    let mut kv = KvCache::new(model, blocks.len());
    let chunk = Chunk {
        tokens: ids,
        start: 0,
        blocks: &blocks,
        logits: Logits::All,
    };
    forward(model, &[chunk], &mut kv, mode)
}

/// HF `LlamaRMSNorm`: `w · x / sqrt(mean(x²) + eps)` per row.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let h = w.len();
    for (xr, or) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let r = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * r * g;
        }
    }
}

/// `cos`/`sin` of every token's angles, `[t, head_dim / 2]` each, as transformers computes them
/// (angle in f32, trigonometry in f64).
fn rope_tables(inv_freq: &[f32], ctx: &[TokenCtx<'_>]) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(ctx.len() * inv_freq.len());
    let mut sin = Vec::with_capacity(ctx.len() * inv_freq.len());
    for c in ctx {
        for &f in inv_freq {
            let angle = f64::from(c.pos as f32 * f);
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// Rotate-half RoPE in place on `x` `[t, heads, head_dim]`.
fn apply_rope(x: &mut [f32], heads: usize, hd: usize, cos: &[f32], sin: &[f32]) {
    let half = hd / 2;
    for (ti, row) in x.chunks_exact_mut(heads * hd).enumerate() {
        let (c, s) = (
            &cos[ti * half..(ti + 1) * half],
            &sin[ti * half..(ti + 1) * half],
        );
        for head in row.chunks_exact_mut(hd) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * c[i] - x2 * s[i];
                b[i] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}
