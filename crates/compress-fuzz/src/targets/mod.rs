//! The fuzz targets: one per parser, each with seed inputs built in-process (valid files
//! written with the project's writers, the repo's fixtures) and a `run_one` feeding bytes to
//! the real entry point.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::Rng;

use crate::mutate::mutate_bytes;
use crate::structured::{collect_keys, mutate_json, mutate_toml};

pub mod config;
pub mod data;
pub mod gguf;
pub mod http;
pub mod pack_layer;
pub mod pack_quantized;
pub mod recipe;
pub mod safetensors;
pub mod safetensors_index;
pub mod tokenizer;

/// Names of every target, in the order `all` runs them.
pub const NAMES: &[&str] = &[
    "safetensors",
    "safetensors_index",
    "gguf",
    "config",
    "tokenizer",
    "pack_quantized",
    "pack_layer",
    "recipe",
    "data",
    "http",
];

/// Allocation floor (bytes) for targets that need no more: 1 MiB. A valid minimal file's
/// parse allocates at most a few KiB plus the parsers' fixed tables; see each target.
pub const DEFAULT_FLOOR: usize = 1 << 20;

/// Allocation limit of the targets whose parsers build a tree of the whole text
/// (`serde_json::Value`, `toml::Table`, tokenizers' per-token encodings):
/// `max(TREE_FACTOR × len, floor)`. Such parsers allocate per node, event or token, so their
/// largest single allocation grows with the *actual* input by a constant factor: measured up
/// to 27× (toml's event buffer on deeply nested `[[[…]]]`, one ~28-byte event per input byte,
/// doubled by `Vec` growth). The strict 2× of binary formats cannot hold for them; an
/// allocation sized by a *claimed* count is far larger (gigabytes from kilobytes) and still
/// fails.
pub const TREE_FACTOR: usize = 64;

/// `max(TREE_FACTOR × len, DEFAULT_FLOOR)`, the limit of tree-building targets.
pub fn tree_limit(len: usize) -> usize {
    (TREE_FACTOR * len).max(DEFAULT_FLOOR)
}

/// How a target's inputs are structured (picks the mutations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Binary: byte-level mutations only.
    Binary,
    /// JSON text: value-level mutations, and byte-level ones.
    Json,
    /// TOML text: value-level mutations, and byte-level ones.
    Toml,
}

/// One parser under test.
pub trait Target {
    /// The target's name (see [`NAMES`]).
    fn name(&self) -> &'static str;
    /// Input structure.
    fn kind(&self) -> Kind;
    /// Seed inputs (each run once unmutated, then mutated).
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Feeds `input` to the parser; whether it was accepted. Errors are fine; panics,
    /// huge allocations and hangs are not.
    fn run_one(&mut self, input: &[u8]) -> bool;
    /// Largest single allocation `input` may cause: `max(2 × its length, floor)`.
    fn alloc_limit(&self, input: &[u8]) -> usize {
        (2 * input.len()).max(DEFAULT_FLOOR)
    }
    /// Object keys known from the seeds (JSON/TOML targets).
    fn keys(&self, seeds: &[Vec<u8>]) -> Vec<String> {
        let mut keys = Vec::new();
        for s in seeds {
            let v: Option<serde_json::Value> = match self.kind() {
                Kind::Json => serde_json::from_slice(s).ok(),
                Kind::Toml => std::str::from_utf8(s)
                    .ok()
                    .and_then(|t| toml::from_str::<toml::Table>(t).ok())
                    .and_then(|t| serde_json::to_value(t).ok()),
                Kind::Binary => None,
            };
            if let Some(v) = v {
                collect_keys(&v, &mut keys);
            }
        }
        keys
    }
    /// A mutant of `base`; `pool` holds splice partners.
    fn mutate(&self, rng: &mut StdRng, base: &[u8], pool: &[Vec<u8>], keys: &[String]) -> Vec<u8> {
        default_mutate(self.kind(), rng, base, pool, keys)
    }
}

/// Value-level mutations (60%, when the input parses) or byte-level ones.
pub fn default_mutate(
    kind: Kind,
    rng: &mut StdRng,
    base: &[u8],
    pool: &[Vec<u8>],
    keys: &[String],
) -> Vec<u8> {
    let structured = match kind {
        Kind::Json if rng.random_bool(0.6) => mutate_json(rng, base, keys),
        Kind::Toml if rng.random_bool(0.6) => mutate_toml(rng, base, keys),
        _ => None,
    };
    structured.unwrap_or_else(|| {
        let mut d = base.to_vec();
        mutate_bytes(rng, &mut d, pool);
        d
    })
}

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Target>> {
    Some(match name {
        "safetensors" => Box::new(safetensors::SafetensorsTarget::new()),
        "safetensors_index" => Box::new(safetensors_index::SafetensorsIndexTarget::new()),
        "gguf" => Box::new(gguf::GgufTarget::new()),
        "config" => Box::new(config::ConfigTarget::new()),
        "tokenizer" => Box::new(tokenizer::TokenizerTarget::new()),
        "pack_quantized" => Box::new(pack_quantized::PackQuantizedTarget::new()),
        "pack_layer" => Box::new(pack_layer::PackLayerTarget::new()),
        "recipe" => Box::new(recipe::RecipeTarget::new()),
        "data" => Box::new(data::DataTarget::new()),
        "http" => Box::new(http::HttpTarget::new()),
        _ => return None,
    })
}

/// A file under the repo root.
pub fn repo_path(rel: &str) -> PathBuf {
    crate::paths::workspace_root().join(rel)
}

/// The bundled demo model dir (the one `recipes/quickstart.toml` uses).
pub fn demo_model() -> PathBuf {
    repo_path("examples/models/demo")
}

/// Reads a repo file, or nothing when it is absent.
pub fn read_repo(rel: &str) -> Option<Vec<u8>> {
    std::fs::read(repo_path(rel)).ok()
}

/// A scratch dir kept for a target's lifetime, and a file in it cases are written to.
pub struct Scratch {
    /// The dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// The case file.
    pub file: PathBuf,
}

/// A scratch dir for cases: in shared memory where there is one (`/dev/shm`), so that
/// rewriting the case file for every case costs no disk writeback (ext4 flushes a file
/// truncated and rewritten when it is closed), else in the system temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    match shm.is_dir() {
        true => tempfile::tempdir_in(shm).or_else(|_| tempfile::tempdir()),
        false => tempfile::tempdir(),
    }
    .expect("creating a temp dir")
}

impl Scratch {
    /// A new dir with case file `name`.
    pub fn new(name: &str) -> Self {
        let dir = scratch_dir();
        let file = dir.path().join(name);
        Self { dir, file }
    }

    /// Writes `input` to the case file and returns its path.
    pub fn write(&self, input: &[u8]) -> &Path {
        std::fs::write(&self.file, input).expect("writing the case file");
        &self.file
    }
}
