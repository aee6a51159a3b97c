//! `compress moe` on the demo model: with every expert chosen the MoE dir is the dense model
//! (logits within 1e-5); trained routers beat random ones (router accuracy and held-out ppl at
//! top-2 of 8); the runtime computes the same logits (1e-4) and greedy tokens at top-8 and top-2;
//! `--top-k` on eval/generate; RTN quantization keeps the routers in float; GPTQ of the experts
//! beats RTN and runs the same in the runtime; bad settings fail with one line.

mod common;

use std::path::Path;

use common::{compress, fails_with, greedy_tokens, max_abs_diff};
use compress_core::burn::tensor::Device;
use compress_core::model::{batch_tensor, load_model};
use compress_core::tensor_util::to_vec_f32;

fn path(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    p.to_str().unwrap().to_string()
}

/// Max abs difference of the runtime's and the burn model's logits (f32 activations) on `ids`
/// for the model in `dir`, at `top_k` experts per token (`None`: the config's).
fn runtime_vs_burn(dir: &Path, top_k: Option<usize>, ids: &[u32]) -> f32 {
    let device = Device::flex();
    let mut rt = compress_runtime::Model::load(dir).unwrap();
    let mut m = load_model(dir, &device).unwrap().model;
    if let Some(k) = top_k {
        rt.set_top_k(k).unwrap();
        compress_core::stages::moe::set_top_k(&mut m, k).unwrap();
    }
    let want = to_vec_f32(m.forward(batch_tensor(&[ids.to_vec()], &device)));
    let got = compress_runtime::forward::sequence_logits(
        &rt,
        ids,
        compress_runtime::kernels::ActMode::F32,
    );
    max_abs_diff(&got, &want)
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn every_expert_is_the_dense_model_and_trained_routers_beat_random() {
    let tmp = tempfile::tempdir().unwrap();
    let (demo, train, valid) = (
        path("examples/models/demo"),
        path("examples/data/corpus/train.txt"),
        path("examples/data/corpus/valid.txt"),
    );
    let out = tmp.path().join("moe");
    let o = out.to_str().unwrap();
    let r = json(&compress(&[
        "moe",
        "--model",
        &demo,
        "--out",
        o,
        "--experts",
        "8",
        "--top-k",
        "2",
        "--data",
        &train,
        "--calib-samples",
        "16",
        "--router-steps",
        "100",
        "--eval-data",
        &valid,
        "--eval-samples",
        "8",
        "--seq-len",
        "64",
        "--json",
        "-q",
    ]));
    for l in r["layers"].as_array().unwrap() {
        let acc = l["router_accuracy"].as_f64().unwrap();
        assert!(acc > l["random_accuracy"].as_f64().unwrap() + 0.2, "{l}");
    }
    let at = |k: u64| {
        r["at_k"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["top_k"] == k)
            .unwrap()
            .clone()
    };
    let two = at(2);
    assert!(
        two["ppl_trained"].as_f64() < two["ppl_random"].as_f64(),
        "{two}"
    );
    let eight = at(8);
    let dense = r["ppl_dense"].as_f64().unwrap();
    assert!(
        (eight["ppl_trained"].as_f64().unwrap() - dense).abs() < 1e-3 * dense,
        "{eight}"
    );

    // Every expert chosen: the dense model's logits.
    let device = Device::flex();
    let mut moe = load_model(&out, &device).unwrap().model;
    compress_core::stages::moe::set_top_k(&mut moe, 8).unwrap();
    let dense = load_model(Path::new(&demo), &device).unwrap().model;
    let ids: Vec<u32> = (0..32).map(|i| (i * 97 + 5) % 4096).collect();
    let want = to_vec_f32(dense.forward(batch_tensor(std::slice::from_ref(&ids), &device)));
    let got = to_vec_f32(moe.forward(batch_tensor(std::slice::from_ref(&ids), &device)));
    let diff = max_abs_diff(&got, &want);
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    // Only the summation order of down_proj differs (neurons are permuted into experts).
    assert!(
        diff < 1e-5 * scale,
        "top-8 of 8 vs dense: {diff} (logits up to {scale})"
    );

    // --top-k at load time, on eval and generate (burn).
    let ppl = |k: &str| {
        json(&compress(&[
            "eval",
            "--model",
            o,
            "--data",
            &valid,
            "--max-seqs",
            "4",
            "--top-k",
            k,
            "--json",
        ]))["ppl"]
            .as_f64()
            .unwrap()
    };
    assert!(ppl("1") > ppl("8"));
    let gen = json(&compress(&[
        "generate",
        "--model",
        o,
        "--prompt-ids",
        "1,17,33",
        "--max-tokens",
        "4",
        "--engine",
        "burn",
        "--top-k",
        "4",
        "--json",
    ]));
    assert_eq!(gen["tokens"].as_array().unwrap().len(), 4);

    // RTN quantization applies to the experts; the routers stay float.
    let q = tmp.path().join("q");
    compress(&[
        "quantize",
        "-q",
        "--model",
        o,
        "--out",
        q.to_str().unwrap(),
        "--bits",
        "8",
        "--per-channel",
    ]);
    let cfg = json(&std::fs::read_to_string(q.join("config.json")).unwrap());
    let ignore = cfg["quantization_config"]["ignore"].to_string();
    assert!(ignore.contains("model.layers.3.mlp.gate\""), "{ignore}");
    assert!(load_model(&q, &device).is_ok());

    // The runtime runs the experts as the burn model does: logits and greedy tokens.
    for k in [8, 2] {
        let diff = runtime_vs_burn(&out, Some(k), &ids);
        assert!(diff < 1e-4, "top-{k}: runtime vs burn logits {diff}");
        let k = k.to_string();
        let flags = ["--top-k", k.as_str()];
        assert_eq!(
            greedy_tokens(o, "runtime", &flags),
            greedy_tokens(o, "burn", &flags),
            "top-{k}"
        );
    }
    assert!(compress_runtime::Model::load(&out)
        .unwrap()
        .set_top_k(9)
        .is_err());

    // GPTQ (each expert with its own share of the Hessian) is closer to the float MoE than RTN
    // of the same scheme, AWQ runs, and the runtime runs the packed experts as burn does.
    let kld = |method: &str| {
        let d = tmp.path().join(method);
        let d = d.to_str().unwrap().to_string();
        let mut args = vec![
            "quantize",
            "-q",
            "--model",
            o,
            "--out",
            &d,
            "--bits",
            "4",
            "--group-size",
            "8",
            "--method",
            method,
        ];
        if method != "rtn" {
            args.extend([
                "--calib",
                &train,
                "--calib-samples",
                "16",
                "--seq-len",
                "64",
            ]);
        }
        compress(&args);
        let r = json(&compress(&[
            "eval",
            "--model",
            &d,
            "--reference",
            o,
            "--data",
            &valid,
            "--max-seqs",
            "8",
            "--seq-len",
            "64",
            "--json",
        ]));
        (d, r["kld"].as_f64().unwrap())
    };
    let ((_, rtn), (gptq_dir, gptq), (_, awq)) = (kld("rtn"), kld("gptq"), kld("awq"));
    assert!(gptq < rtn, "KL to the float MoE: gptq {gptq} vs rtn {rtn}");
    // AWQ runs on the experts (its folding keeps the routing: see awq.rs's tests).
    assert!(awq.is_finite() && awq < 4.0 * rtn, "awq {awq} vs rtn {rtn}");
    let diff = runtime_vs_burn(Path::new(&gptq_dir), None, &ids);
    assert!(diff < 1e-4, "packed experts: runtime vs burn logits {diff}");

    fails_with(
        &[
            "export",
            "--model",
            o,
            "--type",
            "f16",
            "--out",
            tmp.path().join("m.gguf").to_str().unwrap(),
        ],
        "num_experts",
    );

    // Bad --top-k values.
    fails_with(
        &["eval", "--model", o, "--data", &valid, "--top-k", "9"],
        "--top-k 9",
    );
    fails_with(
        &["eval", "--model", &demo, "--data", &valid, "--top-k", "2"],
        "no experts",
    );
}

#[test]
fn bad_moe_settings_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = path("examples/models/demo");
    let o = tmp.path().join("o");
    let o = o.to_str().unwrap();
    for (flags, needle) in [
        (&["--experts", "1"][..], "--experts 1"),
        (&["--experts", "8", "--top-k", "9"], "--top-k 9"),
        (&["--experts", "8", "--top-k", "0"], "--top-k 0"),
        (&["--experts", "5000"], "--experts 5000"),
        (&["--data", "/nonexistent.txt"], "/nonexistent.txt"),
        (&["--experts", "8"], "--router-steps 300"),
    ] {
        let mut args = vec!["moe", "--model", demo.as_str(), "--out", o];
        args.extend_from_slice(flags);
        fails_with(&args, needle);
    }
    assert!(!Path::new(o).exists());
}
