//! `compress distill` on the demo model: each kind of student is written as a loadable dir with
//! its report and per-step soft/hard metrics; a shared-block student runs the same in the runtime
//! as in the burn model (logits within 1e-4, same greedy tokens); an interrupted run resumes; the
//! top-k teacher cache is built once and reused; bad flags fail with one line.

mod common;

use std::path::{Path, PathBuf};

use common::{compress, fails_with, greedy_tokens, max_abs_diff};
use compress_core::burn::tensor::Device;
use compress_core::model::{batch_tensor, load_model};
use compress_core::tensor_util::to_vec_f32;
use compress_runtime::forward::sequence_logits;
use compress_runtime::kernels::ActMode;
use compress_runtime::Model;

fn demo() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo");
    p.to_str().unwrap().to_string()
}

fn valid() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/corpus/valid.txt");
    p.to_str().unwrap().to_string()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// `compress distill` of the demo on valid.txt into `out`: 3 steps of 2 × 32 tokens, quiet.
fn base_args(out: &Path) -> Vec<String> {
    let o = out.to_str().unwrap().to_string();
    [
        "distill",
        "--teacher",
        &demo(),
        "--data",
        &valid(),
        "--out",
        &o,
        "--steps",
        "3",
        "--seq-len",
        "32",
        "--batch-size",
        "2",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// [`base_args`] with `extra` flags and `--json`: the parsed report.
fn distill(out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = base_args(out);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    json(&compress(&args))
}

fn config(dir: &Path) -> serde_json::Value {
    json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
}

#[test]
fn every_student_kind_is_written_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 3] = [
        (
            "layers",
            &[
                "--student-layers",
                "2",
                "--eval-data",
                "EVAL",
                "--eval-samples",
                "4",
            ],
        ),
        (
            "width",
            &["--student-width", "0.5", "--feature-weight", "0.1"],
        ),
        (
            "shared",
            &["--share-layers", "2", "--alpha", "1", "--T", "4"],
        ),
    ];
    let eval = valid();
    for (name, flags) in cases {
        let out = tmp.path().join(name);
        let flags: Vec<&str> = flags
            .iter()
            .map(|f| if *f == "EVAL" { eval.as_str() } else { f })
            .collect();
        let r = distill(&out, &flags);
        let cfg = config(&out);
        match name {
            "layers" => {
                assert_eq!(cfg["num_hidden_layers"], 2);
                assert!(
                    r["student"]["ppl"].as_f64().unwrap() > r["teacher"]["ppl"].as_f64().unwrap()
                );
            }
            "width" => {
                assert_eq!(
                    (
                        cfg["num_key_value_heads"].as_u64(),
                        cfg["intermediate_size"].as_u64()
                    ),
                    (Some(2), Some(352))
                );
                assert!(r["final_parts"]["feature"].as_f64().unwrap() >= 0.0);
            }
            _ => {
                assert_eq!(
                    (
                        cfg["num_hidden_layers"].as_u64(),
                        cfg["compress_shared_layers"].as_u64()
                    ),
                    (Some(4), Some(2))
                );
                assert_eq!(
                    (r["alpha"].as_f64(), r["temperature"].as_f64()),
                    (Some(1.0), Some(4.0))
                );
            }
        }
        assert!(
            r["student"]["params"].as_u64() < r["teacher"]["params"].as_u64(),
            "{name}"
        );
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = metrics.lines().map(json).collect();
        assert_eq!(lines.len(), 3, "{name}");
        assert!(
            lines
                .iter()
                .all(|l| l["soft"].is_number() && l["hard"].is_number()),
            "{name}"
        );
        assert!(out.join("distill_report.json").is_file() && out.join("tokenizer.json").is_file());
        assert!(
            !tmp.path().join(format!(".{name}.distill-run")).exists(),
            "{name}: run dir removed"
        );
    }
}

