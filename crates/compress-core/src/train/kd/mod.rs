//! Knowledge-distillation objectives for the trainer, one implementation shared by every
//! stage that trains against a teacher (distillation, pruning's retraining, QAT): the
//! α·T²·KL + (1 − α)·CE loss and its KL term ([`loss`]), hidden-state feature terms
//! ([`features`]) and the teacher-in-the-loop [`DistillHook`] ([`hook`]).

pub mod features;
pub mod hook;
pub mod loss;

use burn::tensor::Device;

pub use features::{FeatureConfig, FeatureDistance, FeatureProjector};
pub use hook::DistillHook;
pub use loss::{kl_per_token, DistillLoss, DistillParts, TopK};

/// A teacher given by stored top-k logits (e.g. distillation's on-disk cache) instead of a
/// forward pass.
pub trait TopKSource {
    /// The top-k logits of the training windows `rows` (their indices), on `device`.
    fn batch(&self, rows: &[usize], device: &Device) -> TopK;
}
