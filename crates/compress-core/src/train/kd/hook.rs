//! [`DistillHook`]: the trainer hook that runs the frozen teacher next to the student and
//! replaces the plain LM loss with the distillation loss (plus the feature term), reporting the
//! `soft`, `hard` and `feature` parts in the metrics.

use std::path::Path;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Gradients, Tensor};
use compress_format::safetensors::{write_safetensors, SafetensorsFile, TensorOut};

use super::features::{feature_loss, FeatureConfig, FeatureProjector};
use super::loss::DistillLoss;
use super::TopKSource;
use crate::error::{CoreError, Result};
use crate::model::{batch_tensor, LlamaModel, ModelOutput};
use crate::tensor_util::{scalar_f64, to_vec_f32};
use crate::train::{Batch, TrainHook};

const PROJECTOR_FILE: &str = "feature_projector.safetensors";
const PROJECTOR_OPTIM_FILE: &str = "feature_projector_optim.bpk";

/// The feature term's settings and, where widths differ, its trainable projections.
struct Features {
    cfg: FeatureConfig,
    projector: Option<FeatureProjector>,
    optim: ModuleOptimizer,
    accum: GradientsAccumulator<FeatureProjector>,
}

/// Teacher-in-the-loop distillation for [`crate::train::train`].
pub struct DistillHook<'a> {
    teacher: &'a LlamaModel,
    device: Device,
    loss: DistillLoss,
    cache: Option<&'a dyn TopKSource>,
    features: Option<Features>,
    // Sums over the step's micro-batches: soft, hard, feature; and their count.
    sums: [f64; 3],
    micro: usize,
}

impl<'a> DistillHook<'a> {
    /// A hook distilling `teacher` (on the plain `device`, never trained) with `loss`; the soft
    /// term comes from `cache` when given.
    pub fn new(
        teacher: &'a LlamaModel,
        device: &Device,
        loss: DistillLoss,
        cache: Option<&'a dyn TopKSource>,
    ) -> Self {
        Self {
            teacher,
            device: device.clone(),
            loss,
            cache,
            features: None,
            sums: [0.0; 3],
            micro: 0,
        }
    }

    /// Adds the feature term; `student_hidden` is the student's width, which gets learned
    /// projections (seeded by `seed`, trained with the student's learning rate) when it differs
    /// from the teacher's.
    pub fn with_features(mut self, cfg: FeatureConfig, student_hidden: usize, seed: u64) -> Self {
        let teacher_hidden = self.teacher.config.hidden_size;
        let projector = (student_hidden != teacher_hidden).then(|| {
            FeatureProjector::new(
                cfg.pairs.len(),
                student_hidden,
                teacher_hidden,
                seed,
                &self.device,
            )
            .fork(&self.device.clone().autodiff())
        });
        self.features = Some(Features {
            cfg,
            projector,
            optim: AdamWConfig::new().with_weight_decay(0.0).init(),
            accum: GradientsAccumulator::new(),
        });
        self
    }

    /// The trained feature projections, if the widths differed.
    pub fn projector(&self) -> Option<FeatureProjector> {
        self.features
            .as_ref()
            .and_then(|f| f.projector.as_ref().map(|p| p.valid()))
    }
}

