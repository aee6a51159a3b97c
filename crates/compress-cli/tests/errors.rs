//! Bad input gives a clear one-line error and exit code 1: no panic, no partial output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fails_with;
use compress_format::safetensors::{write_safetensors, SafetensorsFile, TensorOut};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama3_gqa_untied")
}

/// A scratch copy of the fixture model.
fn model_copy(tmp: &Path) -> PathBuf {
    let dst = tmp.join("model");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), dst.join(f)).unwrap();
    }
    dst
}

fn ids_file(tmp: &Path, body: &str) -> PathBuf {
    let p = tmp.join("ids.json");
    std::fs::write(&p, body).unwrap();
    p
}

fn eval_args<'a>(model: &'a str, data: &'a str) -> Vec<&'a str> {
    vec!["eval", "--model", model, "--data", data]
}

/// Rewrites the model's safetensors through `edit` on the list of tensors.
fn rewrite(model: &Path, edit: impl FnOnce(&mut Vec<TensorOut>)) {
    let path = model.join("model.safetensors");
    let mut tensors: Vec<TensorOut> = {
        let f = SafetensorsFile::open(&path).unwrap();
        f.names()
            .iter()
            .map(|n| TensorOut::from_ref(&f.tensor(n).unwrap()))
            .collect()
    };
    edit(&mut tensors);
    write_safetensors(&path, &tensors, None).unwrap();
}

fn edit_config(model: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = model.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn truncated_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    let st = m.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "model.safetensors",
    );
}

#[test]
fn header_pointing_past_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    let st = m.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&st, &bytes).unwrap();
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "model.safetensors",
    );
}

#[test]
fn missing_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    rewrite(&m, |t| {
        t.retain(|t| t.name != "model.layers.1.mlp.up_proj.weight")
    });
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "missing tensor `model.layers.1.mlp.up_proj.weight`",
    );
}

#[test]
fn extra_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    rewrite(&m, |t| {
        let extra = TensorOut::from_f32(
            "model.layers.0.mlp.extra.weight",
            vec![2],
            &[1.0, 2.0],
            t[0].dtype,
        )
        .unwrap();
        t.push(extra);
    });
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "unexpected tensor `model.layers.0.mlp.extra.weight`",
    );
}

#[test]
fn wrong_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    rewrite(&m, |t| {
        let i = t
            .iter()
            .position(|t| t.name == "model.norm.weight")
            .unwrap();
        let dtype = t[i].dtype;
        t[i] = TensorOut::from_f32("model.norm.weight", vec![3], &[1.0; 3], dtype).unwrap();
    });
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "`model.norm.weight` has shape [3]",
    );
}

#[test]
fn unknown_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    edit_config(&m, |c| {
        c.insert(
            "architectures".into(),
            serde_json::json!(["GPT2LMHeadModel"]),
        );
        c.insert("model_type".into(), serde_json::json!("gpt2"));
    });
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "GPT2LMHeadModel",
    );
}

#[test]
fn missing_config_key() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    edit_config(&m, |c| {
        c.remove("hidden_size");
    });
    let data = ids_file(tmp.path(), "[[1,2,3]]");
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "hidden_size",
    );
}

#[test]
fn empty_data_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ids_file(tmp.path(), "");
    let m = fixture();
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "empty",
    );
}

#[test]
fn out_of_vocab_id() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ids.jsonl");
    std::fs::write(&data, "{\"ids\": [1, 2, 3]}\n{\"ids\": [4, 99999]}\n").unwrap();
    let m = fixture();
    fails_with(
        &eval_args(m.to_str().unwrap(), data.to_str().unwrap()),
        "line 2: token id 99999",
    );
}

#[test]
fn output_inside_input() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    let out = m.join("converted");
    fails_with(
        &[
            "convert",
            "--model",
            m.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "is inside the input",
    );
    assert!(!out.exists(), "no partial output");
}

#[test]
fn bad_flags_and_devices() {
    let m = fixture();
    fails_with(
        &["eval", "--model", m.to_str().unwrap(), "--bogus"],
        "--bogus",
    );
    let data = m.join("reference.safetensors");
    fails_with(
        &[
            "eval",
            "--model",
            m.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--device",
            "cuda:0",
        ],
        "cuda:0",
    );
}

