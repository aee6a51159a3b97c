//! The model's tensors by HF name: the list a checkpoint must hold ([`tensor_specs`]),
//! building a [`LlamaModel`] from any source of named tensors ([`build_model`]), random
//! initialization ([`init_random`]) and reading every tensor back out ([`export_tensors`]).
//!
//! HF stores linear weights `[out, in]`; burn's `Linear` holds `[in, out]`, so linear weights
//! are transposed on the way in and out. Parameter ids are derived from the HF names, so an
//! optimizer state saved with a checkpoint matches the parameters of the reloaded model.

use std::collections::HashMap;

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::LlamaConfig;
use super::experts::Experts;
use super::layers::{linear, param, Attention, Mlp, RmsNorm};
use super::llama::{DecoderLayer, LlamaModel};
use super::names;
use super::rope::Rope;
use crate::error::{CoreError, Result};
use compress_format::hf_config::moe::expert_sizes;

/// How a named tensor is stored and initialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A linear weight, HF `[out, in]`.
    Linear,
    /// A bias vector.
    Bias,
    /// A norm gain (initialized to ones).
    Norm,
    /// The embedding matrix `[vocab, hidden]`.
    Embedding,
}

/// One tensor a checkpoint of a given config holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// HF name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// HF shape.
    pub shape: Vec<usize>,
    /// Storage kind.
    pub kind: TensorKind,
}

fn spec(name: String, shape: Vec<usize>, kind: TensorKind) -> TensorSpec {
    TensorSpec { name, shape, kind }
}

/// Every tensor of a model of this config, in HF order.
pub fn tensor_specs(cfg: &LlamaConfig) -> Vec<TensorSpec> {
    use TensorKind::*;
    let h = cfg.hidden_size;
    let mut out = vec![spec(
        names::EMBED_TOKENS.into(),
        vec![cfg.vocab_size, h],
        Embedding,
    )];
    for l in 0..cfg.stored_layers() {
        let ls = cfg.layer(l);
        let q = ls.num_attention_heads * cfg.head_dim;
        let kv = ls.num_key_value_heads * cfg.head_dim;
        let i = ls.intermediate_size;
        let p = names::layer(l);
        out.push(spec(format!("{p}.input_layernorm.weight"), vec![h], Norm));
        for (proj, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push(spec(
                format!("{p}.self_attn.{proj}.weight"),
                vec![rows, h],
                Linear,
            ));
            if cfg.attention_bias {
                out.push(spec(format!("{p}.self_attn.{proj}.bias"), vec![rows], Bias));
            }
        }
        out.push(spec(
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, q],
            Linear,
        ));
        if cfg.o_proj_bias() {
            out.push(spec(format!("{p}.self_attn.o_proj.bias"), vec![h], Bias));
        }
        out.push(spec(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            Norm,
        ));
        match &cfg.moe {
            None => {
                out.push(spec(
                    format!("{p}.mlp.gate_proj.weight"),
                    vec![i, h],
                    Linear,
                ));
                out.push(spec(format!("{p}.mlp.up_proj.weight"), vec![i, h], Linear));
                out.push(spec(
                    format!("{p}.mlp.down_proj.weight"),
                    vec![h, i],
                    Linear,
                ));
            }
            Some(m) => {
                out.push(spec(
                    format!("{p}.mlp.gate.weight"),
                    vec![m.num_experts, h],
                    Linear,
                ));
                for (e, n) in expert_sizes(i, m.num_experts).into_iter().enumerate() {
                    let x = format!("{p}.mlp.experts.{e}");
                    out.push(spec(format!("{x}.gate_proj.weight"), vec![n, h], Linear));
                    out.push(spec(format!("{x}.up_proj.weight"), vec![n, h], Linear));
                    out.push(spec(format!("{x}.down_proj.weight"), vec![h, n], Linear));
                }
            }
        }
    }
    out.push(spec(names::FINAL_NORM.into(), vec![h], Norm));
    if !cfg.tie_word_embeddings {
        out.push(spec(
            names::weight(names::LM_HEAD),
            vec![cfg.vocab_size, h],
            Linear,
        ));
    }
    out
}

