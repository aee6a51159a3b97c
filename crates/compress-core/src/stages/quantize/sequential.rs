//! The layer-by-layer pipeline every method runs through: the float model comes from a
//! [`ModelSource`] one decoder layer at a time, calibration activations flow through the
//! layers already quantized, and each layer is quantized before the next is built, so memory
//! stays O(one layer) plus the calibration activations.
//!
//! Per layer: build it; with calibration, run it on the current hidden states capturing each
//! linear's input ([`DecoderLayer::forward_traced`]) into the statistics the method needs
//! (GPTQ Hessians, AWQ activation magnitudes and samples); AWQ folds its scales into the layer;
//! every target linear is quantized; the quantized weights are put back and the hidden states
//! advance through the quantized layer.

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::awq::{self, AwqStats};
use super::experts;
use super::gptq::{gptq_quantize, Hessian};
use super::{ignored, layer_report, mse, rtn, Method, QuantizeConfig, QuantizedModel};
use crate::error::{CoreError, Result};
use crate::model::hf::Checkpoint;
use crate::model::llama::{DecoderLayer, LayerTaps};
use crate::model::names::{self, LINEARS};
use crate::model::rope::Rope;
use crate::model::weights::{
    build_layer, export_layer, export_outer, tensor_specs, TensorKind, TensorSpec,
};
use crate::model::{batch_tensor, LlamaConfig, LlamaModel};
use crate::tensor_util::to_vec_f32;
use compress_format::hf_config::SHARED_LAYERS_KEY;
use compress_format::pack_quantized::{QuantizationConfig, QuantizedLinear};
use compress_format::safetensors::Dtype;

/// Where the float model comes from: a model in memory, or a checkpoint read layer by layer.
pub enum ModelSource<'a> {
    /// A built model (its layers are cloned one at a time; the model itself is not changed).
    Model(&'a LlamaModel),
    /// An opened checkpoint, each layer built on `device` only when it is quantized.
    Checkpoint(&'a Checkpoint, Device),
}

impl ModelSource<'_> {
    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        match self {
            ModelSource::Model(m) => &m.config,
            ModelSource::Checkpoint(ck, _) => &ck.config,
        }
    }

    fn device(&self) -> Device {
        match self {
            ModelSource::Model(m) => m.embed_tokens.weight.val().device(),
            ModelSource::Checkpoint(_, d) => d.clone(),
        }
    }

    fn layer(&self, l: usize) -> Result<DecoderLayer> {
        match self {
            ModelSource::Model(m) => Ok(m.layers[l].clone()),
            ModelSource::Checkpoint(ck, device) => {
                build_layer(&ck.config, l, device, &mut |s| ck.read(s))
            }
        }
    }

    /// Every tensor of decoder layer `l` in HF layout, without building the layer.
    fn layer_tensors(&self, l: usize) -> Result<Vec<(TensorSpec, Vec<f32>)>> {
        match self {
            ModelSource::Model(m) => Ok(export_layer(&m.layers[l], l)),
            ModelSource::Checkpoint(ck, _) => {
                let prefix = format!("{}.", names::layer(l));
                let specs: Vec<TensorSpec> = tensor_specs(&ck.config)
                    .into_iter()
                    .filter(|s| s.name.starts_with(&prefix))
                    .collect();
                specs
                    .into_par_iter()
                    .map(|s| {
                        let v = ck.read(&s)?;
                        Ok((s, v))
                    })
                    .collect()
            }
        }
    }

    /// Lets a streamed checkpoint's pages leave memory once a layer is done.
    fn release(&self) {
        if let ModelSource::Checkpoint(ck, _) = self {
            ck.files.release_pages();
        }
    }

    /// Embeddings, final norm and `lm_head`: the tensors outside the decoder layers.
    fn outer_tensors(&self) -> Result<Vec<(TensorSpec, Vec<f32>)>> {
        match self {
            ModelSource::Model(m) => Ok(export_outer(m)),
            ModelSource::Checkpoint(ck, _) => tensor_specs(&ck.config)
                .into_iter()
                .filter(|s| !s.name.starts_with("model.layers."))
                .map(|s| {
                    let v = ck.read(&s)?;
                    Ok((s, v))
                })
                .collect(),
        }
    }

    fn embed(&self, batches: &[Vec<Vec<u32>>]) -> Result<Vec<Tensor<3>>> {
        let device = self.device();
        let embedding = match self {
            ModelSource::Model(m) => m.embed_tokens.clone(),
            ModelSource::Checkpoint(ck, _) => {
                let spec = tensor_specs(&ck.config).remove(0);
                let values = ck.read(&spec)?;
                let t = Tensor::<2>::from_data(TensorData::new(values, spec.shape), &device);
                Embedding {
                    weight: Param::from_tensor(t),
                }
            }
        };
        Ok(batches
            .iter()
            .map(|rows| embedding.forward(batch_tensor(rows, &device)))
            .collect())
    }
}

