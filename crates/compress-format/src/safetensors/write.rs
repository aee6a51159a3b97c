//! Writing safetensors files and (optionally sharded) model directories.
//!
//! Files are produced by `safetensors::serialize_to_file` into a temporary
//! file that is fsynced and renamed into place (see [`crate::atomic`]). The
//! header's `__metadata__` defaults to `{"format": "pt"}`, which
//! `transformers` expects. Sharded output follows the Hugging Face layout:
//! `model-00001-of-0000N.safetensors` files plus
//! `model.safetensors.index.json` =
//! `{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}`.

use super::model_files::{INDEX_FILE, SINGLE_FILE};
use super::{decode_f32, Dtype, TensorRef};
use crate::atomic::{write_atomic, write_atomic_with};
use crate::error::{FormatError, Result};
use half::{bf16, f16};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// An owned tensor to write.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorOut {
    /// Tensor name.
    pub name: String,
    /// Element type of `data`.
    pub dtype: Dtype,
    /// Shape (row-major).
    pub shape: Vec<usize>,
    /// Little-endian bytes, `numel * dtype.size()` long.
    pub data: Vec<u8>,
}

/// Little-endian bytes of `values` in a float `dtype` (round-to-nearest-even for the half
/// types); `None` for non-float dtypes.
pub(crate) fn encode_f32(values: &[f32], dtype: Dtype) -> Option<Vec<u8>> {
    Some(match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        Dtype::F64 => values
            .iter()
            .flat_map(|&v| f64::from(v).to_le_bytes())
            .collect(),
        _ => return None,
    })
}

impl TensorOut {
    /// Builds a tensor from raw little-endian bytes, checking their length.
    pub fn new(
        name: impl Into<String>,
        dtype: Dtype,
        shape: impl Into<Vec<usize>>,
        data: Vec<u8>,
    ) -> Result<Self> {
        let t = TensorOut {
            name: name.into(),
            dtype,
            shape: shape.into(),
            data,
        };
        t.check_len().map_err(|msg| FormatError::Dtype {
            name: t.name.clone(),
            dtype: dtype.name().into(),
            msg,
        })?;
        Ok(t)
    }

    /// Encodes `values` as F32/F16/BF16/F64 (round-to-nearest-even for the half types).
    pub fn from_f32(
        name: impl Into<String>,
        shape: impl Into<Vec<usize>>,
        values: &[f32],
        dtype: Dtype,
    ) -> Result<Self> {
        let name = name.into();
        let shape = shape.into();
        if shape.iter().product::<usize>() != values.len() {
            return Err(FormatError::Shape {
                name,
                expected: shape,
                got: vec![values.len()],
            });
        }
        let data = encode_f32(values, dtype).ok_or_else(|| FormatError::Dtype {
            name: name.clone(),
            dtype: dtype.name().into(),
            msg: "cannot encode f32 values (use F32, F16, BF16 or F64)".into(),
        })?;
        Ok(TensorOut {
            name,
            dtype,
            shape,
            data,
        })
    }

    /// Copies a borrowed tensor (e.g. one passed through unchanged).
    pub fn from_ref(t: &TensorRef<'_>) -> Self {
        TensorOut {
            name: t.name.to_string(),
            dtype: t.dtype,
            shape: t.shape.to_vec(),
            data: t.data.to_vec(),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Decodes float data back to `f32`.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        decode_f32(&self.name, self.dtype, &self.data)
    }

    /// Describes a data/shape length mismatch, if any.
    fn check_len(&self) -> std::result::Result<(), String> {
        let need = self
            .shape
            .iter()
            .try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d));
        match need {
            Some(n) if n == self.data.len() => Ok(()),
            Some(n) => Err(format!(
                "shape {:?} needs {n} bytes but data has {}",
                self.shape,
                self.data.len()
            )),
            None => Err(format!("shape {:?} overflows", self.shape)),
        }
    }
}

/// Adapter giving `TensorOut` the `safetensors::View` interface.
struct OutView<'a>(&'a TensorOut);

impl ::safetensors::View for OutView<'_> {
    fn dtype(&self) -> ::safetensors::Dtype {
        self.0.dtype.to_safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0.data)
    }
    fn data_len(&self) -> usize {
        self.0.data.len()
    }
}

/// Checks byte lengths and name uniqueness; errors name `path` and the tensor.
fn validate<'a>(path: &Path, tensors: impl IntoIterator<Item = &'a TensorOut>) -> Result<()> {
    let mut seen = HashSet::new();
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(FormatError::safetensors(
                path,
                format!("duplicate tensor name `{}`", t.name),
            ));
        }
        t.check_len()
            .map_err(|msg| FormatError::safetensors(path, format!("tensor `{}`: {msg}", t.name)))?;
    }
    Ok(())
}

