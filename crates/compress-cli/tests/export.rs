//! `compress export --format gguf`: packed codes kept as Q4_0, requantizing only on request,
//! and clear one-line errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use compress_format::gguf::export::permute_rows;
use compress_format::gguf::GgufFile;
use compress_format::{ModelFiles, QuantizationConfig, QuantizedLinear};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails_with(args: &[&str], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

/// Quantizes the demo with RTN into `tmp/name` (`extra` flags added).
fn quantize(tmp: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = tmp.join(name);
    let (d, o) = (demo(), out.clone());
    let mut args = vec![
        "quantize",
        "-q",
        "--model",
        d.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
        "--bits",
        "4",
        "--group-size",
        "32",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    out
}

fn sources(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap().to_string();
            (s("name"), s("source"))
        })
        .collect()
}

#[test]
fn packed_symmetric_group32_codes_become_q4_0_blocks_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantize(tmp.path(), "w4", &["--symmetric"]);
    let gguf = tmp.path().join("w4.gguf");
    let json = ok(&[
        "export",
        "--model",
        q.to_str().unwrap(),
        "--type",
        "q4_0",
        "--out",
        gguf.to_str().unwrap(),
        "--json",
    ]);
    let src = sources(&json);
    assert_eq!(
        src.iter().filter(|(_, s)| s == "packed").count(),
        28,
        "{src:?}"
    );
    assert!(src
        .iter()
        .any(|(n, s)| n == "output.weight" && s == "float"));

    let f = GgufFile::open(&gguf).unwrap();
    let files = ModelFiles::open_dir(&q).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(q.join("config.json")).unwrap()).unwrap();
    let qc = QuantizationConfig::from_json(&cfg["quantization_config"], &q).unwrap();
    for (gguf_name, prefix, heads) in [
        (
            "blk.2.attn_v.weight",
            "model.layers.2.self_attn.v_proj",
            None,
        ),
        (
            "blk.0.attn_q.weight",
            "model.layers.0.self_attn.q_proj",
            Some(8),
        ),
        (
            "blk.3.attn_k.weight",
            "model.layers.3.self_attn.k_proj",
            Some(4),
        ),
        (
            "blk.1.ffn_down.weight",
            "model.layers.1.mlp.down_proj",
            None,
        ),
    ] {
        let layer = QuantizedLinear::from_files(&files, prefix, &qc.weights).unwrap();
        let w = layer.dequantize(&qc.weights);
        let want = match heads {
            Some(h) => permute_rows(&w, layer.in_features, h),
            None => w,
        };
        assert_eq!(f.tensor_f32(gguf_name).unwrap(), want, "{gguf_name}");
    }

    // --output-type keeps the float head 16-bit; the packed layers stay Q4_0.
    let json = ok(&[
        "export",
        "--model",
        q.to_str().unwrap(),
        "--type",
        "q4_0",
        "--output-type",
        "f16",
        "--out",
        gguf.to_str().unwrap(),
        "--overwrite",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ty = |name: &str| {
        let t = v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name);
        t.unwrap()["type"].as_str().unwrap().to_string()
    };
    assert_eq!(ty("output.weight"), "f16");
    assert_eq!(ty("blk.0.attn_q.weight"), "q4_0");
    let f = GgufFile::open(&gguf).unwrap();
    let head = files.tensor("lm_head.weight").unwrap().to_f32().unwrap();
    let got = f.tensor_f32("output.weight").unwrap();
    assert_eq!(got.len(), head.len());
    for (g, w) in got.iter().zip(&head) {
        // f16 keeps 11 significant bits (fewer below 6e-5, where the step is 6e-8).
        assert!(
            (g - w).abs() <= 1e-3 * w.abs() + 1e-7,
            "output.weight {g} vs {w}"
        );
    }
    fails_with(
        &[
            "export",
            "--model",
            q.to_str().unwrap(),
            "--output-type",
            "q5_k",
            "--out",
            gguf.to_str().unwrap(),
        ],
        "--output-type q5_k",
    );
}

#[test]
fn other_schemes_need_allow_requantize_for_block_types() {
    let tmp = tempfile::tempdir().unwrap();
    let q = quantize(tmp.path(), "asym", &[]);
    let gguf = tmp.path().join("a.gguf");
    let (m, o) = (q.to_str().unwrap(), gguf.to_str().unwrap());
    fails_with(
        &["export", "--model", m, "--type", "q4_0", "--out", o],
        "int4 asymmetric group-32 codes do not fit q4_0 blocks",
    );
    fails_with(
        &["export", "--model", m, "--type", "q8_0", "--out", o],
        "--allow-requantize",
    );
    assert!(!gguf.exists());
    let json = ok(&[
        "export",
        "--model",
        m,
        "--type",
        "q4_0",
        "--out",
        o,
        "--allow-requantize",
        "--json",
    ]);
    assert_eq!(
        sources(&json)
            .iter()
            .filter(|(_, s)| s == "requantized")
            .count(),
        28
    );
    let json = ok(&[
        "export",
        "--model",
        m,
        "--type",
        "f16",
        "--out",
        o,
        "--overwrite",
        "--json",
    ]);
    assert_eq!(
        sources(&json)
            .iter()
            .filter(|(_, s)| s == "dequantized")
            .count(),
        28
    );
}

#[test]
fn bad_export_arguments_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo();
    let m = d.to_str().unwrap();
    let out = tmp.path().join("x.gguf");
    let o = out.to_str().unwrap();
    fails_with(
        &["export", "--model", m, "--type", "q5_k", "--out", o],
        "--type q5_k",
    );
    fails_with(
        &["export", "--model", m, "--format", "onnx", "--out", o],
        "invalid value 'onnx'",
    );
    let t = tmp.path().to_str().unwrap();
    fails_with(&["export", "--model", m, "--out", t], "is a directory");
    fails_with(&["export", "--model", t, "--out", o], "no config.json");
    std::fs::write(&out, b"x").unwrap();
    fails_with(&["export", "--model", m, "--out", o], "--overwrite");
    assert_eq!(std::fs::read(&out).unwrap(), b"x");
}
