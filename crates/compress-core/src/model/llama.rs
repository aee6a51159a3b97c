//! [`LlamaModel`]: the Llama-family decoder (Llama 2/3, Qwen2, Mistral shapes) as a burn module,
//! following transformers' `modeling_llama.py`: pre-norm blocks, GQA attention with rotary
//! embeddings, SwiGLU FFN, final RMSNorm, tied or untied `lm_head`.

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::LlamaConfig;
use super::layers::{Attention, LayerKv, Mlp, RmsNorm};
use super::rope::Rope;

/// One pre-norm decoder block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `self_attn`.
    pub self_attn: Attention,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
    /// `mlp`.
    pub mlp: Mlp,
}

/// The inputs of a decoder layer's linears, captured by [`DecoderLayer::forward_traced`].
#[derive(Clone, Debug)]
pub struct LayerTaps {
    /// Input of `q_proj`, `k_proj`, `v_proj` (the normed layer input).
    pub attn_in: Tensor<3>,
    /// Input of `o_proj` (the heads' attention outputs).
    pub o_in: Tensor<3>,
    /// Input of `gate_proj` and `up_proj` (the normed residual after attention).
    pub mlp_in: Tensor<3>,
    /// Input of `down_proj` (`silu(gate) · up`).
    pub down_in: Tensor<3>,
}

impl DecoderLayer {
    /// The linear named by a [`super::names::LINEARS`] suffix (e.g. `self_attn.q_proj`);
    /// any other suffix is `mlp.down_proj`.
    pub fn linear_mut(&mut self, suffix: &str) -> &mut burn::nn::Linear {
        match suffix {
            "self_attn.q_proj" => &mut self.self_attn.q_proj,
            "self_attn.k_proj" => &mut self.self_attn.k_proj,
            "self_attn.v_proj" => &mut self.self_attn.v_proj,
            "self_attn.o_proj" => &mut self.self_attn.o_proj,
            "mlp.gate_proj" => &mut self.mlp.gate_proj,
            "mlp.up_proj" => &mut self.mlp.up_proj,
            _ => &mut self.mlp.down_proj,
        }
    }

    /// The block's output for `x` with no cache, and the input of each of its linears.
    pub fn forward_traced(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
    ) -> (Tensor<3>, LayerTaps) {
        let attn_in = self.input_layernorm.forward(x.clone());
        let o_in = self.self_attn.attend(attn_in.clone(), cos, sin, None);
        let h = x + self.self_attn.o_proj.forward(o_in.clone());
        let mlp_in = self.post_attention_layernorm.forward(h.clone());
        let down_in = self.mlp.hidden(mlp_in.clone());
        // `down_in` is every neuron's activation; an MoE layer's output runs only the routed experts.
        let ffn = match self.mlp.router {
            Some(_) => self.mlp.forward(mlp_in.clone()),
            None => self.mlp.down_proj.forward(down_in.clone()),
        };
        let out = h + ffn;
        let taps = LayerTaps {
            attn_in,
            o_in,
            mlp_in,
            down_in,
        };
        (out, taps)
    }

    /// The block's output for `x` at the positions `cos`/`sin` cover, optionally with a cache.
    pub fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<2>,
        sin: &Tensor<2>,
        cache: Option<&mut Option<LayerKv>>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), cos, sin, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// Key/value cache for incremental decoding, kept outside the module so it is never saved.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Number of positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Output of a forward pass: logits and, when asked for, every layer's hidden states.
#[derive(Debug)]
pub struct ModelOutput {
    /// `[batch, seq, vocab]`.
    pub logits: Tensor<3>,
    /// Input to each layer and the final normed state (`num_layers + 1` entries), if captured.
    pub hidden_states: Vec<Tensor<3>>,
}

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// `model.embed_tokens`: `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// `model.layers.N`: one block per layer, or the `shared_layers` distinct blocks.
    pub layers: Vec<DecoderLayer>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head` (`None` when tied to the embeddings).
    pub lm_head: Option<Linear>,
    /// Rotary frequencies (derived from the config, not saved).
    #[module(skip)]
    pub rope: Rope,
    /// The shape this model was built with.
    #[module(skip)]
    pub config: LlamaConfig,
}

impl LlamaModel {
    /// Logits `[batch, seq, vocab]` for `tokens` `[batch, seq]` (no cache, causal).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_full(tokens, None, false).logits
    }

    /// Like [`Self::forward`], continuing from and extending `cache`.
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        self.forward_full(tokens, Some(cache), false).logits
    }

    /// The full forward: optional cache, optional capture of hidden states.
    pub fn forward_full(
        &self,
        tokens: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
        capture_hidden: bool,
    ) -> ModelOutput {
        let [_, seq] = tokens.dims();
        let device = tokens.device();
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let depth = self.num_layers();
        if let Some(c) = cache.as_mut() {
            if c.layers.len() != depth {
                c.layers = vec![None; depth];
            }
        }
        let (cos, sin) = self.rope.tables(offset, seq, &device);
        let mut x = self.embed_tokens.forward(tokens);
        let mut hidden_states = Vec::new();
        for i in 0..depth {
            // Shared blocks (ALBERT-style) cycle through the depth; otherwise block i is layer i.
            let layer = &self.layers[i % self.layers.len()];
            if capture_hidden {
                hidden_states.push(x.clone());
            }
            let slot = cache.as_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, &cos, &sin, slot);
        }
        let x = self.norm.forward(x);
        if capture_hidden {
            hidden_states.push(x.clone());
        }
        if let Some(c) = cache {
            c.len += seq;
        }
        let logits = match &self.lm_head {
            Some(head) => head.forward(x),
            None => {
                let w = self.embed_tokens.weight.val();
                x.matmul(w.transpose().unsqueeze())
            }
        };
        ModelOutput {
            logits,
            hidden_states,
        }
    }

    /// Number of decoder layers run (the depth; shared blocks count once per use).
    pub fn num_layers(&self) -> usize {
        match self.config.shared_layers {
            0 => self.layers.len(),
            _ => self.config.num_layers,
        }
    }
}

/// Makes a `[1, n]` token tensor from ids.
pub fn tokens_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

/// Makes a `[batch, seq]` token tensor from equal-length rows.
pub fn batch_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let seq = rows.first().map_or(0, |r| r.len());
    let data: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), seq]), device)
}