/// A stable parameter id from the HF tensor name (FNV-1a).
pub fn param_id(name: &str) -> ParamId {
    ParamId::from(crate::digest::Fnv64::new().bytes(name.as_bytes()).finish())
}

/// Transposes a row-major `[rows, cols]` matrix (in 32 × 32 tiles, so both sides stay in cache).
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    assert_eq!(values.len(), rows * cols, "transpose: {rows} x {cols}");
    let mut out = vec![0.0; values.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

/// Replaces a linear's weight with HF-layout `[out, inn]` values (same parameter id).
pub fn set_weight(lin: &mut Linear, hf: &[f32], out: usize, inn: usize) {
    let device = lin.weight.val().device();
    let burn_layout = transpose(hf, out, inn);
    let t = Tensor::<2>::from_data(TensorData::new(burn_layout, [inn, out]), &device);
    lin.weight = Param::initialized(lin.weight.id, t);
}

/// HF matrices stacked by rows, or side by side (rows equal): `(rows, cols, values)`.
fn concat_hf(parts: &[(TensorSpec, Vec<f32>)], by_rows: bool) -> (usize, usize, Vec<f32>) {
    if by_rows {
        let cols = parts[0].0.shape[1];
        let v: Vec<f32> = parts.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        return (v.len() / cols, cols, v);
    }
    let rows = parts[0].0.shape[0];
    let cols: usize = parts.iter().map(|(s, _)| s.shape[1]).sum();
    let mut v = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for (s, p) in parts {
            let c = s.shape[1];
            v.extend_from_slice(&p[r * c..(r + 1) * c]);
        }
    }
    (rows, cols, v)
}

/// Fetches tensors from a source one at a time and turns them into parameters, so at most
/// one tensor's host copy is alive at once.
struct Pending<'a> {
    specs: HashMap<String, TensorSpec>,
    source: &'a mut dyn FnMut(&TensorSpec) -> Result<Vec<f32>>,
    device: &'a Device,
}

impl<'a> Pending<'a> {
    /// The specs of `cfg` whose names start with `prefix`, fetched from `source`.
    fn new(
        cfg: &LlamaConfig,
        prefix: &str,
        source: &'a mut dyn FnMut(&TensorSpec) -> Result<Vec<f32>>,
        device: &'a Device,
    ) -> Self {
        let specs = tensor_specs(cfg)
            .into_iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| (s.name.clone(), s))
            .collect();
        Self {
            specs,
            source,
            device,
        }
    }

    fn take(&mut self, name: &str) -> Result<(TensorSpec, Vec<f32>)> {
        let spec = self
            .specs
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is in tensor_specs"));
        let values = (self.source)(&spec)?;
        Ok((spec, values))
    }

    fn vector(&mut self, name: &str) -> Result<Param<Tensor<1>>> {
        let (s, v) = self.take(name)?;
        let t = Tensor::<1>::from_data(TensorData::new(v, [s.shape[0]]), self.device);
        Ok(param(param_id(name), t))
    }

    fn matrix(&mut self, name: &str) -> Result<Param<Tensor<2>>> {
        let (s, v) = self.take(name)?;
        let t = Tensor::<2>::from_data(TensorData::new(v, [s.shape[0], s.shape[1]]), self.device);
        Ok(param(param_id(name), t))
    }

    /// One linear from the HF weights `names` (`[rows, cols]` each) stacked by rows (`by_rows`)
    /// or placed side by side, with the parameter id of `as_prefix.weight`.
    fn linear_cat(&mut self, names: &[String], as_prefix: &str, by_rows: bool) -> Result<Linear> {
        let parts = names
            .iter()
            .map(|n| self.take(n))
            .collect::<Result<Vec<_>>>()?;
        let (rows, cols, v) = concat_hf(&parts, by_rows);
        let w = Tensor::<2>::from_data(
            TensorData::new(transpose(&v, rows, cols), [cols, rows]),
            self.device,
        );
        Ok(linear(
            param(param_id(&format!("{as_prefix}.weight")), w),
            None,
        ))
    }

    /// `prefix.weight` (transposed to burn's `[in, out]`) and `prefix.bias` when `bias`.
    fn linear(&mut self, prefix: &str, bias: bool) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let (s, v) = self.take(&name)?;
        let (rows, cols) = (s.shape[0], s.shape[1]);
        let w = Tensor::<2>::from_data(
            TensorData::new(transpose(&v, rows, cols), [cols, rows]),
            self.device,
        );
        let bias = match bias {
            true => Some(self.vector(&format!("{prefix}.bias"))?),
            false => None,
        };
        Ok(linear(param(param_id(&name), w), bias))
    }
}

