//! Recipes: declarative multi-stage pipelines (`compress run RECIPE.toml`).
//!
//! [`mod@format`] reads and checks the TOML file, [`state`] keeps what a run has done and the keys
//! that let `--resume` skip unchanged stages, [`report`] renders the measured rows and the
//! threshold checks. Running the stages and measuring the rows is the caller's part (the CLI
//! runs each stage as its own command, so a recipe stage does exactly what the command does).

pub mod format;
pub mod report;
pub mod state;

pub use format::{Recipe, Stage, Thresholds};
pub use report::{Check, Report, Row};
pub use state::{RunState, StageRecord};
