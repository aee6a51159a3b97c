//! Reading burn tensors back to the host.

use burn::tensor::Tensor;

/// All values of a float tensor as f32, row-major.
pub fn to_vec_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>()
        .expect("a float tensor can be read back as f32")
}

/// The single value of a one-element tensor, as f64.
pub fn scalar_f64(t: Tensor<1>) -> f64 {
    t.try_into_vec_as::<f64>()
        .expect("a float tensor can be read back as f64")[0]
}