impl TrainHook for DistillHook<'_> {
    fn capture_hidden(&self) -> bool {
        self.features.is_some()
    }

    fn loss(&mut self, batch: &Batch, out: &ModelOutput, _lm: Tensor<1>) -> Result<Tensor<1>> {
        let ad = out.logits.device();
        let targets = batch_tensor(&batch.targets, &ad);
        let need_teacher_logits = self.cache.is_none() && self.loss.alpha > 0.0;
        let teacher = (need_teacher_logits || self.features.is_some()).then(|| {
            self.teacher.forward_full(
                batch_tensor(&batch.inputs, &self.device),
                None,
                self.features.is_some(),
            )
        });
        let parts = match (self.cache, &teacher) {
            (Some(cache), _) => {
                let top = cache.batch(&batch.windows, &ad);
                self.loss
                    .forward_topk(out.logits.clone(), top, targets, None)?
            }
            (None, Some(t)) if self.loss.alpha > 0.0 => self.loss.forward(
                out.logits.clone(),
                t.logits.clone().autodiff(),
                targets,
                None,
            )?,
            // α = 0: no teacher logits needed, the soft part is 0.
            _ => self
                .loss
                .forward(out.logits.clone(), out.logits.clone(), targets, None)?,
        };
        let mut total = parts.total;
        self.sums[0] += scalar_f64(parts.soft);
        self.sums[1] += scalar_f64(parts.hard);
        if let (Some(f), Some(t)) = (&self.features, &teacher) {
            let th: Vec<Tensor<3>> = t
                .hidden_states
                .iter()
                .map(|h| h.clone().autodiff())
                .collect();
            let feat = feature_loss(&f.cfg, &out.hidden_states, &th, f.projector.as_ref())?;
            self.sums[2] += scalar_f64(feat.clone());
            total = total + feat.mul_scalar(f.cfg.weight);
        }
        self.micro += 1;
        Ok(total)
    }

    fn after_backward(&mut self, grads: &mut Gradients) {
        if let Some(f) = &mut self.features {
            if let Some(p) = &f.projector {
                let g = GradientsParams::from_module(grads, p);
                f.accum.accumulate(p, g);
            }
        }
    }

    fn step_own(&mut self, lr: f64) {
        if let Some(f) = &mut self.features {
            if let Some(p) = f.projector.take() {
                let grads = f.accum.grads();
                f.projector = Some(f.optim.step(lr, p, grads));
            }
        }
    }

    fn take_parts(&mut self) -> Vec<(String, f64)> {
        let n = self.micro.max(1) as f64;
        let mut parts = vec![
            ("soft".to_string(), self.sums[0] / n),
            ("hard".to_string(), self.sums[1] / n),
        ];
        if self.features.is_some() {
            parts.push(("feature".to_string(), self.sums[2] / n));
        }
        self.sums = [0.0; 3];
        self.micro = 0;
        parts
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        let Some(f) = &self.features else {
            return Ok(());
        };
        let Some(p) = &f.projector else {
            return Ok(());
        };
        let tensors = p
            .proj
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let w = l.weight.val();
                let dims = w.dims();
                TensorOut::from_f32(
                    format!("proj.{i}"),
                    dims.to_vec(),
                    &to_vec_f32(w),
                    compress_format::safetensors::Dtype::F32,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        write_safetensors(&dir.join(PROJECTOR_FILE), &tensors, None)?;
        let path = dir.join(PROJECTOR_OPTIM_FILE);
        f.optim
            .save(&path)
            .map_err(|e| CoreError::Invalid(format!("{}: {e:?}", path.display())))
    }

    fn load_state(&mut self, dir: &Path) -> Result<()> {
        let Some(f) = &mut self.features else {
            return Ok(());
        };
        let Some(p) = f.projector.take() else {
            return Ok(());
        };
        let file = SafetensorsFile::open(&dir.join(PROJECTOR_FILE))?;
        let mut p = p;
        for (i, l) in p.proj.iter_mut().enumerate() {
            let t = file.tensor(&format!("proj.{i}"))?;
            let dims = l.weight.val().dims();
            if t.shape != dims {
                return Err(CoreError::Data {
                    path: dir.join(PROJECTOR_FILE),
                    msg: format!("proj.{i}: shape {:?}, expected {dims:?}", t.shape),
                });
            }
            let v = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(t.to_f32()?, dims),
                &l.weight.val().device(),
            );
            l.weight = l.weight.clone().map(|_| v.clone());
        }
        f.projector = Some(p);
        let path = dir.join(PROJECTOR_OPTIM_FILE);
        let optim = std::mem::replace(&mut f.optim, AdamWConfig::new().init());
        f.optim = optim
            .load(&path)
            .map_err(|e| CoreError::Invalid(format!("{}: {e:?}", path.display())))?;
        Ok(())
    }
}
