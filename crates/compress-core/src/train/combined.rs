//! [`Combined`]: two training hooks run as one, e.g. pruning's mask hook with distillation's loss.

use std::path::Path;

use burn::tensor::{Gradients, Tensor};

use super::{Batch, ParamMasks, TrainHook};
use crate::error::Result;
use crate::model::{LlamaModel, ModelOutput};

/// Masks come from `masks`; the loss, a hook's own parameters, loss parts and saved state from
/// `loss`; both see every step's end (`masks` first).
pub struct Combined<'a> {
    /// The hook whose masks are held.
    pub masks: &'a mut dyn TrainHook,
    /// The hook that computes the loss.
    pub loss: &'a mut dyn TrainHook,
}

impl TrainHook for Combined<'_> {
    fn capture_hidden(&self) -> bool {
        self.loss.capture_hidden()
    }

    fn loss(&mut self, batch: &Batch, out: &ModelOutput, lm_loss: Tensor<1>) -> Result<Tensor<1>> {
        self.loss.loss(batch, out, lm_loss)
    }

    fn after_backward(&mut self, grads: &mut Gradients) {
        self.loss.after_backward(grads)
    }

    fn step_own(&mut self, lr: f64) {
        self.loss.step_own(lr)
    }

    fn take_parts(&mut self) -> Vec<(String, f64)> {
        self.loss.take_parts()
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        self.loss.save_state(dir)
    }

    fn load_state(&mut self, dir: &Path) -> Result<()> {
        self.loss.load_state(dir)
    }

    fn after_step(&mut self, step: usize, model: LlamaModel) -> LlamaModel {
        let model = self.masks.after_step(step, model);
        self.loss.after_step(step, model)
    }

    fn masks_due(&self, step: usize) -> bool {
        self.masks.masks_due(step)
    }

    fn update_masks(&mut self, step: usize, model: &LlamaModel) -> Result<Option<ParamMasks>> {
        self.masks.update_masks(step, model)
    }
}
