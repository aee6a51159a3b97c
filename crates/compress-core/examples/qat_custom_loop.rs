//! Quantization-aware training in your own burn loop with [`FakeQuantLinear`]: a float
//! 2-layer MLP (the "teacher") is wrapped layer by layer at 3 bits (groups of 16 inputs), and
//! the fake-quantized copy is trained to reproduce the teacher's outputs. The loss starts at
//! the round-to-nearest error and falls; the layers' `quantized_weight()` is what an RTN export
//! of the trained weights gives back.
//!
//! ```text
//! cargo run -p compress-core --example qat_custom_loop [-- LR [BATCH [STEPS]]]
//! ```
//!
//! Defaults: lr 1e-4 (AdamW, cosine-decayed to 0), batch 256, 100 steps; the held-out error
//! typically falls to about half the round-to-nearest error. Much larger learning rates make
//! weights flip between neighbouring codes and the loss wanders before the decay settles it.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use compress_core::stages::quantize::qat::FakeQuantLinear;
use compress_core::tensor_util::scalar_f64;
use compress_format::pack_quantized::WeightQuant;

/// The float model.
#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

/// The same model with both layers fake-quantized.
#[derive(Module, Debug)]
struct QatMlp {
    fc1: FakeQuantLinear,
    fc2: FakeQuantLinear,
}

impl QatMlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }

    /// The forward with the weights an RTN export of the trained layers loads.
    fn forward_exported(&self, x: Tensor<2>) -> Tensor<2> {
        let lin = |l: &FakeQuantLinear, x: Tensor<2>| {
            let b = l.linear.bias.as_ref().map(|b| b.val().unsqueeze::<2>());
            let y = x.matmul(l.quantized_weight().transpose());
            match b {
                Some(b) => y + b,
                None => y,
            }
        };
        lin(&self.fc2, relu(lin(&self.fc1, x)))
    }
}

fn mse(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (a - b).square().mean()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize| std::env::args().nth(i);
    let lr: f64 = arg(1).map_or(Ok(1e-4), |s| s.parse())?;
    let batch: usize = arg(2).map_or(Ok(256), |s| s.parse())?;
    let steps: usize = arg(3).map_or(Ok(100), |s| s.parse())?;
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (d_in, d_hidden, d_out) = (64, 128, 16);
    let teacher = Mlp {
        fc1: LinearConfig::new(d_in, d_hidden).init(&device),
        fc2: LinearConfig::new(d_hidden, d_out).init(&device),
    };
    let wq = WeightQuant::group(3, false, 16);
    let student = QatMlp {
        fc1: FakeQuantLinear::new(teacher.fc1.clone(), wq)?,
        fc2: FakeQuantLinear::new(teacher.fc2.clone(), wq)?,
    };
    let mut student = student.fork(&ad).train();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let eval_x = Tensor::<2>::random([512, d_in], Distribution::Normal(0.0, 1.0), &device);
    let eval_y = teacher.forward(eval_x.clone());
    let eval = |m: &QatMlp| scalar_f64(mse(m.forward(eval_x.clone()), eval_y.clone()));
    println!(
        "step   0: held-out MSE vs float {:.6} (round-to-nearest)",
        eval(&student.valid())
    );
    for step in 1..=steps {
        let x = Tensor::<2>::random([batch, d_in], Distribution::Normal(0.0, 1.0), &device);
        let y = teacher.forward(x.clone());
        let loss = mse(student.forward(x.autodiff()), y.autodiff());
        let grads = GradientsParams::from_grads(loss.backward(), &student);
        // Cosine decay: a late, small step stops weights flipping between two codes.
        let t = (step - 1) as f64 / steps as f64;
        let lr_t = lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        student = optim.step(lr_t, student, grads);
        if step % (steps / 5).max(1) == 0 {
            println!(
                "step {step:>3}: train MSE {:.6}, held-out MSE vs float {:.6}",
                scalar_f64(loss),
                eval(&student.valid())
            );
        }
    }
    let trained = student.valid();
    let exported = scalar_f64(mse(trained.forward_exported(eval_x), eval_y));
    println!("RTN export of the trained weights: held-out MSE {exported:.6}");
    Ok(())
}
