//! GGUF: writer/reader round trip, corrupt files, and export of the reference fixtures.

use std::path::{Path, PathBuf};

use compress_format::gguf::blocks::{quantize_q4_0, quantize_q8_0};
use compress_format::gguf::export::permute_rows;
use compress_format::gguf::{
    export_gguf, write_gguf, ExportOptions, ExportType, GgmlType, GgufFile, TensorInfo, Value,
    ValueType,
};
use compress_format::{FormatError, ModelFiles};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn ramp(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.37 + seed).sin() * 3.0)
        .collect()
}

/// A small file with every value type and every tensor type; returns the tensors' f32 data.
fn sample(path: &Path) -> Vec<(TensorInfo, Vec<u8>)> {
    let md = vec![
        (
            "general.architecture".to_string(),
            Value::String("llama".into()),
        ),
        ("a.u8".into(), Value::U8(1)),
        ("a.i64".into(), Value::I64(-7)),
        ("a.f64".into(), Value::F64(0.25)),
        ("a.bool".into(), Value::Bool(true)),
        ("a.strings".into(), Value::strings(["x", "y z"])),
        ("a.f32s".into(), Value::f32s([1.0, -2.5])),
    ];
    let mut tensors = Vec::new();
    for (i, ty) in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0]
        .into_iter()
        .enumerate()
    {
        let ne = vec![64, 3 + i];
        let w = ramp(ne[0] * ne[1], i as f32);
        let bytes = compress_format::gguf::export::encode("t", &w, ty).unwrap();
        tensors.push((
            TensorInfo {
                name: format!("t{i}.{}", ty.name()),
                ne,
                ty,
            },
            bytes,
        ));
    }
    tensors.push((
        TensorInfo {
            name: "norm".into(),
            ne: vec![5],
            ty: GgmlType::F32,
        },
        compress_format::gguf::export::encode("norm", &[1.0, 2.0, 3.0, 4.0, 5.0], GgmlType::F32)
            .unwrap(),
    ));
    let infos: Vec<TensorInfo> = tensors.iter().map(|t| t.0.clone()).collect();
    write_gguf(path, &md, &infos, |i| Ok(tensors[i].1.clone())).unwrap();
    tensors
}

#[test]
fn written_files_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.gguf");
    let tensors = sample(&path);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.get("a.i64"), Some(&Value::I64(-7)));
    assert_eq!(f.get("a.strings").unwrap().as_array().unwrap().len(), 2);
    assert_eq!(
        f.get("a.f32s"),
        Some(&Value::Array(
            ValueType::F32,
            vec![Value::F32(1.0), Value::F32(-2.5)]
        ))
    );
    for (info, bytes) in &tensors {
        let t = f.tensor(&info.name).unwrap();
        assert_eq!(t.offset % 32, 0);
        assert_eq!((t.ne.clone(), t.ty()), (info.ne.clone(), Some(info.ty)));
        assert_eq!(f.tensor_bytes(&info.name).unwrap(), &bytes[..]);
    }
    // Dequantized blocks stay within a step of the source values.
    let w = ramp(64 * 5, 2.0);
    let back = f.tensor_f32("t2.q8_0").unwrap();
    assert!(w
        .iter()
        .zip(&back)
        .all(|(a, b)| (a - b).abs() < 3.0 / 127.0 * 0.51 + 1e-3));
    let back = f.tensor_f32("t3.q4_0").unwrap();
    assert!(ramp(64 * 6, 3.0)
        .iter()
        .zip(&back)
        .all(|(a, b)| (a - b).abs() <= 3.0 / 8.0 + 1e-3));
}