/// Calibration data: token rows run through the model in batches of equal length.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Token rows (each at least 2 tokens).
    pub samples: Vec<Vec<u32>>,
    /// Rows per forward pass.
    pub batch_size: usize,
}

impl Calibration {
    /// Up to `samples` rows of `seq_len` tokens cut from `docs`, spread evenly over the data
    /// (documents shorter than `seq_len` are used whole when nothing longer exists).
    pub fn from_documents(docs: &[Vec<u32>], samples: usize, seq_len: usize) -> Result<Self> {
        if samples == 0 || seq_len < 2 {
            let (field, value) = match samples {
                0 => ("calib_samples", samples),
                _ => ("seq_len", seq_len),
            };
            let msg = "calibration needs ≥ 1 sample of ≥ 2 tokens";
            return Err(CoreError::setting(field, value, msg));
        }
        let mut rows = crate::data::chunk(docs, seq_len, seq_len);
        if rows.is_empty() {
            rows = crate::data::chunk(docs, seq_len, 2);
        }
        if rows.is_empty() {
            return Err(CoreError::Invalid(
                "calibration data holds no sequence of at least 2 tokens".into(),
            ));
        }
        let picked = crate::data::spread(&rows, samples);
        Ok(Self {
            samples: picked,
            batch_size: 4,
        })
    }

    /// Total tokens.
    pub fn tokens(&self) -> usize {
        self.samples.iter().map(|s| s.len()).sum()
    }

    fn batches(&self) -> Vec<Vec<Vec<u32>>> {
        let mut sorted = self.samples.clone();
        sorted.sort_by_key(|s| s.len());
        let mut out: Vec<Vec<Vec<u32>>> = Vec::new();
        for s in sorted {
            match out.last_mut() {
                Some(b) if b.len() < self.batch_size.max(1) && b[0].len() == s.len() => b.push(s),
                _ => out.push(vec![s]),
            }
        }
        out
    }
}

/// The four taps as `[tokens, width]` host matrices.
fn tap_values(taps: LayerTaps) -> [(Vec<f32>, usize); 4] {
    [taps.attn_in, taps.o_in, taps.mlp_in, taps.down_in].map(|t| {
        let [b, s, _] = t.dims();
        (to_vec_f32(t), b * s)
    })
}

/// Statistics one layer's calibration pass collects, per tap.
enum TapStats {
    None,
    Gptq(Vec<Option<Hessian>>),
    Awq(Vec<AwqStats>),
    /// Σ x² per input column (MSE's error weights).
    Mse(Vec<Vec<f32>>),
}

/// Adds `Σ x²` per column of `values` (`tokens` rows) to `energy`.
fn add_energy(energy: &mut Vec<f32>, values: &[f32], tokens: usize) {
    let width = values.len() / tokens.max(1);
    energy.resize(width, 0.0);
    for row in values.chunks_exact(width.max(1)) {
        for (e, x) in energy.iter_mut().zip(row) {
            *e += x * x;
        }
    }
}

