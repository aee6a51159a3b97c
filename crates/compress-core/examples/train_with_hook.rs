//! Fine-tune a model from Rust with an extra loss term through [`TrainHook`]: here PaLM's
//! z-loss (`1e-4 · mean(logsumexp(logits)²)`), which keeps the softmax normalizer near 1.
//!
//! ```text
//! cargo run -p compress-core --example train_with_hook -- examples/models/demo examples/data/corpus/valid.txt target/zloss-run
//! ```

use std::path::PathBuf;

use burn::tensor::Tensor;
use compress_core::data::load_documents;
use compress_core::error::Result as CoreResult;
use compress_core::model::{load_model, ModelOutput};
use compress_core::tokenizer::Tokenizer;
use compress_core::train::{train, windows, Batch, RunDir, TrainConfig, TrainHook};

struct ZLoss {
    weight: f64,
}

impl TrainHook for ZLoss {
    fn loss(
        &mut self,
        _batch: &Batch,
        out: &ModelOutput,
        lm_loss: Tensor<1>,
    ) -> CoreResult<Tensor<1>> {
        let logits = &out.logits;
        let max = logits.clone().max_dim(2);
        let lse = (logits.clone() - max.clone()).exp().sum_dim(2).log() + max;
        Ok(lm_loss + lse.square().mean().mul_scalar(self.weight))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [model_dir, data, out] = args.as_slice() else {
        return Err("usage: train_with_hook MODEL_DIR DATA OUT_DIR".into());
    };
    let device = compress_core::parse_device("cpu")?;
    let loaded = load_model(model_dir, &device)?;
    let tokenizer = Tokenizer::from_model_dir(model_dir)?;
    let docs = load_documents(data, tokenizer.as_ref(), loaded.model.config.vocab_size)?;
    let cfg = TrainConfig {
        steps: 5,
        batch_size: 2,
        seq_len: 64,
        lr: 1e-4,
        min_lr: 1e-5,
        warmup_steps: 1,
        ..TrainConfig::default()
    };
    let run = RunDir { dir: out.clone() };
    let outcome = train(
        loaded.model,
        &loaded.hf_config,
        &windows(&docs, cfg.seq_len),
        &cfg,
        &device,
        &run,
        false,
        None,
        &mut ZLoss { weight: 1e-4 },
    )?;
    for m in &outcome.metrics {
        println!("step {} loss {:.4} (incl. z-loss)", m.step, m.loss);
    }
    Ok(())
}
