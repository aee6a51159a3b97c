//! Distillation inside your own burn training loop: a student with half the teacher's layers
//! (built by [`StudentSpec`], initialised from the teacher's blocks) learns from the frozen
//! teacher with [`DistillLoss`] (α = 0.7, T = 2) in a plain AdamW loop: the teacher runs on the
//! plain device, the student on the autodiff one.
//!
//! ```text
//! cargo run -p compress-core --example distill_custom -- examples/models/demo examples/data/corpus/valid.txt [STEPS]
//! ```
//!
//! Prints the soft and hard parts as training goes and checks at the end that the student's KL
//! to the teacher on held-out windows went down.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use compress_core::data::load_documents;
use compress_core::eval::evaluate;
use compress_core::model::{batch_tensor, load_model, LlamaModel};
use compress_core::stages::distill::student::even_layers;
use compress_core::stages::distill::{DistillLoss, StudentSpec};
use compress_core::tensor_util::scalar_f64;
use compress_core::tokenizer::Tokenizer;
use compress_core::train::windows;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model_dir, data) = match args.as_slice() {
        [m, d, ..] => (m.as_str(), d.as_str()),
        _ => return Err("usage: distill_custom MODEL_DIR DATA [STEPS]".into()),
    };
    let steps: usize = args.get(2).map_or(Ok(40), |s| s.parse())?;
    let device = compress_core::parse_device("cpu")?;
    let ad = device.clone().autodiff();
    let teacher = load_model(model_dir.as_ref(), &device)?.model;
    let layers = teacher.config.num_layers;
    let spec = StudentSpec::Layers(even_layers(layers, layers / 2));
    let student: LlamaModel = spec.build(&teacher, &[])?;
    println!(
        "teacher {} layers ({:.2}M params) → student {:?} ({:.2}M params)",
        layers,
        teacher.config.num_parameters() as f64 / 1e6,
        spec,
        student.config.num_parameters() as f64 / 1e6
    );

    let tokenizer = Tokenizer::from_model_dir(model_dir.as_ref())?;
    let docs = load_documents(data.as_ref(), tokenizer.as_ref(), teacher.config.vocab_size)?;
    let wins = windows(&docs, 64);
    let (held_out, train) = wins.split_at(8.min(wins.len() / 4));
    if train.len() < 8 {
        return Err("need at least 32 windows of 65 tokens of data".into());
    }
    let kl = |m: &LlamaModel| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(evaluate(m, Some(&teacher), held_out, 8, 0, None)?
            .kld
            .unwrap_or(f64::NAN))
    };
    let kl_before = kl(&student)?;

    let loss_fn = DistillLoss::new(0.7, 2.0)?;
    let mut model = student.fork(&ad).train();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    for step in 0..steps {
        let rows: Vec<&Vec<u32>> = (0..8)
            .map(|k| &train[(step * 8 + k) % train.len()])
            .collect();
        let inputs: Vec<Vec<u32>> = rows.iter().map(|w| w[..64].to_vec()).collect();
        let targets: Vec<Vec<u32>> = rows.iter().map(|w| w[1..].to_vec()).collect();
        // The teacher: plain device, no graph; its logits enter the loss as constants.
        let t = teacher.forward(batch_tensor(&inputs, &device)).autodiff();
        let s = model.forward(batch_tensor(&inputs, &ad));
        let parts = loss_fn.forward(s, t, batch_tensor(&targets, &ad), None)?;
        if step % 10 == 0 || step + 1 == steps {
            println!(
                "step {step:3}: loss {:.4} (soft {:.4}, hard {:.4})",
                scalar_f64(parts.total.clone()),
                scalar_f64(parts.soft.clone()),
                scalar_f64(parts.hard.clone())
            );
        }
        let grads = GradientsParams::from_grads(parts.total.backward(), &model);
        model = optim.step(3e-4, model, grads);
    }
    let kl_after = kl(&model.valid())?;
    println!("KL(teacher ‖ student) on held-out windows: {kl_before:.4} → {kl_after:.4}");
    // NaN-safe: anything but a strict decrease fails.
    if kl_after.partial_cmp(&kl_before) != Some(std::cmp::Ordering::Less) {
        return Err("distillation did not bring the student closer to the teacher".into());
    }
    Ok(())
}
