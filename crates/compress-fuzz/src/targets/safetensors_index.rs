//! `safetensors_index`: `model.safetensors.index.json` through [`ModelFiles::open_dir`] over a
//! fixed pair of valid shards, then every tensor it maps read.

use compress_format::safetensors::{
    write_model_dir_weights, Dtype, ModelFiles, TensorOut, INDEX_FILE,
};

use super::{scratch_dir, Kind, Target};

/// The sharded-checkpoint index reader.
pub struct SafetensorsIndexTarget {
    dir: tempfile::TempDir,
    seed: Vec<u8>,
}

impl SafetensorsIndexTarget {
    /// Writes three tensors as two shards (and their index, the seed) to a scratch dir.
    pub fn new() -> Self {
        let dir = scratch_dir();
        let tensors: Vec<TensorOut> = [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
        ]
        .iter()
        .map(|n| TensorOut {
            name: n.to_string(),
            dtype: Dtype::F32,
            shape: vec![4, 4],
            data: vec![0; 64],
        })
        .collect();
        write_model_dir_weights(dir.path(), &tensors, Some(100)).expect("writing the shards");
        let seed = std::fs::read(dir.path().join(INDEX_FILE)).expect("the index");
        Self { dir, seed }
    }
}

impl Default for SafetensorsIndexTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for SafetensorsIndexTarget {
    fn name(&self) -> &'static str {
        "safetensors_index"
    }

    fn kind(&self) -> Kind {
        Kind::Json
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![self.seed.clone()]
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        std::fs::write(self.dir.path().join(INDEX_FILE), input).expect("writing the case");
        let Ok(files) = ModelFiles::open_dir(self.dir.path()) else {
            return false;
        };
        let _ = (files.is_sharded(), files.num_shards(), files.dtype());
        files.names().iter().all(|n| files.tensor(n).is_ok())
    }
}
