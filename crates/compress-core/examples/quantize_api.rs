//! Quantization from the Rust API: the demo model to int4 twice, by round-to-nearest and by
//! GPTQ on 32 calibration windows, each saved as a compressed-tensors pack-quantized dir and
//! scored against the original on held-out text (ppl and KL), as `compress quantize` and
//! `compress eval --reference` would.
//!
//! ```text
//! cargo run -p compress-core --example quantize_api [-- MODEL_DIR TRAIN.txt VALID.txt OUT_DIR]
//! ```
//!
//! Fails unless GPTQ's KL to the original is below RTN's.

use std::path::PathBuf;

use compress_core::data::{chunk, load_documents};
use compress_core::eval::evaluate;
use compress_core::model::hf::{load_model, open_checkpoint};
use compress_core::stages::quantize::gptq::GptqConfig;
use compress_core::stages::quantize::{
    quantize_sequential, save_quantized, Calibration, Method, ModelSource, QuantizeConfig,
};
use compress_core::tokenizer::Tokenizer;
use compress_format::pack_quantized::WeightQuant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| PathBuf::from(args.get(i).map_or(default, |s| s.as_str()));
    let model_dir = arg(0, "examples/models/demo");
    let train = arg(1, "examples/data/corpus/train.txt");
    let valid = arg(2, "examples/data/corpus/valid.txt");
    let out = arg(3, "target/examples/quantize_api");
    let device = compress_core::parse_device("cpu")?;

    let ck = open_checkpoint(&model_dir)?;
    let tokenizer = Tokenizer::from_model_dir(&model_dir)?;
    let vocab = ck.config.vocab_size;
    let calib =
        Calibration::from_documents(&load_documents(&train, tokenizer.as_ref(), vocab)?, 32, 256)?;
    let mut held_out = chunk(&load_documents(&valid, tokenizer.as_ref(), vocab)?, 256, 2);
    held_out.truncate(16);
    let original = load_model(&model_dir, &device)?;

    let mut kld = Vec::new();
    for (name, method) in [
        ("rtn", Method::Rtn),
        ("gptq", Method::Gptq(GptqConfig::default())),
    ] {
        let cfg = QuantizeConfig {
            // 4 bits, asymmetric, groups of 64 along the input dimension.
            weights: WeightQuant::group(4, false, 64),
            ignore: Vec::new(),
            method,
        };
        let calib = cfg.method.needs_calibration().then_some(&calib);
        let source = ModelSource::Checkpoint(&ck, device.clone());
        let q = quantize_sequential(&source, &cfg, calib, ck.dtype, ck.dtype, &mut |_, _| {})?;
        let dir = out.join(name);
        save_quantized(&ck.hf_config, &q, &dir, ck.dtype, Some(model_dir.clone()))?;
        // The saved dir loads like any model (dequantized to f32 for the burn forward).
        let quantized = load_model(&dir, &device)?;
        let r = evaluate(
            &quantized.model,
            Some(&original.model),
            &held_out,
            4,
            0,
            None,
        )?;
        let k = r.kld.unwrap_or(f64::NAN);
        println!(
            "{name:5} ppl {:.3}  KL {k:.5}  top-1 {:.1}%  → {}",
            r.ppl,
            r.top1_agree.unwrap_or(0.0) * 100.0,
            dir.display()
        );
        kld.push(k);
    }
    if kld[1].partial_cmp(&kld[0]) != Some(std::cmp::Ordering::Less) {
        return Err(format!("GPTQ's KL {} is not below RTN's {}", kld[1], kld[0]).into());
    }
    Ok(())
}
