//! The distillation loss against independent host computations: α = 0 is the LM cross-entropy,
//! α = 1 is T²·KL, KL vanishes when student = teacher, padding is left out, the gradient matches
//! finite differences, and bad settings or mismatched vocabularies are refused.

use burn::tensor::{Device, Int, Tensor, TensorData};
use compress_core::stages::distill::cache::TopK;
use compress_core::stages::distill::DistillLoss;
use compress_core::tensor_util::{scalar_f64, to_vec_f32};
use compress_core::train::cross_entropy;

const B: usize = 2;
const S: usize = 3;
const V: usize = 5;

fn logits(seed: u32, device: &Device) -> Tensor<3> {
    let v: Vec<f32> = (0..B * S * V)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503);
            (h % 1000) as f32 / 250.0 - 2.0
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [B, S, V]), device)
}

fn targets(device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = (0..B * S).map(|i| ((i * 3 + 1) % V) as i64).collect();
    Tensor::from_data(TensorData::new(v, [B, S]), device)
}

/// Host-side `T² · mean_t KL(softmax(t/T) ‖ softmax(s/T))` over the unmasked positions.
fn host_soft(s: &[f32], t: &[f32], temp: f64, mask: &[f32]) -> f64 {
    let lsm = |row: &[f32]| {
        let x: Vec<f64> = row.iter().map(|&v| f64::from(v) / temp).collect();
        let m = x.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = x.iter().map(|v| (v - m).exp()).sum();
        x.iter().map(|v| v - m - z.ln()).collect::<Vec<_>>()
    };
    let (mut sum, mut n) = (0.0, 0.0);
    for (p, (sr, tr)) in s.chunks(V).zip(t.chunks(V)).enumerate() {
        if mask[p] == 0.0 {
            continue;
        }
        let (ls, lt) = (lsm(sr), lsm(tr));
        sum += lt
            .iter()
            .zip(&ls)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
        n += 1.0;
    }
    temp * temp * sum / n
}

#[test]
fn alpha_zero_is_cross_entropy_and_alpha_one_is_scaled_kl() {
    let device = Device::flex();
    let (s, t) = (logits(1, &device), logits(2, &device));
    let ce = scalar_f64(cross_entropy(s.clone(), targets(&device)));
    let l0 = DistillLoss::new(0.0, 2.0).unwrap();
    let p = l0
        .forward(s.clone(), t.clone(), targets(&device), None)
        .unwrap();
    assert!((scalar_f64(p.total) - ce).abs() < 1e-5);
    let ones = vec![1.0; B * S];
    for temp in [1.0, 2.0, 4.0] {
        let l1 = DistillLoss::new(1.0, temp).unwrap();
        let p = l1
            .forward(s.clone(), t.clone(), targets(&device), None)
            .unwrap();
        let want = host_soft(&to_vec_f32(s.clone()), &to_vec_f32(t.clone()), temp, &ones);
        assert!(
            (scalar_f64(p.total) - want).abs() < 1e-5 * want.max(1.0),
            "T={temp}"
        );
        assert!(want > 1e-3, "the test logits differ");
    }
    // Mixed: α·soft + (1 − α)·hard.
    let l = DistillLoss::new(0.7, 2.0).unwrap();
    let p = l
        .forward(s.clone(), t.clone(), targets(&device), None)
        .unwrap();
    let want = 0.7 * scalar_f64(p.soft.clone()) + 0.3 * scalar_f64(p.hard.clone());
    assert!((scalar_f64(p.total) - want).abs() < 1e-6);
    assert!((scalar_f64(p.hard) - ce).abs() < 1e-5);
}

#[test]
fn kl_is_zero_for_the_teacher_itself_and_padding_is_left_out() {
    let device = Device::flex();
    let s = logits(3, &device);
    let l = DistillLoss::new(1.0, 2.0).unwrap();
    let p = l
        .forward(s.clone(), s.clone(), targets(&device), None)
        .unwrap();
    assert!(scalar_f64(p.soft).abs() < 1e-6);
    // Position (1, 2) is padding: garbage there changes nothing.
    let mask: Vec<f32> = (0..B * S)
        .map(|i| if i == B * S - 1 { 0.0 } else { 1.0 })
        .collect();
    let m = || Tensor::<2>::from_data(TensorData::new(mask.clone(), [B, S]), &device);
    let t = logits(4, &device);
    let mut garbage = to_vec_f32(s.clone());
    garbage[(B * S - 1) * V..]
        .iter_mut()
        .for_each(|v| *v = 50.0);
    let g = Tensor::<3>::from_data(TensorData::new(garbage, [B, S, V]), &device);
    let l = DistillLoss::new(0.5, 2.0).unwrap();
    let a = l
        .forward(s.clone(), t.clone(), targets(&device), Some(m()))
        .unwrap();
    let b = l
        .forward(g, t.clone(), targets(&device), Some(m()))
        .unwrap();
    assert!((scalar_f64(a.total.clone()) - scalar_f64(b.total)).abs() < 1e-6);
    let want = host_soft(&to_vec_f32(s), &to_vec_f32(t), 2.0, &mask);
    assert!((scalar_f64(a.soft) - want).abs() < 1e-5);
}

