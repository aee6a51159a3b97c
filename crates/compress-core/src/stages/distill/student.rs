//! Students derived from a teacher, initialised from its weights:
//!
//! * **fewer layers** ([`keep_layers`]): the teacher's blocks at chosen depths (an evenly spaced
//!   subset by default, [`even_layers`]), with its embeddings, final norm and head;
//! * **narrower** ([`narrow`]): each layer keeps the fraction `F` of its key/value head groups
//!   (each with its query heads) and of its FFN neurons that matter most, scored as structured
//!   pruning scores them (L2 norm, Wanda-weighted when calibration rows are given);
//! * **shared parameters** ([`share_layers`]): `K` distinct blocks cycled through the depth
//!   (ALBERT-style), block `i` of the student initialised from teacher block `i`.
//!
//! Every student is a plain config the runtime and `compress eval` load.

use burn::tensor::Device;
use compress_format::hf_config::LayerShape;
use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::model::names;
use crate::model::weights::{build_from_map, tensor_map};
use crate::model::LlamaModel;
use crate::stages::prune::structured::{prune_heads, prune_neurons};
use crate::stages::prune::wanda::InputNorms;
use crate::stages::prune::Scope;

/// How a student is made from the teacher.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum StudentSpec {
    /// The teacher's decoder blocks at these depths, in order.
    Layers(Vec<usize>),
    /// The teacher with the fraction `F` in (0, 1) of its head groups and neurons per layer.
    Width(f64),
    /// `K` distinct blocks cycled through the teacher's depth.
    Shared(usize),
}

impl StudentSpec {
    /// Parses `student_layers`: a count `N` (evenly spaced) or a comma list of depths, checked
    /// against a teacher of `teacher_layers` blocks.
    pub fn parse_layers(s: &str, teacher_layers: usize) -> Result<Self> {
        let bad = |msg: String| CoreError::setting("student_layers", s, msg);
        if !s.contains(',') {
            let n: usize = s
                .trim()
                .parse()
                .map_err(|_| bad("expected a layer count or a comma list of depths".into()))?;
            if n == 0 || n >= teacher_layers {
                return Err(bad(format!(
                    "a subset of the teacher's {teacher_layers} layers needs 1 to {} of them",
                    teacher_layers.saturating_sub(1)
                )));
            }
            return Ok(Self::Layers(even_layers(teacher_layers, n)));
        }
        let list = s
            .split(',')
            .map(|x| x.trim().parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| bad("expected comma-separated layer indices".into()))?;
        if let Some(&l) = list.iter().find(|&&l| l >= teacher_layers) {
            return Err(bad(format!(
                "layer {l} does not exist (the teacher has {teacher_layers}, 0-based)"
            )));
        }
        if list.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("depths must be strictly increasing".into()));
        }
        if list.len() >= teacher_layers {
            return Err(bad(format!(
                "keeps all {teacher_layers} of the teacher's layers; a student needs fewer"
            )));
        }
        Ok(Self::Layers(list))
    }

    /// Checks `student_width` F: in (0, 1).
    pub fn width(f: f64) -> Result<Self> {
        if !(f > 0.0 && f < 1.0) {
            return Err(CoreError::setting(
                "student_width",
                f,
                "must be in (0, 1) (the fraction of each layer's heads and \
                 neurons the student keeps; it cannot be wider than the teacher)",
            ));
        }
        Ok(Self::Width(f))
    }

    /// Checks `share_layers` K against a teacher of `teacher_layers` blocks.
    pub fn shared(k: usize, teacher_layers: usize) -> Result<Self> {
        if k == 0 || k >= teacher_layers {
            return Err(CoreError::setting(
                "share_layers",
                k,
                format!(
                    "needs 1 to {} distinct blocks for the teacher's {teacher_layers} layers",
                    teacher_layers.saturating_sub(1)
                ),
            ));
        }
        Ok(Self::Shared(k))
    }

    /// Builds the student from `teacher`; `calib` rows (may be empty) weight the importance of
    /// heads and neurons for [`StudentSpec::Width`].
    pub fn build(&self, teacher: &LlamaModel, calib: &[Vec<u32>]) -> Result<LlamaModel> {
        match self {
            Self::Layers(keep) => keep_layers(teacher, keep),
            Self::Width(f) => narrow(teacher, *f, calib),
            Self::Shared(k) => share_layers(teacher, *k),
        }
    }
}

/// `n` evenly spaced depths out of `total`, always including the first and (for `n > 1`) the
/// last block: `round(i · (total − 1) / (n − 1))`.
pub fn even_layers(total: usize, n: usize) -> Vec<usize> {
    if n <= 1 {
        return vec![0; n.min(1)];
    }
    (0..n)
        .map(|i| ((i * (total - 1)) as f64 / (n - 1) as f64).round() as usize)
        .collect()
}

