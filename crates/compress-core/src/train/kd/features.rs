//! Feature distillation: the student's hidden states pulled towards the teacher's at mapped
//! depths, by MSE or cosine distance, through a learned linear projection where the widths differ.
//!
//! A *point* `k` is the output of decoder layer `k` (1-based; `k = L` is the final normed state),
//! i.e. `hidden_states[k]` of [`crate::model::ModelOutput`]. The default mapping is uniform:
//! student point `k` (of `L_s`) ↔ teacher point `round(k · L_t / L_s)`, so the last points always
//! pair up.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::model::layers::{linear, param};
use crate::model::weights::{normal, param_id};

/// Distance between mapped hidden states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDistance {
    /// Mean squared error over positions and channels.
    Mse,
    /// `1 − cos(student, teacher)` per position, averaged.
    Cosine,
}

/// Which student point is matched to which teacher point, and how strongly.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureConfig {
    /// Weight of the feature term added to the distillation loss.
    pub weight: f64,
    /// The distance.
    pub distance: FeatureDistance,
    /// `(student point, teacher point)` pairs, 1-based layer outputs.
    pub pairs: Vec<(usize, usize)>,
}

/// The uniform mapping: student point `k` ↔ teacher point `round(k · L_t / L_s)`.
pub fn uniform_pairs(student_layers: usize, teacher_layers: usize) -> Vec<(usize, usize)> {
    (1..=student_layers)
        .map(|k| {
            let t = (k * teacher_layers) as f64 / student_layers as f64;
            (k, (t.round() as usize).clamp(1, teacher_layers))
        })
        .collect()
}

/// Parses `--feature-layers`: `uniform` or `s:t,s:t,...` (1-based layer outputs), checked against
/// the depths.
pub fn parse_pairs(
    s: &str,
    student_layers: usize,
    teacher_layers: usize,
) -> Result<Vec<(usize, usize)>> {
    if s.trim() == "uniform" {
        return Ok(uniform_pairs(student_layers, teacher_layers));
    }
    let bad = |msg: String| CoreError::setting("feature_layers", s, msg);
    s.split(',')
        .map(|p| {
            let (a, b) = p
                .split_once(':')
                .ok_or_else(|| bad(format!("`{p}`: expected STUDENT:TEACHER layer outputs")))?;
            let parse = |x: &str| x.trim().parse::<usize>().map_err(|_| bad(format!("`{x}` is not a layer number")));
            let (a, b) = (parse(a)?, parse(b)?);
            if a == 0 || a > student_layers || b == 0 || b > teacher_layers {
                return Err(bad(format!(
                    "`{p}`: layer outputs are 1..={student_layers} (student) and 1..={teacher_layers} (teacher)"
                )));
            }
            Ok((a, b))
        })
        .collect()
}

/// Learned projections from the student's width to the teacher's, one per mapped pair.
#[derive(Module, Debug)]
pub struct FeatureProjector {
    /// `[student hidden → teacher hidden]`, no bias.
    pub proj: Vec<Linear>,
}

impl FeatureProjector {
    /// `n` projections `d_in → d_out`, N(0, 1/d_in) from `seed` (drawn on the host).
    pub fn new(n: usize, d_in: usize, d_out: usize, seed: u64, device: &Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let std = (1.0 / d_in as f64).sqrt() as f32;
        let proj = (0..n)
            .map(|i| {
                let w: Vec<f32> = (0..d_in * d_out).map(|_| std * normal(&mut rng)).collect();
                let t = Tensor::from_data(TensorData::new(w, [d_in, d_out]), device);
                // Name-derived ids, so a resumed run's optimizer state finds its parameters.
                linear(param(param_id(&format!("feature_projector.{i}")), t), None)
            })
            .collect();
        Self { proj }
    }
}

/// The feature term: the mean over `pairs` of the distance between (projected) student and
/// teacher hidden states `[batch, seq, width]`; `student`/`teacher` are the
/// `hidden_states` lists of the two forwards.
pub fn feature_loss(
    cfg: &FeatureConfig,
    student: &[Tensor<3>],
    teacher: &[Tensor<3>],
    projector: Option<&FeatureProjector>,
) -> Result<Tensor<1>> {
    let mut total: Option<Tensor<1>> = None;
    for (i, &(s, t)) in cfg.pairs.iter().enumerate() {
        let (hs, ht) = match (student.get(s), teacher.get(t)) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => {
                return Err(CoreError::Invalid(format!(
                    "feature pair {s}:{t}: the student has {} and the teacher {} layer outputs",
                    student.len().saturating_sub(1),
                    teacher.len().saturating_sub(1)
                )))
            }
        };
        let hs = match projector {
            Some(p) => p.proj[i].forward(hs),
            None => hs,
        };
        if hs.dims() != ht.dims() {
            return Err(CoreError::Invalid(format!(
                "feature pair {s}:{t}: student states {:?} vs teacher {:?} (widths differ and no projection)",
                hs.dims(),
                ht.dims()
            )));
        }
        let d = match cfg.distance {
            FeatureDistance::Mse => (hs - ht).square().mean(),
            FeatureDistance::Cosine => {
                let dot = (hs.clone() * ht.clone()).sum_dim(2);
                let norms = hs.square().sum_dim(2).sqrt() * ht.square().sum_dim(2).sqrt();
                (dot / norms.clamp_min(1e-8)).mean().neg().add_scalar(1.0)
            }
        };
        total = Some(match total {
            Some(acc) => acc + d,
            None => d,
        });
    }
    let n = cfg.pairs.len().max(1) as f64;
    total.map(|t| t.div_scalar(n)).ok_or_else(|| {
        CoreError::Invalid("feature distillation needs at least one layer pair".into())
    })
}
