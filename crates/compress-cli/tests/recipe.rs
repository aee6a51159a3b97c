//! `compress run`: a recipe's report equals standalone runs of its stages, resume skips
//! unchanged stages and reruns changed ones, thresholds gate, and bad recipes fail before any
//! work with the key, file or stage named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compress, fails_with};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("compress-recipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a recipe over the demo model into `dir` with `stages` (TOML) and `extra` top-level keys.
fn recipe(dir: &Path, extra: &str, stages: &str) -> PathBuf {
    let r = root();
    let text = format!(
        "model = \"{}\"\nout = \"{}\"\n{extra}\n[data]\ntrain = \"{}\"\neval = \"{}\"\n[eval]\nmax_seqs = 4\nseq_len = 128\nspeed = false\n{stages}",
        r.join("examples/models/demo").display(),
        dir.join("run").display(),
        r.join("examples/data/corpus/train.txt").display(),
        r.join("examples/data/corpus/valid.txt").display(),
    );
    let p = dir.join("r.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const TWO_STAGES: &str = "[[stages]]\nstage = \"prune\"\nname = \"p\"\nsparsity = 0.5\n\n[[stages]]\nstage = \"quantize\"\nname = \"q\"\nbits = 4\ngroup-size = 64\n";

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run/report.json")).unwrap()).unwrap()
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_run_equals_its_stages_run_alone_and_resumes() {
    let d = tmp("resume");
    let r = recipe(&d, "", TWO_STAGES);
    let rs = r.to_str().unwrap();
    compress(&["-q", "run", rs]);
    // The same stages as standalone commands give the same bytes.
    let demo = root().join("examples/models/demo");
    let p = d.join("p");
    let q = d.join("q");
    compress(&[
        "-q",
        "prune",
        "--model",
        demo.to_str().unwrap(),
        "--out",
        p.to_str().unwrap(),
        "--sparsity",
        "0.5",
    ]);
    compress(&[
        "-q",
        "quantize",
        "--model",
        p.to_str().unwrap(),
        "--out",
        q.to_str().unwrap(),
        "--bits",
        "4",
        "--group-size",
        "64",
    ]);
    let bytes = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        bytes(&d.join("run/stages/02-q")) == bytes(&q),
        "stage output differs from compress quantize"
    );
    assert!(d.join("run/final/config.json").is_file());
    // The report's numbers are compress eval's.
    let rep = report(&d);
    let rows = rep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let eval: serde_json::Value = serde_json::from_str(&compress(&[
        "eval",
        "--model",
        q.to_str().unwrap(),
        "--reference",
        demo.to_str().unwrap(),
        "--data",
        root()
            .join("examples/data/corpus/valid.txt")
            .to_str()
            .unwrap(),
        "--max-seqs",
        "4",
        "--seq-len",
        "128",
        "--json",
    ]))
    .unwrap();
    assert_eq!(rows[2]["ppl"], eval["ppl"]);
    assert_eq!(rows[2]["kld"], eval["kld"]);
    assert!(
        (rows[1]["sparsity"].as_f64().unwrap() - 0.5).abs() < 0.01,
        "{}",
        rows[1]
    );

    // Again without --resume: refused. With it: nothing reruns.
    let (ok, _, err) = run(&["-q", "run", rs]);
    assert!(!ok && err.contains("--resume"), "{err}");
    let (ok, _, err) = run(&["-q", "run", rs, "--resume"]);
    assert!(ok, "{err}");
    assert_eq!(err.matches("unchanged, resumed").count(), 2, "{err}");
    assert_eq!(report(&d)["rows"][2]["resumed"], true);
    // A changed setting of the second stage reruns it only.
    let r2 = recipe(
        &d,
        "",
        &TWO_STAGES.replace("group-size = 64", "group-size = 32"),
    );
    let (ok, _, err) = run(&["-q", "run", r2.to_str().unwrap(), "--resume"]);
    assert!(ok, "{err}");
    assert_eq!(err.matches("unchanged, resumed").count(), 1, "{err}");
    assert!(err.contains("[2/2] q (quantize) →"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn thresholds_gate_with_the_table() {
    let d = tmp("gate");
    let r = recipe(
        &d,
        "[thresholds]\nmax_kld = 0.000001\nmin_compression = 1.2\n",
        "[[stages]]\nstage = \"quantize\"\nbits = 3\ngroup-size = 64\n",
    );
    let (ok, out, err) = run(&["-q", "run", r.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("| max_kld | 0.000001 |") && out.contains("**FAIL**"),
        "{out}"
    );
    assert!(out.contains("| min_compression | 1.2 |"), "{out}");
    assert!(err.contains("thresholds failed: max_kld"), "{err}");
    assert!(!report(&d)["passed"].as_bool().unwrap());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_recipes_fail_before_any_work() {
    let d = tmp("bad");
    let cases = [
        ("", "[[stages]]\nstage = \"quantize\"\nbitz = 4\n", "unknown field `bitz`, expected one of"),
        ("", "[[stages]]\nstage = \"quantize\"\nbits = \"four\"\n", "stages[0] (quantize \"quantize\"): bits: invalid type: string \"four\""),
        ("", "[[stages]]\nstage = \"shrink\"\n", "stage = \"shrink\": unknown"),
        ("", "[[stages]]\nstage = \"quantize\"\ninput = \"later\"\nbits = 4\n[[stages]]\nstage = \"prune\"\nname = \"later\"\nsparsity = 0.5\n", "input = \"later\": no earlier stage"),
        ("", "[[stages]]\nstage = \"quantize\"\nout = \"x\"\nbits = 4\n", "out: set by the recipe runner"),
        ("colour = 1\n", "[[stages]]\nstage = \"quantize\"\nbits = 4\n", "line 3: colour: unknown field `colour`"),
        ("", "[thresholds]\nmax_kld = \"low\"\n[[stages]]\nstage = \"quantize\"\nbits = 4\n", "in [thresholds]: invalid type"),
        ("", "[thresholds]\nmax_kl = 1\n[[stages]]\nstage = \"quantize\"\nbits = 4\n", "thresholds.max_kl: unknown field `max_kl`"),
        ("", "", "no [[stages]]"),
        // Values the commands refuse, caught before the first stage runs.
        ("", "[[stages]]\nstage = \"prune\"\nsparsity = 0.5\n[[stages]]\nstage = \"quantize\"\nbits = 9\n", "stages[1] (quantize \"quantize\"): bits = 9: must be between 2 and 8"),
        ("", "[[stages]]\nstage = \"prune\"\nsparsity = 1.5\n", "stages[0] (prune \"prune\"): sparsity = 1.5"),
    ];
    let many = "[[stages]]\nstage = \"quantize\"\nbits = 4\n".repeat(257);
    let cases: Vec<(&str, &str, &str)> = cases
        .into_iter()
        .chain([("", many.as_str(), "257 [[stages]]: at most 256")])
        .collect();
    for (extra, stages, needle) in cases {
        let r = recipe(&d, extra, stages);
        fails_with(&["run", r.to_str().unwrap()], needle);
        assert!(!d.join("run").exists(), "{needle}: work started");
    }
    // A missing data file, named.
    let r = recipe(&d, "", "[[stages]]\nstage = \"quantize\"\nbits = 4\n");
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace("valid.txt", "nope.txt");
    std::fs::write(&r, text).unwrap();
    fails_with(&["run", r.to_str().unwrap()], "nope.txt: file not found");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn shipped_recipes_check() {
    for e in std::fs::read_dir(root().join("recipes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = compress(&["run", p.to_str().unwrap(), "--check"]);
            assert!(out.contains(": ok ("), "{out}");
        }
    }
}
