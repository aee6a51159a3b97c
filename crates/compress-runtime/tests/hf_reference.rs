//! The runtime against HF transformers (fp32 logits and greedy tokens), from the fixtures made
//! once by tests/reference/make_fixtures.py; the same fixtures check the burn model.

use std::path::{Path, PathBuf};

use compress_format::safetensors::{Dtype, SafetensorsFile};
use compress_runtime::forward::{forward, sequence_logits, Chunk, Logits};
use compress_runtime::kernels::ActMode;
use compress_runtime::kv::cache::KvCache;
use compress_runtime::kv::{BlockId, BLOCK_SIZE};
use compress_runtime::sampling::argmax;
use compress_runtime::Model;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_ids(file: &SafetensorsFile, name: &str) -> Vec<u32> {
    let t = file.tensor(name).unwrap();
    assert_eq!(t.dtype, Dtype::I64, "{name}");
    t.data
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if (x - y).is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// Greedy decoding one token per step through the cache.
fn greedy(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    let total = prompt.len() + n;
    let blocks: Vec<BlockId> = (0..total.div_ceil(BLOCK_SIZE) as u32).collect();
    let mut kv = KvCache::new(model, blocks.len());
    let chunk = Chunk {
        tokens: prompt,
        start: 0,
        blocks: &blocks,
        logits: Logits::Last,
    };
    let mut next = argmax(&forward(model, &[chunk], &mut kv, ActMode::F32));
    let mut out = vec![next];
    while out.len() < n {
        let pos = prompt.len() + out.len() - 1;
        let tok = [next];
        let chunk = Chunk {
            tokens: &tok,
            start: pos,
            blocks: &blocks,
            logits: Logits::Last,
        };
        next = argmax(&forward(model, &[chunk], &mut kv, ActMode::F32));
        out.push(next);
    }
    out
}

fn check(model_dir: &Path, reference: &Path) {
    let model = Model::load(model_dir).unwrap();
    let r = SafetensorsFile::open(reference).unwrap();
    let ids = read_ids(&r, "input_ids");
    let expected = r.tensor("logits").unwrap().to_f32().unwrap();
    let diff = max_abs_diff(&sequence_logits(&model, &ids, ActMode::F32), &expected);
    assert!(
        diff < 1e-4,
        "{}: max abs logit diff {diff} ≥ 1e-4",
        model_dir.display()
    );
    let prompt = read_ids(&r, "greedy_prompt");
    let want = read_ids(&r, "greedy_tokens");
    assert_eq!(
        greedy(&model, &prompt, want.len()),
        want,
        "{}: greedy tokens differ",
        model_dir.display()
    );
}

#[test]
fn qwen2_bias_tied_matches_transformers() {
    let dir = root().join("tests/fixtures/qwen2_bias_tied");
    check(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn llama3_rope_scaling_gqa_untied_matches_transformers() {
    let dir = root().join("tests/fixtures/llama3_gqa_untied");
    check(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn explicit_head_dim_matches_transformers() {
    let dir = root().join("tests/fixtures/mistral_headdim");
    check(&dir, &dir.join("reference.safetensors"));
}

#[test]
fn demo_model_matches_transformers() {
    check(
        &root().join("examples/models/demo"),
        &root().join("tests/fixtures/demo_reference/reference.safetensors"),
    );
}

#[test]
fn q8_activations_stay_close_on_the_demo_model() {
    let model = Model::load(&root().join("examples/models/demo")).unwrap();
    let r =
        SafetensorsFile::open(&root().join("tests/fixtures/demo_reference/reference.safetensors"))
            .unwrap();
    let ids = read_ids(&r, "input_ids");
    let exact = sequence_logits(&model, &ids, ActMode::F32);
    let fast = sequence_logits(&model, &ids, ActMode::Q8);
    let v = model.config.vocab_size;
    let agree = exact
        .chunks(v)
        .zip(fast.chunks(v))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let n = exact.len() / v;
    assert!(
        agree * 100 >= n * 95,
        "top-1 agreement {agree}/{n} with 8-bit activations"
    );
    let diff = max_abs_diff(&exact, &fast);
    assert!(diff < 0.5, "8-bit activations moved a logit by {diff}");
    eprintln!("q8 activations: top-1 {agree}/{n}, max abs logit diff {diff}");
}
