//! Command-line arguments (clap derive). Each subcommand's args turn into library calls in
//! `commands/<name>.rs`; no logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod distill;
mod moe;
mod run;
mod serve;
pub use distill::{DistillArgs, FeatureLoss};
pub use moe::{MoeArgs, MoeRouting, MoeSplit};
pub use run::RunArgs;
pub use serve::ServeArgs;

/// compress: make Llama-family LLMs smaller and faster, and run them.
#[derive(Parser, Debug)]
#[command(name = "compress", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub common: Common,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by all commands.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Device: cpu (flex backend), tch:cpu, or cuda:N (the last two need the `tch` feature).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Random seed.
    #[arg(long, global = true, default_value_t = 0)]
    pub seed: u64,
    /// Print less (no progress bars).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a model directory's architecture, shapes, dtype and size.
    Inspect(InspectArgs),
    /// Perplexity on token data, and KL divergence / top-1 agreement against a reference.
    Eval(EvalArgs),
    /// Generate text from a prompt.
    Generate(GenerateArgs),
    /// Train a model from a preset or config.json (or continue one) on token data.
    Train(TrainArgs),
    /// Re-save a model directory (change dtype, shard it).
    Convert(ConvertArgs),
    /// Quantize the linear weights to 2-8 bits into a compressed-tensors pack-quantized dir.
    Quantize(QuantizeArgs),
    /// Prune weights (unstructured, N:M) or whole heads/neurons, with prune → retrain loops.
    Prune(PruneArgs),
    /// Distill a teacher into a smaller student (fewer layers, narrower, shared blocks, or a dir).
    Distill(DistillArgs),
    /// Convert a dense FFN into a mixture of experts with trained routers (MoEfication).
    Moe(MoeArgs),
    /// Serve a model over an OpenAI-compatible HTTP API (continuous batching).
    Serve(ServeArgs),
    /// Train a byte-level BPE tokenizer.json on text files.
    TrainTokenizer(TrainTokenizerArgs),
    /// Export a model directory (float or pack-quantized) to another format (GGUF for llama.cpp).
    Export(ExportArgs),
    /// Measure the runtime: prompt/decode tokens/s, time to first token, KV use per concurrency.
    Bench(BenchArgs),
    /// Run a recipe: stages in order, resumable, with a report and threshold checks.
    Run(RunArgs),
    /// Print this CLI's reference as Markdown (docs/cli.md is its output).
    #[command(hide = true)]
    HelpMarkdown,
}

/// Which implementation runs a model.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// compress-runtime: int4/int8 kernels, paged KV cache, continuous batching (CPU).
    Runtime,
    /// The burn model of compress-core (any --device; weights dequantized to f32).
    Burn,
}

/// Activations entering the runtime's quantized kernels.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    /// Quantized to 8 bits per block of 32 (fast, as llama.cpp).
    Q8,
    /// Kept in f32 against exactly dequantized weights (matches the burn model).
    F32,
}

