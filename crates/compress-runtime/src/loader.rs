//! Loading a model directory by mmap: f32/f16/bf16 weights and compressed-tensors
//! `pack-quantized` layers are used in place where the kernels can read them as stored.
//!
//! | stored as                                   | runtime form                          |
//! |---------------------------------------------|---------------------------------------|
//! | f32 / f16 / bf16 `weight`                   | [`FloatWeight`], zero copy            |
//! | 4-bit packed, groups (or rows) of 32·k      | [`Int4Weight`], zero copy             |
//! | 2–8-bit packed, groups (or rows) of 32·k    | [`Int8Weight`] (codes unpacked)       |
//! | any other packed scheme (ragged groups, …)  | [`FloatWeight`] (dequantized)         |
//!
//! Shapes come from the tensors (checked against each other and the config), so structurally
//! pruned checkpoints with fewer heads or FFN neurons load as they are.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compress_format::hf_names::{
    self as hf, DOWN_PROJ, GATE_PROJ, K_PROJ, O_PROJ, Q_PROJ, UP_PROJ, V_PROJ,
};
use compress_format::pack_quantized::{
    is_packed_layer, packed_tensor_names, read_compression, unpack_rows, PackedLayerView,
    QuantStrategy, QuantizationConfig, QuantizedLinear, SparsityConfig, WeightQuant,
};
use compress_format::safetensors::{Dtype, ModelFiles, TensorRef};
use half::{bf16, f16};
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::error::{Result, RuntimeError};
use crate::kernels::{
    Bytes, FloatDtype, FloatWeight, Int4Weight, Int8Weight, Scales, Weight, INT4_OFFSET, QK,
};
use crate::kv::cache::KvLayout;
/// The linear layer type, re-exported from its home [`crate::linear`] (this path is kept).
pub use crate::linear::Linear;
use crate::moe::{Ffn, MoeFfn};

/// One decoder layer's weights.
#[derive(Debug)]
pub struct Layer {
    /// Query heads of this layer.
    pub num_heads: usize,
    /// Key/value heads of this layer.
    pub num_kv_heads: usize,
    /// RMSNorm gain before attention.
    pub input_norm: Vec<f32>,
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// RMSNorm gain before the MLP.
    pub post_norm: Vec<f32>,
    /// The FFN.
    pub mlp: Mlp,
}

/// A layer's FFN.
#[derive(Debug)]
pub enum Mlp {
    /// One SwiGLU FFN.
    Dense(Box<Ffn>),
    /// A router and experts (`compress moe`).
    Moe(Box<MoeFfn>),
}

impl Mlp {
    /// Every linear of the FFN (router included).
    pub fn linears(&self) -> Vec<&Linear> {
        match self {
            Self::Dense(f) => f.linears().to_vec(),
            Self::Moe(m) => std::iter::once(&m.router)
                .chain(m.experts.iter().flat_map(|e| e.linears()))
                .collect(),
        }
    }

    /// Weight bytes a token reads: all of a dense FFN; the router and `top_k / experts` of the
    /// experts' of an MoE one (their average share).
    pub fn bytes_per_token(&self) -> usize {
        match self {
            Self::Dense(f) => f.linears().iter().map(|l| l.weight.bytes()).sum(),
            Self::Moe(m) => {
                let experts: usize = m
                    .experts
                    .iter()
                    .flat_map(|e| e.linears())
                    .map(|l| l.weight.bytes())
                    .sum();
                m.router.weight.bytes() + experts * m.top_k / m.experts.len().max(1)
            }
        }
    }
}

/// A loaded model: config, weights (mostly borrowed from the memory map) and where it came from.
#[derive(Debug)]
pub struct Model {
    /// Hyper-parameters.
    pub config: ModelConfig,
    /// Token embeddings `[vocab, hidden]`.
    pub embed: FloatWeight,
    /// Decoder layers, one per depth; a model with shared blocks (`compress_shared_layers`)
    /// holds each stored block once and points several depths at it.
    pub layers: Vec<Arc<Layer>>,
    /// Final RMSNorm gain.
    pub norm: Vec<f32>,
    /// Output head (a second view of the embeddings when they are tied).
    pub lm_head: Weight,
    /// The quantization scheme of a packed dir.
    pub quantization: Option<QuantizationConfig>,
    /// The pruning recorded in the dir's `sparsity_config` (zeros stored in place).
    pub sparsity: Option<SparsityConfig>,
    /// The directory.
    pub dir: PathBuf,
}

