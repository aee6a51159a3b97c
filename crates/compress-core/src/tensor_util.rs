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

/// Indices of the `k` largest values of `row`, largest first (ties: lower index first).
pub fn top_k_indices(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let by = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by);
    }
    idx.truncate(k);
    idx.sort_by(by);
    idx
}

#[cfg(test)]
mod tests {
    use super::top_k_indices;

    #[test]
    fn top_k_picks_the_largest_first() {
        let row = [0.5, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k_indices(&row, 3), vec![1, 3, 4]);
        assert_eq!(top_k_indices(&row, 5), vec![1, 3, 4, 0, 2]);
        assert_eq!(top_k_indices(&row, 0), Vec::<usize>::new());
    }
}
