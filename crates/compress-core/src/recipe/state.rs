//! What a run has done, in `<run dir>/run.json` (written atomically after each stage), and the
//! keys that decide whether `--resume` may skip a stage: a stage's key digests its kind,
//! settings, the key of its input (and teacher), and the data files it may read, so a changed
//! setting, input or dataset reruns it and every stage after it that depends on it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::Recipe;
use crate::digest::Fnv64;
use crate::error::{CoreError, Result};

/// One finished stage.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct StageRecord {
    /// Stage name.
    pub name: String,
    /// Its key when it ran (hex).
    pub key: String,
    /// Seconds it took.
    pub seconds: f64,
}

/// `run.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RunState {
    /// The recipe file that made the run.
    pub recipe: PathBuf,
    /// Finished stages, in order.
    pub stages: Vec<StageRecord>,
}

impl RunState {
    /// The state file of `run_dir`.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("run.json")
    }

    /// Reads the state of `run_dir` (empty when there is none).
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = Self::path(run_dir);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| CoreError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Writes the state atomically.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        let body = serde_json::to_string_pretty(self).expect("state serializes");
        compress_format::atomic::write_atomic(&Self::path(run_dir), body.as_bytes())?;
        Ok(())
    }

    /// The record of stage `name` if it ran with `key`.
    pub fn done(&self, name: &str, key: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.name == name && s.key == key)
    }

    /// Records stage `rec`, replacing an earlier record of the same name.
    pub fn record(&mut self, rec: StageRecord) {
        self.stages.retain(|s| s.name != rec.name);
        self.stages.push(rec);
    }
}

/// A digest of a model dir: config.json's bytes, and each weight file's name, size and
/// modification time (reading gigabytes of weights to decide whether to resume would cost more
/// than most stages).
pub fn model_key(dir: &Path) -> Result<u64> {
    let mut h = Fnv64::new();
    let cfg = dir.join("config.json");
    h.bytes(&std::fs::read(&cfg).map_err(|e| CoreError::io(&cfg, e))?);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| CoreError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        .collect();
    files.sort_by_key(|e| e.file_name());
    for f in files {
        let m = f.metadata().map_err(|e| CoreError::io(f.path(), e))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        h.str(&f.file_name().to_string_lossy())
            .u64(m.len())
            .u64(mtime);
    }
    Ok(h.finish())
}

/// A digest of a file's bytes (`0` when it is absent).
fn file_key(path: Option<&Path>) -> Result<u64> {
    match path {
        Some(p) if p.is_file() => Ok(Fnv64::new()
            .bytes(&std::fs::read(p).map_err(|e| CoreError::io(p, e))?)
            .finish()),
        _ => Ok(0),
    }
}

/// The keys of every stage of `recipe`, in order (hex).
pub fn stage_keys(recipe: &Recipe) -> Result<Vec<String>> {
    let model = model_key(&recipe.model)?;
    let data = [&recipe.data.train, &recipe.data.calib]
        .iter()
        .map(|p| file_key(p.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    let mut keys: Vec<u64> = Vec::with_capacity(recipe.stages.len());
    for s in &recipe.stages {
        let mut h = Fnv64::new();
        h.str("compress-recipe-stage-v1").str(&s.kind);
        h.str(&serde_json::to_string(&s.settings).expect("settings serialize"));
        for v in s.settings.values() {
            // A setting that names a file (a student dir, a calibration file) is hashed by content.
            if let toml::Value::String(p) = v {
                let path = recipe.path.parent().unwrap_or(Path::new(".")).join(p);
                h.u64(file_key(Some(&path))?);
            }
        }
        h.u64(s.input.map_or(model, |i| keys[i]));
        h.u64(s.teacher.map_or(model, |i| keys[i]));
        data.iter().for_each(|&d| {
            h.u64(d);
        });
        keys.push(h.finish());
    }
    Ok(keys.into_iter().map(|k| format!("{k:016x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake model dir and data files in a temp dir.
    fn setup(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("compress-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("m")).unwrap();
        std::fs::write(dir.join("m/config.json"), "{}").unwrap();
        std::fs::write(dir.join("m/model.safetensors"), "weights").unwrap();
        std::fs::write(dir.join("train.txt"), "some text").unwrap();
        std::fs::write(dir.join("valid.txt"), "more text").unwrap();
        dir
    }

    /// The recipe in `dir` with `stages`.
    fn recipe(dir: &Path, stages: &str) -> Recipe {
        let text =
            format!("model = \"m\"\n[data]\ntrain = \"train.txt\"\neval = \"valid.txt\"\n{stages}");
        std::fs::write(dir.join("r.toml"), text).unwrap();
        Recipe::from_file(&dir.join("r.toml")).unwrap()
    }

    const TWO: &str = "[[stages]]\nstage = \"prune\"\nsparsity = 0.5\n[[stages]]\nstage = \"quantize\"\nbits = 4\n";

    #[test]
    fn keys_follow_settings_inputs_and_data() {
        let dir = setup("keys");
        let base = stage_keys(&recipe(&dir, TWO)).unwrap();
        assert_eq!(
            base,
            stage_keys(&recipe(&dir, TWO)).unwrap(),
            "keys are stable"
        );
        assert_ne!(base[0], base[1]);
        // A changed second stage changes only its own key.
        let k2 = stage_keys(&recipe(&dir, &TWO.replace("bits = 4", "bits = 3"))).unwrap();
        assert_eq!(k2[0], base[0]);
        assert_ne!(k2[1], base[1]);
        // A changed first stage changes both (the second's input changed).
        let k3 = stage_keys(&recipe(
            &dir,
            &TWO.replace("sparsity = 0.5", "sparsity = 0.6"),
        ))
        .unwrap();
        assert!(k3[0] != base[0] && k3[1] != base[1]);
        // New training text changes every key.
        std::fs::write(dir.join("train.txt"), "other text").unwrap();
        let k4 = stage_keys(&recipe(&dir, TWO)).unwrap();
        assert!(k4[0] != base[0] && k4[1] != base[1]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_state_round_trips_and_records_replace() {
        let dir = setup("state");
        let mut s = RunState::load(&dir).unwrap();
        assert_eq!(s, RunState::default());
        for (key, seconds) in [("a", 1.0), ("b", 2.0)] {
            s.record(StageRecord {
                name: "prune".into(),
                key: key.into(),
                seconds,
            });
        }
        s.save(&dir).unwrap();
        let back = RunState::load(&dir).unwrap();
        assert_eq!(back.stages.len(), 1);
        assert!(back.done("prune", "b").is_some() && back.done("prune", "a").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