#[test]
fn gradient_matches_finite_differences() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let l = DistillLoss::new(0.7, 2.0).unwrap();
    let base = to_vec_f32(logits(5, &device));
    let t = to_vec_f32(logits(6, &device));
    let loss_at = |v: &[f32]| {
        let s = Tensor::<3>::from_data(TensorData::new(v.to_vec(), [B, S, V]), &device);
        let t = Tensor::<3>::from_data(TensorData::new(t.clone(), [B, S, V]), &device);
        scalar_f64(l.forward(s, t, targets(&device), None).unwrap().total)
    };
    let s = Tensor::<3>::from_data(TensorData::new(base.clone(), [B, S, V]), &ad).require_grad();
    let tt = Tensor::<3>::from_data(TensorData::new(t.clone(), [B, S, V]), &ad);
    let loss = l.forward(s.clone(), tt, targets(&ad), None).unwrap().total;
    let grads = loss.backward();
    let g = to_vec_f32(s.grad(&grads).expect("student logits have a gradient"));
    let h = 1e-2f32;
    for i in [0, 7, 13, 22, 29] {
        let (mut up, mut down) = (base.clone(), base.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (loss_at(&up) - loss_at(&down)) / (2.0 * f64::from(h));
        assert!(
            (f64::from(g[i]) - fd).abs() < 2e-3,
            "∂L/∂z[{i}]: autodiff {} vs fd {fd}",
            g[i]
        );
    }
}

#[test]
fn bad_settings_and_mismatched_vocabularies_are_refused() {
    for (a, t, needle) in [
        (-0.1, 2.0, "alpha = "),
        (1.5, 2.0, "alpha = "),
        (f64::NAN, 2.0, "alpha = "),
        (0.5, 0.0, "T = "),
        (0.5, -1.0, "T = "),
        (0.5, f64::INFINITY, "T = "),
    ] {
        let e = DistillLoss::new(a, t).unwrap_err().to_string();
        assert!(e.contains(needle), "{a} {t}: {e}");
    }
    let device = Device::flex();
    let s = logits(1, &device);
    let other = Tensor::<3>::zeros([B, S, V + 1], &device);
    let e = DistillLoss::new(0.5, 2.0)
        .unwrap()
        .forward(s, other, targets(&device), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("vocab sizes 5 vs 6"), "{e}");
}

/// The teacher's `k` largest logits per position and `logsumexp(z / T)`, computed on the host.
fn top_k_teacher(t: &[f32], k: usize, temp: f64, device: &Device) -> TopK {
    let (mut ids, mut vals, mut lse) = (Vec::new(), Vec::new(), Vec::new());
    for row in t.chunks(V) {
        let mut order: Vec<usize> = (0..V).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        for &i in &order[..k] {
            ids.push(i as i64);
            vals.push(row[i]);
        }
        let z: f64 = row.iter().map(|&v| (f64::from(v) / temp).exp()).sum();
        lse.push(z.ln() as f32);
    }
    TopK {
        ids: Tensor::from_data(TensorData::new(ids, [B, S, k]), device),
        logits: Tensor::from_data(TensorData::new(vals, [B, S, k]), device),
        lse: Tensor::from_data(TensorData::new(lse, [B, S]), device),
    }
}

/// Host-side bucket KL: the top-k ids and the rest of the vocabulary as one bucket, times T².
fn host_bucket_soft(s: &[f32], t: &[f32], k: usize, temp: f64) -> f64 {
    let sm = |row: &[f32]| {
        let x: Vec<f64> = row.iter().map(|&v| (f64::from(v) / temp).exp()).collect();
        let z: f64 = x.iter().sum();
        x.into_iter().map(|v| v / z).collect::<Vec<_>>()
    };
    let mut sum = 0.0;
    for (sr, tr) in s.chunks(V).zip(t.chunks(V)) {
        let (q, p) = (sm(sr), sm(tr));
        let mut order: Vec<usize> = (0..V).collect();
        order.sort_by(|&a, &b| tr[b].total_cmp(&tr[a]));
        let (mut pr, mut qr) = (1.0, 1.0);
        for &i in &order[..k] {
            sum += p[i] * (p[i] / q[i]).ln();
            pr -= p[i];
            qr -= q[i];
        }
        if pr > 0.0 {
            sum += pr * (pr / qr).ln();
        }
    }
    temp * temp * sum / (B * S) as f64
}

#[test]
fn top_k_teacher_is_the_bucket_kl_and_the_full_kl_at_k_equal_vocab() {
    let device = Device::flex();
    let (s, t) = (logits(5, &device), logits(6, &device));
    let (sv, tv) = (to_vec_f32(s.clone()), to_vec_f32(t.clone()));
    let loss = DistillLoss::new(1.0, 2.0).unwrap();
    let full = scalar_f64(
        loss.forward(s.clone(), t.clone(), targets(&device), None)
            .unwrap()
            .soft,
    );
    let at_v = loss
        .forward_topk(
            s.clone(),
            top_k_teacher(&tv, V, 2.0, &device),
            targets(&device),
            None,
        )
        .unwrap();
    assert!(
        (scalar_f64(at_v.soft) - full).abs() < 1e-4,
        "k = vocab is the full KL"
    );
    for k in [1, 2, 3] {
        let got = loss
            .forward_topk(
                s.clone(),
                top_k_teacher(&tv, k, 2.0, &device),
                targets(&device),
                None,
            )
            .unwrap();
        let want = host_bucket_soft(&sv, &tv, k, 2.0);
        let g = scalar_f64(got.soft);
        assert!((g - want).abs() < 1e-4, "k = {k}: {g} vs host {want}");
        assert!(
            g >= 0.0 && g <= full + 1e-6,
            "k = {k}: coarser buckets lose information"
        );
        // The student equal to the teacher scores 0.
        let same = loss
            .forward_topk(
                t.clone(),
                top_k_teacher(&tv, k, 2.0, &device),
                targets(&device),
                None,
            )
            .unwrap();
        assert!(
            scalar_f64(same.soft).abs() < 1e-5,
            "k = {k}: teacher vs itself"
        );
    }
}
