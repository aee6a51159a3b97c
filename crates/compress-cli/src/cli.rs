//! Command-line arguments (clap derive). Each subcommand's args turn into library calls in
//! `commands/<name>.rs`; no logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod distill;
mod moe;
mod prune;
mod quantize;
mod run;
mod serve;
pub mod shared;
mod train;
pub use distill::{DistillArgs, FeatureLoss};
pub use moe::{MoeArgs, MoeRouting, MoeSplit};
pub use prune::{PruneArgs, PruneCriterion, PruneSchedule, PruneScope};
pub use quantize::QuantizeArgs;
pub use run::RunArgs;
pub use serve::ServeArgs;
pub use shared::TopKArg;
pub use train::TrainArgs;

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
    /// --top-k of MoE models.
    #[command(flatten)]
    pub top_k: TopKArg,
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
    /// --top-k of MoE models.
    #[command(flatten)]
    pub top_k: TopKArg,
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
    /// --top-k of MoE models.
    #[command(flatten)]
    pub top_k: TopKArg,
}

/// `compress convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Model directory.
    #[arg(
        long,
        required_unless_present = "from_gguf",
        conflicts_with = "from_gguf"
    )]
    pub model: Option<PathBuf>,
    /// Import a llama.cpp GGUF file (llama or qwen2; any of F32, F16, BF16, Q4_0, Q4_1, Q5_0,
    /// Q5_1, Q8_0, Q2_K…Q6_K, dequantized) instead of a model directory.
    #[arg(long, value_name = "FILE")]
    pub from_gguf: Option<PathBuf>,
    /// Print the import report as JSON (with --from-gguf).
    #[arg(long)]
    pub json: bool,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// dtype of the output: f32, f16 or bf16 (default: as loaded; f32 for --from-gguf).
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
