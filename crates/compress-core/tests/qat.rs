//! QAT: fake quantization equals the RTN export in the forward and is the identity in the
//! backward; a model trained with fake-quant computes exactly what its packed export computes.

use burn::nn::LinearConfig;
use burn::tensor::{Device, Tensor, TensorData};
use compress_core::model::weights::{export_tensors, init_random, TensorKind};
use compress_core::model::{load_model, tokens_tensor, LlamaConfig};
use compress_core::stages::quantize::qat::{
    fake_quantize, fake_quantize_with, train_qat, FakeQuant, FakeQuantLinear, QatConfig,
};
use compress_core::stages::quantize::rtn::quantize_rtn;
use compress_core::stages::quantize::{quantize_model, save_quantized, Method, QuantizeConfig};
use compress_core::tensor_util::to_vec_f32;
use compress_core::train::{windows, RunDir, TrainConfig};
use compress_format::pack_quantized::WeightQuant;
use compress_format::safetensors::Dtype;

/// A deterministic weight with rows of different ranges, some all-positive/negative, one zero.
fn weight(out: usize, inn: usize) -> Vec<f32> {
    (0..out * inn)
        .map(|i| {
            let (r, c) = (i / inn, i % inn);
            let v = ((i * 7919 % 1000) as f32 / 1000.0 - 0.45) * (1.0 + r as f32);
            match r % 4 {
                1 => v.abs() + 0.01 * c as f32,
                2 => -v.abs(),
                3 if r == 3 => 0.0,
                _ => v,
            }
        })
        .collect()
}

fn tensor(values: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn schemes(bits: u8, symmetric: bool) -> Vec<WeightQuant> {
    vec![
        WeightQuant::group(bits, symmetric, 16), // 40 = 2·16 + a ragged 8
        WeightQuant::group(bits, symmetric, 8),  // divides
        WeightQuant::group(bits, symmetric, 64), // one ragged group wider than the row
        WeightQuant::channel(bits, symmetric),
        WeightQuant::tensor(bits, symmetric),
    ]
}

#[test]
fn forward_is_the_rtn_dequantized_weight() {
    let device = Device::flex();
    let (out, inn) = (9, 40);
    let w = weight(out, inn);
    for bits in 2..=8 {
        for symmetric in [false, true] {
            for wq in schemes(bits, symmetric) {
                let got = to_vec_f32(fake_quantize(tensor(&w, [out, inn], &device), &wq));
                let want = quantize_rtn(&w, out, inn, &wq, Dtype::F32, None).dequantize(&wq);
                let diff = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(diff <= 1e-6, "{wq:?}: max diff {diff}");
                // Scales rounded as stored (bf16/f16) match the export exactly too.
                for dtype in [Dtype::BF16, Dtype::F16] {
                    let fq = FakeQuant::new(wq).with_scale_dtype(dtype);
                    let got = to_vec_f32(fake_quantize_with(tensor(&w, [out, inn], &device), &fq));
                    let want = quantize_rtn(&w, out, inn, &wq, dtype, None).dequantize(&wq);
                    assert!(got == want, "{wq:?} {dtype:?}");
                }
            }
        }
    }
}

#[test]
fn backward_is_straight_through() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let (out, inn) = (6, 40);
    let c: Vec<f32> = (0..out * inn).map(|i| (i % 13) as f32 - 6.0).collect();
    for wq in schemes(3, false).into_iter().chain(schemes(4, true)) {
        let w = tensor(&weight(out, inn), [out, inn], &ad).require_grad();
        let loss = (fake_quantize(w.clone(), &wq) * tensor(&c, [out, inn], &ad)).sum();
        let grads = loss.backward();
        let g = to_vec_f32(w.grad(&grads).expect("w has a gradient"));
        assert_eq!(g, c, "{wq:?}: d sum(fq(w)·c)/dw = c");
    }
}

#[test]
fn fake_quant_linear_uses_the_quantized_weight() {
    let device = Device::flex();
    let linear = LinearConfig::new(40, 6).init(&device);
    let wq = WeightQuant::group(4, false, 16);
    let fq = FakeQuantLinear::new(linear, wq).unwrap();
    let x = tensor(&weight(3, 40), [3, 40], &device);
    let got = to_vec_f32(fq.forward(x.clone()));
    let w_hf = fq.quantized_weight();
    let bias = fq.linear.bias.as_ref().map(|b| b.val().unsqueeze::<2>());
    let mut want = x.matmul(w_hf.transpose());
    if let Some(b) = bias {
        want = want + b;
    }
    let want = to_vec_f32(want);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "{diff}");
    assert!(FakeQuantLinear::new(fq.into_linear(), WeightQuant::group(9, false, 16)).is_err());
}

