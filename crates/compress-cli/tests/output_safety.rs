//! The output-safety rule of every command that writes (issue 20, finding 1): an output never
//! equals, contains or lies inside an input; `--overwrite` replaces only what compress wrote;
//! temp dirs of killed runs are cleaned up.

mod common;

use std::path::{Path, PathBuf};

use common::{compress, fails_with};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/demo")
}

/// A copy of the demo model at `dir` (config, weights, tokenizer files).
fn copy_demo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(demo()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
}

#[test]
fn an_output_that_contains_the_input_is_refused_and_the_input_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    copy_demo(&input);
    let (i, parent) = (input.to_str().unwrap(), tmp.path().to_str().unwrap());
    let quantize = |out: &str, needle: &str| {
        let args = [
            "quantize",
            "--model",
            i,
            "--out",
            out,
            "--bits",
            "4",
            "--overwrite",
        ];
        fails_with(&args, needle);
    };
    quantize(parent, "contains the input");
    quantize(i, "is inside the input");
    // Through `..` and a symlink too.
    quantize(&format!("{i}/.."), "contains the input");
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
    quantize(link.to_str().unwrap(), "contains the input");
    let prune = [
        "prune",
        "--model",
        i,
        "--out",
        parent,
        "--sparsity",
        "0.5",
        "--overwrite",
    ];
    fails_with(&prune, "contains the input");
    let moe = [
        "moe",
        "--model",
        i,
        "--out",
        parent,
        "--router-steps",
        "0",
        "--overwrite",
    ];
    fails_with(&moe, "contains the input");
    let convert = ["convert", "--model", i, "--out", parent, "--overwrite"];
    fails_with(&convert, "contains the input");
    assert!(
        input.join("model.safetensors").is_file(),
        "the input was deleted"
    );
}

#[test]
fn overwrite_replaces_only_what_compress_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo();
    let m = d.to_str().unwrap();
    let foreign = tmp.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("holiday.jpg"), b"not a model").unwrap();
    let f = foreign.to_str().unwrap();
    fails_with(
        &[
            "quantize",
            "--model",
            m,
            "--out",
            f,
            "--bits",
            "4",
            "--overwrite",
        ],
        "not written by compress",
    );
    assert!(foreign.join("holiday.jpg").is_file());
    // A dir compress wrote is replaced, as before.
    let out = tmp.path().join("q");
    let o = out.to_str().unwrap();
    for _ in 0..2 {
        compress(&[
            "-q",
            "quantize",
            "--model",
            m,
            "--out",
            o,
            "--bits",
            "4",
            "--overwrite",
        ]);
    }
    assert!(out.join(".compress-output").is_file());
    // export --overwrite replaces a GGUF file, not a model's weights.
    let weights = out.join("model.safetensors");
    let w = weights.to_str().unwrap();
    fails_with(
        &[
            "export",
            "--model",
            m,
            "--type",
            "f16",
            "--out",
            w,
            "--overwrite",
        ],
        "not a GGUF file",
    );
}

#[test]
fn temp_dirs_of_killed_runs_are_removed_at_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    // A pid that is not running (above the kernel's pid_max).
    let dead = tmp.path().join(".q.tmp-4194399");
    let alive = tmp.path().join(format!(".q.tmp-{}", std::process::id()));
    for d in [&dead, &alive] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("model.safetensors"), b"half").unwrap();
    }
    let out = tmp.path().join("q");
    let d = demo();
    let args = [
        "quantize",
        "--model",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--bits",
        "4",
    ];
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_compress"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("left by a run that died (pid 4194399)"),
        "{stderr}"
    );
    assert!(!dead.exists() && alive.exists());
}

#[test]
fn a_recipe_writing_into_its_model_dir_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    copy_demo(&model);
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/corpus/valid.txt");
    let recipe = tmp.path().join("r.toml");
    let body = format!(
        "model = \"model\"\nout = \"model\"\n[data]\neval = \"{}\"\n[[stages]]\nstage = \"quantize\"\nbits = 4\n",
        valid.display()
    );
    std::fs::write(&recipe, body).unwrap();
    let r = recipe.to_str().unwrap();
    fails_with(&["run", r], "is inside the input");
    fails_with(&["run", r, "--overwrite"], "is inside the input");
    assert!(
        !model.join("stages").exists(),
        "work started in the model dir"
    );
}
