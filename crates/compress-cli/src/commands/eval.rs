//! `compress eval --model M --data F [--reference R] [--max-seqs N] [--seq-len L] [--context N] [--logits-out F.npy] [--json]`.

use anyhow::{Context, Result};
use compress_core::data::{chunk, load_documents_up_to};
use compress_core::eval::evaluate;
use compress_core::tokenizer::Tokenizer;

use crate::cli::{Common, EvalArgs};

pub fn run(a: EvalArgs, common: &Common) -> Result<()> {
    let device = super::device(common)?;
    let mut loaded = super::load(&a.model, &device)?;
    if let Some(k) = a.top_k.top_k {
        compress_core::stages::moe::set_top_k(&mut loaded.model, k)?;
    }
    let cfg = &loaded.model.config;
    let tokenizer = Tokenizer::from_model_dir(&a.model)?;
    let seq_len = a.seq_len.unwrap_or(256.min(cfg.max_position_embeddings));
    // With --max-seqs only that many windows are read (a huge file is not tokenized whole).
    let budget = a.max_seqs.map(|n| n.saturating_mul(seq_len));
    let docs = load_documents_up_to(&a.data, tokenizer.as_ref(), cfg.vocab_size, budget)?;
    if seq_len < 2 {
        anyhow::bail!("--seq-len {seq_len}: must be at least 2");
    }
    if a.context + 2 > seq_len {
        anyhow::bail!(
            "--context {} leaves nothing to score in windows of --seq-len {seq_len}",
            a.context
        );
    }
    // With a context prefix, only full windows are scored (as llama-perplexity does).
    let min_len = if a.context > 0 { seq_len } else { 2 };
    let mut seqs = chunk(&docs, seq_len, min_len);
    if let Some(n) = a.max_seqs {
        if n == 0 {
            anyhow::bail!("--max-seqs must be > 0");
        }
        seqs.truncate(n);
    }
    let reference = match &a.reference {
        Some(r) => Some(super::load(r, &device)?),
        None => None,
    };
    let mut logits = Vec::new();
    let report = evaluate(
        &loaded.model,
        reference.as_ref().map(|r| &r.model),
        &seqs,
        a.batch_size,
        a.context,
        a.logits_out.as_ref().map(|_| &mut logits),
    )?;
    if let Some(path) = &a.logits_out {
        let vocab = cfg.vocab_size;
        compress_format::npy::write_f32(path, &[logits.len() / vocab, vocab], &logits)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        return super::print_json(&report);
    }
    println!(
        "tokens {}  sequences {}  nll {:.4}  ppl {:.3}",
        report.tokens, report.sequences, report.nll, report.ppl
    );
    if let (Some(kld), Some(top1)) = (report.kld, report.top1_agree) {
        println!("mean KL {kld:.6}  top-1 agreement {:.2}%", top1 * 100.0);
    }
    if common.verbose {
        println!("{:.1} tokens/s", report.tokens_per_s);
    }
    Ok(())
}
