//! Recipes: declarative multi-stage pipelines (`compress run RECIPE.toml`).
//!
//! [`mod@format`] reads and checks the TOML file, [`state`] keeps what a run has done and the keys
//! that let `--resume` skip unchanged stages, [`report`] renders the measured rows and the
//! threshold checks, [`stage_config`] turns each `[[stages]]` table into its stage's run config
//! and [`mod@run`] runs them through the same `run(config)` the stage's CLI command calls, then
//! measures the rows ([`measure`]).

pub mod format;
pub mod measure;
pub mod report;
pub mod run;
pub mod stage_config;
pub mod state;

pub use format::{Recipe, Stage, Thresholds};
pub use report::{Check, Report, Row};
pub use run::{check, final_dir, run, RunOptions};
pub use stage_config::{StageConfig, StageDefaults};
pub use state::{RunState, StageRecord};
