//! The Llama family's HF tensors → GGUF tensors: names, expected shapes, the q/k row
//! permutation, and Llama 3's `rope_freqs` (the table is in the [`super::export`] doc).

use crate::hf_config::{Architecture, HfConfig};
use crate::hf_names::{self as hf, DOWN_PROJ, GATE_PROJ, K_PROJ, O_PROJ, Q_PROJ, UP_PROJ, V_PROJ};

/// How one HF tensor becomes one GGUF tensor.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// GGUF name, e.g. `blk.0.attn_q.weight`.
    pub gguf: String,
    /// HF name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub hf: String,
    /// PyTorch shape the config implies (`[out, in]` or `[n]`).
    pub shape: Vec<usize>,
    /// Heads whose rows are permuted to ggml's rotary layout (llama q and k).
    pub permute: Option<usize>,
}

impl Plan {
    /// Whether it is a matrix (stored in the export type) rather than a vector (always F32).
    pub fn two_d(&self) -> bool {
        self.shape.len() == 2
    }
}

/// `general.architecture`: `llama` for Llama and Mistral, `qwen2` for Qwen2.
pub(crate) fn arch_name(cfg: &HfConfig) -> &'static str {
    match cfg.architecture {
        Architecture::Llama | Architecture::Mistral => "llama",
        Architecture::Qwen2 => "qwen2",
    }
}

/// Every tensor of the model, in file order.
pub(crate) fn plans(cfg: &HfConfig) -> Vec<Plan> {
    // llama.cpp's qwen2 uses NeoX rotary (HF's half split); its llama uses interleaved pairs.
    let permute = cfg.architecture != Architecture::Qwen2;
    let (d, hd, inter) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (q_rows, kv_rows) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
    let mut v = Vec::new();
    let mut add = |gguf: String, hf: String, shape: Vec<usize>, heads: Option<usize>| {
        v.push(Plan {
            gguf,
            hf,
            shape,
            permute: heads.filter(|_| permute),
        })
    };
    add(
        "token_embd.weight".into(),
        hf::EMBED_TOKENS.into(),
        vec![cfg.vocab_size, d],
        None,
    );
    for l in 0..cfg.num_hidden_layers {
        let b = format!("blk.{l}");
        add(
            format!("{b}.attn_norm.weight"),
            hf::input_norm(l),
            vec![d],
            None,
        );
        let attn = [
            (
                "attn_q",
                Q_PROJ,
                [q_rows, d],
                Some(cfg.num_attention_heads),
                cfg.attention_bias,
            ),
            (
                "attn_k",
                K_PROJ,
                [kv_rows, d],
                Some(cfg.num_key_value_heads),
                cfg.attention_bias,
            ),
            ("attn_v", V_PROJ, [kv_rows, d], None, cfg.attention_bias),
            ("attn_output", O_PROJ, [d, q_rows], None, cfg.o_proj_bias()),
        ];
        for (g, p, shape, heads, bias) in attn {
            add(
                format!("{b}.{g}.weight"),
                hf::weight(&hf::attn(l, p)),
                shape.to_vec(),
                heads,
            );
            if bias {
                add(
                    format!("{b}.{g}.bias"),
                    hf::bias(&hf::attn(l, p)),
                    vec![shape[0]],
                    heads,
                );
            }
        }
        add(
            format!("{b}.ffn_norm.weight"),
            hf::post_attention_norm(l),
            vec![d],
            None,
        );
        for (g, p, shape) in [
            ("ffn_gate", GATE_PROJ, [inter, d]),
            ("ffn_up", UP_PROJ, [inter, d]),
            ("ffn_down", DOWN_PROJ, [d, inter]),
        ] {
            add(
                format!("{b}.{g}.weight"),
                hf::weight(&hf::join(&hf::mlp(l), p)),
                shape.to_vec(),
                None,
            );
        }
    }
    add(
        "output_norm.weight".into(),
        hf::FINAL_NORM.into(),
        vec![d],
        None,
    );
    if !cfg.tie_word_embeddings {
        add(
            "output.weight".into(),
            hf::weight(hf::LM_HEAD),
            vec![cfg.vocab_size, d],
            None,
        );
    }
    v
}

/// Permutes the rows of each of `heads` heads (row-major `[rows, cols]`, rows a multiple of
/// `2 · heads`) from HF's half-split rotary order to ggml's interleaved pairs: new row `2i + j`
/// of a head is old row `j · head_dim/2 + i`.
pub fn permute_rows<T: Copy>(data: &[T], cols: usize, heads: usize) -> Vec<T> {
    let rows = data.len() / cols.max(1);
    let hd = rows / heads.max(1);
    let half = hd / 2;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * hd + j * half + i;
                out.extend_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// The inverse of [`permute_rows`]: ggml's interleaved rotary pairs back to HF's half split
/// (old row `j · head_dim/2 + i` of a head is new row `2i + j`), as transformers' GGUF loader
/// reverses llama q/k.
pub fn unpermute_rows<T: Copy + Default>(data: &[T], cols: usize, heads: usize) -> Vec<T> {
    let rows = data.len() / cols.max(1);
    let hd = rows / heads.max(1);
    let half = hd / 2;
    let mut out = vec![T::default(); data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let (dst, src) = (h * hd + j * half + i, h * hd + 2 * i + j);
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// llama.cpp's `rope_freqs` for Llama 3 rope scaling (one factor per rotary pair), computed
/// as `convert_hf_to_gguf.py` does.
pub(crate) fn llama3_rope_factors(cfg: &HfConfig) -> Option<Vec<f32>> {
    let rs = cfg
        .rope_scaling
        .as_ref()
        .filter(|r| r.rope_type == "llama3")?;
    let dim = cfg.head_dim;
    let factor = rs.factor;
    let low = rs.low_freq_factor.unwrap_or(1.0);
    let high = rs.high_freq_factor.unwrap_or(4.0);
    let old_ctx = rs.original_max_position_embeddings.unwrap_or(8192) as f64;
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    Some(
        (0..dim)
            .step_by(2)
            .map(|i| {
                let freq = 1.0 / (cfg.rope_theta as f32).powf(i as f32 / dim as f32);
                let wavelen = 2.0 * std::f64::consts::PI / f64::from(freq);
                let f = if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old_ctx / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                };
                f as f32
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_the_halves_of_each_head() {
        // Two heads of 4 rows, one column: HF rows [a0 a1 b0 b1 | c0 c1 d0 d1] where a/b are the
        // two rotary halves; ggml wants the pairs (a0 b0)(a1 b1) per head.
        let rows: Vec<u32> = (0..8).collect();
        assert_eq!(permute_rows(&rows, 1, 2), vec![0, 2, 1, 3, 4, 6, 5, 7]);
        let two_cols: Vec<u32> = (0..8).flat_map(|r| [r * 10, r * 10 + 1]).collect();
        assert_eq!(&permute_rows(&two_cols, 2, 2)[..4], &[0, 1, 20, 21]);
        assert_eq!(
            unpermute_rows(&permute_rows(&two_cols, 2, 2), 2, 2),
            two_cols
        );
    }
}
