//! Output directories written atomically: everything goes to a hidden temp dir beside the
//! target, which is renamed into place only when complete, so a failed or interrupted run
//! leaves no half-written model behind.

use std::path::{Path, PathBuf};

use crate::error::{CoreError, Result};

fn absolute(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Canonicalize the longest existing ancestor so `a/../b` and symlinks compare correctly.
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        out.push(part);
    }
    out
}

/// Checks that `out` may be written: not inside (or equal to) any input directory, and not
/// an existing non-empty directory unless `overwrite`.
pub fn check_output_dir(out: &Path, inputs: &[&Path], overwrite: bool) -> Result<()> {
    let out_abs = absolute(out);
    for input in inputs {
        let in_abs = absolute(input);
        if out_abs.starts_with(&in_abs) {
            return Err(CoreError::Invalid(format!(
                "output dir {} is inside input dir {}: choose a path outside it",
                out.display(),
                input.display()
            )));
        }
    }
    if out.is_file() {
        return Err(CoreError::Invalid(format!(
            "output {} exists and is a file, not a directory",
            out.display()
        )));
    }
    if out.is_dir() && !overwrite {
        let non_empty = std::fs::read_dir(out)
            .map_err(|e| CoreError::io(out, e))?
            .next()
            .is_some();
        if non_empty {
            return Err(CoreError::Invalid(format!(
                "output dir {} exists and is not empty (pass --overwrite to replace it)",
                out.display()
            )));
        }
    }
    Ok(())
}

/// `.<name of out>.<suffix>` in `out`'s parent directory.
pub fn hidden_sibling(out: &Path, suffix: &str) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| CoreError::setting("out", out.display(), "not a directory path"))?
        .to_string_lossy();
    Ok(parent.join(format!(".{name}.{suffix}")))
}

/// A scratch directory beside `out` for a trainer's checkpoints, unique to this process
/// (the caller removes it).
pub fn scratch_dir(out: &Path, tag: &str) -> Result<PathBuf> {
    hidden_sibling(out, &format!("{tag}-run-{}", std::process::id()))
}

/// Runs `fill` on a fresh temp dir beside `out`, then moves it into place as `out`
/// (replacing an existing `out`). On error the temp dir is removed.
pub fn write_dir_atomically(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| CoreError::io(&parent, e))?;
    let name = out
        .file_name()
        .ok_or_else(|| CoreError::Invalid(format!("bad output path {}", out.display())))?
        .to_string_lossy()
        .to_string();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| CoreError::io(out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| CoreError::io(out, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, out).map_err(|e| CoreError::io(out, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_inside_input_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("model");
        std::fs::create_dir(&input).unwrap();
        let err = check_output_dir(&input.join("out"), &[&input], false).unwrap_err();
        assert!(err.to_string().contains("inside input dir"), "{err}");
        assert!(check_output_dir(&dir.path().join("out"), &[&input], false).is_ok());
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let r = write_dir_atomically(&out, |tmp| {
            std::fs::write(tmp.join("half"), b"x").unwrap();
            Err(CoreError::Invalid("boom".into()))
        });
        assert!(r.is_err());
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
