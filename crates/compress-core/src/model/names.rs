//! HF tensor and module names (`model.layers.{l}.self_attn.q_proj`, experts, routers): the one
//! helper of compress-format ([`compress_format::hf_names`]), shared with the runtime and the GGUF
//! export, plus the decoder layer's linears with the activation taps that feed them.

pub use compress_format::hf_names::*;

/// A decoder layer's linears by HF suffix, with the index of the activation tap feeding each
/// (0: attention input, 1: attention output, 2: MLP input, 3: MLP hidden).
pub const LINEARS: [(&str, usize); 7] = [
    ("self_attn.q_proj", 0),
    ("self_attn.k_proj", 0),
    ("self_attn.v_proj", 0),
    ("self_attn.o_proj", 1),
    ("mlp.gate_proj", 2),
    ("mlp.up_proj", 2),
    ("mlp.down_proj", 3),
];
