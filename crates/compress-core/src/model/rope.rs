//! Rotary position embeddings in HF's rotate-half layout, with `llama3` and `linear`
//! frequency scaling computed exactly as transformers does (float32 throughout).

use burn::tensor::{Device, Tensor, TensorData};
use compress_format::hf_config::{rope_inv_freq, RopeScaling};

/// Inverse frequencies of one head, `head_dim / 2` of them, after any scaling.
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
}

impl Rope {
    /// Builds the frequencies for `head_dim`, base `theta` and optional scaling.
    pub fn new(head_dim: usize, theta: f64, scaling: Option<&RopeScaling>) -> Self {
        Self {
            inv_freq: rope_inv_freq(head_dim, theta, scaling),
            head_dim,
        }
    }

    /// The frequencies (one per pair of channels).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `cos` and `sin` tables `[len, head_dim]` for positions `start..start+len`.
    pub fn tables(&self, start: usize, len: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let mut cos = Vec::with_capacity(len * self.head_dim);
        let mut sin = Vec::with_capacity(len * self.head_dim);
        for pos in start..start + len {
            let p = pos as f32;
            // HF concatenates the frequencies twice: emb = cat(freqs, freqs).
            for _ in 0..2 {
                for &f in &self.inv_freq {
                    let angle = (p * f) as f64;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [len, self.head_dim];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    /// Applies the rotation to `x` `[batch, heads, seq, head_dim]` given tables from [`Self::tables`].
    pub fn apply(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
        let [_, _, seq, dim] = x.dims();
        let half = dim / 2;
        let cos = cos.clone().reshape([1, 1, seq, dim]);
        let sin = sin.clone().reshape([1, 1, seq, dim]);
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(factor: f64) -> RopeScaling {
        RopeScaling {
            rope_type: "llama3".into(),
            factor,
            low_freq_factor: Some(1.0),
            high_freq_factor: Some(4.0),
            original_max_position_embeddings: Some(64),
        }
    }

    #[test]
    fn plain_frequencies() {
        let rope = Rope::new(8, 10000.0, None);
        let expect = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in rope.inv_freq().iter().zip(expect) {
            assert!((a - b).abs() < 1e-6 * b.max(1e-3) + 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let plain = Rope::new(8, 500000.0, None);
        let scaled = Rope::new(8, 500000.0, Some(&scaling(8.0)));
        // Highest frequency (wavelen 2π < 16) untouched; lowest divided by the factor.
        assert_eq!(plain.inv_freq()[0], scaled.inv_freq()[0]);
        let last = plain.inv_freq().len() - 1;
        assert!((plain.inv_freq()[last] / 8.0 - scaled.inv_freq()[last]).abs() < 1e-12);
    }

    #[test]
    fn rotation_preserves_norm_and_is_identity_at_zero() {
        let device = Device::flex();
        let rope = Rope::new(4, 10000.0, None);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
                [1, 1, 2, 4],
            ),
            &device,
        );
        let (cos, sin) = rope.tables(0, 2, &device);
        let y: Vec<f32> = crate::tensor_util::to_vec_f32(Rope::apply(x, &cos, &sin));
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        let n0: f32 = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v * v).sum();
        let n1: f32 = y[4..].iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
    }
}
