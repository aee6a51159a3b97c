//! `compress train-tokenizer --data F... --vocab-size N --out tokenizer.json`.

use anyhow::Result;

use crate::cli::TrainTokenizerArgs;

pub fn run(a: TrainTokenizerArgs) -> Result<()> {
    compress_core::tokenizer::train_bpe(&a.data, a.vocab_size, &a.out)?;
    let tok = compress_core::tokenizer::Tokenizer::from_file(&a.out)?;
    eprintln!("wrote {} ({} tokens)", a.out.display(), tok.vocab_size());
    Ok(())
}