/// `quantize --model m --out o` followed by `extra`.
fn quantize_args<'a>(m: &'a str, o: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["quantize", "--model", m, "--out", o];
    args.extend_from_slice(extra);
    args
}

#[test]
fn quantize_bad_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixture();
    let out = tmp.path().join("q");
    let (m, o) = (m.to_str().unwrap(), out.to_str().unwrap());
    fails_with(&quantize_args(m, o, &["--bits", "9"]), "--bits 9");
    fails_with(
        &quantize_args(m, o, &["--bits", "4", "--group-size", "0"]),
        "--group-size 0",
    );
    fails_with(
        &quantize_args(m, o, &["--bits", "4", "--ignore", "model.layers.7"]),
        "--ignore model.layers.7",
    );
    fails_with(
        &quantize_args(
            m,
            o,
            &["--bits", "4", "--group-size", "48", "--strict-compat"],
        ),
        "does not divide",
    );
    assert!(!out.exists(), "no partial output");
    let status = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(quantize_args(
            m,
            o,
            &["--bits", "4", "--group-size", "16", "-q"],
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let again = tmp.path().join("qq");
    fails_with(
        &quantize_args(o, again.to_str().unwrap(), &["--bits", "4"]),
        "already quantized",
    );
}

#[test]
fn quantize_qat_bad_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixture();
    let out = tmp.path().join("q");
    let data = ids_file(tmp.path(), "[[1,2,3,4,5,6,7,8,9]]");
    let missing = tmp.path().join("missing.txt");
    let (m, o) = (m.to_str().unwrap(), out.to_str().unwrap());
    let (d, missing) = (data.to_str().unwrap(), missing.to_str().unwrap());
    let qat = ["--bits", "4", "--group-size", "16", "--method", "qat"];
    fails_with(&quantize_args(m, o, &qat), "needs training data (--data");
    let steps0 = [&qat[..], &["--data", d, "--steps", "0"]].concat();
    fails_with(&quantize_args(m, o, &steps0), "--steps 0");
    let no_file = [&qat[..], &["--data", missing]].concat();
    fails_with(&quantize_args(m, o, &no_file), "file not found");
    fails_with(
        &quantize_args(m, o, &["--bits", "4", "--data", d]),
        "--data: only applies to --method qat",
    );
    assert!(!out.exists(), "no partial output");
}

#[test]
fn quantize_calibration_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixture();
    let out = tmp.path().join("q");
    let (m, o) = (m.to_str().unwrap(), out.to_str().unwrap());
    let missing = tmp.path().join("nope.jsonl");
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let short = ids_file(tmp.path(), "[[5]]");
    let (missing, empty, short) = (
        missing.to_str().unwrap(),
        empty.to_str().unwrap(),
        short.to_str().unwrap(),
    );
    let gptq = ["--bits", "4", "--group-size", "16", "--method", "gptq"];
    fails_with(
        &quantize_args(m, o, &gptq),
        "needs calibration data (--calib",
    );
    let args = [&gptq[..], &["--calib", missing]].concat();
    fails_with(&quantize_args(m, o, &args), "file not found");
    let args = [&gptq[..], &["--calib", empty]].concat();
    fails_with(&quantize_args(m, o, &args), "empty");
    let args = [&gptq[..], &["--calib", short]].concat();
    fails_with(&quantize_args(m, o, &args), "at least 2 tokens");
    let args = [&gptq[..], &["--calib", short, "--calib-samples", "0"]].concat();
    fails_with(&quantize_args(m, o, &args), "--calib-samples 0");
    fails_with(
        &quantize_args(m, o, &["--bits", "4", "--act-order"]),
        "--act-order: only applies to --method gptq",
    );
    fails_with(
        &quantize_args(m, o, &["--bits", "4", "--calib", short]),
        "uses no calibration data",
    );
    fails_with(
        &quantize_args(
            m,
            o,
            &[&gptq[..], &["--calib", short, "--dampening=-1"]].concat(),
        ),
        "--dampening -1",
    );
    assert!(!out.exists(), "no partial output");
}