#[test]
fn every_truncation_and_bad_header_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.gguf");
    sample(&path);
    let bytes = std::fs::read(&path).unwrap();
    let cut = tmp.path().join("cut.gguf");
    // Cutting anywhere in the header or the tensor data must fail (the last tensor, `norm`,
    // is 20 bytes followed by 12 bytes of alignment padding that no tensor needs).
    for n in (0..bytes.len() - 12).step_by(7).chain([bytes.len() - 13]) {
        std::fs::write(&cut, &bytes[..n]).unwrap();
        let e = GgufFile::open(&cut).expect_err(&format!("{n} bytes"));
        assert!(e.to_string().contains("cut.gguf"), "{e}");
    }
    for (at, byte, needle) in [(0, b'X', "not a GGUF file"), (4, 9, "version 9")] {
        let mut b = bytes.clone();
        b[at] = byte;
        std::fs::write(&cut, &b).unwrap();
        let e = GgufFile::open(&cut).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn writer_rejects_bad_tensors_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.gguf");
    let info = |name: &str, ne: Vec<usize>, ty| TensorInfo {
        name: name.into(),
        ne,
        ty,
    };
    let cases = [
        (
            vec![info("a", vec![33, 2], GgmlType::Q4_0)],
            "multiple of 32",
        ),
        (
            vec![info(&"n".repeat(64), vec![4], GgmlType::F32)],
            "at most 63",
        ),
        (
            vec![
                info("a", vec![4], GgmlType::F32),
                info("a", vec![4], GgmlType::F32),
            ],
            "given twice",
        ),
        (vec![info("a", vec![4], GgmlType::F32)], "expected 16"),
    ];
    for (tensors, needle) in cases {
        let e = write_gguf(&path, &[], &tensors, |_| Ok(vec![0u8; 3])).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
        assert!(!path.exists());
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp files left"
    );
}

/// A byte-level BPE tokenizer.json with `n` tokens (enough for the fixtures' vocabularies).
fn tokenizer(dir: &Path, n: usize) -> PathBuf {
    let vocab: serde_json::Map<String, serde_json::Value> =
        (3..n).map(|i| (format!("t{i}"), i.into())).collect();
    let json = serde_json::json!({
        "added_tokens": [
            {"id": 0, "content": "<pad>", "special": true},
            {"id": 1, "content": "<s>", "special": true},
            {"id": 2, "content": "</s>", "special": true},
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]},
        "model": {"type": "BPE", "vocab": vocab, "merges": [["t3", "t4"], "t5 t6"]},
    });
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, json.to_string()).unwrap();
    p
}

fn export(
    model: &Path,
    out: &Path,
    ty: ExportType,
    tok: Option<PathBuf>,
) -> Result<(), FormatError> {
    let mut opts = ExportOptions::new(ty);
    opts.tokenizer = tok;
    export_gguf(model, out, &opts, &mut |_, _| {}).map(|_| ())
}

