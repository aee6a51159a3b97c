//! Arguments of `compress run`.

use std::path::PathBuf;

use clap::Args;

/// `compress run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The recipe (TOML; see recipes/ and docs/recipes.md).
    pub recipe: PathBuf,
    /// Skip stages whose settings, inputs and data are unchanged since they last finished.
    #[arg(long)]
    pub resume: bool,
    /// Discard an earlier run in the run dir.
    #[arg(long)]
    pub overwrite: bool,
    /// Run dir (default: the recipe's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Check the recipe (keys, files, every stage's flags) and stop.
    #[arg(long)]
    pub check: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
