//! HF tensor and module names of the Llama family, built here and nowhere else
//! (`model.layers.{l}.self_attn.q_proj`, the experts' and routers' names of MoE layers).

/// The module prefix of decoder layer `l`: `model.layers.{l}`.
pub fn layer(l: usize) -> String {
    format!("model.layers.{l}")
}

/// A module or tensor of decoder layer `l`: `model.layers.{l}.{suffix}`.
pub fn in_layer(l: usize, suffix: &str) -> String {
    format!("model.layers.{l}.{suffix}")
}

/// The attention projections, in HF order.
pub const ATTN_PROJS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "o_proj"];

/// The MLP projections, in HF order.
pub const MLP_PROJS: [&str; 3] = ["gate_proj", "up_proj", "down_proj"];

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

/// The router module of MoE layer `l`: `model.layers.{l}.mlp.gate`.
pub fn router(l: usize) -> String {
    in_layer(l, "mlp.gate")
}

/// Projection `proj` of expert `e` of MoE layer `l`: `model.layers.{l}.mlp.experts.{e}.{proj}`.
pub fn expert(l: usize, e: usize, proj: &str) -> String {
    in_layer(l, &format!("mlp.experts.{e}.{proj}"))
}