struct Reader<'a> {
    files: &'a Arc<ModelFiles>,
    dir: &'a Path,
    quant: Option<&'a WeightQuant>,
    used: BTreeSet<String>,
}

impl Model {
    /// Loads `dir` (config.json + safetensors, plain or pack-quantized).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(RuntimeError::unsupported(dir, "model directory not found"));
        }
        let (config, hf) = ModelConfig::from_dir(dir)?;
        let (quantization, sparsity) = match hf.raw.get("quantization_config") {
            Some(v) => read_compression(v, &dir.join("config.json"))?,
            None => (None, None),
        };
        let files = Arc::new(ModelFiles::open_dir(dir)?);
        let mut r = Reader {
            files: &files,
            dir,
            quant: quantization.as_ref().map(|q| &q.weights),
            used: BTreeSet::new(),
        };
        let h = config.hidden_size;
        let embed = r.float(hf::EMBED_TOKENS, Some(config.vocab_size), h)?;
        let mut stored = Vec::with_capacity(hf.stored_layers());
        for l in 0..hf.stored_layers() {
            stored.push(Arc::new(r.layer(l, &config)?));
        }
        let layers: Vec<Arc<Layer>> = (0..config.num_layers)
            .map(|l| Arc::clone(&stored[l % stored.len()]))
            .collect();
        let norm = r.vector(hf::FINAL_NORM, h)?;
        let lm_head = if config.tie_word_embeddings {
            // Some tied checkpoints also store a copy of the embeddings as lm_head.
            r.used.insert(hf::weight(hf::LM_HEAD));
            Weight::Float(FloatWeight {
                data: embed.data.clone(),
                ..embed
            })
        } else {
            r.linear(hf::LM_HEAD, Some(config.vocab_size), h)?.weight
        };
        let extra: Vec<&str> = files
            .names()
            .into_iter()
            .filter(|n| !r.used.contains(*n) && !hf::is_buffer(n))
            .collect();
        if let Some(first) = extra.first() {
            return Err(RuntimeError::unsupported(
                dir,
                format!(
                    "unexpected tensor `{first}`{} not used by a Llama-family model of this config",
                    if extra.len() > 1 {
                        format!(" (and {} more)", extra.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        // Repack int4 weights for the kernels now rather than in the first request.
        stored
            .par_iter()
            .flat_map_iter(|l| {
                let mut all = vec![&l.q, &l.k, &l.v, &l.o];
                all.extend(l.mlp.linears());
                all
            })
            .for_each(|x| x.weight.prepare());
        lm_head.prepare();
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            lm_head,
            quantization,
            sparsity,
            dir: dir.to_path_buf(),
        })
    }

    /// Sets the experts each token runs in every mixture-of-experts layer (`--top-k`).
    pub fn set_top_k(&mut self, k: usize) -> Result<()> {
        let Some(m) = self.config.moe.as_mut() else {
            return Err(RuntimeError::unsupported(
                &self.dir,
                format!(
                    "--top-k {k}: the model has no experts (num_experts is not in its config.json)"
                ),
            ));
        };
        if k == 0 || k > m.num_experts {
            return Err(RuntimeError::unsupported(
                &self.dir,
                format!(
                    "--top-k {k}: need 1 to the {} experts per layer",
                    m.num_experts
                ),
            ));
        }
        m.top_k = k;
        for layer in &mut self.layers {
            // MoE layers are never shared (config validation), so each Arc is unique.
            if let Some(Mlp::Moe(moe)) = Arc::get_mut(layer).map(|l| &mut l.mlp) {
                moe.top_k = k;
            }
        }
        Ok(())
    }

    /// Bytes of weights read per generated token (all linears, the head and one embedding row).
    pub fn weight_bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.q, &l.k, &l.v, &l.o]
                    .iter()
                    .map(|x| x.weight.bytes())
                    .sum::<usize>()
                    + l.mlp.bytes_per_token()
            })
            .sum();
        layers + self.lm_head.bytes() + self.embed.cols * self.embed.dtype.size()
    }
}

