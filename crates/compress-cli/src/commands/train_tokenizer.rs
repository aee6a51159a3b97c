//! `compress train-tokenizer --data F... --vocab-size N --out tokenizer.json`.

use anyhow::{Context, Result};

use crate::cli::TrainTokenizerArgs;

pub fn run(a: TrainTokenizerArgs) -> Result<()> {
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    compress_core::tokenizer::train_bpe(&a.data, a.vocab_size, &a.out)?;
    let tok = compress_core::tokenizer::Tokenizer::from_file(&a.out)?;
    eprintln!("wrote {} ({} tokens)", a.out.display(), tok.vocab_size());
    Ok(())
}
