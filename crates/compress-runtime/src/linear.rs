//! A linear layer as the runtime holds it (a kernel-form weight and an optional bias), and its
//! product: used by the loader that builds it and by the dense, expert and attention paths.

use crate::kernels::{Input, Weight};

/// A linear layer: weight and optional bias.
#[derive(Debug)]
pub struct Linear {
    /// The weight `[out, in]`.
    pub weight: Weight,
    /// Bias `[out]`, if the checkpoint has one.
    pub bias: Option<Vec<f32>>,
}

/// `x · Wᵀ + b` for all rows of `input`.
pub fn linear(l: &Linear, input: &Input<'_>) -> Vec<f32> {
    let n = l.weight.rows();
    let mut y = vec![0f32; input.m * n];
    l.weight.matmul(input, &mut y);
    if let Some(b) = &l.bias {
        y.chunks_exact_mut(n)
            .for_each(|row| row.iter_mut().zip(b).for_each(|(y, b)| *y += b));
    }
    y
}
