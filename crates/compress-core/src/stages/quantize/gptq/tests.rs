//! Tests of GPTQ: equality with RTN where GPTQ has nothing to correct, lower output error
//! than RTN on correlated inputs, errors on bad inputs, and agreement with the torch reference.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn normal(rng: &mut StdRng) -> f32 {
    (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0
}

/// Correlated inputs `[tokens, inn]`: low rank plus noise, very different column scales.
fn inputs(tokens: usize, inn: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rank = 8;
    let m: Vec<f32> = (0..rank * inn).map(|_| normal(&mut rng) / 3.0).collect();
    let col: Vec<f32> = (0..inn).map(|_| (0.6 * normal(&mut rng)).exp()).collect();
    let mut x = vec![0f32; tokens * inn];
    for row in x.chunks_exact_mut(inn) {
        let z: Vec<f32> = (0..rank).map(|_| normal(&mut rng)).collect();
        for (c, v) in row.iter_mut().enumerate() {
            let s: f32 = (0..rank).map(|k| z[k] * m[k * inn + c]).sum();
            *v = (s + 0.4 * normal(&mut rng)) * col[c];
        }
    }
    x
}

fn weights(out: usize, inn: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..out * inn).map(|_| 0.05 * normal(&mut rng)).collect()
}

fn hessian_of(x: &[f32], inn: usize) -> Hessian {
    let mut h = Hessian::new(inn);
    let half = x.len() / inn / 2;
    h.add_batch(&x[..half * inn], half).unwrap();
    h.add_batch(&x[half * inn..], x.len() / inn - half).unwrap();
    h
}

fn diagonal_hessian(diag: &[f32]) -> Hessian {
    let n = diag.len();
    let mut h = Hessian::new(n);
    diag.iter()
        .enumerate()
        .for_each(|(i, &d)| h.h[i * n + i] = d);
    h.tokens = 1;
    h
}

/// ‖X Wᵀ − X Ŵᵀ‖².
fn output_error(x: &[f32], w: &[f32], deq: &[f32], inn: usize) -> f64 {
    let diff: Vec<f64> = w.iter().zip(deq).map(|(a, b)| f64::from(a - b)).collect();
    x.chunks_exact(inn)
        .flat_map(|xr| {
            diff.chunks_exact(inn).map(move |d| {
                xr.iter()
                    .zip(d)
                    .map(|(&a, &b)| f64::from(a) * b)
                    .sum::<f64>()
            })
        })
        .map(|v| v * v)
        .sum()
}

fn schemes() -> Vec<WeightQuant> {
    vec![
        WeightQuant::group(4, false, 32),
        WeightQuant::group(4, true, 16),
        WeightQuant::group(3, false, 24),
        WeightQuant::channel(3, true),
        WeightQuant::channel(8, false),
        WeightQuant::tensor(4, false),
    ]
}

#[test]
fn diagonal_hessian_equals_rtn_with_and_without_act_order() {
    let (out, inn) = (5, 72); // 72 = 2·32 + 8 and 3·24: ragged and exact groups
    let w = weights(out, inn, 1);
    let identity = diagonal_hessian(&vec![1.0; inn]);
    let distinct: Vec<f32> = (0..inn).map(|i| 1.0 + ((i * 37) % inn) as f32).collect();
    let distinct = diagonal_hessian(&distinct);
    for wq in schemes() {
        for dtype in [Dtype::F32, Dtype::BF16] {
            let rtn = quantize_rtn(&w, out, inn, &wq, dtype, None);
            for (h, act_order) in [(&identity, false), (&identity, true), (&distinct, true)] {
                let cfg = GptqConfig {
                    act_order,
                    block_size: 16,
                    ..Default::default()
                };
                let (ql, _) = gptq_quantize(&w, out, inn, h, &wq, dtype, &cfg).unwrap();
                assert_eq!(ql, rtn, "{wq:?} {dtype:?} act_order {act_order}");
            }
        }
    }
}