/// `compress bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model directory (float or pack-quantized).
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt tokens per request (random ids).
    #[arg(long, default_value_t = 512)]
    pub prompt_len: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 128)]
    pub gen_len: usize,
    /// Concurrent requests, comma-separated; one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Most tokens per engine step (the prefill chunk budget).
    #[arg(long, default_value_t = 512)]
    pub max_batched_tokens: usize,
    /// KV cache blocks of 16 tokens per run (default: enough for every request of each run; fewer
    /// shows preemption).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// Activations of the quantized kernels.
    #[arg(long, value_enum, default_value = "q8")]
    pub activations: Activations,
    /// Skip the memory-bandwidth measurement.
    #[arg(long)]
    pub no_bandwidth: bool,
    /// Experts each token runs in a mixture-of-experts model (default: its config's).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `compress export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Model directory (float safetensors or a pack-quantized dir).
    #[arg(long)]
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_parser = ["gguf"], default_value = "gguf")]
    pub format: String,
    /// Storage of the 2-D weights: f32, f16, q8_0 or q4_0 (norms stay f32).
    #[arg(long = "type", value_name = "TYPE", default_value = "f16")]
    pub ty: String,
    /// Storage of output.weight (lm_head) if it should differ from --type, e.g. f16 to keep a
    /// float head as it is (llama-quantize's --output-tensor-type).
    #[arg(long, value_name = "TYPE")]
    pub output_type: Option<String>,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Dequantize packed layers whose codes do not fit the target blocks and quantize them again.
    #[arg(long)]
    pub allow_requantize: bool,
    /// tokenizer.json to embed (default: the model directory's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// general.name of the file (default: the model directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `compress inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model directory.
    pub model: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `compress eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Data: .txt (tokenized), .json [[ids..],..] or .jsonl {"text"|"ids"}.
    #[arg(long)]
    pub data: PathBuf,
    /// Reference model for KL divergence and top-1 agreement.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Evaluate at most this many sequences.
    #[arg(long)]
    pub max_seqs: Option<usize>,
    /// Tokens per sequence (default: min(256, max_position_embeddings)).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Leave the first N predictions of each window unscored (context only) and score only
    /// full windows; `--seq-len 2N --context N` is llama.cpp's llama-perplexity protocol.
    #[arg(long, default_value_t = 0)]
    pub context: usize,
    /// Write the first sequence's logits as f32 [tokens, vocab] .npy.
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    /// Experts each token runs in a mixture-of-experts model (default: its config's).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `compress generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt text (needs tokenizer.json in the model dir).
    #[arg(
        long,
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    pub prompt: Option<String>,
    /// Prompt token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print JSON {"tokens": [...], "text": ...}.
    #[arg(long)]
    pub json: bool,
    /// Implementation: the runtime (CPU, default) or the burn model (any --device).
    #[arg(long, value_enum, default_value = "runtime")]
    pub engine: EngineKind,
    /// Activations of the runtime's quantized kernels.
    #[arg(long, value_enum, default_value = "q8")]
    pub activations: Activations,
    /// Experts each token runs in a mixture-of-experts model (default: its config's).
    #[arg(long)]
    pub top_k: Option<usize>,
}

/// `compress train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model preset (tiny) or a config.json path; ignored with --init.
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// Start from this model directory instead of random weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Training data (.txt, .json, .jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// tokenizer.json for text data (copied into the output).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long)]
    pub steps: usize,
    /// Output directory (model, metrics.jsonl, checkpoint/).
    #[arg(long)]
    pub out: PathBuf,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Final learning rate (cosine decay target).
    #[arg(long, default_value_t = 1e-4)]
    pub min_lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f32,
    /// Global gradient-norm clip (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Micro-batches per step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Checkpoint every N steps (0 = only at the end).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many total steps, keeping the checkpoint (as an interruption would).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// dtype of the saved model: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// `compress convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// dtype of the output: f32, f16 or bf16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Shard into files of at most this many bytes (accepts suffixes KB, MB, GB).
    #[arg(long)]
    pub max_shard_size: Option<String>,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
}

/// `compress train-tokenizer`.
#[derive(Args, Debug)]
pub struct TrainTokenizerArgs {
    /// Text files to learn from.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Vocabulary size (including 256 bytes and 3 specials).
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Output tokenizer.json path.
    #[arg(long)]
    pub out: PathBuf,
}

/// Rounding method of `compress quantize`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantMethod {
    /// Round to nearest.
    Rtn,
    /// Round to nearest with a clip ratio searched per group.
    Mse,
    /// GPTQ (Hessian error feedback on calibration data).
    Gptq,
    /// AWQ-style activation-aware scales on calibration data.
    Awq,
    /// Quantization-aware fine-tuning, then export.
    Qat,
}

