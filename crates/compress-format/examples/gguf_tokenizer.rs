//! Writes the `tokenizer.json` and `tokenizer_config.json` that GGUF import rebuilds from a
//! GGUF file's `tokenizer.ggml.*` (vocabulary-only files too) into a directory.
//! Usage: gguf_tokenizer FILE.gguf OUT_DIR (used by tests/interop/gguf_vocab.py).

use std::path::PathBuf;

use compress_format::gguf::{import::write_tokenizer, GgufFile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [file, out] = args.as_slice() else {
        return Err("usage: gguf_tokenizer FILE.gguf OUT_DIR".into());
    };
    std::fs::create_dir_all(out)?;
    match write_tokenizer(&GgufFile::open(file)?, out)? {
        Some(t) => println!(
            "{}{}",
            t.model,
            t.warning.map(|w| format!(" ({w})")).unwrap_or_default()
        ),
        None => return Err(format!("{}: no tokenizer.ggml.tokens", file.display()).into()),
    }
    Ok(())
}