/// Builds a model, asking `source` for each tensor of [`tensor_specs`] (values in HF layout).
pub fn build_model(
    cfg: &LlamaConfig,
    device: &Device,
    source: &mut dyn FnMut(&TensorSpec) -> Result<Vec<f32>>,
) -> Result<LlamaModel> {
    cfg.validate()?;
    let mut src = Pending::new(cfg, "", source, device);
    let norm = |weight| RmsNorm {
        weight,
        eps: cfg.rms_norm_eps,
    };
    let embed_tokens = Embedding {
        weight: src.matrix(names::EMBED_TOKENS)?,
    };
    let mut layers = Vec::with_capacity(cfg.stored_layers());
    for l in 0..cfg.stored_layers() {
        layers.push(take_layer(cfg, l, &mut src)?);
    }
    let final_norm = norm(src.vector(names::FINAL_NORM)?);
    let lm_head = match cfg.tie_word_embeddings {
        true => None,
        false => Some(src.linear(names::LM_HEAD, false)?),
    };
    Ok(LlamaModel {
        embed_tokens,
        layers,
        norm: final_norm,
        lm_head,
        rope: Rope::new(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.as_ref()),
        config: cfg.clone(),
    })
}

fn take_layer(cfg: &LlamaConfig, l: usize, src: &mut Pending) -> Result<DecoderLayer> {
    let norm = |weight| RmsNorm {
        weight,
        eps: cfg.rms_norm_eps,
    };
    let p = names::layer(l);
    let ab = cfg.attention_bias;
    Ok(DecoderLayer {
        input_layernorm: norm(src.vector(&format!("{p}.input_layernorm.weight"))?),
        self_attn: Attention {
            q_proj: src.linear(&format!("{p}.self_attn.q_proj"), ab)?,
            k_proj: src.linear(&format!("{p}.self_attn.k_proj"), ab)?,
            v_proj: src.linear(&format!("{p}.self_attn.v_proj"), ab)?,
            o_proj: src.linear(&format!("{p}.self_attn.o_proj"), cfg.o_proj_bias())?,
            num_heads: cfg.layer(l).num_attention_heads,
            num_kv_heads: cfg.layer(l).num_key_value_heads,
            head_dim: cfg.head_dim,
            fake_quant: Default::default(),
        },
        post_attention_layernorm: norm(
            src.vector(&format!("{p}.post_attention_layernorm.weight"))?,
        ),
        mlp: match &cfg.moe {
            None => Mlp {
                gate_proj: src.linear(&format!("{p}.mlp.gate_proj"), false)?,
                up_proj: src.linear(&format!("{p}.mlp.up_proj"), false)?,
                down_proj: src.linear(&format!("{p}.mlp.down_proj"), false)?,
                fake_quant: Default::default(),
                router: None,
                experts: None,
            },
            Some(m) => {
                let experts = Experts::new(m, cfg.layer(l).intermediate_size);
                let names = |proj: &str| -> Vec<String> {
                    (0..m.num_experts)
                        .map(|e| format!("{p}.mlp.experts.{e}.{proj}.weight"))
                        .collect()
                };
                Mlp {
                    gate_proj: src.linear_cat(
                        &names("gate_proj"),
                        &format!("{p}.mlp.gate_proj"),
                        true,
                    )?,
                    up_proj: src.linear_cat(
                        &names("up_proj"),
                        &format!("{p}.mlp.up_proj"),
                        true,
                    )?,
                    down_proj: src.linear_cat(
                        &names("down_proj"),
                        &format!("{p}.mlp.down_proj"),
                        false,
                    )?,
                    fake_quant: Default::default(),
                    router: Some(src.linear(&format!("{p}.mlp.gate"), false)?),
                    experts: Some(experts),
                }
            }
        },
    })
}

