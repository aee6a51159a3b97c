//! One module per subcommand: parse args into library configs, call the library, print.

mod bench;
mod convert;
mod distill;
mod eval;
mod export;
mod generate;
mod inspect;
mod moe;
mod prune;
mod quantize;
mod run;
mod serve;
mod train;
mod train_tokenizer;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use compress_core::burn::tensor::Device;
use compress_core::model::{load_model, LoadedModel};
use compress_format::safetensors::Dtype;

use crate::cli::{Cli, Command, Common};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.common.threads {
        if n == 0 {
            anyhow::bail!("--threads must be > 0");
        }
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a, &cli.common),
        Command::Generate(a) => generate::run(a, &cli.common),
        Command::Train(a) => train::run(a, &cli.common),
        Command::Convert(a) => convert::run(a, &cli.common),
        Command::Quantize(a) => quantize::run(a, &cli.common),
        Command::Prune(a) => prune::run(a, &cli.common),
        Command::Distill(a) => distill::run(a, &cli.common),
        Command::Moe(a) => moe::run(a, &cli.common),
        Command::Serve(a) => serve::run(a, &cli.common),
        Command::TrainTokenizer(a) => train_tokenizer::run(a),
        Command::Export(a) => export::run(a, &cli.common),
        Command::Bench(a) => bench::run(a, &cli.common),
        Command::Run(a) => run::run(a, &cli.common),
        Command::HelpMarkdown => {
            let opts = clap_markdown::MarkdownOptions::new()
                .title("compress: command-line reference".into())
                .show_footer(false);
            print!("{}", clap_markdown::help_markdown_custom::<Cli>(&opts));
            Ok(())
        }
    }
}

/// The checks of a stage command that need no file (its flags' values), for `compress run` to
/// make on every stage before the first one starts.
fn check(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Quantize(a) => quantize::check(a).map(drop),
        Command::Prune(a) => prune::config(a, cli.common.seed).map(drop),
        _ => Ok(()),
    }
}

/// The device named by `--device`.
fn device(common: &Common) -> Result<Device> {
    Ok(compress_core::parse_device(&common.device)?)
}

/// Loads a model directory, with the path in the error.
fn load(dir: &Path, device: &Device) -> Result<LoadedModel> {
    load_model(dir, device).with_context(|| format!("loading model {}", dir.display()))
}

/// Bytes of the `.safetensors` files in `dir` (a model's weights on disk).
fn weight_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(".safetensors") {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

/// Parses `f32|f16|bf16`.
fn parse_dtype(s: &str) -> Result<Dtype> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(Dtype::F32),
        "f16" | "float16" | "half" => Ok(Dtype::F16),
        "bf16" | "bfloat16" => Ok(Dtype::BF16),
        other => anyhow::bail!("--dtype {other}: expected f32, f16 or bf16"),
    }
}

/// A progress bar on stderr over `total` `unit`s (hidden with `--quiet` or off a terminal).
fn progress_bar(total: u64, what: &str, unit: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}})");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Prints a value as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A scratch directory next to `out` for a trainer's checkpoints (the caller removes it).
fn scratch_dir(out: &Path, tag: &str) -> Result<PathBuf> {
    hidden_sibling(out, &format!("{tag}-run-{}", std::process::id()))
}

/// `.<name of out>.<suffix>` in `out`'s parent directory.
fn hidden_sibling(out: &Path, suffix: &str) -> Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .with_context(|| format!("bad output path {}", out.display()))?
        .to_string_lossy();
    Ok(parent.join(format!(".{name}.{suffix}")))
}

/// Writes training metrics as `out/metrics.jsonl` (one JSON object per step).
fn write_metrics(out: &Path, metrics: &[compress_core::train::StepMetrics]) -> Result<()> {
    let mut body = String::new();
    for m in metrics {
        body.push_str(&serde_json::to_string(m)?);
        body.push('\n');
    }
    let path = out.join("metrics.jsonl");
    compress_format::atomic::write_atomic(&path, body.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