/// Runs the whole pipeline; `progress(layer, layers)` is called after each layer.
pub fn quantize_sequential(
    source: &ModelSource,
    cfg: &QuantizeConfig,
    calib: Option<&Calibration>,
    scale_dtype: Dtype,
    source_dtype: Dtype,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<QuantizedModel> {
    cfg.weights.validate()?;
    let mcfg = source.config().clone();
    let ignore = super::check_ignore(&mcfg, &cfg.ignore)?;
    let calib = match (cfg.method.needs_calibration(), calib) {
        (true, None) => {
            let msg = "needs calibration data (`calib`: a .txt, .json or .jsonl file)";
            return Err(CoreError::setting("method", cfg.method.name(), msg));
        }
        (true, Some(c)) if c.samples.is_empty() => {
            return Err(CoreError::Invalid("calibration data is empty".into()))
        }
        (true, Some(c)) => Some(c),
        // MSE weighs its error by the calibration inputs' energy when given some (dense
        // models; MoE experts see only their routed tokens, so they keep the plain search).
        (false, Some(c))
            if matches!(cfg.method, Method::Mse(_))
                && !c.samples.is_empty()
                && source.config().moe.is_none() =>
        {
            Some(c)
        }
        (false, _) => None,
    };
    if mcfg.shared_layers > 0 && calib.is_some() {
        let msg = format!(
            "calibration runs each depth through its own layer, but this model's {} layers \
             share {} blocks ({SHARED_LAYERS_KEY}); use `method` rtn or mse",
            mcfg.num_layers, mcfg.shared_layers
        );
        return Err(CoreError::setting("method", cfg.method.name(), msg));
    }
    let wq = &cfg.weights;
    let mut config = QuantizationConfig::new(*wq);
    config.ignore = ignore.clone();
    // Quantization keeps a pruned checkpoint's zeros (every method maps 0 to 0), so its
    // sparsity entry carries over.
    if let ModelSource::Checkpoint(ck, _) = source {
        config.sparsity = ck.sparsity.clone();
    }
    let device = source.device();
    let rope = Rope::new(mcfg.head_dim, mcfg.rope_theta, mcfg.rope_scaling.as_ref());
    let batches = calib.map(|c| c.batches()).unwrap_or_default();
    let mut hidden = match calib {
        Some(_) => source.embed(&batches)?,
        None => Vec::new(),
    };
    let tables: Vec<(Tensor<2>, Tensor<2>)> = batches
        .iter()
        .map(|b| rope.tables(0, b[0].len(), &device))
        .collect();
    // Rounding that needs no calibration statistics (rtn, mse).
    let round = |w: &[f32], out: usize, inn: usize| match &cfg.method {
        Method::Mse(m) => mse::quantize_mse(w, out, inn, wq, scale_dtype, m, None),
        _ => rtn::quantize_rtn(w, out, inn, wq, scale_dtype, None),
    };
    let method = cfg.method.name();
    let report = |name: &str, w: &[f32], ql: &QuantizedLinear| {
        layer_report(name, method, w, ql, wq, scale_dtype, source_dtype)
    };
    let (mut layers, mut reports, mut floats) = (Vec::new(), Vec::new(), Vec::new());
    for l in 0..mcfg.stored_layers() {
        if calib.is_none() {
            // Without calibration nothing runs through the layer: quantize straight from the
            // HF-layout tensors.
            let tensors = source.layer_tensors(l)?;
            let mut per_layer = Vec::new();
            for (spec, w) in tensors {
                let name = spec.name.trim_end_matches(".weight").to_string();
                if spec.kind != TensorKind::Linear || ignored(&name, &ignore) {
                    floats.push((spec, w));
                } else {
                    per_layer.push((name, spec.shape[0], spec.shape[1], w));
                }
            }
            let done: Vec<_> = per_layer
                .into_par_iter()
                .map(|(name, out, inn, w)| {
                    let ql = round(&w, out, inn);
                    let r = report(&name, &w, &ql);
                    (name, ql, r)
                })
                .collect();
            for (name, ql, r) in done {
                config.ragged_groups |= wq.is_ragged(ql.in_features);
                reports.push(r);
                layers.push((name, ql));
            }
            source.release();
            progress(l + 1, mcfg.stored_layers());
            continue;
        }
        let mut layer = source.layer(l)?;
        let name_of = |suffix: &str| names::in_layer(l, suffix);
        let targets: Vec<bool> = LINEARS
            .iter()
            .map(|(s, _)| !ignored(&name_of(s), &ignore))
            .collect();
        let mut wanted = [false; 4];
        for ((_, tap), t) in LINEARS.iter().zip(&targets) {
            wanted[*tap] |= *t;
        }
        let mut stats = match &cfg.method {
            Method::Gptq(_) => TapStats::Gptq(vec![None; 4]),
            Method::Awq(_) => TapStats::Awq((0..4).map(|_| AwqStats::default()).collect()),
            Method::Mse(_) => TapStats::Mse(vec![Vec::new(); 4]),
            _ => TapStats::None,
        };
        if !matches!(stats, TapStats::None) {
            for (x, (cos, sin)) in hidden.iter().zip(&tables) {
                let (_, taps) = layer.forward_traced(x.clone(), cos, sin);
                for (t, (values, tokens)) in tap_values(taps).into_iter().enumerate() {
                    match &mut stats {
                        TapStats::Gptq(hs) if wanted[t] => {
                            let width = values.len() / tokens.max(1);
                            hs[t]
                                .get_or_insert_with(|| Hessian::new(width))
                                .add_batch(&values, tokens)?
                        }
                        TapStats::Awq(st) => st[t].add(&values, tokens, cfg.awq_max_tokens()),
                        TapStats::Mse(e) if wanted[t] => add_energy(&mut e[t], &values, tokens),
                        _ => {}
                    }
                }
            }
        }
        let mut clips = vec![None; LINEARS.len()];
        if let (Method::Awq(acfg), TapStats::Awq(st)) = (&cfg.method, &stats) {
            clips = awq::apply_layer(&mut layer, st, &targets, wq, scale_dtype, acfg, &device)?;
        }
        let mut tensors = export_layer(&layer, l);
        let moe = mcfg.moe.is_some();
        let update = calib.is_some() && l + 1 < mcfg.num_layers;
        if moe && calib.is_some() {
            // The experts are quantized one by one; their float copies leave the output.
            let c = [clips[4].as_deref(), clips[5].as_deref()];
            let quantizer: Box<experts::ExpertQuantizer<'_>> = match (&cfg.method, &stats) {
                (Method::Gptq(g), TapStats::Gptq(hs)) => {
                    let hs = match (&hs[2], &hs[3]) {
                        (Some(a), Some(b)) => (a, b),
                        _ => return Err(CoreError::tensor(names::mlp(l), "no FFN Hessians")),
                    };
                    Box::new(move |p, s, n, w, o, i| {
                        experts::gptq_expert(p, s, n, w, o, i, hs, wq, scale_dtype, g)
                    })
                }
                _ => Box::new(move |p, s, n, w, o, i| {
                    Ok(experts::awq_expert(p, s, n, w, o, i, c, wq, scale_dtype))
                }),
            };
            let done =
                experts::quantize_experts(&mut layer, l, &ignore, wq, update, quantizer.as_ref())?;
            for (name, w, ql) in done {
                let weight_name = format!("{name}.weight");
                tensors.retain(|(s, _)| s.name != weight_name);
                config.ragged_groups |= wq.is_ragged(ql.in_features);
                reports.push(report(&name, &w, &ql));
                layers.push((name, ql));
            }
        }
        for (i, ((suffix, tap), target)) in LINEARS.iter().zip(&targets).enumerate() {
            if !*target || (moe && suffix.starts_with("mlp.")) {
                continue;
            }
            let name = name_of(suffix);
            let weight_name = format!("{name}.weight");
            let pos = tensors
                .iter()
                .position(|(s, _)| s.name == weight_name)
                .expect("export_layer holds every linear");
            let (spec, w) = tensors.remove(pos);
            let (out, inn) = (spec.shape[0], spec.shape[1]);
            config.ragged_groups |= wq.is_ragged(inn);
            let ql = match (&cfg.method, &stats) {
                (Method::Gptq(g), TapStats::Gptq(hs)) => {
                    let h = hs[*tap].as_ref().expect("a Hessian for every wanted tap");
                    gptq_quantize(&w, out, inn, h, wq, scale_dtype, g)
                        .map_err(|e| CoreError::tensor(&name, e))?
                        .0
                }
                (Method::Awq(_), _) => {
                    rtn::quantize_rtn(&w, out, inn, wq, scale_dtype, clips[i].as_deref())
                }
                (Method::Mse(m), TapStats::Mse(e)) => {
                    mse::quantize_mse(&w, out, inn, wq, scale_dtype, m, Some(&e[*tap]))
                }
                _ => round(&w, out, inn),
            };
            if update {
                crate::model::weights::set_weight(
                    layer.linear_mut(suffix),
                    &ql.dequantize(wq),
                    out,
                    inn,
                );
            }
            reports.push(report(&name, &w, &ql));
            layers.push((name, ql));
        }
        floats.extend(tensors);
        if calib.is_some() && l + 1 < mcfg.num_layers {
            hidden = hidden
                .into_iter()
                .zip(&tables)
                .map(|(x, (cos, sin))| layer.forward(x, cos, sin, None))
                .collect();
        }
        source.release();
        progress(l + 1, mcfg.stored_layers());
    }
    floats.extend(source.outer_tensors()?);
    Ok(QuantizedModel {
        layers,
        floats,
        reports,
        config,
    })
}
