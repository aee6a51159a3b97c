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

/// A teacher given by its top-k logits per position.
#[derive(Clone, Debug)]
pub struct TopK {
    /// Vocabulary ids `[batch, seq, k]`.
    pub ids: Tensor<3, Int>,
    /// Raw logits at those ids `[batch, seq, k]`.
    pub logits: Tensor<3>,
    /// `logsumexp(z / T)` over the whole vocabulary `[batch, seq]`.
    pub lse: Tensor<2>,
}

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
            return Err(CoreError::setting("alpha", alpha, "must be in [0, 1]"));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            let msg = "must be a finite number > 0";
            return Err(CoreError::setting("T", temperature, msg));
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
        let temp = self.temperature;
        let soft = (self.alpha > 0.0)
            .then(|| kl_per_token(teacher.div_scalar(temp), student.clone().div_scalar(temp)));
        self.combine(student, soft, targets, mask)
    }

    /// Like [`Self::forward`] with the teacher given by its `k` largest logits per position (e.g.
    /// from a [`crate::stages::distill::TopKCache`] built at this `T`). The soft term is the KL divergence
    /// over `k + 1` buckets, the top-k ids and the rest of the vocabulary as one:
    /// `T² · [Σ_k p_k (log p_k − log q_k) + p_r (log p_r − log q_r)]`, with the teacher's exact
    /// `p_k = exp(z_k / T − lse)` and `p_r = 1 − Σ p_k`, and the student's full softmax `q` at `T`.
    /// It is ≥ 0, 0 when the student matches those `k + 1` probabilities, and equals the full KL
    /// when `k` is the vocabulary.
    pub fn forward_topk(
        &self,
        student: Tensor<3>,
        teacher: TopK,
        targets: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
    ) -> Result<DistillParts> {
        let [b, n, v] = student.dims();
        let [tb, tn, k] = teacher.ids.dims();
        if [tb, tn] != [b, n]
            || teacher.logits.dims() != [tb, tn, k]
            || teacher.lse.dims() != [tb, tn]
            || k > v
        {
            return Err(CoreError::Invalid(format!(
                "teacher top-k {:?}/{:?} do not fit student logits [{b}, {n}, {v}]",
                teacher.ids.dims(),
                teacher.logits.dims()
            )));
        }
        let temp = self.temperature;
        let soft = (self.alpha > 0.0).then(|| {
            let lp = teacher.logits.div_scalar(temp) - teacher.lse.unsqueeze_dim(2);
            let p = lp.clone().exp();
            let ls = log_softmax(student.clone().div_scalar(temp), 2).gather(2, teacher.ids);
            let q_top = ls.clone().exp().sum_dim(2).squeeze_dim(2);
            let p_rest: Tensor<2> = p
                .clone()
                .sum_dim(2)
                .squeeze_dim::<2>(2)
                .neg()
                .add_scalar(1.0)
                .clamp_min(0.0);
            let q_rest = q_top.neg().add_scalar(1.0).clamp_min(1e-12);
            let top: Tensor<2> = (p * (lp - ls)).sum_dim(2).squeeze_dim(2);
            let rest = p_rest.clone() * (p_rest.clamp_min(1e-12).log() - q_rest.log());
            top + rest
        });
        self.combine(student, soft, targets, mask)
    }

    /// Masks and averages the per-token `soft` term (scaled by `T²`) and the hard cross-entropy.
    fn combine(
        &self,
        student: Tensor<3>,
        soft: Option<Tensor<2>>,
        targets: Tensor<2, Int>,
        mask: Option<Tensor<2>>,
    ) -> Result<DistillParts> {
        let [b, n, _] = student.dims();
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
        let soft = match soft {
            Some(kl) => mean(kl).mul_scalar(temp * temp),
            None => Tensor::zeros([1], &student.device()),
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
