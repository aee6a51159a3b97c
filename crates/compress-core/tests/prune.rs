//! The pruning stage on a micro model: masks are held exactly through retraining (one-shot,
//! iterative, AGP; unstructured per layer, global, N:M; magnitude and Wanda), the optimizer
//! state of pruned weights is zeroed, structured pruning equals zeroing the same units in the
//! dense model, and bad settings are refused with errors that name the flag.

mod common;

use std::collections::HashMap;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use common::{counting_docs, micro_config};
use compress_core::model::weights::{build_model, export_tensors, init_random, param_id};
use compress_core::model::{batch_tensor, LlamaConfig, LlamaModel};
use compress_core::stages::distill::DistillLoss;
use compress_core::stages::prune::masks::linear_names;
use compress_core::stages::prune::{
    prune, Criterion, Pattern, PruneConfig, PruneData, Schedule, Scope,
};
use compress_core::tensor_util::to_vec_f32;
use compress_core::train::{cross_entropy, windows, ParamMasks, RunDir, TrainConfig};

fn retrain(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 2,
        seq_len: 16,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 1,
        ..TrainConfig::default()
    }
}

fn config(pattern: Pattern, schedule: Schedule, steps: usize) -> PruneConfig {
    PruneConfig {
        sparsity: 0.5,
        pattern,
        scope: Scope::Layer,
        criterion: Criterion::Magnitude,
        schedule,
        rounds: 2,
        ignore: vec![],
        retrain: (steps > 0).then(|| retrain(steps)),
        distill: None,
    }
}

fn tensors(model: &LlamaModel) -> HashMap<String, Vec<f32>> {
    export_tensors(model)
        .into_iter()
        .map(|(s, v)| (s.name, v))
        .collect()
}

fn run(cfg: &PruneConfig) -> compress_core::stages::prune::Pruned {
    let device = Device::flex();
    let mc = micro_config();
    let model = init_random(&mc, &device, 3).unwrap();
    let wins = windows(&counting_docs(), 16);
    let eval: Vec<Vec<u32>> = counting_docs().into_iter().take(4).collect();
    let dir = tempfile::tempdir().unwrap();
    let data = PruneData {
        train: &wins,
        eval: &eval,
        calib: &eval,
    };
    let run = RunDir {
        dir: dir.path().to_path_buf(),
    };
    prune(
        model,
        &mc.to_hf().unwrap(),
        cfg,
        data,
        &device,
        &run,
        &mut |_| {},
    )
    .unwrap()
}

fn zeros(v: &[f32]) -> usize {
    v.iter().filter(|&&x| x == 0.0).count()
}

#[test]
fn unstructured_masks_hold_exactly_through_retraining() {
    for (schedule, scope, criterion, distill) in [
        (Schedule::OneShot, Scope::Layer, Criterion::Magnitude, false),
        (Schedule::Iterative, Scope::Layer, Criterion::Wanda, false),
        (Schedule::Agp, Scope::Global, Criterion::Magnitude, false),
        // Retraining against the dense model: the masks still hold, the loss has its parts.
        (Schedule::Agp, Scope::Layer, Criterion::Magnitude, true),
    ] {
        let mut cfg = config(Pattern::Unstructured, schedule, 8);
        cfg.scope = scope;
        cfg.criterion = criterion;
        cfg.distill = distill.then(|| DistillLoss::new(0.7, 2.0).unwrap());
        let p = run(&cfg);
        assert_eq!(
            p.metrics.iter().all(|m| m.parts.contains_key("soft")),
            distill,
            "distillation parts"
        );
        let masks = p.masks.as_ref().unwrap();
        let t = tensors(&p.model);
        let what = format!("{schedule:?} {scope:?} {criterion:?}");
        let mut total = (0, 0);
        for name in linear_names(2) {
            let w = &t[&name];
            let m = &masks.layers[&name];
            // Every masked weight is exactly zero, and nothing else is.
            assert_eq!(zeros(w), m.pruned(), "{what} {name}");
            for (v, &k) in w.iter().zip(&m.keep) {
                assert!(k || *v == 0.0, "{what} {name}");
            }
            if scope == Scope::Layer {
                assert_eq!(
                    m.pruned(),
                    (0.5 * w.len() as f64).round() as usize,
                    "{what} {name}"
                );
            }
            total = (total.0 + m.pruned(), total.1 + w.len());
        }
        assert_eq!(total.0, (0.5 * total.1 as f64).round() as usize, "{what}");
        let last = p.report.rounds.last().unwrap();
        assert!(
            last.retrain_steps > 0 && last.ppl_retrained.is_some(),
            "{what}"
        );
        assert!((last.sparsity - 0.5).abs() < 1e-3, "{what}");
    }
}

