//! Splitting a layer's FFN neurons into experts (MoEfication, Zhang et al. 2022): balanced
//! k-means over the neurons' weight vectors (`gate_proj` row ⊕ `up_proj` row), so neurons that
//! respond to similar inputs share an expert. Neurons are only moved (gate/up rows and the
//! matching `down_proj` columns permuted together), never changed.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Balanced k-means of the `n = x.len() / dim` rows of `x` into clusters of exactly `sizes[c]`
/// points: each round assigns (point, cluster) pairs greedily by distance under the capacities,
/// then moves each centroid to its points' mean. Returns each point's cluster.
pub fn balanced_kmeans(
    x: &[f32],
    dim: usize,
    sizes: &[usize],
    iters: usize,
    seed: u64,
) -> Vec<usize> {
    let n = x.len() / dim;
    let k = sizes.len();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        n,
        "cluster sizes must cover every point"
    );
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut centroids: Vec<Vec<f32>> = order[..k].iter().map(|&i| row(i).to_vec()).collect();
    let mut assign = vec![0usize; n];
    for _ in 0..iters.max(1) {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::with_capacity(n * k);
        for i in 0..n {
            for (c, cen) in centroids.iter().enumerate() {
                let d: f32 = row(i).iter().zip(cen).map(|(a, b)| (a - b) * (a - b)).sum();
                pairs.push((d, i, c));
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let mut left = sizes.to_vec();
        let mut done = vec![false; n];
        for (_, i, c) in pairs {
            if !done[i] && left[c] > 0 {
                assign[i] = c;
                done[i] = true;
                left[c] -= 1;
            }
        }
        for (c, cen) in centroids.iter_mut().enumerate() {
            cen.fill(0.0);
            for i in (0..n).filter(|&i| assign[i] == c) {
                cen.iter_mut().zip(row(i)).for_each(|(a, b)| *a += b);
            }
            cen.iter_mut().for_each(|a| *a /= sizes[c].max(1) as f32);
        }
    }
    assign
}

/// The neuron order that groups clusters: cluster 0's neurons (ascending), then cluster 1's, ….
pub fn grouped_order(assign: &[usize], clusters: usize) -> Vec<usize> {
    (0..clusters)
        .flat_map(|c| (0..assign.len()).filter(move |&i| assign[i] == c))
        .collect()
}

/// Rows `order` of a row-major `[rows, cols]` matrix.
pub fn permute_rows(w: &[f32], cols: usize, order: &[usize]) -> Vec<f32> {
    order
        .iter()
        .flat_map(|&r| w[r * cols..(r + 1) * cols].iter().copied())
        .collect()
}

/// Columns `order` of a row-major `[rows, cols]` matrix.
pub fn permute_cols(w: &[f32], cols: usize, order: &[usize]) -> Vec<f32> {
    w.chunks(cols)
        .flat_map(|r| order.iter().map(move |&c| r[c]))
        .collect()
}

/// Each layer's neurons described by their activations: row `i` of layer `l` holds
/// `|silu(gate_i(x)) · up_i(x)|` over the first `max_tokens` calibration tokens (`[I, tokens]`,
/// row-major, with the token count), so neurons that fire together share an expert.
pub fn activation_features(
    model: &crate::model::LlamaModel,
    samples: &[Vec<u32>],
    max_tokens: usize,
) -> crate::error::Result<Vec<(Vec<f32>, usize)>> {
    use crate::model::batch_tensor;
    use crate::tensor_util::to_vec_f32;
    let device = model.embed_tokens.weight.val().device();
    let inter = model.config.intermediate_size;
    let mut acts: Vec<Vec<f32>> = vec![Vec::new(); model.layers.len()]; // [tokens, I] each
    let mut tokens = 0;
    for rows in samples.chunks(8) {
        if tokens >= max_tokens {
            break;
        }
        let len = rows[0].len();
        let (cos, sin) = model.rope.tables(0, len, &device);
        let mut x = model.embed_tokens.forward(batch_tensor(rows, &device));
        for (l, layer) in model.layers.iter().enumerate() {
            let (out, taps) = layer.forward_traced(x, &cos, &sin);
            acts[l].extend(to_vec_f32(taps.down_in.abs()));
            x = out;
        }
        tokens += rows.len() * len;
    }
    let tokens = tokens.min(max_tokens);
    Ok(acts
        .into_iter()
        .map(|a| {
            let t: Vec<f32> = (0..inter)
                .flat_map(|i| (0..tokens).map(move |r| (r, i)))
                .map(|(r, i)| a[r * inter + i])
                .collect();
            (t, tokens)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_have_their_sizes_and_separate_obvious_groups() {
        // Two groups of 3 points far apart, in 2-D.
        let x = [0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 9.0, 9.0, 9.1, 9.0, 9.0, 9.1];
        let a = balanced_kmeans(&x, 2, &[3, 3], 5, 1);
        assert_eq!(a[0], a[1]);
        assert_eq!(a[1], a[2]);
        assert_eq!(a[3], a[4]);
        assert_ne!(a[0], a[3]);
        let order = grouped_order(&a, 2);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        // Sizes are held even when the data would rather not.
        let a = balanced_kmeans(&x, 2, &[1, 5], 5, 1);
        assert_eq!(a.iter().filter(|&&c| c == 0).count(), 1);
        assert_eq!(
            permute_cols(&[1., 2., 3., 4.], 2, &[1, 0]),
            vec![2., 1., 4., 3.]
        );
        assert_eq!(
            permute_rows(&[1., 2., 3., 4.], 2, &[1, 0]),
            vec![3., 4., 1., 2.]
        );
    }
}
