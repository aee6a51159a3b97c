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

/// The file every directory this tool writes holds; `overwrite` replaces only such dirs (and
/// empty ones), never a directory someone else filled.
pub const MARKER: &str = ".compress-output";

/// Writes the [`MARKER`] into `dir`.
pub fn mark(dir: &Path) -> Result<()> {
    let path = dir.join(MARKER);
    let body = concat!("written by compress ", env!("CARGO_PKG_VERSION"), "\n");
    std::fs::write(&path, body).map_err(|e| CoreError::io(&path, e))
}

/// The output-safety rule of every command that writes a directory: `out` may not equal,
/// contain or lie inside any input (model, teacher, student, data and checkpoint paths; compared
/// after resolving symlinks and `..`); an existing non-empty `out` is replaced only with
/// `overwrite`, and only if this tool wrote it ([`MARKER`]). Temp dirs that killed runs left
/// beside `out` are removed first, with a line saying so.
pub fn check_output_dir(out: &Path, inputs: &[&Path], overwrite: bool) -> Result<()> {
    check_disjoint(out, inputs)?;
    if out.is_file() {
        let msg = "exists and is a file, not a directory";
        return Err(CoreError::setting("out", out.display(), msg));
    }
    remove_dead_temps(&absolute(out));
    let non_empty = out.is_dir()
        && std::fs::read_dir(out)
            .map_err(|e| CoreError::io(out, e))?
            .next()
            .is_some();
    if non_empty && !overwrite {
        let msg = "exists and is not empty (give `overwrite` to replace it)";
        return Err(CoreError::setting("out", out.display(), msg));
    }
    if non_empty && !out.join(MARKER).is_file() {
        let msg = format!(
            "exists, is not empty and was not written by compress (no {MARKER}); `overwrite` \
             only replaces outputs of compress: remove it yourself or choose another path"
        );
        return Err(CoreError::setting("out", out.display(), msg));
    }
    Ok(())
}

/// `out` may not equal, contain or lie inside any of `inputs` (after resolving symlinks and
/// `..`): writing it would then delete or corrupt an input.
pub fn check_disjoint(out: &Path, inputs: &[&Path]) -> Result<()> {
    let out_abs = absolute(out);
    for input in inputs {
        let in_abs = absolute(input);
        let msg = if out_abs.starts_with(&in_abs) {
            format!(
                "is inside the input {}: choose a path outside it",
                input.display()
            )
        } else if in_abs.starts_with(&out_abs) {
            let m = format!(
                "contains the input {}; writing it would delete that",
                input.display()
            );
            format!("{m}: choose a path that holds no input")
        } else {
            continue;
        };
        return Err(CoreError::setting("out", out.display(), msg));
    }
    Ok(())
}

/// Removes `.NAME.tmp-PID`, `.NAME.old-PID` and `.NAME.TAG-run-PID` entries beside `out` whose
/// process is gone (killed runs leave them; a live run's are kept). Linux only (`/proc`).
fn remove_dead_temps(out: &Path) {
    let (Some(parent), true) = (out.parent(), Path::new("/proc/self").exists()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = dead_temp_pid(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            let path = e.path();
            eprintln!(
                "removed {}: left by a run that died (pid {pid})",
                path.display()
            );
        }
    }
}

/// The process id in a temp dir name this tool makes (see [`remove_dead_temps`]).
fn dead_temp_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    let (head, pid) = name.rsplit_once('-')?;
    let pid: u32 = pid.parse().ok()?;
    let ours = head.ends_with(".tmp") || head.ends_with(".old") || head.ends_with("-run");
    ours.then_some(pid)
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
    if let Err(e) = fill(&tmp).and_then(|()| mark(&tmp)) {
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
        assert!(err.to_string().contains("is inside the input"), "{err}");
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