#[test]
fn n_m_groups_keep_their_zeros_and_agp_grows_masks() {
    let p = run(&config(Pattern::NM { n: 2, m: 4 }, Schedule::OneShot, 6));
    let t = tensors(&p.model);
    for name in linear_names(2) {
        for g in t[&name].chunks(4) {
            assert!(zeros(g) >= 2, "{name}: {g:?}");
        }
    }
    let p = run(&config(Pattern::Unstructured, Schedule::Agp, 12));
    let u = &p.report.rounds[0].updates;
    assert_eq!(u.len(), 2, "{u:?}");
    assert!(u[0].pruned < u[1].pruned && u[0].sparsity < 0.5);
}

/// Zeroes units of `t` the way structured pruning removes them.
fn zero_units(
    t: &mut HashMap<String, Vec<f32>>,
    cfg: &LlamaConfig,
    l: usize,
    heads: &[usize],
    neurons: &[usize],
) {
    let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let rep = cfg.num_heads / cfg.num_kv_heads;
    let a = format!("model.layers.{l}.self_attn");
    for &g in heads {
        for r in g * rep * hd..(g + 1) * rep * hd {
            t.get_mut(&format!("{a}.q_proj.weight")).unwrap()[r * h..(r + 1) * h].fill(0.0);
            let o = t.get_mut(&format!("{a}.o_proj.weight")).unwrap();
            for row in o.chunks_mut(cfg.num_heads * hd) {
                row[r] = 0.0;
            }
        }
    }
    let m = format!("model.layers.{l}.mlp");
    for &n in neurons {
        t.get_mut(&format!("{m}.gate_proj.weight")).unwrap()[n * h..(n + 1) * h].fill(0.0);
        t.get_mut(&format!("{m}.up_proj.weight")).unwrap()[n * h..(n + 1) * h].fill(0.0);
        for row in t
            .get_mut(&format!("{m}.down_proj.weight"))
            .unwrap()
            .chunks_mut(i)
        {
            row[n] = 0.0;
        }
    }
}

#[test]
fn structured_pruning_equals_zeroing_the_removed_units() {
    let device = Device::flex();
    let mc = micro_config();
    let tokens = batch_tensor(&[counting_docs()[0][..20].to_vec()], &device);
    for (pattern, scope) in [
        (Pattern::Heads, Scope::Layer),
        (Pattern::Neurons, Scope::Layer),
        (Pattern::Heads, Scope::Global),
        (Pattern::Neurons, Scope::Global),
    ] {
        let mut cfg = config(pattern, Schedule::OneShot, 0);
        cfg.scope = scope;
        let p = run(&cfg);
        let what = format!("{pattern:?} {scope:?}");
        let dense = init_random(&mc, &device, 3).unwrap();
        let mut t = tensors(&dense);
        for k in &p.report.kept {
            let dropped: Vec<usize> = (0..k.before).filter(|u| !k.kept.contains(u)).collect();
            match pattern {
                Pattern::Heads => zero_units(&mut t, &mc, k.layer, &dropped, &[]),
                _ => zero_units(&mut t, &mc, k.layer, &[], &dropped),
            }
        }
        let zeroed = build_model(&mc, &device, &mut |s| Ok(t[&s.name].clone())).unwrap();
        let (a, b) = (
            to_vec_f32(p.model.forward(tokens.clone())),
            to_vec_f32(zeroed.forward(tokens.clone())),
        );
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-4, "{what}: logits differ by {diff}");
        let kept: usize = p.report.kept.iter().map(|k| k.kept.len()).sum();
        let before: usize = p.report.kept.iter().map(|k| k.before).sum();
        assert_eq!(kept, before / 2, "{what}");
        // The written config describes every layer: rebuilding from it gives the same shapes.
        let back = LlamaConfig::from_hf(&p.hf_config);
        for (l, k) in p.report.kept.iter().enumerate() {
            let ls = back.layer(l);
            match pattern {
                Pattern::Heads => assert_eq!(ls.num_key_value_heads, k.kept.len(), "{what}"),
                _ => assert_eq!(ls.intermediate_size, k.kept.len(), "{what}"),
            }
            assert_eq!(
                p.model.layers[l].self_attn.num_kv_heads,
                back.layer(l).num_key_value_heads
            );
        }
        match (pattern, scope) {
            (Pattern::Heads, Scope::Layer) => {
                assert_eq!(
                    (p.model.config.num_heads, p.model.config.num_kv_heads),
                    (2, 1)
                );
                assert_eq!(p.hf_config.num_attention_heads, 2);
            }
            (Pattern::Neurons, Scope::Layer) => assert_eq!(p.hf_config.intermediate_size, 36),
            _ => {}
        }
        assert_eq!(p.report.params_after, back.num_parameters(), "{what}");
        assert!(p.report.params_after < p.report.params_before);
    }
}