/// Builds decoder layer `l` alone, asking `source` for its tensors (values in HF layout), so
/// a model can be processed one layer at a time without holding the rest.
pub fn build_layer(
    cfg: &LlamaConfig,
    l: usize,
    device: &Device,
    source: &mut dyn FnMut(&TensorSpec) -> Result<Vec<f32>>,
) -> Result<DecoderLayer> {
    let mut src = Pending::new(cfg, &format!("{}.", names::layer(l)), source, device);
    take_layer(cfg, l, &mut src)
}

/// A randomly initialized model (normal(0, 0.02) weights, zero biases, unit norms), the same
/// on every backend for a given seed since values are drawn on the host.
pub fn init_random(cfg: &LlamaConfig, device: &Device, seed: u64) -> Result<LlamaModel> {
    // Values are drawn in `tensor_specs` order, whatever order the builder asks in, so a
    // seed always gives the same model.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values: HashMap<String, Vec<f32>> = tensor_specs(cfg)
        .into_iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let v = match s.kind {
                TensorKind::Norm => vec![1.0; n],
                TensorKind::Bias => vec![0.0; n],
                TensorKind::Linear | TensorKind::Embedding => {
                    (0..n).map(|_| 0.02 * normal(&mut rng)).collect()
                }
            };
            (s.name, v)
        })
        .collect();
    build_model(cfg, device, &mut |s| {
        Ok(values.remove(&s.name).expect("every spec was drawn"))
    })
}

/// One standard-normal sample (Box–Muller).
pub fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

use crate::tensor_util::to_vec_f32 as values_of;

/// Every tensor of decoder layer `l` by HF name, shape and values in HF layout.
pub fn export_layer(layer: &DecoderLayer, l: usize) -> Vec<(TensorSpec, Vec<f32>)> {
    let p = names::layer(l);
    let mut out = Vec::new();
    let vector = |name: String, t: Tensor<1>| {
        let v = values_of(t);
        (spec(name, vec![v.len()], TensorKind::Norm), v)
    };
    out.push(vector(
        format!("{p}.input_layernorm.weight"),
        layer.input_layernorm.weight.val(),
    ));
    let a = &layer.self_attn;
    let m = &layer.mlp;
    let mut linears = vec![
        ("self_attn.q_proj", &a.q_proj),
        ("self_attn.k_proj", &a.k_proj),
        ("self_attn.v_proj", &a.v_proj),
        ("self_attn.o_proj", &a.o_proj),
    ];
    match (&m.router, &m.experts) {
        (Some(router), Some(experts)) => {
            linears.push(("mlp.gate", router));
            for (proj, lin) in linears {
                out.extend(export_linear(&format!("{p}.{proj}"), lin));
            }
            // Each expert's block of neurons: gate/up rows, down columns.
            let whole = |lin: &Linear| {
                let w = lin.weight.val();
                let [i, o] = w.dims();
                (o, i, transpose(&values_of(w), i, o))
            };
            let (gate, up, down) = (whole(&m.gate_proj), whole(&m.up_proj), whole(&m.down_proj));
            let mut start = 0;
            for (e, &n) in experts.sizes.iter().enumerate() {
                let x = format!("{p}.mlp.experts.{e}");
                for (proj, (_, cols, v)) in [("gate_proj", &gate), ("up_proj", &up)] {
                    let rows = v[start * cols..(start + n) * cols].to_vec();
                    out.push((
                        spec(
                            format!("{x}.{proj}.weight"),
                            vec![n, *cols],
                            TensorKind::Linear,
                        ),
                        rows,
                    ));
                }
                let (h, i, v) = &down;
                let cols: Vec<f32> = (0..*h)
                    .flat_map(|r| v[r * i + start..r * i + start + n].iter().copied())
                    .collect();
                out.push((
                    spec(
                        format!("{x}.down_proj.weight"),
                        vec![*h, n],
                        TensorKind::Linear,
                    ),
                    cols,
                ));
                start += n;
            }
        }
        _ => {
            linears.push(("mlp.gate_proj", &m.gate_proj));
            linears.push(("mlp.up_proj", &m.up_proj));
            linears.push(("mlp.down_proj", &m.down_proj));
            for (proj, lin) in linears {
                out.extend(export_linear(&format!("{p}.{proj}"), lin));
            }
        }
    }
    out.push(vector(
        format!("{p}.post_attention_layernorm.weight"),
        layer.post_attention_layernorm.weight.val(),
    ));
    out
}