/// Serializes `tensors` to `path` atomically (already validated).
fn write_refs(
    path: &Path,
    tensors: &[&TensorOut],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let metadata =
        metadata.unwrap_or_else(|| HashMap::from([("format".to_string(), "pt".to_string())]));
    write_atomic_with(path, |tmp| {
        let views = tensors.iter().map(|t| (t.name.as_str(), OutView(t)));
        ::safetensors::serialize_to_file(views, Some(metadata), tmp).map_err(|e| match e {
            ::safetensors::SafeTensorError::IoError(io) => FormatError::io(path, io),
            other => FormatError::safetensors(path, other.to_string()),
        })
    })
}

/// Atomically writes `tensors` to one safetensors file (metadata defaults to `{"format":"pt"}`).
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorOut],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    validate(path, tensors)?;
    let refs: Vec<&TensorOut> = tensors.iter().collect();
    write_refs(path, &refs, metadata)
}

/// Writes model weights into `dir` (created if needed), sharded HF-style above `max_shard_bytes`.
///
/// With `None`, or when everything fits in one shard, writes `model.safetensors`;
/// otherwise `model-0000i-of-0000N.safetensors` and then
/// `model.safetensors.index.json`. Tensors keep their order; a tensor larger
/// than the limit gets a shard of its own. Existing files are not removed, so
/// write into a fresh directory.
pub fn write_model_dir_weights(
    dir: &Path,
    tensors: &[TensorOut],
    max_shard_bytes: Option<usize>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    validate(dir, tensors)?;
    let total: usize = tensors.iter().map(|t| t.data.len()).sum();
    let groups = match max_shard_bytes {
        Some(max) if total > max => plan_shards(tensors, max),
        _ => vec![tensors.iter().collect()],
    };
    if groups.len() <= 1 {
        let refs: Vec<&TensorOut> = tensors.iter().collect();
        return write_refs(&dir.join(SINGLE_FILE), &refs, None);
    }
    let n = groups.len();
    let mut weight_map = BTreeMap::new();
    for (i, group) in groups.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        write_refs(&dir.join(&file), group, None)?;
        for t in group {
            weight_map.insert(t.name.clone(), serde_json::Value::from(file.clone()));
        }
    }
    let index = serde_json::json!({
        "metadata": {"total_size": total},
        "weight_map": weight_map,
    });
    let mut text = serde_json::to_string_pretty(&index)
        .map_err(|e| FormatError::safetensors(&dir.join(INDEX_FILE), e.to_string()))?;
    text.push('\n');
    write_atomic(&dir.join(INDEX_FILE), text.as_bytes())
}

