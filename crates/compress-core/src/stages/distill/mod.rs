//! Knowledge distillation from a teacher model into a student.
//!
//! So far this holds the loss ([`loss::DistillLoss`]: soft KL at temperature `T` weighted by
//! `α`, hard next-token cross-entropy by `1 − α`, masked on padding). Students, feature
//! distillation and the `compress distill` command build on it.

pub mod loss;

pub use loss::{DistillLoss, DistillParts};
