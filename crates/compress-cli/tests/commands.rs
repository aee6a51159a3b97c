//! End-to-end runs of the CLI on the committed fixtures.

mod common;

use std::path::{Path, PathBuf};

use common::compress;
use compress_format::safetensors::{Dtype, SafetensorsFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn ids(file: &SafetensorsFile, name: &str) -> Vec<i64> {
    let t = file.tensor(name).unwrap();
    assert_eq!(t.dtype, Dtype::I64);
    t.data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn eval_json_logits_out_and_self_reference() {
    let model = fixture("llama3_gqa_untied");
    let reference = SafetensorsFile::open(&model.join("reference.safetensors")).unwrap();
    let input = ids(&reference, "input_ids");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ids.json");
    std::fs::write(&data, serde_json::to_string(&vec![input.clone()]).unwrap()).unwrap();
    let npy = tmp.path().join("logits.npy");
    let m = model.to_str().unwrap();
    let out = compress(&[
        "eval",
        "--model",
        m,
        "--data",
        data.to_str().unwrap(),
        "--reference",
        m,
        "--logits-out",
        npy.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokens"], input.len() - 1);
    let (nll, ppl) = (v["nll"].as_f64().unwrap(), v["ppl"].as_f64().unwrap());
    assert!(nll > 0.0 && (ppl - nll.exp()).abs() < 1e-6 * ppl);
    assert!(v["kld"].as_f64().unwrap().abs() < 1e-6, "self-KL is 0: {v}");
    assert_eq!(v["top1_agree"].as_f64().unwrap(), 1.0);

    // The .npy holds the logits of positions 0..len-1, which transformers also computed.
    let bytes = std::fs::read(&npy).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let got: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want = reference.tensor("logits").unwrap().to_f32().unwrap();
    assert_eq!(got.len(), want.len() / input.len() * (input.len() - 1));
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        );
    assert!(diff < 1e-4, "npy logits vs transformers: {diff}");
}

#[test]
fn generate_json_is_greedy_transformers() {
    let model = fixture("qwen2_bias_tied");
    let reference = SafetensorsFile::open(&model.join("reference.safetensors")).unwrap();
    let prompt: Vec<String> = ids(&reference, "greedy_prompt")
        .iter()
        .map(|i| i.to_string())
        .collect();
    let want = ids(&reference, "greedy_tokens");
    let out = compress(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt-ids",
        &prompt.join(","),
        "--max-tokens",
        &want.len().to_string(),
        "--ignore-eos",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<i64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(got, want);
    assert!(v["text"].is_null(), "no tokenizer, no text");
}

#[test]
fn train_then_eval_and_convert() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("micro.json");
    std::fs::write(
        &config,
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64,
            "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 64}"#,
    )
    .unwrap();
    let data = tmp.path().join("ids.jsonl");
    let rows: Vec<String> = (0..6)
        .map(|d| {
            format!(
                "{{\"ids\": {:?}}}",
                (0..40).map(|i| (d * 5 + i * 3) % 64).collect::<Vec<i32>>()
            )
        })
        .collect();
    std::fs::write(&data, rows.join("\n")).unwrap();
    let out = tmp.path().join("run");
    let summary = compress(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--warmup",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["steps"], 4);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    for line in metrics.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["step", "loss", "lr", "grad_norm", "tokens_per_s"] {
            assert!(m.get(key).is_some(), "{key} in {line}");
        }
    }
    let eval = compress(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert!(e["ppl"].as_f64().unwrap() < 64.0 * 2.0);

    let half = tmp.path().join("half");
    compress(&[
        "convert",
        "--model",
        out.to_str().unwrap(),
        "--out",
        half.to_str().unwrap(),
        "--dtype",
        "bf16",
        "-q",
    ]);
    let inspect = compress(&["inspect", half.to_str().unwrap(), "--json"]);
    let i: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(i["dtype"], "BF16");
    assert_eq!(i["config"]["num_layers"], 1);
}

/// Mean KL of `model` against the demo model on 16 held-out sequences.
fn demo_kl(model: &Path) -> f64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let eval = compress(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--reference",
        root.join("examples/models/demo").to_str().unwrap(),
        "--data",
        root.join("examples/data/corpus/valid.txt")
            .to_str()
            .unwrap(),
        "--max-seqs",
        "16",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&eval).unwrap();
    v["kld"].as_f64().unwrap()
}

#[test]
fn qat_beats_rtn_on_the_demo_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let demo = root.join("examples/models/demo");
    let train = root.join("examples/data/corpus/train.txt");
    let tmp = tempfile::tempdir().unwrap();
    let (rtn, qat) = (tmp.path().join("rtn"), tmp.path().join("qat"));
    let scheme = ["--bits", "3", "--group-size", "64", "-q"];
    let quantize = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "quantize",
            "--model",
            demo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(&scheme);
        args.extend_from_slice(extra);
        compress(&args);
    };
    quantize(&rtn, &[]);
    // 10 steps of 4×128 tokens, distilling from the float model at lr 1e-4.
    quantize(
        &qat,
        &[
            "--method",
            "qat",
            "--data",
            train.to_str().unwrap(),
            "--steps",
            "10",
            "--seq-len",
            "128",
        ],
    );
    let metrics = std::fs::read_to_string(qat.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 10);
    let (kl_rtn, kl_qat) = (demo_kl(&rtn), demo_kl(&qat));
    eprintln!("demo int3 g64 KL vs bf16: rtn {kl_rtn:.5}, qat {kl_qat:.5}");
    assert!(
        kl_qat < 0.85 * kl_rtn,
        "QAT KL {kl_qat} should be well below RTN KL {kl_rtn}"
    );
}

/// docs/cli.md is `compress help-markdown`'s output: regenerate it with
/// `cargo run -q -p compress-cli -- help-markdown > docs/cli.md` after changing a flag.
#[test]
fn the_cli_reference_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
    let committed = std::fs::read_to_string(&path).unwrap();
    let generated = common::compress(&["help-markdown"]);
    assert!(
        committed == generated,
        "docs/cli.md is stale: run `cargo run -q -p compress-cli -- help-markdown > docs/cli.md`"
    );
}
