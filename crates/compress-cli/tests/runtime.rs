//! The runtime (`compress-runtime`, hand-written kernels on the mmapped pack-quantized bytes)
//! against the burn model (`compress-core`, dequantized weights) on the demo model quantized
//! with every kernel path the loader picks: int4 (asymmetric groups of 64, symmetric groups of
//! 32), int8 per channel, 3-bit (unpacked to int8 codes) and groups of 16 (dequantized to f32).
//! f32 activations: logits within 1e-4 of burn; greedy `compress generate` tokens equal.

mod common;

use std::path::{Path, PathBuf};

use common::{compress, max_abs_diff};
use compress_core::burn::tensor::Device;
use compress_core::model::{batch_tensor, load_model};
use compress_core::tensor_util::to_vec_f32;
use compress_runtime::forward::sequence_logits;
use compress_runtime::kernels::{ActMode, Weight};
use compress_runtime::Model;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo")
}

fn greedy(dir: &Path, prompt: &str, extra: &[&str]) -> Vec<u64> {
    let mut args = vec![
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-ids",
        prompt,
        "--max-tokens",
        "24",
        "--ignore-eos",
        "--json",
    ];
    args.extend_from_slice(extra);
    let v: serde_json::Value = serde_json::from_str(&compress(&args)).unwrap();
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// The kernel path the loader chose for the first layer's q_proj.
fn kind(model: &Model) -> &'static str {
    match &model.layers[0].q.weight {
        Weight::Int4(_) => "int4",
        Weight::Int8(_) => "int8",
        Weight::Float(_) => "float",
    }
}

#[test]
fn runtime_matches_burn_on_every_packed_scheme() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = demo();
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 4096).collect();
    let prompt: Vec<String> = ids[..12].iter().map(|i| i.to_string()).collect();
    let prompt = prompt.join(",");
    let schemes: [(&str, &[&str], &str); 6] = [
        ("float", &[], "float"),
        ("w4g64-asym", &["--bits", "4", "--group-size", "64"], "int4"),
        (
            "w4g32-sym",
            &["--bits", "4", "--group-size", "32", "--symmetric"],
            "int4",
        ),
        (
            "w8-channel",
            &["--bits", "8", "--per-channel", "--symmetric"],
            "int8",
        ),
        ("w3g32", &["--bits", "3", "--group-size", "32"], "int8"),
        ("w4g16", &["--bits", "4", "--group-size", "16"], "float"),
    ];
    let device = Device::default();
    for (name, flags, want_kind) in schemes {
        let dir = if flags.is_empty() {
            demo.clone()
        } else {
            let dir = tmp.path().join(name);
            let mut args = vec![
                "quantize",
                "-q",
                "--model",
                demo.to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
            ];
            args.extend_from_slice(flags);
            compress(&args);
            dir
        };
        let rt = Model::load(&dir).unwrap();
        assert_eq!(kind(&rt), want_kind, "{name}: kernel path");
        let burn = load_model(&dir, &device).unwrap().model;
        let want = to_vec_f32(burn.forward(batch_tensor(std::slice::from_ref(&ids), &device)));
        let got = sequence_logits(&rt, &ids, ActMode::F32);
        let diff = max_abs_diff(&got, &want);
        assert!(
            diff < 1e-4,
            "{name}: runtime vs burn logits differ by {diff}"
        );
        // Q8 activations (the default) stay close: same argmax almost everywhere.
        let q8 = sequence_logits(&rt, &ids, ActMode::Q8);
        let v = rt.config.vocab_size;
        let agree = q8
            .chunks(v)
            .zip(want.chunks(v))
            .filter(|(a, b)| argmax(a) == argmax(b))
            .count();
        assert!(
            agree * 10 >= ids.len() * 9,
            "{name}: q8 top-1 agrees on {agree}/{}",
            ids.len()
        );

        let burn_tokens = greedy(&dir, &prompt, &["--engine", "burn"]);
        let rt_tokens = greedy(&dir, &prompt, &["--activations", "f32"]);
        assert_eq!(rt_tokens, burn_tokens, "{name}: greedy tokens");
    }
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

#[test]
fn bench_json_reports_every_concurrency() {
    let out = compress(&[
        "bench",
        "--model",
        demo().to_str().unwrap(),
        "--prompt-len",
        "16",
        "--gen-len",
        "4",
        "--concurrency",
        "1,3",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["read_bandwidth_gb_s"].as_f64().unwrap() > 0.0, "{v}");
    let rows = v["runs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for (row, c) in rows.iter().zip([1, 3]) {
        assert_eq!(row["concurrency"], c, "{row}");
        assert!(row["decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["prompt_tokens_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(row["preemptions"], 0, "blocks sized to fit: {row}");
    }

    // --kv-blocks below what three 56-token requests need (3 × 4 blocks): preemption, no error.
    let out = compress(&[
        "bench",
        "--model",
        demo().to_str().unwrap(),
        "--prompt-len",
        "16",
        "--gen-len",
        "40",
        "--concurrency",
        "3",
        "--kv-blocks",
        "6",
        "--no-bandwidth",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run = &v["runs"][0];
    assert!(run["preemptions"].as_u64().unwrap() > 0, "{run}");
    assert!(run["kv_blocks_used"].as_u64().unwrap() <= 6, "{run}");
}
