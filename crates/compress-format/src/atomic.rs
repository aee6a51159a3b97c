//! Atomic file writes and tokenizer-file copying.
//!
//! A file is never written in place: the bytes go to a hidden temporary file
//! `.{name}.tmp-{pid}-{n}` in the destination directory, which is flushed to
//! disk (`fsync`) and then renamed over the destination. A crash or error
//! therefore leaves either the old file or the complete new one, never a
//! truncated file. On error the temporary file is removed.

use crate::error::{FormatError, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tokenizer and generation files copied by [`copy_tokenizer_files`], in copy order.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
];

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Returns the temporary path used while writing `path`.
fn temp_path_for(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        FormatError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        n
    );
    Ok(path.with_file_name(tmp_name))
}

/// Flushes the file at `path` to disk.
fn fsync_file(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Best-effort fsync of the directory holding `path`, so the rename is durable.
fn fsync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// Runs `f` on a temporary path next to `path`, then fsyncs and renames it to `path`.
///
/// Errors from `f` are returned unchanged; I/O errors of the fsync/rename name
/// `path`. The temporary file is removed on any error.
pub fn write_atomic_with(path: &Path, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path_for(path)?;
    let result = f(&tmp).and_then(|()| {
        fsync_file(&tmp).map_err(|e| FormatError::io(path, e))?;
        fs::rename(&tmp, path).map_err(|e| FormatError::io(path, e))
    });
    match result {
        Ok(()) => {
            fsync_parent(path);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = fs::File::create(tmp).map_err(|e| FormatError::io(path, e))?;
        file.write_all(bytes).map_err(|e| FormatError::io(path, e))
    })
}

/// Copies the tokenizer/generation files present in `src_dir` into `dst_dir` (atomically).
///
/// Returns the names of the files copied, in [`TOKENIZER_FILES`] order.
pub fn copy_tokenizer_files(src_dir: &Path, dst_dir: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let src = src_dir.join(name);
        if !src.is_file() {
            continue;
        }
        let dst = dst_dir.join(name);
        write_atomic_with(&dst, |tmp| {
            fs::copy(&src, tmp).map_err(|e| FormatError::io(&src, e))?;
            Ok(())
        })?;
        copied.push((*name).to_string());
    }
    Ok(copied)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Sorted file names in `dir` (also used by the safetensors writer tests).
    pub(crate) fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_leaves_no_temp_and_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(entries(dir.path()), vec!["a.json".to_string()]);
    }

    #[test]
    fn missing_dir_errors_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("a.json");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("a.json"), "{err}");
        assert!(!dir.path().join("nope").exists());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn failing_writer_removes_temp_and_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |tmp| {
            fs::write(tmp, b"partial").unwrap();
            Err(FormatError::safetensors(&p, "writer failed"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("writer failed"));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["w.bin".to_string()]);
    }

    #[test]
    fn temp_path_is_hidden_in_same_dir() {
        let t = temp_path_for(Path::new("/x/y/model.safetensors")).unwrap();
        assert_eq!(t.parent().unwrap(), Path::new("/x/y"));
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".model.safetensors.tmp-"), "{name}");
        assert!(temp_path_for(Path::new("/")).is_err());
    }

    #[test]
    fn copies_only_present_tokenizer_files() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::write(src.path().join("tokenizer.json"), b"{\"t\":1}").unwrap();
        fs::write(src.path().join("generation_config.json"), b"{}").unwrap();
        fs::write(src.path().join("model.safetensors"), b"nope").unwrap();
        let copied = copy_tokenizer_files(src.path(), dst.path()).unwrap();
        assert_eq!(copied, vec!["tokenizer.json", "generation_config.json"]);
        assert_eq!(
            fs::read(dst.path().join("tokenizer.json")).unwrap(),
            b"{\"t\":1}"
        );
        assert_eq!(
            entries(dst.path()),
            vec!["generation_config.json", "tokenizer.json"]
        );
    }
}
