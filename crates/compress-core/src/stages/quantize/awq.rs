//! AWQ-style activation-aware scaling: for the linears that share an input `x`, search a
//! per-input-channel scale `s = mean|x|^α / sqrt(max·min)` (α on a grid in [0, 1]) that
//! minimises the output error `Σ ‖X (W − Q(W·diag(s))·diag(s)⁻¹)ᵀ‖²` on calibration inputs,
//! then fold it: the linears' columns are multiplied by `s` and the op producing `x` is divided
//! by it, so the float model computes the same function before rounding and the salient
//! channels get finer steps.
//!
//! Groups (as AutoAWQ): `q/k/v` scaled against `input_layernorm`; `o_proj` against `v_proj`
//! (only without GQA, where v's outputs map one-to-one to o's inputs); `gate/up` against
//! `post_attention_layernorm`; `down_proj` against `up_proj`. α = 0 gives s = 1, i.e. plain
//! RTN, so the searched loss is never worse than RTN's. Then, as AutoAWQ's `auto_clip`, every
//! target but q/k gets a clip ratio per group searched on the output error of the scaled
//! inputs ([`super::clip`]).

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use compress_format::pack_quantized::{QuantStrategy, WeightQuant};
use compress_format::safetensors::Dtype;

use super::mse::MseConfig;
use super::rtn::quantize_rtn;
use crate::error::{CoreError, Result};
use crate::model::layers::RmsNorm;
use crate::model::llama::DecoderLayer;
use crate::model::names::LINEARS;
use crate::model::weights::transpose;
use crate::tensor_util::{scalar_f64, to_vec_f32};

/// AWQ search options.
#[derive(Clone, Debug)]
pub struct AwqConfig {
    /// Number of α steps in [0, 1) (AutoAWQ: 20).
    pub grid: usize,
    /// Calibration tokens kept per input for the loss (the magnitudes use all of them).
    pub max_tokens: usize,
    /// Also search a clip ratio per group on the output error (AutoAWQ's `auto_clip`).
    pub clip: bool,
}

impl Default for AwqConfig {
    fn default() -> Self {
        Self {
            grid: 20,
            max_tokens: 4096,
            clip: true,
        }
    }
}

/// Per-channel mean |x| over all calibration tokens and a sample of the inputs themselves.
#[derive(Clone, Debug, Default)]
pub struct AwqStats {
    sum_abs: Vec<f64>,
    tokens: usize,
    sample: Vec<f32>,
    sample_tokens: usize,
}

impl AwqStats {
    /// Adds `tokens` rows of `x` (`[tokens, width]`), keeping up to `max_tokens` rows.
    pub fn add(&mut self, x: &[f32], tokens: usize, max_tokens: usize) {
        if tokens == 0 {
            return;
        }
        let width = x.len() / tokens;
        if self.sum_abs.is_empty() {
            self.sum_abs = vec![0.0; width];
        }
        for row in x.chunks(width) {
            for (s, v) in self.sum_abs.iter_mut().zip(row) {
                *s += v.abs() as f64;
            }
        }
        self.tokens += tokens;
        let keep = tokens.min(max_tokens.saturating_sub(self.sample_tokens));
        self.sample.extend_from_slice(&x[..keep * width]);
        self.sample_tokens += keep;
    }

    fn mean_abs(&self) -> Vec<f32> {
        let n = self.tokens.max(1) as f64;
        self.sum_abs.iter().map(|s| (s / n) as f32).collect()
    }
}

