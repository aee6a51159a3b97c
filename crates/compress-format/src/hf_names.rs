//! Hugging Face tensor names of the Llama family (`model.layers.{l}.self_attn.q_proj.weight`, …),
//! built in one place for every reader and writer.
//!
//! A linear is named by its prefix (`model.layers.0.mlp.up_proj`): its tensors are
//! [`weight`]`(prefix)`, [`bias`]`(prefix)`, or the packed ones of
//! [`crate::pack_quantized::packed_tensor_names`]. Mixture-of-experts layers (see
//! [`crate::hf_config::moe`]) have a [`router`] and [`expert`]s under [`mlp`] instead of the
//! dense projections.

/// Token embeddings `[vocab, hidden]`.
pub const EMBED_TOKENS: &str = "model.embed_tokens.weight";
/// Final RMSNorm gain `[hidden]`.
pub const FINAL_NORM: &str = "model.norm.weight";
/// Prefix of the output head linear (`lm_head.weight`).
pub const LM_HEAD: &str = "lm_head";
/// Query projection, under [`attn`].
pub const Q_PROJ: &str = "q_proj";
/// Key projection, under [`attn`].
pub const K_PROJ: &str = "k_proj";
/// Value projection, under [`attn`].
pub const V_PROJ: &str = "v_proj";
/// Output projection, under [`attn`].
pub const O_PROJ: &str = "o_proj";
/// SwiGLU gate projection, under [`mlp`] or an [`expert`].
pub const GATE_PROJ: &str = "gate_proj";
/// SwiGLU up projection, under [`mlp`] or an [`expert`].
pub const UP_PROJ: &str = "up_proj";
/// SwiGLU down projection, under [`mlp`] or an [`expert`].
pub const DOWN_PROJ: &str = "down_proj";
/// The attention projections, in checkpoint order.
pub const ATTN_PROJS: [&str; 4] = [Q_PROJ, K_PROJ, V_PROJ, O_PROJ];
/// The FFN projections, in checkpoint order.
pub const MLP_PROJS: [&str; 3] = [GATE_PROJ, UP_PROJ, DOWN_PROJ];

/// `{prefix}.{name}`.
pub fn join(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

/// `{prefix}.weight`.
pub fn weight(prefix: &str) -> String {
    join(prefix, "weight")
}

/// `{prefix}.bias`.
pub fn bias(prefix: &str) -> String {
    join(prefix, "bias")
}

/// Prefix of decoder layer `l`: `model.layers.{l}`.
pub fn layer(l: usize) -> String {
    format!("model.layers.{l}")
}

/// A module or tensor of layer `l`: `model.layers.{l}.{suffix}`.
pub fn in_layer(l: usize, suffix: &str) -> String {
    join(&layer(l), suffix)
}

/// Attention projection `proj` ([`Q_PROJ`], …) of layer `l`: `model.layers.{l}.self_attn.{proj}`.
pub fn attn(l: usize, proj: &str) -> String {
    in_layer(l, &join("self_attn", proj))
}

/// The FFN of layer `l`: `model.layers.{l}.mlp` (prefix of the dense projections).
pub fn mlp(l: usize) -> String {
    in_layer(l, "mlp")
}

/// Router of a mixture-of-experts layer `l`: `model.layers.{l}.mlp.gate`.
pub fn router(l: usize) -> String {
    in_layer(l, "mlp.gate")
}

/// Expert `e` of a mixture-of-experts layer `l`: `model.layers.{l}.mlp.experts.{e}` (prefix of
/// its [`MLP_PROJS`]).
pub fn expert(l: usize, e: usize) -> String {
    in_layer(l, &format!("mlp.experts.{e}"))
}

/// RMSNorm gain before attention: `model.layers.{l}.input_layernorm.weight`.
pub fn input_norm(l: usize) -> String {
    in_layer(l, "input_layernorm.weight")
}

/// RMSNorm gain before the FFN: `model.layers.{l}.post_attention_layernorm.weight`.
pub fn post_attention_norm(l: usize) -> String {
    in_layer(l, "post_attention_layernorm.weight")
}

/// Whether `name` is a buffer some exporters save that holds no weights (rotary `inv_freq`).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_checkpoints() {
        assert_eq!(
            weight(&attn(3, Q_PROJ)),
            "model.layers.3.self_attn.q_proj.weight"
        );
        assert_eq!(
            bias(&attn(0, O_PROJ)),
            "model.layers.0.self_attn.o_proj.bias"
        );
        assert_eq!(
            weight(&join(&mlp(1), DOWN_PROJ)),
            "model.layers.1.mlp.down_proj.weight"
        );
        assert_eq!(weight(&router(2)), "model.layers.2.mlp.gate.weight");
        assert_eq!(
            weight(&join(&expert(2, 5), GATE_PROJ)),
            "model.layers.2.mlp.experts.5.gate_proj.weight"
        );
        assert_eq!(input_norm(7), "model.layers.7.input_layernorm.weight");
        assert_eq!(
            post_attention_norm(7),
            "model.layers.7.post_attention_layernorm.weight"
        );
        assert_eq!(weight(LM_HEAD), "lm_head.weight");
        assert_eq!(in_layer(4, "mlp.up_proj"), join(&mlp(4), UP_PROJ));
        assert_eq!(
            ATTN_PROJS.map(|p| attn(0, p))[3],
            "model.layers.0.self_attn.o_proj"
        );
        assert!(is_buffer("model.layers.0.self_attn.rotary_emb.inv_freq"));
        assert!(!is_buffer(&input_norm(0)));
    }
}