/// `compress quantize`.
#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory (pack-quantized).
    #[arg(long)]
    pub out: PathBuf,
    /// Bits per weight, 2-8.
    #[arg(long)]
    pub bits: u8,
    /// Input columns per scale group (default 128).
    #[arg(long, conflicts_with_all = ["per_channel", "per_tensor"])]
    pub group_size: Option<usize>,
    /// One scale per output channel.
    #[arg(long, conflicts_with = "per_tensor")]
    pub per_channel: bool,
    /// One scale for the whole weight.
    #[arg(long)]
    pub per_tensor: bool,
    /// Symmetric (no zero point) instead of asymmetric.
    #[arg(long)]
    pub symmetric: bool,
    /// Rounding method: rtn, mse (clip search), gptq and awq (need --calib), qat (needs --data).
    #[arg(long, value_enum, default_value_t = QuantMethod::Rtn)]
    pub method: QuantMethod,
    /// Calibration data for gptq/awq (.txt, .json or .jsonl, as eval data).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Calibration sequences to use.
    #[arg(long, default_value_t = 128)]
    pub calib_samples: usize,
    /// Tokens per calibration (or QAT training) sequence.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// GPTQ: quantize columns in order of decreasing activation energy (static groups).
    #[arg(long)]
    pub act_order: bool,
    /// GPTQ: dampening added to the Hessian diagonal, as a fraction of its mean.
    #[arg(long, default_value_t = 0.01)]
    pub dampening: f64,
    /// QAT: training data (.txt, .json or .jsonl); the model is fine-tuned with fake-quantized
    /// linears on it, then exported as rtn does.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// QAT: optimizer steps [default: 100].
    #[arg(long)]
    pub steps: Option<usize>,
    /// QAT: peak learning rate, cosine-decayed to a tenth [default: 1e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// QAT: sequences per step [default: 4].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// QAT: loss weight of KL to the float model, the rest next-token loss, 0-1 [default: 1].
    #[arg(long)]
    pub distill: Option<f64>,
    /// Leave these linear layers (HF names or prefixes) in floating point; lm_head always is.
    #[arg(long, num_args = 1..)]
    pub ignore: Vec<String>,
    /// dtype of scales and unquantized tensors: f32, f16 or bf16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Refuse group sizes that do not divide a layer's input width (vLLM/transformers need that).
    #[arg(long)]
    pub strict_compat: bool,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the per-layer summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--scope` of `compress prune`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneScope {
    /// Each matrix (or each layer's heads/neurons) gets the target sparsity.
    Layer,
    /// The target holds over the whole model together.
    Global,
}

/// `--criterion` of `compress prune`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneCriterion {
    /// |w|.
    Magnitude,
    /// |w| times the input's activation norm on calibration data (Wanda).
    Wanda,
}

/// `--schedule` of `compress prune`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneSchedule {
    /// Prune once (then retrain --retrain-steps).
    Oneshot,
    /// --rounds rounds of rising sparsity, retraining --retrain-steps after each.
    Iterative,
    /// Gradual cubic schedule (Zhu & Gupta): --rounds mask updates during --retrain-steps.
    Agp,
}

/// `compress prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Model directory (float).
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Target sparsity in [0, 1): fraction of weights, or of heads/neurons per layer (N:M: N/M).
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// unstructured, N:M (N of every M inputs pruned, e.g. 2:4), heads or neurons.
    #[arg(long, default_value = "unstructured")]
    pub pattern: String,
    /// Sparsity per matrix / per layer, or over the whole model (global: heads and neurons then
    /// differ per layer, written as the compress_layer_shapes config extension).
    #[arg(long, value_enum, default_value_t = PruneScope::Layer)]
    pub scope: PruneScope,
    /// How weights (or heads/neurons) are ranked.
    #[arg(long, value_enum, default_value_t = PruneCriterion::Magnitude)]
    pub criterion: PruneCriterion,
    /// When to prune relative to retraining.
    #[arg(long, value_enum, default_value_t = PruneSchedule::Oneshot)]
    pub schedule: PruneSchedule,
    /// Iterative rounds, or AGP mask updates.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Retraining steps (per round for iterative, in all for agp); 0 = no retraining.
    #[arg(long, default_value_t = 0)]
    pub retrain_steps: usize,
    /// Retraining data (.txt, .json or .jsonl); also Wanda's calibration data unless --calib.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Wanda calibration data.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Wanda calibration sequences.
    #[arg(long, default_value_t = 64)]
    pub calib_samples: usize,
    /// Held-out data for the perplexity columns of the report.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Held-out sequences to score.
    #[arg(long, default_value_t = 32)]
    pub eval_samples: usize,
    /// Tokens per training, calibration and evaluation sequence.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Retraining sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Retraining peak learning rate (warmup, then cosine to a tenth).
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Retrain against the dense model: weight α of the distillation (soft) term, 0 = plain LM loss.
    #[arg(long, default_value_t = 0.0)]
    pub distill_alpha: f64,
    /// Softmax temperature of the distillation term.
    #[arg(long = "distill-T", default_value_t = 2.0)]
    pub distill_temperature: f64,
    /// Leave these linear layers (HF names or prefixes) dense; lm_head always is.
    #[arg(long, num_args = 1..)]
    pub ignore: Vec<String>,
    /// dtype of the written tensors: f32, f16 or bf16 (default: as loaded).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Replace a non-empty --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