/// What produces a group's input, to be divided by the scales.
enum Prev {
    Norm(fn(&mut DecoderLayer) -> &mut RmsNorm),
    Linear(&'static str),
}

/// The four AWQ groups: (tap, producer, indices into [`LINEARS`]).
fn groups(layer: &DecoderLayer) -> Vec<(usize, Prev, Vec<usize>)> {
    let mut g = vec![(
        0,
        Prev::Norm(|l: &mut DecoderLayer| &mut l.input_layernorm),
        vec![0, 1, 2],
    )];
    if layer.self_attn.num_heads == layer.self_attn.num_kv_heads {
        g.push((1, Prev::Linear("self_attn.v_proj"), vec![3]));
    }
    g.push((
        2,
        Prev::Norm(|l: &mut DecoderLayer| &mut l.post_attention_layernorm),
        vec![4, 5],
    ));
    g.push((3, Prev::Linear("mlp.up_proj"), vec![6]));
    g
}

/// HF-layout `[out, in]` weight of a linear.
fn hf_weight(lin: &Linear) -> (Vec<f32>, usize, usize) {
    let w = lin.weight.val();
    let [inn, out] = w.dims();
    (transpose(&to_vec_f32(w), inn, out), out, inn)
}

/// The scales for `alpha` from the channel magnitudes.
fn scales_for(mean_abs: &[f32], alpha: f32) -> Vec<f32> {
    let s: Vec<f32> = mean_abs.iter().map(|m| m.max(1e-4).powf(alpha)).collect();
    let (lo, hi) = s.iter().fold((f32::INFINITY, 0.0f32), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    let norm = (lo * hi).sqrt();
    s.iter().map(|v| v / norm).collect()
}

/// Output error of quantizing `w` (HF `[out, inn]`) with scales `s`, on inputs `x` `[T, inn]`.
#[allow(clippy::too_many_arguments)]
fn scaled_loss(
    x: &Tensor<2>,
    w: &[f32],
    out: usize,
    inn: usize,
    s: &[f32],
    wq: &WeightQuant,
    scale_dtype: Dtype,
    device: &Device,
) -> f64 {
    let scaled: Vec<f32> = w.iter().enumerate().map(|(i, v)| v * s[i % inn]).collect();
    let deq = quantize_rtn(&scaled, out, inn, wq, scale_dtype, None).dequantize(wq);
    let diff: Vec<f32> = w
        .iter()
        .zip(&deq)
        .enumerate()
        .map(|(i, (v, d))| v - d / s[i % inn])
        .collect();
    let d = Tensor::<2>::from_data(TensorData::new(diff, [out, inn]), device);
    scalar_f64(x.clone().matmul(d.transpose()).square().sum())
}

/// Multiplies burn `[in, out]` weight rows (HF columns) by `s`.
fn scale_inputs(lin: &mut Linear, s: &Tensor<1>) {
    let w = lin.weight.val() * s.clone().unsqueeze_dim::<2>(1);
    lin.weight = Param::initialized(lin.weight.id, w);
}

/// Divides a linear's outputs (burn columns, HF rows, and its bias) by `s`.
fn divide_outputs(lin: &mut Linear, s: &Tensor<1>) {
    let w = lin.weight.val() / s.clone().unsqueeze_dim::<2>(0);
    lin.weight = Param::initialized(lin.weight.id, w);
    if let Some(b) = &lin.bias {
        lin.bias = Some(Param::initialized(b.id, b.val() / s.clone()));
    }
}

/// Clip ratios per scale group of each linear (indexed like [`LINEARS`]; `None`: no clipping).
pub(crate) type LayerClips = Vec<Option<Vec<f32>>>;

/// Searches and folds the scales of every group of `layer` whose linears include a target;
/// with `cfg.clip`, then searches each target's clip ratios on the scaled inputs.
pub(crate) fn apply_layer(
    layer: &mut DecoderLayer,
    stats: &[AwqStats],
    targets: &[bool],
    wq: &WeightQuant,
    scale_dtype: Dtype,
    cfg: &AwqConfig,
    device: &Device,
) -> Result<LayerClips> {
    if cfg.grid == 0 {
        return Err(CoreError::Invalid("AWQ grid must be > 0".into()));
    }
    let mut clips: LayerClips = vec![None; LINEARS.len()];
    for (tap, prev, members) in groups(layer) {
        let quantized: Vec<usize> = members.iter().copied().filter(|&i| targets[i]).collect();
        let st = &stats[tap];
        if quantized.is_empty() || st.sample_tokens == 0 {
            continue;
        }
        let width = st.sum_abs.len();
        let x = Tensor::<2>::from_data(
            TensorData::new(st.sample.clone(), [st.sample_tokens, width]),
            device,
        );
        let weights: Vec<(Vec<f32>, usize, usize)> = quantized
            .iter()
            .map(|&i| hf_weight(layer.linear_mut(LINEARS[i].0)))
            .collect();
        let mean_abs = st.mean_abs();
        let mut best = (f64::INFINITY, vec![1.0; width]);
        for step in 0..cfg.grid {
            let alpha = step as f32 / cfg.grid as f32;
            let s = scales_for(&mean_abs, alpha);
            let loss: f64 = weights
                .iter()
                .map(|(w, out, inn)| scaled_loss(&x, w, *out, *inn, &s, wq, scale_dtype, device))
                .sum();
            if loss < best.0 {
                best = (loss, s);
            }
        }
        let s = Tensor::<1>::from_data(TensorData::new(best.1, [width]), device);
        for &i in &members {
            scale_inputs(layer.linear_mut(LINEARS[i].0), &s);
        }
        // An MoE router reads the same normed FFN input: it gets the scales too, so every
        // token keeps its routing.
        if tap == 2 {
            if let Some(router) = layer.mlp.router.as_mut() {
                scale_inputs(router, &s);
            }
        }
        match prev {
            Prev::Norm(get) => {
                let norm = get(layer);
                norm.weight = Param::initialized(norm.weight.id, norm.weight.val() / s.clone());
            }
            Prev::Linear(name) => divide_outputs(layer.linear_mut(name), &s),
        }
        // As AutoAWQ: q/k feed attention scores, where clipping outliers hurts; the rest clip.
        if cfg.clip && !matches!(wq.strategy, QuantStrategy::Tensor) {
            let scaled_x = to_vec_f32(x / s.unsqueeze_dim::<2>(0));
            for &i in quantized.iter().filter(|&&i| i >= 2) {
                let (w, out, inn) = hf_weight(layer.linear_mut(LINEARS[i].0));
                let c = super::clip::search_output_clip(
                    &w,
                    out,
                    inn,
                    &scaled_x,
                    wq,
                    scale_dtype,
                    &MseConfig::for_bits(wq.num_bits),
                );
                clips[i] = Some(c);
            }
        }
    }
    Ok(clips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_zero_is_identity_and_scales_are_centered() {
        let m = [0.5f32, 2.0, 8.0];
        assert_eq!(scales_for(&m, 0.0), vec![1.0, 1.0, 1.0]);
        let s = scales_for(&m, 1.0);
        // Normalised by sqrt(max·min) = 2: [0.25, 1, 4].
        for (a, b) in s.iter().zip([0.25f32, 1.0, 4.0]) {
            assert!((a - b).abs() < 1e-6, "{s:?}");
        }
    }

    #[test]
    fn stats_keep_at_most_max_tokens() {
        let mut st = AwqStats::default();
        st.add(&[1.0, -2.0, 3.0, -4.0], 2, 3);
        st.add(&[5.0, 6.0, 7.0, 8.0], 2, 3);
        assert_eq!(st.sample_tokens, 3);
        assert_eq!(st.mean_abs(), vec![4.0, 5.0]);
    }

    #[test]
    fn folding_keeps_an_moe_layer_and_its_routing() {
        use crate::model::weights::init_random;
        use crate::model::{batch_tensor, LlamaConfig};
        use crate::stages::moe::{moefy, random_routers, MoeStageConfig, SplitBy};
        use compress_format::hf_config::moe::Routing;
        let device = Device::flex();
        let mut cfg = LlamaConfig::preset("tiny").unwrap();
        (
            cfg.vocab_size,
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_layers,
        ) = (48, 32, 64, 1);
        (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) = (4, 2, 8);
        let dense = init_random(&cfg, &device, 3).unwrap();
        let stage = MoeStageConfig {
            experts: 4,
            top_k: 2,
            routing: Routing::Softmax,
            split: SplitBy::Weights,
            kmeans_iters: 3,
            router_steps: 0,
            router_lr: 1e-2,
            seed: 0,
        };
        let (moe, _) = moefy(&dense, &stage, &[]).unwrap();
        let moe = random_routers(&moe, 5).unwrap();
        let ids: Vec<u32> = (0..24).map(|i| (i * 7 + 1) % 48).collect();
        let x = moe.embed_tokens.forward(batch_tensor(&[ids], &device));
        let (cos, sin) = moe.rope.tables(0, 24, &device);
        let mut layer = moe.layers[0].clone();
        let before = to_vec_f32(layer.forward(x.clone(), &cos, &sin, None));
        let (_, taps) = layer.forward_traced(x.clone(), &cos, &sin);
        let mut stats: Vec<AwqStats> = (0..4).map(|_| AwqStats::default()).collect();
        for (t, v) in [taps.attn_in, taps.o_in, taps.mlp_in, taps.down_in]
            .into_iter()
            .enumerate()
        {
            let [b, s, _] = v.dims();
            stats[t].add(&to_vec_f32(v), b * s, 64);
        }
        let wq = WeightQuant::group(4, false, 8);
        let acfg = AwqConfig {
            grid: 5,
            max_tokens: 64,
            clip: false,
        };
        apply_layer(
            &mut layer,
            &stats,
            &[true; 7],
            &wq,
            Dtype::F32,
            &acfg,
            &device,
        )
        .unwrap();
        let after = to_vec_f32(layer.forward(x, &cos, &sin, None));
        let diff = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-4,
            "folded scales changed the MoE layer (routing?) by {diff}"
        );
    }
}