/// `compress generate` (the runtime loader and request checks) and `compress bench`.
#[test]
fn runtime_generate_and_bench_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    let ms = m.to_str().unwrap();
    let generate = |extra: &[&'static str]| {
        let mut args = vec!["generate", "--model", ms, "--max-tokens", "3"];
        args.extend_from_slice(extra);
        args
    };
    fails_with(&generate(&["--prompt-ids", "1,2,99999"]), "99999");
    fails_with(&generate(&["--prompt", "hi"]), "tokenizer.json");
    fails_with(
        &generate(&["--prompt-ids", "1", "--device", "cuda:0"]),
        "--engine burn",
    );
    let long: Vec<String> = (0..2048).map(|i| (i % 500).to_string()).collect();
    let long = long.join(",");
    let mut args = generate(&[]);
    args.extend(["--prompt-ids", &long]);
    fails_with(&args, "context");
    fails_with(
        &["bench", "--model", ms, "--concurrency", "0"],
        "--concurrency",
    );
    fails_with(
        &["bench", "--model", ms, "--device", "cuda:0"],
        "--device cuda:0",
    );
    fails_with(&["bench", "--model", ms, "--kv-blocks", "0"], "--kv-blocks");
    fails_with(
        &[
            "bench",
            "--model",
            ms,
            "--prompt-len",
            "4000",
            "--gen-len",
            "8",
        ],
        "context",
    );
    rewrite(&m, |t| {
        t.retain(|t| t.name != "model.layers.1.mlp.up_proj.weight")
    });
    fails_with(
        &generate(&["--prompt-ids", "1"]),
        "model.layers.1.mlp.up_proj.weight",
    );
    let st = m.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&generate(&["--prompt-ids", "1"]), "model.safetensors");
    fails_with(&["bench", "--model", ms], "model.safetensors");
}

#[test]
fn inspect_checks_config_against_the_tensors_and_reads_the_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    let cfg_path = m.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let good = cfg.clone();
    // An absurd vocabulary is refused by the config's own bounds; a plausible one that the
    // tensors contradict, by the shape check.
    for (vocab, needle) in [
        (1_000_000_000_000u64, "vocab_size"),
        (5000, "model.embed_tokens.weight"),
    ] {
        cfg["vocab_size"] = serde_json::json!(vocab);
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        fails_with(&["inspect", m.to_str().unwrap()], needle);
    }
    std::fs::write(&cfg_path, good.to_string()).unwrap();
    std::fs::write(m.join("tokenizer.json"), "{not json").unwrap();
    let out = common::compress(&["inspect", m.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["tokenizer"], false,
        "an unreadable tokenizer.json is no tokenizer"
    );
}

#[test]
fn hostile_tokenizer_files_are_refused_by_serve_and_eval_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    let ms = m.to_str().unwrap();
    let ids = ids_file(tmp.path(), "[[1, 2, 3, 4, 5]]");
    // The fuzzer's tokenizer inputs that must be refused (the others load, with padding and
    // truncation dropped), and a file cut inside a decoder (the crate panicked on it).
    let regressions =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../compress-fuzz/regressions/tokenizer");
    let mut cases: Vec<(String, String)> = [
        "precompiled-charsmap-claims-6.7GB.json",
        "split-regex-17875-bytes-allocated-2MiB.json",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read_to_string(regressions.join(f)).unwrap(),
        )
    })
    .collect();
    let cut = r#"{"decoder": {"type": "Sequence", "decoders": [{"type": "#;
    cases.push(("cut inside the decoder".into(), cut.into()));
    for (name, text) in cases {
        std::fs::write(m.join("tokenizer.json"), &text).unwrap();
        let start = ["serve", "--model", ms, "--port", "0"];
        let out = Command::new(env!("CARGO_BIN_EXE_compress"))
            .args(start)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("tokenizer.json") && !stderr.contains("panicked"),
            "{name}: {stderr}"
        );
        fails_with(
            &["eval", "--model", ms, "--data", ids.to_str().unwrap()],
            "tokenizer.json",
        );
    }
}
