//! Evaluation: negative log-likelihood and perplexity on token data, and against a reference
//! model the mean KL divergence KL(p_ref ‖ q_model) per token and top-1 agreement, the
//! measures llama.cpp's perplexity tool reports for quantized models.

use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::model::{batch_tensor, LlamaModel};
use crate::tensor_util::{scalar_f64, to_vec_f32};

/// What an evaluation measured.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Number of predicted tokens scored.
    pub tokens: usize,
    /// Number of sequences.
    pub sequences: usize,
    /// Mean negative log-likelihood per token (nats).
    pub nll: f64,
    /// Perplexity, exp(nll).
    pub ppl: f64,
    /// Mean KL(p_ref ‖ q_model) per token, with a reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kld: Option<f64>,
    /// Fraction of tokens whose argmax matches the reference's, with a reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_agree: Option<f64>,
    /// Evaluated tokens per second (model forward passes only).
    pub tokens_per_s: f64,
}

/// Evaluates `model` on `seqs`, in batches of equal-length rows.
///
/// The first `context` predictions of each sequence are not scored (they only give the
/// later tokens context): token `t` is scored for `t > context`. `context = len / 2` over
/// windows of `len` tokens is llama.cpp's `llama-perplexity` protocol. Sequences need at
/// least `context + 2` tokens. With `logits_out`, the first sequence's logits
/// `[len - 1, vocab]` (all positions) are copied there.
pub fn evaluate(
    model: &LlamaModel,
    reference: Option<&LlamaModel>,
    seqs: &[Vec<u32>],
    batch_size: usize,
    context: usize,
    mut logits_out: Option<&mut Vec<f32>>,
) -> Result<EvalReport> {
    let seqs: Vec<&Vec<u32>> = seqs.iter().filter(|s| s.len() >= context + 2).collect();
    if seqs.is_empty() {
        return Err(CoreError::Invalid(format!(
            "no sequence of at least {} tokens to evaluate",
            context + 2
        )));
    }
    if let Some(r) = reference {
        if r.config.vocab_size != model.config.vocab_size {
            let (theirs, ours) = (r.config.vocab_size, model.config.vocab_size);
            let msg = format!("has vocab size {theirs}, the model {ours}");
            return Err(CoreError::missing("reference", msg));
        }
    }
    let device = model.embed_tokens.weight.val().device();
    let (mut nll_sum, mut kld_sum, mut agree, mut tokens) = (0.0f64, 0.0f64, 0usize, 0usize);
    let mut model_secs = 0.0;
    let mut i = 0;
    while i < seqs.len() {
        let len = seqs[i].len();
        let mut j = i;
        while j < seqs.len() && j - i < batch_size.max(1) && seqs[j].len() == len {
            j += 1;
        }
        let rows: Vec<Vec<u32>> = seqs[i..j].iter().map(|s| s.to_vec()).collect();
        let b = rows.len();
        let input: Vec<Vec<u32>> = rows.iter().map(|r| r[..len - 1].to_vec()).collect();
        let target: Vec<Vec<u32>> = rows.iter().map(|r| r[1..].to_vec()).collect();
        let t0 = Instant::now();
        let logits = model.forward(batch_tensor(&input, &device));
        let scored = len - 1 - context;
        let logp = log_softmax(logits.clone(), 2).narrow(1, context, scored);
        let targets: Tensor<3, Int> = batch_tensor(&target, &device)
            .narrow(1, context, scored)
            .unsqueeze_dim(2);
        let picked = logp.clone().gather(2, targets);
        nll_sum -= scalar_f64(picked.sum());
        model_secs += t0.elapsed().as_secs_f64();
        if i == 0 {
            if let Some(out) = logits_out.as_deref_mut() {
                let v = logits.dims()[2];
                *out = to_vec_f32(logits.clone().narrow(0, 0, 1).reshape([len - 1, v]));
            }
        }
        if let Some(r) = reference {
            let ref_logits = r.forward(batch_tensor(&input, &device));
            let ref_logp = log_softmax(ref_logits, 2).narrow(1, context, scored);
            let kl = ref_logp.clone().exp() * (ref_logp.clone() - logp.clone());
            kld_sum += scalar_f64(kl.sum());
            let same = logp.argmax(2).equal(ref_logp.argmax(2));
            agree += scalar_f64(same.int().sum().float()) as usize;
        }
        tokens += b * scored;
        i = j;
    }
    let nll = nll_sum / tokens as f64;
    Ok(EvalReport {
        tokens,
        sequences: seqs.len(),
        nll,
        ppl: nll.exp(),
        kld: reference.map(|_| kld_sum / tokens as f64),
        top1_agree: reference.map(|_| agree as f64 / tokens as f64),
        tokens_per_s: tokens as f64 / model_secs.max(1e-9),
    })
}