impl From<&Model> for KvLayout {
    /// The model's key/value heads per layer and head width.
    fn from(model: &Model) -> Self {
        KvLayout {
            kv_heads: model.layers.iter().map(|l| l.num_kv_heads).collect(),
            head_dim: model.config.head_dim,
        }
    }
}

impl Reader<'_> {
    fn tensor(&mut self, name: &str) -> Result<TensorRef<'_>> {
        self.used.insert(name.to_string());
        Ok(self.files.tensor(name)?)
    }

    fn shape_error(&self, name: &str, got: &[usize], want: String) -> RuntimeError {
        RuntimeError::unsupported(
            self.dir,
            format!("tensor `{name}` has shape {got:?}, expected {want}"),
        )
    }

    fn layer(&mut self, l: usize, cfg: &ModelConfig) -> Result<Layer> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let q = self.linear(&hf::attn(l, Q_PROJ), None, h)?;
        let k = self.linear(&hf::attn(l, K_PROJ), None, h)?;
        let (qr, kr) = (q.weight.rows(), k.weight.rows());
        let (num_heads, num_kv_heads) = (qr / hd, kr / hd);
        if qr % hd != 0 || kr % hd != 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(RuntimeError::unsupported(
                self.dir,
                format!(
                    "layer {l}: q_proj has {qr} rows and k_proj {kr}: not whole heads of head_dim {hd} \
                     with query heads a multiple of key/value heads"
                ),
            ));
        }
        let v = self.linear(&hf::attn(l, V_PROJ), Some(kr), h)?;
        let o = self.linear(&hf::attn(l, O_PROJ), Some(h), qr)?;
        let mlp = match &cfg.moe {
            None => Mlp::Dense(Box::new(self.ffn(&hf::mlp(l), h)?)),
            Some(m) => Mlp::Moe(Box::new(MoeFfn {
                router: self.linear(&hf::router(l), Some(m.num_experts), h)?,
                experts: (0..m.num_experts)
                    .map(|e| self.ffn(&hf::expert(l, e), h))
                    .collect::<Result<_>>()?,
                top_k: m.top_k,
                routing: m.routing,
            })),
        };
        Ok(Layer {
            num_heads,
            num_kv_heads,
            input_norm: self.vector(&hf::input_norm(l), h)?,
            q,
            k,
            v,
            o,
            post_norm: self.vector(&hf::post_attention_norm(l), h)?,
            mlp,
        })
    }

    /// `prefix.{gate,up,down}_proj`, their widths checked against each other.
    fn ffn(&mut self, prefix: &str, h: usize) -> Result<Ffn> {
        let gate = self.linear(&hf::join(prefix, GATE_PROJ), None, h)?;
        let inter = gate.weight.rows();
        let up = self.linear(&hf::join(prefix, UP_PROJ), Some(inter), h)?;
        let down = self.linear(&hf::join(prefix, DOWN_PROJ), Some(h), inter)?;
        Ok(Ffn { gate, up, down })
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        if t.shape != [len] {
            let got = t.shape.to_vec();
            return Err(self.shape_error(name, &got, format!("[{len}]")));
        }
        Ok(t.to_f32()?)
    }

    /// A float `[rows, cols]` tensor, borrowed from the map when f32/f16/bf16.
    fn float(&mut self, name: &str, rows: Option<usize>, cols: usize) -> Result<FloatWeight> {
        let files = Arc::clone(self.files);
        let t = self.tensor(name)?;
        let ok = t.shape.len() == 2 && t.shape[1] == cols && rows.is_none_or(|r| t.shape[0] == r);
        if !ok {
            let got = t.shape.to_vec();
            let want = format!(
                "[{}, {cols}]",
                rows.map_or("rows".into(), |r| r.to_string())
            );
            return Err(self.shape_error(name, &got, want));
        }
        let rows = t.shape[0];
        let (dtype, data) = match t.dtype {
            Dtype::F32 => (FloatDtype::F32, None),
            Dtype::F16 => (FloatDtype::F16, None),
            Dtype::BF16 => (FloatDtype::Bf16, None),
            _ => {
                let v = t.to_f32()?;
                (
                    FloatDtype::F32,
                    Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                )
            }
        };
        let data = match data {
            Some(owned) => Bytes::from_vec(owned),
            // SAFETY: `t.data` lies inside one of `files`' read-only maps, which live (unmoved,
            // unmodified) as long as the Arc we hand over.
            None => unsafe { Bytes::borrowed(files, t.data) },
        };
        Ok(FloatWeight {
            rows,
            cols,
            dtype,
            data,
        })
    }

    /// The linear at `prefix` (`prefix.weight`, or its packed tensors) plus `prefix.bias` if present.
    fn linear(&mut self, prefix: &str, rows: Option<usize>, cols: usize) -> Result<Linear> {
        let weight = match self.quant {
            Some(wq) if is_packed_layer(self.files, prefix) => {
                self.packed(prefix, wq, rows, cols)?
            }
            _ => Weight::Float(self.float(&hf::weight(prefix), rows, cols)?),
        };
        let bias_name = hf::bias(prefix);
        let bias = if self.files.contains(&bias_name) {
            Some(self.vector(&bias_name, weight.rows())?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    fn packed(
        &mut self,
        prefix: &str,
        wq: &WeightQuant,
        rows: Option<usize>,
        cols: usize,
    ) -> Result<Weight> {
        self.used.extend(packed_tensor_names(prefix));
        let files = Arc::clone(self.files);
        let view = PackedLayerView::open(&files, prefix, wq)?;
        let (out, inn) = (view.out_features, view.in_features);
        if inn != cols || rows.is_some_and(|r| r != out) {
            let want = format!(
                "[{}, {cols}]",
                rows.map_or("rows".into(), |r| r.to_string())
            );
            return Err(self.shape_error(&format!("{prefix}.weight_shape"), &[out, inn], want));
        }
        let group = wq.group_len(inn);
        if group == 0 || !group.is_multiple_of(QK) || wq.is_ragged(inn) {
            // Ragged or odd groups: dequantize once and run as a float weight.
            let w = QuantizedLinear::from_files(&files, prefix, wq)?.dequantize(wq);
            let data = Bytes::from_vec(w.iter().flat_map(|x| x.to_le_bytes()).collect());
            return Ok(Weight::Float(FloatWeight {
                rows: out,
                cols: inn,
                dtype: FloatDtype::F32,
                data,
            }));
        }
        // Tensor strategy stores one scale (and zero point): repeat it per row.
        let per_row = |n: usize| {
            if wq.strategy == QuantStrategy::Tensor {
                out
            } else {
                n
            }
        };
        let scales = scales_of(&view.scales, per_row(1))?;
        let zeros = view
            .zero_points
            .map(|z| if z.len() == 1 { vec![z[0]; out] } else { z });
        if wq.num_bits == 4 {
            // SAFETY: the packed words lie inside `files`' read-only maps, kept alive by the Arc.
            let data = unsafe { Bytes::borrowed(Arc::clone(&files) as _, view.packed.data) };
            let o = i32::from(INT4_OFFSET);
            let offsets = zeros.map(|z| z.iter().map(|&z| (i32::from(z) + o) as u8).collect());
            return Ok(Weight::Int4(Int4Weight::new(
                out, inn, group, data, scales, offsets,
            )));
        }
        let words: Vec<i32> = view
            .packed
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let data = unpack_rows(&words, out, inn, wq.num_bits);
        Ok(Weight::Int8(Int8Weight {
            rows: out,
            cols: inn,
            group_size: group,
            data,
            scales,
            zeros,
        }))
    }
}

/// Scales as stored (F64 narrowed to f32), each repeated `repeat` times (tensor strategy).
fn scales_of(t: &TensorRef<'_>, repeat: usize) -> Result<Scales> {
    let u16s = || {
        t.data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    let rep = |n: usize| if repeat > 1 && n == 1 { repeat } else { 1 };
    Ok(match t.dtype {
        Dtype::F16 => {
            let v: Vec<f16> = u16s().map(f16::from_bits).collect();
            Scales::F16(
                v.iter()
                    .flat_map(|&s| std::iter::repeat_n(s, rep(v.len())))
                    .collect(),
            )
        }
        Dtype::BF16 => {
            let v: Vec<bf16> = u16s().map(bf16::from_bits).collect();
            Scales::Bf16(
                v.iter()
                    .flat_map(|&s| std::iter::repeat_n(s, rep(v.len())))
                    .collect(),
            )
        }
        _ => {
            let v = t.to_f32()?;
            Scales::F32(
                v.iter()
                    .flat_map(|&s| std::iter::repeat_n(s, rep(v.len())))
                    .collect(),
            )
        }
    })
}
