//! Mixture-of-experts from the Rust API: the demo model's FFNs are split into 8 experts by
//! co-activation (balanced k-means over the neurons' activations on calibration text) and each
//! layer gets a trained router, as `compress moe` does. Scored on held-out text: with all 8
//! experts active it is the dense model again (the split loses nothing); with the top 2 it runs
//! a quarter of the FFN.
//!
//! ```text
//! cargo run -p compress-core --example moe_api [-- MODEL_DIR TRAIN.txt VALID.txt]
//! ```
//!
//! Fails unless top-8 equals the dense model (ppl within 1e-3 relative) and the trained
//! routers beat random routers at top-2.

use std::path::PathBuf;

use compress_core::data::{chunk, load_documents, spread};
use compress_core::eval::evaluate;
use compress_core::model::hf::load_model;
use compress_core::stages::moe::{moefy, random_routers, set_top_k, MoeStageConfig, SplitBy};
use compress_core::tokenizer::Tokenizer;
use compress_format::hf_config::moe::Routing;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| PathBuf::from(args.get(i).map_or(default, |s| s.as_str()));
    let model_dir = arg(0, "examples/models/demo");
    let train = arg(1, "examples/data/corpus/train.txt");
    let valid = arg(2, "examples/data/corpus/valid.txt");
    let device = compress_core::parse_device("cpu")?;

    let dense = load_model(&model_dir, &device)?;
    let tokenizer = Tokenizer::from_model_dir(&model_dir)?;
    let vocab = dense.model.config.vocab_size;
    let rows = |p: &PathBuf, n: usize| -> Result<Vec<Vec<u32>>, Box<dyn std::error::Error>> {
        let docs = load_documents(p, tokenizer.as_ref(), vocab)?;
        Ok(spread(&chunk(&docs, 128, 128), n))
    };
    let calib = rows(&train, 64)?;
    let held_out = rows(&valid, 16)?;
    let ppl = |m: &compress_core::model::LlamaModel| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(evaluate(m, None, &held_out, 4, 0, None)?.ppl)
    };
    let dense_ppl = ppl(&dense.model)?;

    let cfg = MoeStageConfig {
        experts: 8,
        top_k: 2,
        routing: Routing::Sum,
        split: SplitBy::Activations,
        kmeans_iters: 10,
        router_steps: 100,
        router_lr: 1e-2,
        seed: 0,
    };
    let (mut moe, _layers) = moefy(&dense.model, &cfg, &calib)?;
    let trained = ppl(&moe)?;
    let random = ppl(&random_routers(&moe, 0)?)?;
    set_top_k(&mut moe, 8)?;
    let all = ppl(&moe)?;
    println!(
        "top-2 ppl: trained routers {trained:.3}, random routers {random:.3}; all 8 experts {all:.3} (dense {dense_ppl:.3})"
    );
    if ((all - dense_ppl) / dense_ppl).abs() > 1e-3 {
        return Err(format!("all experts give ppl {all}, the dense model {dense_ppl}").into());
    }
    if trained.partial_cmp(&random) != Some(std::cmp::Ordering::Less) {
        return Err(
            format!("trained routers ({trained}) do not beat random ones ({random})").into(),
        );
    }
    Ok(())
}