#[test]
fn shared_block_students_run_the_same_in_the_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("shared");
    distill(&out, &["--share-layers", "1"]);
    let rt = Model::load(&out).unwrap();
    assert_eq!(rt.layers.len(), 4);
    assert!(
        std::sync::Arc::ptr_eq(&rt.layers[0], &rt.layers[3]),
        "one stored block"
    );
    let device = Device::flex();
    let burn = load_model(&out, &device).unwrap().model;
    let ids: Vec<u32> = (0..24).map(|i| (i * 53 + 7) % 4096).collect();
    let want = to_vec_f32(burn.forward(batch_tensor(std::slice::from_ref(&ids), &device)));
    let got = sequence_logits(&rt, &ids, ActMode::F32);
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 1e-4, "runtime vs burn: {diff}");
    let o = out.to_str().unwrap();
    assert_eq!(
        greedy_tokens(o, "runtime", &[]),
        greedy_tokens(o, "burn", &[])
    );
    // Stages that cannot honour shared blocks say so.
    let q = tmp.path().join("q");
    fails_with(
        &[
            "quantize",
            "--model",
            o,
            "--out",
            q.to_str().unwrap(),
            "-q",
            "--bits",
            "4",
            "--method",
            "gptq",
            "--calib",
            &valid(),
        ],
        "compress_shared_layers",
    );
    fails_with(
        &[
            "export",
            "--model",
            o,
            "--type",
            "f16",
            "--out",
            tmp.path().join("x.gguf").to_str().unwrap(),
        ],
        "compress_shared_layers",
    );
    compress(&[
        "quantize",
        "-q",
        "--model",
        o,
        "--out",
        q.to_str().unwrap(),
        "--bits",
        "4",
        "--group-size",
        "64",
    ]);
    assert!(Model::load(&q).is_ok());
}

#[test]
fn interrupted_runs_resume_and_the_teacher_cache_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let cache = tmp.path().join("teacher.topk");
    let c = cache.to_str().unwrap();
    let flags = [
        "--student-layers",
        "0,3",
        "--teacher-cache",
        c,
        "--top-k",
        "8",
        "--checkpoint-every",
        "1",
    ];
    let full = distill(&a, &flags);
    assert_eq!(full["teacher_cache"][1], true, "built on the first run");
    let base = base_args(&b);
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let stopped = with(&[&flags[..], &["--stop-after", "2"]].concat());
    compress(&stopped.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !b.join("config.json").exists(),
        "nothing written before the end"
    );
    let resumed = with(&[&flags[..], &["--resume", "--json"]].concat());
    let args: Vec<&str> = resumed.iter().map(String::as_str).collect();
    let resumed = json(&compress(&args));
    assert_eq!(resumed["teacher_cache"][1], false, "reused");
    assert_eq!(resumed["steps"], 3);
    let la: Vec<String> = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let lb: Vec<String> = std::fs::read_to_string(b.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(la.len(), lb.len());
    for (x, y) in la.iter().zip(&lb) {
        let (x, y) = (json(x), json(y));
        assert!(
            (x["loss"].as_f64().unwrap() - y["loss"].as_f64().unwrap()).abs() < 1e-5,
            "{x} vs {y}"
        );
    }
    // A cache made for other settings is refused, naming the value.
    let other: Vec<String> = base_args(&tmp.path().join("c2"))
        .into_iter()
        .chain(flags.iter().chain(&["--T", "3"]).map(|s| s.to_string()))
        .collect();
    fails_with(
        &other.iter().map(String::as_str).collect::<Vec<_>>(),
        "temperature",
    );
}

#[test]
fn bad_distill_settings_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (demo, data) = (demo(), valid());
    let out = tmp.path().join("o");
    let o = out.to_str().unwrap();
    let base = [
        "distill",
        "--teacher",
        demo.as_str(),
        "--data",
        data.as_str(),
        "--out",
        o,
        "--steps",
        "1",
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let cases: [(&[&str], &str); 8] = [
        (&["--student-layers", "2", "--alpha", "1.5"], "--alpha 1.5"),
        (&["--student-layers", "2", "--T", "0"], "--T 0"),
        (&["--student-layers", "6"], "--student-layers 6"),
        (&["--student-width", "1.2"], "wider"),
        (&["--share-layers", "4"], "--share-layers 4"),
        (
            &[
                "--student-layers",
                "2",
                "--feature-weight",
                "1",
                "--feature-layers",
                "3:1",
            ],
            "--feature-layers",
        ),
        (&["--student-layers", "2", "--resume"], "--resume"),
        (
            &["--student", "/nonexistent/student"],
            "/nonexistent/student",
        ),
    ];
    for (extra, needle) in cases {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&args, needle);
    }
    // A student with another vocabulary.
    let student = tmp.path().join("student");
    std::fs::create_dir_all(&student).unwrap();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/llama3_gqa_untied");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), student.join(f)).unwrap();
    }
    let args = with(&[]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--student", student.to_str().unwrap()]);
    fails_with(&args, "vocab_size");
    assert!(!out.exists(), "nothing written");
}
