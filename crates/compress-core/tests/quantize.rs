//! Quantization end to end: packed dirs reload to exactly the dequantized weights, and on the
//! demo model int8 is near-lossless while int4 costs more.

mod common;

use burn::tensor::Device;
use common::{fixture, repo_root};
use compress_core::data::{chunk, load_documents};
use compress_core::eval::evaluate;
use compress_core::model::load_model;
use compress_core::model::weights::export_tensors;
use compress_core::stages::quantize::{quantize_model, save_quantized, QuantizeConfig};
use compress_core::tokenizer::Tokenizer;
use compress_format::pack_quantized::WeightQuant;
use compress_format::safetensors::Dtype;

fn config(weights: WeightQuant) -> QuantizeConfig {
    QuantizeConfig {
        weights,
        ignore: Vec::new(),
    }
}

#[test]
fn packed_dir_reloads_to_the_dequantized_weights() {
    let device = Device::flex();
    let src = fixture("llama3_gqa_untied");
    let loaded = load_model(&src, &device).unwrap();
    for wq in [
        WeightQuant::group(4, false, 16),
        WeightQuant::channel(8, true),
    ] {
        let q = quantize_model(&loaded.model, &config(wq), Dtype::F32, Dtype::F32).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("q");
        save_quantized(&loaded.hf_config, &q, &out, Dtype::F32, None).unwrap();
        let back = load_model(&out, &device).unwrap();
        assert_eq!(back.quantization.as_ref().unwrap().weights, wq);
        let tensors = export_tensors(&back.model);
        for (name, layer) in &q.layers {
            let (_, values) = tensors
                .iter()
                .find(|(s, _)| s.name == format!("{name}.weight"))
                .unwrap();
            assert!(values == &layer.dequantize(&wq), "{name} reloads exactly");
        }
        // lm_head stays in floating point.
        assert!(q.layers.iter().all(|(n, _)| n != "lm_head"));
        // Saving the loaded (dequantized) model gives a plain float checkpoint.
        let float = tmp.path().join("float");
        let opts = compress_core::model::hf::SaveOptions {
            dtype: Dtype::F32,
            max_shard_bytes: None,
            tokenizer_from: None,
        };
        compress_core::model::save_model(&back.model, &back.hf_config, &float, &opts).unwrap();
        let reloaded = load_model(&float, &device).unwrap();
        assert!(reloaded.quantization.is_none());
    }
}

#[test]
fn demo_int8_is_near_lossless_and_int4_costs_more() {
    let device = Device::flex();
    let demo = repo_root().join("examples/models/demo");
    let loaded = load_model(&demo, &device).unwrap();
    let tok = Tokenizer::from_model_dir(&demo).unwrap();
    let docs = load_documents(
        &repo_root().join("examples/data/corpus/valid.txt"),
        tok.as_ref(),
        loaded.model.config.vocab_size,
    )
    .unwrap();
    let seqs: Vec<_> = chunk(&docs, 128, 2).into_iter().take(8).collect();
    let kld = |wq: WeightQuant| {
        let q = quantize_model(&loaded.model, &config(wq), Dtype::BF16, Dtype::BF16).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("q");
        save_quantized(&loaded.hf_config, &q, &out, Dtype::BF16, None).unwrap();
        let back = load_model(&out, &device).unwrap();
        evaluate(&back.model, Some(&loaded.model), &seqs, 4, None)
            .unwrap()
            .kld
            .unwrap()
    };
    let int8 = kld(WeightQuant::group(8, false, 128));
    let int4 = kld(WeightQuant::group(4, false, 128));
    eprintln!("demo KL vs bf16: int8 g128 {int8:.6}, int4 g128 {int4:.6}");
    assert!(int8 < 0.002, "int8 KL {int8}");
    assert!(int4 > int8, "int4 {int4} vs int8 {int8}");
}

#[test]
fn ignore_must_name_a_layer() {
    let device = Device::flex();
    let loaded = load_model(&fixture("qwen2_bias_tied"), &device).unwrap();
    let mut cfg = config(WeightQuant::group(4, true, 16));
    cfg.ignore = vec!["model.layers.9".into()];
    let err = quantize_model(&loaded.model, &cfg, Dtype::F32, Dtype::F32).unwrap_err();
    assert!(err.to_string().contains("--ignore model.layers.9"), "{err}");
    cfg.ignore = vec!["model.layers.1.mlp".into()];
    let q = quantize_model(&loaded.model, &cfg, Dtype::F32, Dtype::F32).unwrap();
    assert!(q
        .layers
        .iter()
        .all(|(n, _)| !n.starts_with("model.layers.1.mlp")));
    assert_eq!(q.layers.len(), 2 * 7 - 3);
}