/// The teacher's blocks at depths `keep` (strictly increasing, in range), everything else copied.
pub fn keep_layers(teacher: &LlamaModel, keep: &[usize]) -> Result<LlamaModel> {
    let total = teacher.config.num_layers;
    if keep.is_empty() || keep.iter().any(|&l| l >= total) || keep.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(CoreError::Invalid(format!(
            "student layers {keep:?}: need strictly increasing depths below {total}"
        )));
    }
    if teacher.config.shared_layers > 0 {
        return Err(CoreError::Invalid(
            "a layer subset of a model with shared layers is not supported".into(),
        ));
    }
    let mut cfg = teacher.config.clone();
    cfg.num_layers = keep.len();
    if !cfg.layer_shapes.is_empty() {
        // The kept layers' own sizes; the top level holds the largest of them.
        cfg.layer_shapes = keep.iter().map(|&l| teacher.config.layer(l)).collect();
        let max = |f: fn(&LayerShape) -> usize| cfg.layer_shapes.iter().map(f).max().unwrap_or(0);
        cfg.num_heads = max(|s| s.num_attention_heads);
        cfg.num_kv_heads = max(|s| s.num_key_value_heads);
        cfg.intermediate_size = max(|s| s.intermediate_size);
        if cfg.layer_shapes.windows(2).all(|w| w[0] == w[1]) {
            cfg.layer_shapes.clear();
        }
    }
    let mut tensors = tensor_map(teacher);
    renumber(&mut tensors, keep);
    build_from_map(&cfg, &mut tensors, &teacher_device(teacher))
}

/// `K` distinct blocks (the teacher's first `K`) cycled through the teacher's depth.
pub fn share_layers(teacher: &LlamaModel, k: usize) -> Result<LlamaModel> {
    let total = teacher.config.num_layers;
    if k == 0 || k >= total {
        return Err(CoreError::setting(
            "share_layers",
            k,
            format!("needs 1 to {} blocks", total.saturating_sub(1)),
        ));
    }
    if !teacher.config.layer_shapes.is_empty() || teacher.config.shared_layers > 0 {
        return Err(CoreError::missing(
            "share_layers",
            "the teacher's layers must all have one shape and none be shared",
        ));
    }
    let mut cfg = teacher.config.clone();
    cfg.shared_layers = k;
    let mut tensors = tensor_map(teacher);
    let keep: Vec<usize> = (0..k).collect();
    renumber(&mut tensors, &keep);
    build_from_map(&cfg, &mut tensors, &teacher_device(teacher))
}

/// The teacher with fraction `f` of each layer's KV-head groups and neurons (the most important,
/// by L2 norm weighted by input norms on `calib` when given).
pub fn narrow(teacher: &LlamaModel, f: f64, calib: &[Vec<u32>]) -> Result<LlamaModel> {
    StudentSpec::width(f)?;
    if teacher.config.shared_layers > 0 {
        return Err(CoreError::missing(
            "student_width",
            "of a model with shared layers is not supported",
        ));
    }
    let cfg = &teacher.config;
    let norms = match calib.is_empty() {
        true => None,
        false => Some(InputNorms::collect(teacher, calib, 8)?),
    };
    let drops = |units: usize| ((1.0 - f) * units as f64).round() as usize;
    let min_units = |g: fn(&LayerShape) -> usize| {
        (0..cfg.num_layers)
            .map(|l| g(&cfg.layer(l)))
            .min()
            .unwrap_or(0)
    };
    let (kv, neurons) = (
        min_units(|s| s.num_key_value_heads),
        min_units(|s| s.intermediate_size),
    );
    let (cut_heads, cut_neurons) = (drops(kv) > 0, drops(neurons) > 0);
    if drops(kv) >= kv && kv > 0 || drops(neurons) >= neurons {
        return Err(CoreError::setting(
            "student_width",
            f,
            "would leave a layer with no head group or neuron",
        ));
    }
    if !cut_heads && !cut_neurons {
        return Err(CoreError::setting(
            "student_width",
            f,
            "keeps every head group and neuron of the teacher",
        ));
    }
    let mut tensors = tensor_map(teacher);
    let mut shape = cfg.clone();
    if cut_heads {
        shape = prune_heads(&shape, &mut tensors, 1.0 - f, Scope::Layer, norms.as_ref())?.0;
    }
    if cut_neurons {
        shape = prune_neurons(&shape, &mut tensors, 1.0 - f, Scope::Layer, norms.as_ref())?.0;
    }
    build_from_map(&shape, &mut tensors, &teacher_device(teacher))
}

/// Renames `model.layers.{keep[i]}.*` to `model.layers.{i}.*` and drops the other blocks.
fn renumber(tensors: &mut std::collections::HashMap<String, Vec<f32>>, keep: &[usize]) {
    let old = std::mem::take(tensors);
    for (name, v) in old {
        let Some(rest) = name.strip_prefix("model.layers.") else {
            tensors.insert(name, v);
            continue;
        };
        let (idx, tail) = rest
            .split_once('.')
            .expect("layer tensor names have a suffix");
        let l: usize = idx.parse().expect("layer index");
        if let Some(i) = keep.iter().position(|&k| k == l) {
            tensors.insert(names::in_layer(i, tail), v);
        }
    }
}

fn teacher_device(teacher: &LlamaModel) -> Device {
    teacher.embed_tokens.weight.val().device()
}
