//! Keep-masks the trainer holds on parameters while a pruned model retrains: a pruned weight
//! gets no gradient, its optimizer moments are zeroed when it is pruned, and it is set back
//! to exactly zero after every optimizer step, so a mask stays exact through any training.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{CoreError, Result};

/// Per-parameter keep-masks: 1 where a weight trains, 0 where it is pruned (held at zero).
/// Masks have the parameter's burn shape (a linear's `[in, out]`).
#[derive(Clone, Debug, Default)]
pub struct ParamMasks {
    masks: HashMap<ParamId, TensorData>,
    /// The masks as tensors on the device they were last used on (uploaded once, not per step).
    on_device: Arc<Mutex<HashMap<ParamId, Tensor<2>>>>,
}

impl ParamMasks {
    /// No masks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds parameter `id` to `keep` (`[rows, cols]` row-major in the parameter's layout).
    pub fn insert(&mut self, id: ParamId, keep: Vec<bool>, rows: usize, cols: usize) {
        assert_eq!(keep.len(), rows * cols, "mask is not [{rows}, {cols}]");
        let v: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        self.masks.insert(id, TensorData::new(v, [rows, cols]));
        self.cache().remove(&id);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<ParamId, Tensor<2>>> {
        // A poisoned lock only means another thread panicked mid-insert; the map stays usable.
        self.on_device.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of masked parameters.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// True when no parameter is masked.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// Pruned entries over all masked parameters.
    pub fn pruned(&self) -> usize {
        self.masks
            .values()
            .map(|m| m.iter::<f32>().filter(|&v| v == 0.0).count())
            .sum()
    }

    fn tensor(&self, id: &ParamId, device: &Device) -> Option<Tensor<2>> {
        let data = self.masks.get(id)?;
        let mut cache = self.cache();
        match cache.get(id) {
            Some(t) if &t.device() == device => Some(t.clone()),
            _ => {
                let t = Tensor::from_data(data.clone(), device);
                cache.insert(*id, t.clone());
                Some(t)
            }
        }
    }

    /// Multiplies the gradients of masked parameters by their masks.
    pub fn mask_grads(&self, grads: &mut GradientsParams) {
        for id in self.masks.keys() {
            if let Some(g) = grads.remove::<2>(*id) {
                let m = self.tensor(id, &g.device()).expect("key present");
                grads.register(*id, g * m);
            }
        }
    }

    /// `module` with every masked weight multiplied by its mask (trainable parameters stay
    /// trainable leaves).
    pub fn apply<M: Module>(&self, module: M) -> M {
        module.map(&mut Apply { masks: self })
    }

    /// Zeroes the optimizer state (AdamW moments) of the pruned entries: every state tensor of a
    /// masked parameter with the parameter's shape is multiplied by its mask.
    pub fn mask_optimizer_state(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let bad = |e: String| CoreError::Invalid(format!("masking optimizer state: {e}"));
        let bytes = optim
            .to_record()
            .into_bytes()
            .map_err(|e| bad(format!("{e:?}")))?;
        let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| bad(format!("{e:?}")))?;
        let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
        let mut tensors = Vec::new();
        for t in reader.into_tensors().map_err(|e| bad(format!("{e:?}")))? {
            let (name, dtype, shape, param_id, bytes) =
                t.into_parts().map_err(|e| bad(format!("{e:?}")))?;
            let mask = param_id.and_then(|id| self.masks.get(&ParamId::from(id)));
            let bytes = match mask {
                Some(m) if m.shape() == &shape && dtype.is_float() => {
                    let data = TensorData::from_bytes(bytes, shape.clone(), dtype);
                    let v: Vec<f32> = data.try_to_vec_as().map_err(|e| bad(format!("{e:?}")))?;
                    let keep = m.iter::<f32>();
                    let masked: Vec<f32> = v.iter().zip(keep).map(|(x, k)| x * k).collect();
                    let out = TensorData::new(masked, shape.clone()).convert_dtype(dtype);
                    out.into_parts().0
                }
                _ => bytes,
            };
            tensors.push(burn_pack::Tensor::new(name, dtype, shape, param_id, bytes));
        }
        let mut writer = burn_pack::Writer::new(tensors);
        for (k, v) in &scalars {
            writer = writer.with_scalar(k, *v);
        }
        for (k, v) in &metadata {
            writer = writer.with_metadata(k, v);
        }
        let bytes = writer.into_bytes().map_err(|e| bad(format!("{e:?}")))?;
        let record = OptimizerRecord::from_bytes(bytes).map_err(|e| bad(format!("{e:?}")))?;
        Ok(optim.load_record(record))
    }
}

struct Apply<'a> {
    masks: &'a ParamMasks,
}

impl ModuleMapper for Apply<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 2 || !self.masks.masks.contains_key(&param.id) {
            return param;
        }
        let id = param.id;
        let masks = self.masks;
        // The mask as a `D`-dimensional tensor (`D == 2` here) on `device`.
        let mask = |device: &Device| -> Tensor<D> {
            let m = masks.tensor(&id, device).expect("key present");
            let shape = m.shape();
            m.reshape::<D, _>(shape)
        };
        param.map(|t| {
            if t.is_autodiff() {
                let trainable = t.is_require_grad();
                let inner = t.inner();
                let m = mask(&inner.device());
                Tensor::from_inner(inner * m).set_require_grad(trainable)
            } else {
                let m = mask(&t.device());
                t * m
            }
        })
    }
}
