//! `compress prune` on the demo model: the written dirs (compressed-tensors `sparsity_config`,
//! shrunk shapes) load in core and the runtime, quantizing a pruned model keeps its zeros, the
//! report is machine-readable, and bad settings fail with one clear line.

mod common;

use std::path::{Path, PathBuf};

use common::{compress, fails_with, greedy_tokens};
use compress_core::burn::tensor::Device;
use compress_core::model::load_model;
use compress_core::model::weights::export_tensors;
use compress_core::stages::prune::masks::linear_names;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo")
}

fn corpus(f: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data/corpus")
        .join(f);
    p.display().to_string()
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Zero count of each decoder linear of the model at `dir` (dequantized when packed).
fn zero_counts(dir: &Path) -> Vec<(String, usize, usize)> {
    let m = load_model(dir, &Device::flex()).unwrap();
    let t: std::collections::HashMap<_, _> = export_tensors(&m.model)
        .into_iter()
        .map(|(s, v)| (s.name, v))
        .collect();
    linear_names(m.model.config.num_layers)
        .into_iter()
        .map(|n| {
            let v = &t[&n];
            let z = v.iter().filter(|&&x| x == 0.0).count();
            (n, z, v.len())
        })
        .collect()
}

#[test]
fn pruned_dirs_record_sparsity_and_quantization_keeps_the_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let sparse = tmp.path().join("sparse");
    let s = sparse.to_str().unwrap();
    let out = compress(&[
        "prune",
        "--model",
        demo().to_str().unwrap(),
        "--out",
        s,
        "--sparsity",
        "0.5",
        "--eval-data",
        &corpus("valid.txt"),
        "--eval-samples",
        "4",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["pattern"], "unstructured");
    let r = &report["rounds"][0];
    assert!(r["ppl_pruned"].as_f64().unwrap() > report["ppl_dense"].as_f64().unwrap());
    assert!(sparse.join("prune_report.json").is_file());
    let qc = &config(&sparse)["quantization_config"];
    assert_eq!(qc["format"], "dense");
    assert_eq!(qc["sparsity_config"]["sparsity_structure"], "unstructured");
    assert!((qc["sparsity_config"]["global_sparsity"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    let zeros = zero_counts(&sparse);
    for (n, z, len) in &zeros {
        assert_eq!(*z, len / 2, "{n}");
    }
    // The runtime serves the sparse dir as a float model.
    compress(&[
        "generate",
        "--model",
        s,
        "--prompt-ids",
        "1,5,9",
        "--max-tokens",
        "4",
    ]);
    for (name, extra) in [
        ("rtn", vec!["--group-size", "64"]),
        (
            "gptq",
            vec![
                "--group-size",
                "32",
                "--symmetric",
                "--method",
                "gptq",
                "--calib-samples",
                "8",
                "--seq-len",
                "64",
            ],
        ),
    ] {
        let q = tmp.path().join(name);
        let calib = corpus("train.txt");
        let mut args = vec![
            "quantize",
            "--model",
            s,
            "--out",
            q.to_str().unwrap(),
            "--bits",
            "4",
            "-q",
        ];
        args.extend(extra.iter().copied());
        if name == "gptq" {
            args.extend(["--calib", calib.as_str()]);
        }
        compress(&args);
        let qc = &config(&q)["quantization_config"];
        assert_eq!(qc["format"], "pack-quantized", "{name}");
        assert_eq!(
            qc["sparsity_config"]["sparsity_structure"], "unstructured",
            "{name}"
        );
        for ((n, z, _), (_, z0, _)) in zero_counts(&q).iter().zip(&zeros) {
            assert!(
                z >= z0,
                "{name} {n}: {z} zeros after quantization, {z0} before"
            );
        }
    }
}

#[test]
fn n_m_and_structured_dirs_load_and_decode_the_same_on_both_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let model = demo();
    for (pattern, check) in [
        ("2:4", "2:4"),
        ("heads", "heads"),
        ("neurons", "neurons"),
        ("neurons", "global"),
    ] {
        let out = tmp
            .path()
            .join(format!("{}-{check}", pattern.replace(':', "of")));
        let o = out.to_str().unwrap();
        let mut args = vec![
            "prune",
            "--model",
            model.to_str().unwrap(),
            "--out",
            o,
            "--pattern",
            pattern,
            "-q",
        ];
        if pattern != "2:4" {
            args.extend(["--sparsity", "0.5"]);
        }
        if check == "global" {
            args.extend(["--scope", "global"]);
        }
        compress(&args);
        let cfg = config(&out);
        match check {
            "2:4" => {
                assert_eq!(
                    cfg["quantization_config"]["sparsity_config"]["sparsity_structure"],
                    "2:4"
                );
                let m = load_model(&out, &Device::flex()).unwrap();
                let t = export_tensors(&m.model);
                for (s, v) in t.iter().filter(|(s, _)| s.name.ends_with("proj.weight")) {
                    for g in v.chunks(4) {
                        assert!(g.iter().filter(|&&x| x == 0.0).count() >= 2, "{}", s.name);
                    }
                }
            }
            "heads" => {
                assert_eq!(
                    (
                        cfg["num_attention_heads"].as_u64(),
                        cfg["num_key_value_heads"].as_u64()
                    ),
                    (Some(4), Some(2))
                );
                assert_eq!(cfg["head_dim"], 32);
                assert!(cfg.get("quantization_config").is_none());
            }
            "neurons" => assert_eq!(cfg["intermediate_size"], 352),
            _ => {
                // Layers of different widths, listed per layer (total half of 4 × 704).
                let shapes = cfg["compress_layer_shapes"].as_array().unwrap();
                let widths: Vec<u64> = shapes
                    .iter()
                    .map(|s| s["intermediate_size"].as_u64().unwrap())
                    .collect();
                assert_eq!(widths.iter().sum::<u64>(), 2 * 704, "{widths:?}");
                assert!(widths.iter().any(|&w| w != widths[0]), "{widths:?}");
            }
        }
        assert_eq!(
            greedy_tokens(o, "runtime", &[]),
            greedy_tokens(o, "burn", &[]),
            "{pattern}"
        );
    }
}

#[test]
fn bad_prune_settings_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o");
    let (m, o) = (demo(), o.to_str().unwrap().to_string());
    let m = m.to_str().unwrap();
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = ["prune", "--model", m, "--out", &o]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str], needle: &str| {
        let v = base(extra);
        let args: Vec<&str> = v.iter().map(String::as_str).collect();
        fails_with(&args, needle);
        assert!(!Path::new(&o).exists(), "no output after a failure");
    };
    run(&["--sparsity", "1.0"], "--sparsity 1");
    run(&["--sparsity=-0.2"], "[0, 1)");
    run(&["--pattern", "4:4"], "0 < N < M");
    run(&["--pattern", "5:4"], "0 < N < M");
    run(
        &["--pattern", "heads", "--sparsity", "0.9"],
        "at least one must stay",
    );
    run(
        &["--sparsity", "0.5", "--retrain-steps", "10"],
        "needs --data",
    );
    run(&["--sparsity", "0.5", "--schedule", "agp"], "--data");
    run(
        &[
            "--pattern",
            "2:4",
            "--schedule",
            "iterative",
            "--retrain-steps",
            "4",
            "--data",
            "x",
        ],
        "oneshot",
    );
    run(
        &["--sparsity", "0.5", "--data", "/nonexistent.txt"],
        "file not found",
    );
    run(&["--pattern", "bogus"], "--pattern bogus");
    run(&["--pattern", "unstructured"], "--sparsity: required");
    let short = tmp.path().join("short.json");
    std::fs::write(&short, "[[1, 2, 3]]").unwrap();
    let short = short.display().to_string();
    run(&["--sparsity", "0.5", "--eval-data", &short], "no sequence");
}