#[test]
fn masking_the_optimizer_state_zeroes_pruned_moments() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let mc = micro_config();
    let model = init_random(&mc, &device, 5).unwrap().fork(&ad).train();
    let mut optim = AdamWConfig::new().init();
    let toks = batch_tensor(&[counting_docs()[1][..17].to_vec()], &ad);
    let (x, y) = (toks.clone().narrow(1, 0, 16), toks.narrow(1, 1, 16));
    let loss = cross_entropy(model.forward(x), y);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(1e-3, model, grads);
    let name = "model.layers.0.mlp.up_proj.weight";
    let (rows, cols) = (mc.hidden_size, mc.intermediate_size);
    let keep: Vec<bool> = (0..rows * cols).map(|i| i % 3 != 0).collect();
    let mut masks = ParamMasks::new();
    masks.insert(param_id(name), keep.clone(), rows, cols);
    let optim = masks.mask_optimizer_state(optim).unwrap();
    let model = masks.apply(model);
    let bytes = optim.to_record().into_bytes().unwrap();
    let reader = burn_pack::Reader::from_bytes(bytes).unwrap();
    let id: u64 = param_id(name).val();
    let mut checked = 0;
    for t in reader.into_tensors().unwrap() {
        if t.param_id != Some(id) || t.shape.dims() != [rows, cols] {
            continue;
        }
        let (_, dtype, shape, _, b) = t.into_parts().unwrap();
        let v: Vec<f32> = burn::tensor::TensorData::from_bytes(b, shape, dtype)
            .try_to_vec_as()
            .unwrap();
        for (i, (&x, &k)) in v.iter().zip(&keep).enumerate() {
            assert!(k || x == 0.0, "moment {i} not zeroed");
        }
        assert!(
            v.iter().zip(&keep).any(|(&x, &k)| k && x != 0.0),
            "unpruned moments kept"
        );
        checked += 1;
    }
    assert!(checked >= 2, "moment tensors found: {checked}");
    let w = to_vec_f32(model.valid().layers[0].mlp.up_proj.weight.val());
    assert!(w.iter().zip(&keep).all(|(&x, &k)| k || x == 0.0));
}

#[test]
fn bad_settings_are_refused_naming_the_flag() {
    let err = |c: PruneConfig| c.validate().unwrap_err().to_string();
    let mut c = config(Pattern::Unstructured, Schedule::OneShot, 0);
    c.sparsity = 1.0;
    assert!(err(c.clone()).contains("sparsity = 1"), "{}", err(c));
    let mut c = config(Pattern::Unstructured, Schedule::OneShot, 0);
    c.sparsity = -0.1;
    assert!(err(c).contains("[0, 1)"));
    for bad in ["4:4", "5:4", "0:4", "2-4", "x:4"] {
        assert!(
            Pattern::parse(bad)
                .unwrap_err()
                .to_string()
                .contains("pattern = "),
            "{bad}"
        );
    }
    let c = config(Pattern::Unstructured, Schedule::Agp, 0);
    assert!(err(c).contains("`data`"));
    let c = config(Pattern::NM { n: 2, m: 4 }, Schedule::Iterative, 4);
    assert!(err(c).contains("oneshot"));
    // More heads than a layer has (2 KV groups: 0.9 rounds to both).
    let mut c = config(Pattern::Heads, Schedule::OneShot, 0);
    c.sparsity = 0.9;
    let device = Device::flex();
    let mc = micro_config();
    let model = init_random(&mc, &device, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir {
        dir: dir.path().to_path_buf(),
    };
    let hf = mc.to_hf().unwrap();
    let e = prune(
        model,
        &hf,
        &c,
        PruneData::default(),
        &device,
        &run,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least one must stay"), "{e}");
    // Retraining without data.
    let c = config(Pattern::Unstructured, Schedule::OneShot, 4);
    let model = init_random(&mc, &device, 3).unwrap();
    let e = prune(
        model,
        &hf,
        &c,
        PruneData::default(),
        &device,
        &run,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs data"), "{e}");
}
