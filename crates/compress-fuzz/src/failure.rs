//! Why a case failed, and writing its input for replay.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It panicked with this message.
    Panic(String),
    /// Its largest single allocation exceeded the limit.
    Alloc {
        /// Bytes allocated at once.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// It took longer than the time limit.
    Slow(Duration),
}

impl Failure {
    pub(crate) fn tag(&self) -> &'static str {
        match self {
            Failure::Panic(_) => "panic",
            Failure::Alloc { .. } => "alloc",
            Failure::Slow(_) => "slow",
        }
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Writes a failing input (and its message) under `dir`; returns the input's path.
pub fn save_failure(dir: &Path, input: &[u8], failure: &Failure) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}-{:016x}.bin", failure.tag(), fnv(input)));
    std::fs::write(&path, input)?;
    std::fs::write(path.with_extension("txt"), format!("{failure:?}\n"))?;
    Ok(path)
}
