//! [`StageConfig`]: a recipe's `[[stages]]` table deserialized into the run config of its
//! stage (the same struct `compress quantize|prune|distill|moe` fills from its flags), with its
//! input, output, datasets and relative paths set by the recipe.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::format::{normalize, Recipe};
use crate::error::{CoreError, Result};
use crate::progress::Progress;
use crate::stages::distill::DistillRunConfig;
use crate::stages::moe::MoeRunConfig;
use crate::stages::prune::PruneRunConfig;
use crate::stages::quantize::QuantizeRunConfig;
use crate::stages::{distill, moe, prune, quantize};

/// One stage's run config.
#[derive(Clone, Debug)]
pub enum StageConfig {
    /// `stage = "quantize"`.
    Quantize(QuantizeRunConfig),
    /// `stage = "prune"`.
    Prune(PruneRunConfig),
    /// `stage = "distill"`.
    Distill(DistillRunConfig),
    /// `stage = "moe"`.
    Moe(MoeRunConfig),
}

/// The device and seed every stage runs with unless its table sets them.
#[derive(Clone, Debug)]
pub struct StageDefaults {
    /// `device` of every stage.
    pub device: String,
    /// `seed` of every stage.
    pub seed: u64,
}

/// The stage's config from its table; a wrong value names its key.
fn parse<T: DeserializeOwned>(table: toml::Table) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let msg = e.inner().message().trim().to_string();
        match e.path().to_string().as_str() {
            "." => msg,
            key => format!("{key}: {msg}"),
        }
    })
}

impl StageConfig {
    /// Stage `i` of `recipe`: its table (keys with dashes or underscores) as the stage's run
    /// config; relative paths resolved against the recipe's dir; model, teacher, student and
    /// out set from the stage's input; `data`/`calib` defaulted from `[data]` where the stage
    /// reads them. Checks every setting that needs no file.
    pub fn of(recipe: &Recipe, i: usize, defaults: &StageDefaults) -> Result<Self> {
        let s = &recipe.stages[i];
        let at = |msg: String| {
            let where_ = format!(
                "{}: stages[{i}] ({} \"{}\")",
                recipe.path.display(),
                s.kind,
                s.name
            );
            CoreError::Invalid(format!("{where_}: {msg}"))
        };
        let mut table = toml::Table::new();
        for (k, v) in &s.settings {
            table.insert(k.replace('-', "_"), v.clone());
        }
        table
            .entry("device")
            .or_insert(defaults.device.clone().into());
        table.entry("seed").or_insert((defaults.seed as i64).into());
        let mut cfg = match s.kind.as_str() {
            "quantize" => parse(table).map(Self::Quantize),
            "prune" => parse(table).map(Self::Prune),
            "distill" => parse(table).map(Self::Distill),
            _ => parse(table).map(Self::Moe),
        }
        .map_err(at)?;
        let base = recipe.path.parent().unwrap_or(Path::new("."));
        for p in cfg.input_paths_mut() {
            *p = normalize(&base.join(&*p));
        }
        cfg.set_io(recipe, i);
        cfg.default_data(recipe).map_err(at)?;
        cfg.validate().map_err(|e| at(e.to_string()))?;
        Ok(cfg)
    }

    fn input_paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Self::Quantize(c) => c.input_paths_mut(),
            Self::Prune(c) => c.input_paths_mut(),
            Self::Distill(c) => c.input_paths_mut(),
            Self::Moe(c) => c.input_paths_mut(),
        }
    }

    /// Input model (or teacher and student), output dir and `overwrite`.
    fn set_io(&mut self, recipe: &Recipe, i: usize) {
        let s = &recipe.stages[i];
        let (input, out) = (recipe.input_dir(i), recipe.stage_dir(i));
        match self {
            Self::Quantize(c) => (c.model, c.out, c.overwrite) = (input, out, true),
            Self::Prune(c) => (c.model, c.out, c.overwrite) = (input, out, true),
            Self::Moe(c) => (c.model, c.out, c.overwrite) = (input, out, true),
            Self::Distill(c) => {
                let shaped = c.student_layers.is_some()
                    || c.student_width.is_some()
                    || c.share_layers.is_some();
                let teacher = |default: PathBuf| s.teacher.map_or(default, |t| recipe.stage_dir(t));
                if shaped {
                    // The student is cut from the teacher: the input is the teacher.
                    c.teacher = teacher(input);
                } else {
                    c.teacher = teacher(recipe.model.clone());
                    c.student.get_or_insert(input);
                }
                (c.out, c.overwrite) = (out, true);
            }
        }
    }

    /// `data` (and quantize's `calib`) from the recipe's `[data]` where the stage reads them
    /// and its table does not name its own.
    fn default_data(&mut self, recipe: &Recipe) -> std::result::Result<(), String> {
        let d = &recipe.data;
        let need = |key: &str, slot: &mut Option<PathBuf>, default: Option<&PathBuf>| {
            if slot.is_none() {
                let path = default.ok_or(format!("needs `{key}` (or data.train in the recipe)"))?;
                *slot = Some(path.clone());
            }
            Ok::<_, String>(())
        };
        let train = d.train.as_ref();
        match self {
            Self::Quantize(c) if c.method.needs_calibration() => {
                need("calib", &mut c.calib, d.calib.as_ref().or(train))
            }
            Self::Quantize(c) if c.method == quantize::QuantMethod::Qat => {
                need("data", &mut c.data, train)
            }
            Self::Quantize(_) => Ok(()),
            Self::Prune(c) => need("data", &mut c.data, train),
            Self::Moe(c) => need("data", &mut c.data, train),
            Self::Distill(c) => {
                let mut data = Some(c.data.clone()).filter(|p| !p.as_os_str().is_empty());
                need("data", &mut data, train)?;
                c.data = data.unwrap_or_default();
                Ok(())
            }
        }
    }

    /// The checks that need no file.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Quantize(c) => c.validate().map(drop),
            Self::Prune(c) => c.validate().map(drop),
            Self::Distill(c) => c.validate().map(drop),
            Self::Moe(_) => Ok(()),
        }
    }

    /// Runs the stage with the same `run` as its CLI command.
    pub fn run(&self, progress: &Progress) -> Result<()> {
        match self {
            Self::Quantize(c) => quantize::run(c, progress).map(drop),
            Self::Prune(c) => prune::run(c, progress).map(drop),
            Self::Distill(c) => distill::run(c, progress).map(drop),
            Self::Moe(c) => moe::run(c, progress).map(drop),
        }
    }
}