/// Greedy in-order split into groups of at most `max` bytes (oversized tensors alone).
fn plan_shards(tensors: &[TensorOut], max: usize) -> Vec<Vec<&TensorOut>> {
    let mut groups: Vec<Vec<&TensorOut>> = Vec::new();
    let mut cur: Vec<&TensorOut> = Vec::new();
    let mut cur_bytes = 0usize;
    for t in tensors {
        let len = t.data.len();
        if !cur.is_empty() && cur_bytes + len > max {
            groups.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur.push(t);
        cur_bytes += len;
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors::{ModelFiles, SafetensorsFile};
    use proptest::prelude::*;
    use std::fs;

    fn sample() -> Vec<TensorOut> {
        let vals: Vec<f32> = (0..12).map(|i| i as f32 * 0.37 - 2.0).collect();
        vec![
            TensorOut::from_f32("model.layers.0.w", vec![3, 4], &vals, Dtype::F32).unwrap(),
            TensorOut::from_f32("model.layers.0.h", vec![4, 3], &vals, Dtype::F16).unwrap(),
            TensorOut::from_f32("model.embed_tokens.weight", vec![6, 2], &vals, Dtype::BF16)
                .unwrap(),
            TensorOut::new(
                "ids",
                Dtype::I64,
                vec![2],
                vec![1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
            )
            .unwrap(),
        ]
    }

    use crate::atomic::tests::entries as listing;

    #[test]
    fn write_then_open_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.safetensors");
        let ts = sample();
        write_safetensors(&p, &ts, None).unwrap();
        assert_eq!(listing(d.path()), vec!["x.safetensors"]);
        let f = SafetensorsFile::open(&p).unwrap();
        let mut names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        assert_eq!(f.names(), names);
        for t in &ts {
            let r = f.tensor(&t.name).unwrap();
            assert_eq!(
                (r.name, r.dtype, r.shape),
                (t.name.as_str(), t.dtype, &t.shape[..])
            );
            assert_eq!(r.data, &t.data[..]);
            assert_eq!(TensorOut::from_ref(&r), *t);
        }
        assert_eq!(
            f.metadata().unwrap().get("format").map(String::as_str),
            Some("pt")
        );
        let bf = f
            .tensor("model.embed_tokens.weight")
            .unwrap()
            .to_f32()
            .unwrap();
        assert_eq!(bf[0], -2.0);
        assert!((bf[5] - (5.0 * 0.37 - 2.0)).abs() < 1e-2);

        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors(&p, &ts[..1], Some(meta.clone())).unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.metadata(), Some(&meta));
        assert_eq!(f.names(), vec!["model.layers.0.w"]);
    }

    #[test]
    fn sharded_write_matches_unsharded() {
        let ts = sample();
        let single = tempfile::tempdir().unwrap();
        write_model_dir_weights(single.path(), &ts, Some(1 << 20)).unwrap();
        assert_eq!(listing(single.path()), vec![SINGLE_FILE]);

        let sharded = tempfile::tempdir().unwrap();
        let out = sharded.path().join("out");
        // 48 + 24 + 24 + 16 bytes with a 50-byte limit: [w], [h, embed], [ids].
        write_model_dir_weights(&out, &ts, Some(50)).unwrap();
        assert_eq!(
            listing(&out),
            vec![
                "model-00001-of-00003.safetensors",
                "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors",
                INDEX_FILE
            ]
        );
        let index: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(out.join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index["metadata"]["total_size"], 112);
        assert_eq!(
            index["weight_map"]["model.layers.0.h"],
            "model-00002-of-00003.safetensors"
        );
        assert_eq!(
            index["weight_map"]["ids"],
            "model-00003-of-00003.safetensors"
        );

        let a = ModelFiles::open_dir(single.path()).unwrap();
        let b = ModelFiles::open_dir(&out).unwrap();
        assert!(!a.is_sharded() && b.is_sharded());
        assert_eq!((a.num_shards(), b.num_shards()), (1, 3));
        assert_eq!(a.names(), b.names());
        for name in a.names() {
            let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
            assert_eq!((x.dtype, x.shape, x.data), (y.dtype, y.shape, y.data));
        }
        assert_eq!(b.dtype(), Some(Dtype::BF16)); // "model.embed_tokens.weight" sorts first among floats
    }

    #[test]
    fn bad_tensors_are_rejected_before_writing() {
        let e = TensorOut::from_f32("w", vec![2, 2], &[1.0; 3], Dtype::F32).unwrap_err();
        assert!(
            matches!(&e, FormatError::Shape { name, expected, got } if name == "w" && expected == &[2, 2] && got == &[3])
        );
        let e = TensorOut::from_f32("w", vec![1], &[1.0], Dtype::I32).unwrap_err();
        assert!(matches!(&e, FormatError::Dtype { name, .. } if name == "w"));
        let e = TensorOut::new("w", Dtype::F32, vec![2], vec![0; 7]).unwrap_err();
        assert!(e.to_string().contains("needs 8 bytes"), "{e}");

        let d = tempfile::tempdir().unwrap();
        let mut ts = sample();
        ts.push(ts[0].clone());
        let e = write_model_dir_weights(d.path(), &ts, Some(50)).unwrap_err();
        assert!(
            e.to_string()
                .contains("duplicate tensor name `model.layers.0.w`"),
            "{e}"
        );
        let mut bad = sample();
        bad[1].data.pop();
        let e = write_safetensors(&d.path().join("y.safetensors"), &bad, None).unwrap_err();
        assert!(e.to_string().contains("`model.layers.0.h`"), "{e}");
        assert!(listing(d.path()).is_empty());

        let e = write_safetensors(&d.path().join("no/such/dir.safetensors"), &sample(), None)
            .unwrap_err();
        assert!(matches!(e, FormatError::Io { .. }), "{e:?}");
        assert!(listing(d.path()).is_empty());
    }

    #[test]
    fn oversized_tensor_gets_its_own_shard() {
        let ts = sample();
        let groups = plan_shards(&ts, 10);
        assert_eq!(groups.len(), 4);
        assert!(groups.iter().all(|g| g.len() == 1));
        let groups = plan_shards(&ts, 72);
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![2, 2]);
    }

    proptest! {
        #[test]
        fn f32_encoding_matches_half(v in prop::collection::vec(any::<f32>(), 0..64)) {
            let n = v.len();
            let b = TensorOut::from_f32("t", vec![n], &v, Dtype::BF16).unwrap();
            let h = TensorOut::from_f32("t", vec![n], &v, Dtype::F16).unwrap();
            let f = TensorOut::from_f32("t", vec![n], &v, Dtype::F32).unwrap();
            prop_assert_eq!(b.data.len(), 2 * n);
            for (i, &x) in v.iter().enumerate() {
                let bb = u16::from_le_bytes([b.data[2 * i], b.data[2 * i + 1]]);
                let hb = u16::from_le_bytes([h.data[2 * i], h.data[2 * i + 1]]);
                prop_assert_eq!(bb, bf16::from_f32(x).to_bits());
                prop_assert_eq!(hb, f16::from_f32(x).to_bits());
            }
            let back = f.to_f32().unwrap();
            prop_assert_eq!(
                back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }

        #[test]
        fn bf16_rounds_to_nearest_even(hi in any::<u16>(), lo in any::<u16>()) {
            let x = f32::from_bits(((hi as u32) << 16) | lo as u32);
            prop_assume!(x.is_finite());
            let t = TensorOut::from_f32("t", vec![1], &[x], Dtype::BF16).unwrap();
            let got = u16::from_le_bytes([t.data[0], t.data[1]]);
            // Reference RNE on the bit pattern.
            let bits = x.to_bits();
            let want = ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
            prop_assert_eq!(got, want);
        }
    }
}
