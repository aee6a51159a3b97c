//! `pack_quantized`: a `config.json` `quantization_config` through [`read_compression`], then
//! the scheme it gives used to open (and dequantize) packed layers of a fixed, valid
//! safetensors file holding one layer per scheme kind.

use std::path::Path;

use compress_format::pack_quantized::{
    read_compression, PackedLayerView, QuantizationConfig, QuantizedLinear, WeightQuant,
};
use compress_format::safetensors::{write_model_dir_weights, Dtype, ModelFiles, SINGLE_FILE};

use super::{Kind, Target};

/// The pack-quantized config reader and layer loader.
pub struct PackQuantizedTarget {
    _dir: tempfile::TempDir,
    files: ModelFiles,
}

/// The schemes of the fixed layers (layer `i` uses scheme `i`).
pub fn schemes() -> Vec<WeightQuant> {
    vec![
        WeightQuant::group(4, false, 32),
        WeightQuant::channel(8, true),
        WeightQuant::tensor(4, false),
        WeightQuant::group(4, true, 24),
    ]
}

/// The tensor prefix of layer `i`.
pub fn prefix(i: usize) -> String {
    format!("model.layers.{i}.mlp.up_proj")
}

/// An `[8, 64]` layer valid under `wq`.
fn layer(wq: &WeightQuant) -> QuantizedLinear {
    let (out, inn) = (8, 64);
    let span = (wq.qmax() - wq.qmin() + 1) as usize;
    let q = (0..out * inn)
        .map(|j| (wq.qmin() + (j % span) as i32) as i8)
        .collect();
    let n_scales: usize = wq.scale_shape(out, inn).iter().product();
    QuantizedLinear {
        out_features: out,
        in_features: inn,
        q,
        scales: (0..n_scales).map(|k| 0.25 * (k + 1) as f32).collect(),
        zero_points: (!wq.symmetric).then(|| vec![1; n_scales]),
    }
}

/// The bytes of a `model.safetensors` holding the fixed layers (only layer `only`, if given).
pub fn packed_layers_file(only: Option<usize>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tensors = Vec::new();
    for (i, wq) in schemes().iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let ts = layer(wq).to_tensors(&prefix(i), wq, Dtype::F32);
        tensors.extend(ts.expect("a valid layer"));
    }
    write_model_dir_weights(dir.path(), &tensors, None).expect("writing the layers");
    std::fs::read(dir.path().join(SINGLE_FILE)).expect("reading the layers")
}

impl PackQuantizedTarget {
    /// Writes the fixed layers to a scratch model dir.
    pub fn new() -> Self {
        let dir = super::scratch_dir();
        std::fs::write(dir.path().join(SINGLE_FILE), packed_layers_file(None))
            .expect("writing the layers");
        let files = ModelFiles::open_dir(dir.path()).expect("opening the layers");
        Self { _dir: dir, files }
    }
}

impl Default for PackQuantizedTarget {
    fn default() -> Self {
        Self::new()
    }
}

const DENSE: &str = r#"{"quantization_config":{"format":"dense","quant_method":"compressed-tensors","sparsity_config":{"format":"dense","sparsity_structure":"2:4","global_sparsity":0.5,"targets":["Linear"],"ignore":["lm_head"],"registry_requires_subclass":false}}}"#;
const PRESET: &str = r#"{"quantization_config":{"config_groups":{"W4A16":["Linear"]},"format":"pack-quantized","ignore":["lm_head"],"quant_method":"compressed-tensors"}}"#;

impl Target for PackQuantizedTarget {
    fn name(&self) -> &'static str {
        "pack_quantized"
    }

    fn kind(&self) -> Kind {
        Kind::Json
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = schemes()
            .into_iter()
            .map(|wq| {
                let mut q = QuantizationConfig::new(wq);
                q.ragged_groups = wq.is_ragged(64);
                serde_json::json!({"quantization_config": q.to_json()})
                    .to_string()
                    .into_bytes()
            })
            .collect();
        seeds.push(DENSE.as_bytes().to_vec());
        seeds.push(PRESET.as_bytes().to_vec());
        seeds
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(input) else {
            return false;
        };
        let path = Path::new("config.json");
        let Ok((quant, _sparsity)) = read_compression(&v, path) else {
            return false;
        };
        let Some(q) = quant else { return true };
        let _ = q.to_json();
        let mut any = false;
        for i in 0..schemes().len() {
            let p = prefix(i);
            if PackedLayerView::open(&self.files, &p, &q.weights).is_ok() {
                if let Ok(l) = QuantizedLinear::from_files(&self.files, &p, &q.weights) {
                    any |= !l.dequantize(&q.weights).is_empty();
                }
            }
        }
        any
    }
}
