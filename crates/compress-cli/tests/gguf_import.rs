//! `compress convert --from-gguf`: our own F32 exports of the fixtures (Llama GQA, Mistral with
//! head_dim ≠ hidden/heads, Qwen2 with biases and tied embeddings) and of the demo import back to
//! the same tensors and config; the demo's tokenizer is rebuilt to give the same ids; bad files
//! are one-line errors naming the problem. (tests/interop/gguf_import.py checks every ggml type
//! against transformers' own GGUF loader.)

mod common;

use std::path::{Path, PathBuf};

use common::{compress, fails_with};
use compress_core::tokenizer::Tokenizer;
use compress_format::gguf::{write_gguf, GgufFile, TensorInfo, Value};
use compress_format::{HfConfig, ModelFiles};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exports `model` (with `tokenizer`) to an F32 GGUF in `tmp` and imports it back; the
/// imported dir.
fn round_trip(tmp: &Path, model: &Path, tokenizer: &Path, name: &str) -> PathBuf {
    let gguf = tmp.join(format!("{name}.gguf"));
    let out = tmp.join(name);
    let (m, t, g) = (s(model), s(tokenizer), s(&gguf));
    compress(&[
        "export",
        "-q",
        "--model",
        m,
        "--type",
        "f32",
        "--tokenizer",
        t,
        "--out",
        g,
    ]);
    compress(&["convert", "-q", "--from-gguf", g, "--out", s(&out)]);
    out
}

#[test]
fn f32_exports_import_back_to_the_same_tensors_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    // The fixtures have no tokenizer of their own; a small one fits their vocabularies.
    let tok300 = tmp.path().join("tok300/tokenizer.json");
    let corpus = repo("examples/data/corpus/train.txt");
    compress(&[
        "train-tokenizer",
        "-q",
        "--data",
        s(&corpus),
        "--vocab-size",
        "300",
        "--out",
        s(&tok300),
    ]);
    for fx in [
        "tests/fixtures/llama3_gqa_untied",
        "tests/fixtures/mistral_headdim",
        "tests/fixtures/qwen2_bias_tied",
        "examples/models/demo",
    ] {
        let src = repo(fx);
        let name = src.file_name().unwrap().to_str().unwrap().to_string();
        let tok = match fx.starts_with("examples") {
            true => src.join("tokenizer.json"),
            false => tok300.clone(),
        };
        let out = round_trip(tmp.path(), &src, &tok, &name);
        let (a, b) = (
            ModelFiles::open_dir(&src).unwrap(),
            ModelFiles::open_dir(&out).unwrap(),
        );
        let mut names = a.names();
        names.sort();
        let mut got = b.names();
        got.sort();
        assert_eq!(names, got, "{fx}");
        for n in names {
            let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
            assert_eq!(x.shape, y.shape, "{fx} {n}");
            assert_eq!(x.to_f32().unwrap(), y.to_f32().unwrap(), "{fx} {n}");
        }
        let ca = HfConfig::from_file(&src.join("config.json")).unwrap();
        let cb = HfConfig::from_file(&out.join("config.json")).unwrap();
        let shape = |c: &HfConfig| {
            (
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.head_dim,
                c.vocab_size,
                c.tie_word_embeddings,
                c.attention_bias,
            )
        };
        assert_eq!(shape(&ca), shape(&cb), "{fx}");
        assert_eq!(
            (ca.rope_theta, ca.rms_norm_eps),
            (cb.rope_theta, cb.rms_norm_eps),
            "{fx}"
        );
        assert_eq!(
            ca.architecture.model_type() == "qwen2",
            cb.architecture.model_type() == "qwen2"
        );
    }
    // The demo's byte-level BPE tokenizer, rebuilt from tokenizer.ggml.*, gives the same ids.
    let text = std::fs::read_to_string(repo("examples/data/corpus/valid.txt")).unwrap();
    let text = &text[..text.floor_char_boundary(4000)];
    let want = Tokenizer::from_file(&repo("examples/models/demo/tokenizer.json")).unwrap();
    let got = Tokenizer::from_file(&tmp.path().join("demo/tokenizer.json")).unwrap();
    assert_eq!(want.encode(text).unwrap(), got.encode(text).unwrap());
}

/// Rewrites `src` (a GGUF) into `dst` with `edit` applied to its metadata and tensor infos.
fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<TensorInfo>),
) {
    let f = GgufFile::open(src).unwrap();
    let mut md = f.metadata().to_vec();
    let mut infos: Vec<TensorInfo> = f
        .tensors()
        .iter()
        .map(|t| TensorInfo {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty: t.ty().unwrap(),
        })
        .collect();
    let names: Vec<String> = infos.iter().map(|t| t.name.clone()).collect();
    edit(&mut md, &mut infos);
    write_gguf(dst, &md, &infos, |i| {
        let name = names
            .get(i)
            .filter(|n| f.tensor(n).is_ok())
            .unwrap_or(&names[0]);
        let bytes = f.tensor_bytes(name).unwrap().to_vec();
        Ok(bytes[..infos[i].nbytes().unwrap().min(bytes.len())].to_vec())
    })
    .unwrap();
}

#[test]
fn bad_gguf_files_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let good = t.join("demo.gguf");
    let demo = repo("examples/models/demo");
    compress(&[
        "export",
        "-q",
        "--model",
        s(&demo),
        "--type",
        "f32",
        "--out",
        s(&good),
    ]);
    let out = t.join("out");
    let import = |gguf: &Path, needle: &str| {
        fails_with(
            &["convert", "--from-gguf", s(gguf), "--out", s(&out)],
            needle,
        );
        assert!(!out.exists(), "nothing is written on error");
    };
    // Truncated, and not a GGUF at all.
    let bytes = std::fs::read(&good).unwrap();
    let cut = t.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    import(&cut, "cut.gguf");
    let junk = t.join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    import(&junk, "junk.gguf");
    // An architecture compress does not run.
    let arch = t.join("arch.gguf");
    rewrite(&good, &arch, |md, _| {
        for (k, v) in md.iter_mut() {
            if k == "general.architecture" {
                *v = Value::String("mamba".into());
            }
        }
    });
    import(&arch, "mamba");
    // A tensor the model does not have, and one with the wrong shape.
    let extra = t.join("extra.gguf");
    rewrite(&good, &extra, |_, infos| {
        let mut x = infos[1].clone();
        x.name = "blk.0.attn_gate.weight".into();
        infos.push(x);
    });
    import(&extra, "blk.0.attn_gate.weight");
    let shape = t.join("shape.gguf");
    rewrite(&good, &shape, |_, infos| {
        let i = infos
            .iter()
            .position(|t| t.name == "blk.0.ffn_up.weight")
            .unwrap();
        infos[i].ne.reverse();
    });
    import(&shape, "blk.0.ffn_up.weight");
    // --from-gguf and --model together, and --json without --from-gguf.
    fails_with(
        &[
            "convert",
            "--from-gguf",
            s(&good),
            "--model",
            s(&demo),
            "--out",
            s(&out),
        ],
        "--model",
    );
    fails_with(
        &["convert", "--model", s(&demo), "--json", "--out", s(&out)],
        "--from-gguf",
    );
}