#[test]
fn beats_rtn_on_correlated_inputs() {
    let (out, inn, tokens) = (16, 136, 512); // 136 = 4·32 + 8: ragged last group
    let x = inputs(tokens, inn, 2);
    let w = weights(out, inn, 3);
    let h = hessian_of(&x, inn);
    for wq in [
        WeightQuant::group(4, false, 32),
        WeightQuant::channel(3, true),
        WeightQuant::group(3, true, 32),
    ] {
        let rtn = quantize_rtn(&w, out, inn, &wq, Dtype::BF16, None).dequantize(&wq);
        let rtn_err = output_error(&x, &w, &rtn, inn);
        for act_order in [false, true] {
            for block_size in [128, 20] {
                let cfg = GptqConfig {
                    act_order,
                    block_size,
                    ..Default::default()
                };
                let (ql, loss) = gptq_quantize(&w, out, inn, &h, &wq, Dtype::BF16, &cfg).unwrap();
                ql.check(&wq, "layer").unwrap();
                let err = output_error(&x, &w, &ql.dequantize(&wq), inn);
                assert!(loss.is_finite() && loss > 0.0);
                assert!(
                    err < 0.7 * rtn_err,
                    "{wq:?} act_order {act_order} block {block_size}: {err} vs RTN {rtn_err}"
                );
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let (out, inn) = (3, 2);
    let w = weights(out, inn, 4);
    let wq = WeightQuant::channel(4, true);
    let cfg = GptqConfig::default();
    // Not positive definite even after (zero) dampening.
    let mut h = diagonal_hessian(&[1.0, 1.0]);
    h.h[1] = 2.0;
    let no_damp = GptqConfig {
        dampening_frac: 0.0,
        ..Default::default()
    };
    let e = gptq_quantize(&w, out, inn, &h, &wq, Dtype::F32, &no_damp).unwrap_err();
    assert!(e.to_string().contains("not positive definite"), "{e}");
    let mut nan = Hessian::new(inn);
    nan.add_batch(&[1.0, f32::NAN, 0.5, 2.0], 2).unwrap();
    let e = gptq_quantize(&w, out, inn, &nan, &wq, Dtype::F32, &cfg).unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
    let ok = diagonal_hessian(&[1.0, 2.0]);
    let mut bad_w = w.clone();
    bad_w[1] = f32::INFINITY;
    assert!(gptq_quantize(&bad_w, out, inn, &ok, &wq, Dtype::F32, &cfg).is_err());
    assert!(gptq_quantize(&w, out, inn + 1, &ok, &wq, Dtype::F32, &cfg).is_err());
    assert!(gptq_quantize(&w, out, inn, &Hessian::new(inn), &wq, Dtype::F32, &cfg).is_err());
    for bad in [
        GptqConfig {
            block_size: 0,
            ..Default::default()
        },
        GptqConfig {
            dampening_frac: -1.0,
            ..Default::default()
        },
    ] {
        assert!(gptq_quantize(&w, out, inn, &ok, &wq, Dtype::F32, &bad).is_err());
    }
    assert!(Hessian::new(inn).add_batch(&[1.0; 3], 2).is_err());
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Codes and scales agree with `tests/reference/gptq_reference.py` (torch, f32).
#[test]
fn matches_torch_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gptq/reference.json"
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let n = |k: &str| f[k].as_u64().unwrap() as usize;
    let (out, inn, tokens, batches) = (n("out"), n("in"), n("tokens"), n("batches"));
    let div = f["x_divisor"].as_f64().unwrap() as f32;
    let x: Vec<f32> = hex_bytes(f["x_int8_hex"].as_str().unwrap())
        .into_iter()
        .map(|b| f32::from(b as i8) / div)
        .collect();
    let w: Vec<f32> = hex_bytes(f["w_f32le_hex"].as_str().unwrap())
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut h = Hessian::new(inn);
    for batch in x.chunks(tokens / batches * inn) {
        h.add_batch(batch, batch.len() / inn).unwrap();
    }
    for case in f["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (bits, sym) = (
            case["bits"].as_u64().unwrap() as u8,
            case["symmetric"] == true,
        );
        let wq = match case["strategy"].as_str().unwrap() {
            "group" => WeightQuant::group(bits, sym, case["group_size"].as_u64().unwrap() as usize),
            "channel" => WeightQuant::channel(bits, sym),
            _ => WeightQuant::tensor(bits, sym),
        };
        let cfg = GptqConfig {
            dampening_frac: case["dampening_frac"].as_f64().unwrap(),
            block_size: case["block_size"].as_u64().unwrap() as usize,
            act_order: case["act_order"] == true,
        };
        let (ql, loss) = gptq_quantize(&w, out, inn, &h, &wq, Dtype::F32, &cfg).unwrap();
        let ints = |k: &str| -> Vec<i64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        };
        let codes = ints("codes");
        let mut off_by_one = 0;
        for (i, (&a, &b)) in ql.q.iter().zip(&codes).enumerate() {
            let d = (i64::from(a) - b).abs();
            assert!(d <= 1, "{name}: code {i} is {a}, reference {b}");
            off_by_one += d as usize;
        }
        println!("{name}: {off_by_one} of {} codes differ by ±1", codes.len());
        assert!(
            off_by_one * 200 <= codes.len(),
            "{name}: {off_by_one} codes differ"
        );
        let scales = case["scales"].as_array().unwrap();
        assert_eq!(ql.scales.len(), scales.len(), "{name}");
        for (a, b) in ql.scales.iter().zip(scales) {
            let b = b.as_f64().unwrap() as f32;
            assert!((a - b).abs() <= 1e-5 * b.abs(), "{name}: scale {a} vs {b}");
        }
        match &ql.zero_points {
            None => assert!(case["zero_points"].is_null(), "{name}"),
            Some(z) => {
                let want = ints("zero_points");
                let same = z
                    .iter()
                    .zip(&want)
                    .filter(|(&a, &b)| i64::from(a) == b)
                    .count();
                assert!(same + 1 >= want.len(), "{name}: zero points differ");
            }
        }
        let want = case["loss"].as_f64().unwrap();
        assert!(
            (loss - want).abs() <= 1e-3 * want,
            "{name}: loss {loss} vs {want}"
        );
    }
}

/// Timing at a real size (TinyLlama's down_proj, `[2048, 5632]`); run with
/// `cargo test --release -p compress-core --lib gptq_timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing; slow in debug builds"]
fn gptq_timing_2048x5632() {
    let (out, inn, tokens) = (2048, 5632, 8192);
    let mut rng = StdRng::seed_from_u64(5);
    let m: Vec<f32> = (0..inn).map(|_| rng.random::<f32>() - 0.5).collect();
    let x: Vec<f32> = (0..tokens)
        .flat_map(|_| {
            let z = rng.random::<f32>() - 0.5;
            let noise: Vec<f32> = (0..inn).map(|_| rng.random::<f32>() - 0.5).collect();
            noise
                .into_iter()
                .zip(&m)
                .map(move |(u, &mc)| u + 2.0 * z * mc)
        })
        .collect();
    let w: Vec<f32> = (0..out * inn)
        .map(|_| 0.1 * (rng.random::<f32>() - 0.5))
        .collect();
    let t = std::time::Instant::now();
    let mut h = Hessian::new(inn);
    for batch in x.chunks(2048 * inn) {
        h.add_batch(batch, batch.len() / inn).unwrap();
    }
    let t_h = t.elapsed();
    let wq = WeightQuant::group(4, false, 128);
    for act_order in [false, true] {
        let cfg = GptqConfig {
            act_order,
            ..Default::default()
        };
        let t = std::time::Instant::now();
        let (ql, loss) = gptq_quantize(&w, out, inn, &h, &wq, Dtype::BF16, &cfg).unwrap();
        println!(
            "{out}x{inn} g128 act_order {act_order}: gptq_quantize {:.2?} (loss {loss:.3e}); \
             Hessian of {tokens} tokens {t_h:.2?}; {} threads",
            t.elapsed(),
            rayon::current_num_threads()
        );
        ql.check(&wq, "layer").unwrap();
    }
}
