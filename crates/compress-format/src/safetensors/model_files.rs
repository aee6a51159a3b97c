//! The weight files of a Hugging Face model directory.
//!
//! A directory holds either a single `model.safetensors`, or shards
//! `model-00001-of-0000N.safetensors` plus `model.safetensors.index.json`:
//!
//! ```json
//! {"metadata": {"total_size": 123}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors", ...}}
//! ```
//!
//! As in `transformers`, `model.safetensors` wins when both exist. The index
//! must agree with the shards exactly: every listed tensor is in its shard
//! and every shard tensor is listed (for that shard).

use super::{SafetensorsFile, TensorRef};
use crate::error::{FormatError, Result};
use crate::safetensors::Dtype;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of the shard index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// All weight files of an HF model dir: model.safetensors, or sharded via model.safetensors.index.json.
#[derive(Debug)]
pub struct ModelFiles {
    dir: PathBuf,
    files: Vec<SafetensorsFile>,
    by_name: BTreeMap<String, usize>,
    sharded: bool,
}

impl ModelFiles {
    /// Opens and cross-checks the weights in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        if single.is_file() {
            let file = SafetensorsFile::open(&single)?;
            let by_name = file
                .names()
                .into_iter()
                .map(|n| (n.to_string(), 0))
                .collect();
            return Ok(ModelFiles {
                dir: dir.to_path_buf(),
                files: vec![file],
                by_name,
                sharded: false,
            });
        }
        if index.is_file() {
            return Self::open_sharded(dir, &index);
        }
        let why = if dir.is_dir() {
            format!("no {SINGLE_FILE} or {INDEX_FILE} in this directory")
        } else {
            "model directory does not exist".to_string()
        };
        Err(FormatError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, why),
        ))
    }

    fn open_sharded(dir: &Path, index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| FormatError::io(index, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|source| FormatError::Json {
            path: index.to_path_buf(),
            source,
        })?;
        let map = match json.get("weight_map") {
            None | Some(Value::Null) => {
                return Err(FormatError::MissingKey {
                    path: index.to_path_buf(),
                    key: "weight_map".into(),
                })
            }
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(FormatError::invalid(
                    index,
                    "weight_map",
                    "expected an object of tensor name -> shard file",
                ))
            }
        };
        let mut weight_map: BTreeMap<&str, &str> = BTreeMap::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .filter(|f| is_plain_file_name(f))
                .ok_or_else(|| {
                    FormatError::invalid(
                        index,
                        format!("weight_map.{tensor}"),
                        format!("expected a shard file name in the same directory, got {file}"),
                    )
                })?;
            weight_map.insert(tensor, file);
        }

        if weight_map.is_empty() {
            return Err(FormatError::invalid(index, "weight_map", "is empty"));
        }
        let mut shard_names: Vec<&str> = weight_map.values().copied().collect();
        shard_names.sort_unstable();
        shard_names.dedup();
        let mut files = Vec::with_capacity(shard_names.len());
        for shard in &shard_names {
            let p = dir.join(shard);
            if !p.is_file() {
                let tensor = weight_map
                    .iter()
                    .find(|(_, f)| *f == shard)
                    .map_or("", |(t, _)| t);
                return Err(FormatError::safetensors(
                    index,
                    format!("weight_map lists shard `{shard}` (e.g. for tensor `{tensor}`), which does not exist"),
                ));
            }
            files.push(SafetensorsFile::open(&p)?);
        }

        let mut by_name = BTreeMap::new();
        for (tensor, shard) in &weight_map {
            let i = shard_names.binary_search(shard).unwrap_or_default();
            if !files[i].contains(tensor) {
                return Err(FormatError::safetensors(
                    index,
                    format!("weight_map puts tensor `{tensor}` in `{shard}`, but that shard does not contain it"),
                ));
            }
            by_name.insert(tensor.to_string(), i);
        }
        for (i, file) in files.iter().enumerate() {
            for name in file.names() {
                if by_name.get(name) != Some(&i) {
                    return Err(FormatError::safetensors(
                        index,
                        format!(
                            "shard `{}` contains tensor `{name}`, which weight_map does not assign to it",
                            shard_names[i]
                        ),
                    ));
                }
            }
        }
        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            files,
            by_name,
            sharded: true,
        })
    }

    /// Drops every weight file's pages from the resident set (see
    /// [`SafetensorsFile::release_pages`]).
    pub fn release_pages(&self) {
        self.files.iter().for_each(SafetensorsFile::release_pages);
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The opened weight files (one, or the shards in name order).
    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Borrowed view of tensor `name` (MissingTensor naming the directory if absent).
    pub fn tensor(&self, name: &str) -> Result<TensorRef<'_>> {
        match self.by_name.get(name) {
            Some(&i) => self.files[i].tensor(name),
            None => Err(FormatError::MissingTensor {
                path: self.dir.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// Whether any weight file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Dtype of the first (by name) floating-point tensor.
    pub fn dtype(&self) -> Option<Dtype> {
        self.by_name
            .keys()
            .filter_map(|n| self.tensor(n).ok())
            .map(|t| t.dtype)
            .find(|d| d.is_float())
    }

    /// Whether the weights come from a shard index.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// Number of weight files.
    pub fn num_shards(&self) -> usize {
        self.files.len()
    }
}

/// A bare file name: no directory components, not `.`/`..`.
fn is_plain_file_name(f: &str) -> bool {
    !f.is_empty() && f != "." && f != ".." && !f.contains(['/', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors::{write_model_dir_weights, write_safetensors, TensorOut};
    use std::fs;

    fn t(name: &str, n: usize) -> TensorOut {
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        TensorOut::from_f32(name, vec![n], &v, Dtype::F32).unwrap()
    }

    fn write_two_shards(dir: &Path) {
        write_safetensors(&dir.join("s1.safetensors"), &[t("a", 2), t("b", 3)], None).unwrap();
        write_safetensors(&dir.join("s2.safetensors"), &[t("c", 4)], None).unwrap();
    }

    fn index(dir: &Path, map: Value) {
        let j = serde_json::json!({"metadata": {"total_size": 36}, "weight_map": map});
        fs::write(dir.join(INDEX_FILE), j.to_string()).unwrap();
    }

    fn err_of(dir: &Path) -> String {
        let e = ModelFiles::open_dir(dir).unwrap_err();
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    }

    #[test]
    fn opens_hand_written_sharded_dir() {
        let d = tempfile::tempdir().unwrap();
        write_two_shards(d.path());
        index(
            d.path(),
            serde_json::json!({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}),
        );
        let m = ModelFiles::open_dir(d.path()).unwrap();
        assert!(m.is_sharded());
        assert_eq!(m.num_shards(), 2);
        assert_eq!(m.names(), vec!["a", "b", "c"]);
        assert_eq!(
            m.tensor("c").unwrap().to_f32().unwrap(),
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert_eq!(m.dtype(), Some(Dtype::F32));
        assert!(m.contains("b") && !m.contains("z"));
        let e = m.tensor("z").unwrap_err();
        assert!(
            matches!(&e, FormatError::MissingTensor { path, name } if path == d.path() && name == "z")
        );
    }

    #[test]
    fn index_inconsistencies_are_errors() {
        let d = tempfile::tempdir().unwrap();
        write_two_shards(d.path());
        index(
            d.path(),
            serde_json::json!({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s3.safetensors"}),
        );
        let s = err_of(d.path());
        assert!(
            s.contains(INDEX_FILE) && s.contains("`s3.safetensors`"),
            "{s}"
        );

        index(
            d.path(),
            serde_json::json!({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors", "x": "s2.safetensors"}),
        );
        let s = err_of(d.path());
        assert!(s.contains("`x`") && s.contains("does not contain"), "{s}");

        index(
            d.path(),
            serde_json::json!({"a": "s1.safetensors", "c": "s2.safetensors"}),
        );
        let s = err_of(d.path());
        assert!(s.contains("`b`") && s.contains("s1.safetensors"), "{s}");

        index(d.path(), serde_json::json!({"a": "../s1.safetensors"}));
        assert!(err_of(d.path()).contains("weight_map.a"));

        fs::write(d.path().join(INDEX_FILE), r#"{"metadata": {}}"#).unwrap();
        assert!(err_of(d.path()).contains("missing required key `weight_map`"));

        fs::write(d.path().join(INDEX_FILE), "{").unwrap();
        assert!(err_of(d.path()).contains("invalid JSON"));
    }

    #[test]
    fn corrupt_shard_error_names_shard() {
        let d = tempfile::tempdir().unwrap();
        write_two_shards(d.path());
        index(
            d.path(),
            serde_json::json!({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"}),
        );
        let bytes = fs::read(d.path().join("s2.safetensors")).unwrap();
        fs::write(d.path().join("s2.safetensors"), &bytes[..bytes.len() - 3]).unwrap();
        let s = err_of(d.path());
        assert!(s.contains("s2.safetensors") && s.contains("`c`"), "{s}");
    }

    #[test]
    fn missing_weights_error_names_dir() {
        let d = tempfile::tempdir().unwrap();
        let s = err_of(d.path());
        assert!(
            s.contains(&d.path().display().to_string()) && s.contains(SINGLE_FILE),
            "{s}"
        );
        let s = err_of(&d.path().join("absent"));
        assert!(s.contains("absent") && s.contains("does not exist"), "{s}");
    }

    #[test]
    fn single_file_preferred_over_index() {
        let d = tempfile::tempdir().unwrap();
        write_model_dir_weights(d.path(), &[t("only", 1)], None).unwrap();
        index(d.path(), serde_json::json!({"a": "missing.safetensors"}));
        let m = ModelFiles::open_dir(d.path()).unwrap();
        assert!(!m.is_sharded());
        assert_eq!(m.names(), vec!["only"]);
    }
}