#[test]
fn fixtures_export_with_permuted_q_k_and_all_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path(), 300);
    let out = tmp.path().join("m.gguf");
    for (fx, permuted) in [
        ("llama3_gqa_untied", true),
        ("mistral_headdim", true),
        ("qwen2_bias_tied", false),
    ] {
        let dir = fixture(fx);
        export(&dir, &out, ExportType::F32, Some(tok.clone())).unwrap();
        let f = GgufFile::open(&out).unwrap();
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let arch = if fx.starts_with("qwen2") {
            "qwen2"
        } else {
            "llama"
        };
        let get = |k: &str| {
            f.get(&format!("{arch}.{k}"))
                .and_then(Value::as_u64)
                .unwrap() as usize
        };
        let c = |k: &str| cfg[k].as_u64().unwrap() as usize;
        assert_eq!(get("block_count"), c("num_hidden_layers"), "{fx}");
        assert_eq!(
            get("attention.head_count_kv"),
            c("num_key_value_heads"),
            "{fx}"
        );
        assert_eq!(get("vocab_size"), c("vocab_size"), "{fx}");
        let tokens = f.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
        assert_eq!(
            tokens.len(),
            c("vocab_size"),
            "{fx}: padded to the embedding rows"
        );
        assert_eq!(tokens[299].as_str(), Some("t299"));
        assert_eq!(tokens[300].as_str(), Some("[PAD300]"));
        assert_eq!(
            f.get("tokenizer.ggml.add_bos_token"),
            Some(&Value::Bool(true))
        );
        let merges = f.get("tokenizer.ggml.merges").unwrap().as_array().unwrap();
        assert_eq!(merges[0].as_str(), Some("t3 t4"));
        assert_eq!(
            f.tensor("output.weight").is_ok(),
            !fx.starts_with("qwen2"),
            "{fx}: tied"
        );
        if fx == "mistral_headdim" {
            assert_eq!(get("attention.key_length"), 32);
        }
        // llama3 rope scaling (factor 8): high frequencies unscaled, low ones divided by 8.
        if fx == "llama3_gqa_untied" {
            let f = f.tensor_f32("rope_freqs.weight").unwrap();
            assert_eq!(f.len(), 4);
            assert_eq!((f[0], f[3]), (1.0, 8.0));
            assert!(f.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
        } else {
            assert!(f.tensor("rope_freqs.weight").is_err());
        }

        let files = ModelFiles::open_dir(&dir).unwrap();
        let heads = [
            ("q", c("num_attention_heads")),
            ("k", c("num_key_value_heads")),
        ];
        for (p, h) in heads {
            let hf = files
                .tensor(&format!("model.layers.0.self_attn.{p}_proj.weight"))
                .unwrap();
            let w = hf.to_f32().unwrap();
            let cols = hf.shape[1];
            let got = f.tensor_f32(&format!("blk.0.attn_{p}.weight")).unwrap();
            let want = if permuted {
                permute_rows(&w, cols, h)
            } else {
                w.clone()
            };
            assert_eq!(got, want, "{fx} {p}");
            // Row 2i + j of a head comes from row j·hd/2 + i (checked on row 1 = old row hd/2).
            if permuted {
                let hd = hf.shape[0] / h;
                assert_eq!(got[cols..2 * cols], w[hd / 2 * cols..(hd / 2 + 1) * cols]);
            }
        }
        if fx.starts_with("qwen2") {
            let b = files
                .tensor("model.layers.0.self_attn.q_proj.bias")
                .unwrap()
                .to_f32()
                .unwrap();
            assert_eq!(f.tensor_f32("blk.0.attn_q.bias").unwrap(), b);
        }
    }
}

#[test]
fn quantized_exports_use_ggml_blocks_and_f32_norms() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path(), 300);
    let dir = fixture("llama3_gqa_untied");
    let files = ModelFiles::open_dir(&dir).unwrap();
    let up = files
        .tensor("model.layers.1.mlp.up_proj.weight")
        .unwrap()
        .to_f32()
        .unwrap();
    for (ty, quant) in [
        (ExportType::Q8_0, quantize_q8_0 as fn(&[f32], &mut Vec<u8>)),
        (ExportType::Q4_0, quantize_q4_0),
    ] {
        let out = tmp.path().join("q.gguf");
        export(&dir, &out, ty, Some(tok.clone())).unwrap();
        let f = GgufFile::open(&out).unwrap();
        let mut want = Vec::new();
        quant(&up, &mut want);
        assert_eq!(f.tensor_bytes("blk.1.ffn_up.weight").unwrap(), &want[..]);
        assert_eq!(
            f.tensor("blk.1.ffn_norm.weight").unwrap().ty(),
            Some(GgmlType::F32)
        );
        assert_eq!(f.get("general.quantization_version"), Some(&Value::U32(2)));
    }
}

#[test]
fn export_errors_name_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.gguf");
    let dir = fixture("llama3_gqa_untied");
    let e = export(&dir, &out, ExportType::F16, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer.json") && e.contains("--tokenizer"),
        "{e}"
    );
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let tok = tokenizer(&big, 600);
    let e = export(&dir, &out, ExportType::F16, Some(tok))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("outside the model's vocabulary (vocab_size 512)"),
        "{e}"
    );

    // A config that GGUF cannot express.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(
        dir.join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128});
    std::fs::write(model.join("config.json"), cfg.to_string()).unwrap();
    let tok = tokenizer(tmp.path(), 300);
    let e = export(&model, &out, ExportType::F16, Some(tok))
        .unwrap_err()
        .to_string();
    assert!(e.contains("rope_scaling") && e.contains("yarn"), "{e}");
    assert!(!out.exists());
}