fn micro_config() -> LlamaConfig {
    let mut cfg = LlamaConfig::preset("tiny").unwrap();
    cfg.vocab_size = 48;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 40;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 8;
    cfg.tie_word_embeddings = false;
    cfg
}

#[test]
fn fake_quant_model_forward_equals_its_packed_export() {
    let device = Device::flex();
    let cfg = micro_config();
    let mut model = init_random(&cfg, &device, 3).unwrap();
    let tokens = tokens_tensor(&[1, 5, 7, 2, 40, 33, 9], &device);
    let float = to_vec_f32(model.forward(tokens.clone()));
    // 40-wide down_proj input: group 16 leaves a ragged group of 8.
    let wq = WeightQuant::group(3, false, 16);
    let ignore = vec!["model.layers.1.mlp".to_string()];
    let n = model
        .set_fake_quant(Some(FakeQuant::new(wq)), &ignore)
        .unwrap();
    assert_eq!(n, 2 * 7 - 3);
    let fake = to_vec_f32(model.forward(tokens.clone()));
    assert!(fake != float, "fake quantization changes the forward");

    let qcfg = QuantizeConfig {
        weights: wq,
        ignore: ignore.clone(),
        method: Method::Rtn,
    };
    let q = quantize_model(&model, &qcfg, None, Dtype::F32, Dtype::F32).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("q");
    save_quantized(&cfg.to_hf().unwrap(), &q, &dir, Dtype::F32, None).unwrap();
    let back = load_model(&dir, &device).unwrap();
    let packed = to_vec_f32(back.model.forward(tokens.clone()));
    let diff = fake
        .iter()
        .zip(&packed)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "fake-quant vs packed export logits: {diff}");

    model.set_fake_quant(None, &[]).unwrap();
    assert_eq!(to_vec_f32(model.forward(tokens)), float);
    let err = model
        .set_fake_quant(Some(FakeQuant::new(wq)), &["model.layers.5".into()])
        .unwrap_err();
    assert!(err.to_string().contains("ignore = model.layers.5"), "{err}");
}

#[test]
fn train_qat_trains_only_the_quantized_linears() {
    let device = Device::flex();
    let cfg = micro_config();
    let model = init_random(&cfg, &device, 5).unwrap();
    let before = export_tensors(&model);
    let docs: Vec<Vec<u32>> = (0..8u32)
        .map(|d| (0..30u32).map(|i| (d * 5 + i * 3) % 48).collect())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: tmp.path().join("run"),
    };
    let ignored = "model.layers.1.mlp.down_proj";
    let mut qcfg = QatConfig {
        quant: FakeQuant::new(WeightQuant::group(3, false, 16)),
        ignore: vec![ignored.to_string()],
        train: TrainConfig {
            steps: 3,
            batch_size: 2,
            seq_len: 8,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 0,
            weight_decay: 0.0,
            ..TrainConfig::default()
        },
        distill: 0.5,
    };
    let wins = windows(&docs, 8);
    let hf = cfg.to_hf().unwrap();
    let out = train_qat(model.clone(), &hf, &wins, &qcfg, &device, &run).unwrap();
    assert_eq!(out.metrics.len(), 3);
    let trained = &out.model;
    assert!(trained
        .layers
        .iter()
        .all(|l| l.self_attn.fake_quant == [None; 4] && l.mlp.fake_quant == [None; 3]));
    for ((spec, a), (_, b)) in before.iter().zip(export_tensors(trained)) {
        let quantized = spec.kind == TensorKind::Linear
            && spec.name != "lm_head.weight"
            && !spec.name.starts_with(ignored);
        assert_eq!(
            a != &b,
            quantized,
            "{} changed iff fake-quantized",
            spec.name
        );
    }
    qcfg.distill = 1.5;
    let err = train_qat(model, &hf, &wins, &qcfg, &device, &run).unwrap_err();
    assert!(err.to_string().contains("distillation weight"), "{err}");
}