/// `name.weight` (HF layout `[out, in]`) and `name.bias` of a linear.
fn export_linear(name: &str, lin: &Linear) -> Vec<(TensorSpec, Vec<f32>)> {
    let w = lin.weight.val();
    let [i, o] = w.dims();
    let mut out = vec![(
        spec(format!("{name}.weight"), vec![o, i], TensorKind::Linear),
        transpose(&values_of(w), i, o),
    )];
    if let Some(b) = &lin.bias {
        out.push((
            spec(format!("{name}.bias"), vec![o], TensorKind::Bias),
            values_of(b.val()),
        ));
    }
    out
}

/// The tensors outside the decoder layers (embeddings, final norm, `lm_head`), HF layout.
pub fn export_outer(model: &LlamaModel) -> Vec<(TensorSpec, Vec<f32>)> {
    let cfg = &model.config;
    let mut out = vec![(
        spec(
            names::EMBED_TOKENS.into(),
            vec![cfg.vocab_size, cfg.hidden_size],
            TensorKind::Embedding,
        ),
        values_of(model.embed_tokens.weight.val()),
    )];
    out.push((
        spec(
            names::FINAL_NORM.into(),
            vec![cfg.hidden_size],
            TensorKind::Norm,
        ),
        values_of(model.norm.weight.val()),
    ));
    if let Some(head) = &model.lm_head {
        let w = head.weight.val();
        let [i, o] = w.dims();
        out.push((
            spec(
                names::weight(names::LM_HEAD),
                vec![o, i],
                TensorKind::Linear,
            ),
            transpose(&values_of(w), i, o),
        ));
    }
    out
}

/// Every tensor of the model by HF name, shape and values in HF layout, in [`tensor_specs`] order.
pub fn export_tensors(model: &LlamaModel) -> Vec<(TensorSpec, Vec<f32>)> {
    let mut by_name: HashMap<String, Vec<f32>> = export_outer(model)
        .into_iter()
        .map(|(s, v)| (s.name, v))
        .collect();
    for (l, layer) in model.layers.iter().enumerate() {
        by_name.extend(export_layer(layer, l).into_iter().map(|(s, v)| (s.name, v)));
    }
    tensor_specs(&model.config)
        .into_iter()
        .map(|s| {
            let v = by_name.remove(&s.name).expect("every spec is exported");
            (s, v)
        })
        .collect()
}

/// Every tensor of the model by HF name (values in HF layout).
pub fn tensor_map(model: &LlamaModel) -> HashMap<String, Vec<f32>> {
    export_tensors(model)
        .into_iter()
        .map(|(s, v)| (s.name, v))
        .collect()
}

/// Builds a model of `cfg` from HF-named tensors, taking each out of `tensors`; a missing one is
/// an error naming it.
pub fn build_from_map(
    cfg: &LlamaConfig,
    tensors: &mut HashMap<String, Vec<f32>>,
    device: &Device,
) -> Result<LlamaModel> {
    build_model(cfg, device, &mut |spec| {
        tensors
            .remove(&spec.name)
            .ok_or_else(|| CoreError::tensor(&spec.name, "missing"))
    })
}
