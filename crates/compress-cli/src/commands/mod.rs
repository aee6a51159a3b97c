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

use std::path::Path;

use anyhow::{Context, Result};
use compress_core::burn::tensor::Device;
use compress_core::model::{load_model, LoadedModel};
use compress_core::Progress;

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

/// The device named by `--device`.
fn device(common: &Common) -> Result<Device> {
    Ok(compress_core::parse_device(&common.device)?)
}

/// Loads a model directory, with the path in the error.
fn load(dir: &Path, device: &Device) -> Result<LoadedModel> {
    load_model(dir, device).with_context(|| format!("loading model {}", dir.display()))
}

/// Where a command shows progress: nothing with `-q`, nor beside `--json` output.
fn progress(common: &Common, json: bool) -> Progress {
    Progress::new(common.quiet || json)
}

/// Prints a stage's report: JSON with `--json`, else its table unless `-q`.
fn print<R: serde::Serialize>(
    report: &R,
    json: bool,
    common: &Common,
    table: impl Fn(&R) -> String,
) -> Result<()> {
    if json {
        return print_json(report);
    }
    if !common.quiet {
        println!("{}", table(report));
    }
    Ok(())
}

/// Prints a value as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
