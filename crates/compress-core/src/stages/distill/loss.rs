//! The knowledge-distillation loss (Hinton et al. 2015), per token and masked on padding:
//!
//! ```text
//! L = α · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + (1 − α) · CE(labels, softmax(z_s))
//! ```
//!
//! The soft term equals `−Σ p_i^T log q_i^T` up to the teacher's entropy (a constant for the
//! student); `T²` keeps its gradient on the scale of the hard term as `T` grows. `α = 1` is pure
//! distillation, `α = 0` plain next-token training. Both terms are means over the unmasked
//! positions.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::error::{CoreError, Result};

/// The distillation loss settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistillLoss {
    /// Weight of the soft (teacher) term in `[0, 1]`; the hard term gets `1 − α`.
    pub alpha: f64,
    /// Softmax temperature `T > 0` of the soft term.
    pub temperature: f64,
}

/// The loss and its two parts (each already averaged over unmasked positions).
#[derive(Clone, Debug)]
pub struct DistillParts {
    /// `α · soft + (1 − α) · hard`.
    pub total: Tensor<1>,
    /// `T² · KL(p_t^T ‖ q_s^T)`.
    pub soft: Tensor<1>,
    /// Next-token cross-entropy of the student.
    pub hard: Tensor<1>,
}

impl DistillLoss {
    /// Checked settings: `α` in `[0, 1]`, `T` finite and `> 0`.
    pub fn new(alpha: f64, temperature: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(CoreError::Invalid(format!(
                "--alpha {alpha}: must be in [0, 1]"
            )));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(CoreError::Invalid(format!(
                "--T {temperature}: must be a finite number > 0"
            )));
        }
        Ok(Self { alpha, temperature })
    }

    /// The loss of `student` against `teacher` logits (`[batch, seq, vocab]` each) and next-token
    /// `targets` (`[batch, seq]`); `mask` (`[batch, seq]`, 1 = scored, 0 = padding) leaves
    /// positions out. Errors when the shapes (e.g. the vocabularies) differ.
    pub fn forward(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        targets: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
    ) -> Result<DistillParts> {
        let (s, t) = (student.dims(), teacher.dims());
        if s != t {
            return Err(CoreError::Invalid(format!(
                "student logits {s:?} and teacher logits {t:?} differ (vocab sizes {} vs {})",
                s[2], t[2]
            )));
        }
        let [b, n, _] = s;
        if targets.dims() != [b, n] {
            return Err(CoreError::Invalid(format!(
                "targets {:?}, expected [{b}, {n}]",
                targets.dims()
            )));
        }
        let mask = match mask {
            Some(m) if m.dims() != [b, n] => {
                return Err(CoreError::Invalid(format!(
                    "mask {:?}, expected [{b}, {n}]",
                    m.dims()
                )))
            }
            Some(m) => m,
            None => Tensor::ones([b, n], &student.device()),
        };
        let count = mask.clone().sum().clamp_min(1.0);
        let mean = |per_token: Tensor<2>| (per_token * mask.clone()).sum() / count.clone();
        let temp = self.temperature;
        let soft = if self.alpha > 0.0 {
            mean(kl_per_token(
                teacher.div_scalar(temp),
                student.clone().div_scalar(temp),
            ))
            .mul_scalar(temp * temp)
        } else {
            Tensor::zeros([1], &student.device())
        };
        let logp = log_softmax(student, 2);
        let picked: Tensor<2> = logp.gather(2, targets.unsqueeze_dim(2)).squeeze_dim(2);
        let hard = mean(picked.neg());
        let total = soft.clone().mul_scalar(self.alpha) + hard.clone().mul_scalar(1.0 - self.alpha);
        Ok(DistillParts { total, soft, hard })
    }
}

/// `KL(softmax(teacher) ‖ softmax(student))` at each position, logits `[b, s, v]` → `[b, s]`.
pub fn kl_per_token(teacher: Tensor<3>, student: Tensor<3>) -> Tensor<2> {
    let lt = log_softmax(teacher, 2);
    let ls = log_softmax(student, 2);
    (lt.clone().exp() * (lt - ls)).sum_dim(2).squeeze_dim(2)
}
