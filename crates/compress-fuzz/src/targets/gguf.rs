//! `gguf`: [`GgufFile::open`], every metadata value read, every tensor's weights decoded.

use compress_format::gguf::{write_gguf, GgmlType, GgufFile, TensorInfo, Value};

use super::{Kind, Scratch, Target};

/// The GGUF reader.
pub struct GgufTarget {
    scratch: Scratch,
}

impl GgufTarget {
    /// A target writing cases to `case.gguf` in a scratch dir.
    pub fn new() -> Self {
        Self {
            scratch: Scratch::new("case.gguf"),
        }
    }
}

impl Default for GgufTarget {
    fn default() -> Self {
        Self::new()
    }
}

fn metadata(with_vocab: bool) -> Vec<(String, Value)> {
    let mut m = vec![
        (
            "general.architecture".to_string(),
            Value::String("llama".into()),
        ),
        ("general.alignment".to_string(), Value::U32(32)),
        ("llama.block_count".to_string(), Value::U32(1)),
        ("llama.context_length".to_string(), Value::U64(128)),
        ("llama.rope.freq_base".to_string(), Value::F32(10000.0)),
        ("general.flag".to_string(), Value::Bool(true)),
        ("x.i8".to_string(), Value::I8(-3)),
        ("x.u16".to_string(), Value::U16(7)),
        ("x.i16".to_string(), Value::I16(-7)),
        ("x.i64".to_string(), Value::I64(-9)),
        ("x.f64".to_string(), Value::F64(0.5)),
        ("x.u8".to_string(), Value::U8(1)),
        ("x.i32".to_string(), Value::I32(5)),
    ];
    if with_vocab {
        m.push((
            "tokenizer.ggml.tokens".into(),
            Value::strings(["<s>", "a", "b", "ab"]),
        ));
        m.push((
            "tokenizer.ggml.scores".into(),
            Value::f32s([0.0, -1.0, -2.0, -3.0]),
        ));
        m.push((
            "tokenizer.ggml.token_type".into(),
            Value::i32s([3, 1, 1, 1]),
        ));
    }
    m
}

/// Small valid files of every tensor type, written with the project's writer.
fn written_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("seed.gguf");
    let info = |name: &str, ne: &[usize], ty| TensorInfo {
        name: name.into(),
        ne: ne.to_vec(),
        ty,
    };
    let sets = vec![
        (
            false,
            vec![info("token_embd.weight", &[4, 2], GgmlType::F32)],
        ),
        (
            true,
            vec![
                info("blk.0.attn_q.weight", &[32, 2], GgmlType::Q8_0),
                info("blk.0.ffn_up.weight", &[64, 1], GgmlType::Q4_0),
                info("output_norm.weight", &[8], GgmlType::F16),
            ],
        ),
        (true, vec![]),
        // 256 columns: a type id changed to a k-quant (blocks of 256) still fits the data.
        (
            false,
            vec![info("blk.0.ffn_down.weight", &[256, 2], GgmlType::F32)],
        ),
    ];
    sets.into_iter()
        .filter_map(|(vocab, tensors)| {
            let sizes: Vec<usize> = tensors.iter().map(|t| t.nbytes().unwrap_or(0)).collect();
            let data = |i: usize| Ok((0..sizes[i]).map(|j| (j * 13 % 97) as u8).collect());
            write_gguf(&p, &metadata(vocab), &tensors, data).ok()?;
            std::fs::read(&p).ok()
        })
        .collect()
}

impl Target for GgufTarget {
    fn name(&self) -> &'static str {
        "gguf"
    }

    fn kind(&self) -> Kind {
        Kind::Binary
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        written_seeds()
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let path = self.scratch.write(input);
        let Ok(f) = GgufFile::open(path) else {
            return false;
        };
        let _ = f.version();
        for (_, v) in f.metadata() {
            let _ = (v.as_u64(), v.as_f64(), v.as_str(), v.as_bool());
            let _ = v.as_array().map(|a| a.len());
        }
        let names: Vec<String> = f.tensors().iter().map(|t| t.name.clone()).collect();
        let mut ok = true;
        for n in names {
            let numel = f.tensor(&n).map(|t| (t.numel(), t.ty()));
            ok &= numel.is_ok() && f.tensor_f32(&n).is_ok();
        }
        ok
    }
}
