//! [`run`]: a recipe's stages in order, each through the same `run(config)` its CLI command
//! calls, then a report row per model and the threshold checks.
//!
//! Everything is checked before any work: the recipe's keys and files
//! ([`Recipe::from_file`]) and every stage's settings ([`StageConfig::of`]). Each stage writes
//! `<run dir>/stages/NN-name/` and is then recorded in `run.json`; `resume` skips a stage whose
//! key (settings, input, data) matches its record and whose output exists.

use std::path::PathBuf;
use std::time::Instant;

use super::measure::{rows, SpeedProbe};
use super::stage_config::{StageConfig, StageDefaults};
use super::state::stage_keys;
use super::{Recipe, Report, RunState, StageRecord};
use crate::error::{CoreError, Result};
use crate::progress::Progress;

/// How `compress run` runs a recipe.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Skip stages whose settings, inputs and data are unchanged since they last finished.
    pub resume: bool,
    /// Discard an earlier run in the run dir.
    pub overwrite: bool,
    /// Device and seed of every stage that does not set its own.
    pub stages: StageDefaults,
}

/// Checks every stage of `recipe` (no work); returns their configs.
pub fn check(recipe: &Recipe, defaults: &StageDefaults) -> Result<Vec<StageConfig>> {
    (0..recipe.stages.len())
        .map(|i| StageConfig::of(recipe, i, defaults))
        .collect()
}

/// What the run dir holds of an earlier run, after `resume`/`overwrite` are applied.
fn prepare(recipe: &Recipe, opts: &RunOptions) -> Result<RunState> {
    let out = &recipe.out;
    let d = &recipe.data;
    let mut inputs = vec![recipe.model.as_path(), recipe.path.as_path()];
    inputs.extend(
        [&d.train, &d.calib, &d.eval]
            .into_iter()
            .flatten()
            .map(|p| p.as_path()),
    );
    crate::outdir::check_disjoint(out, &inputs)?;
    let state_path = RunState::path(out);
    let state = match (state_path.is_file(), opts.resume, opts.overwrite) {
        (true, false, false) => {
            let msg = "holds an earlier run; `resume` to continue it or `overwrite` to start over";
            return Err(CoreError::setting("out", out.display(), msg));
        }
        (true, _, true) => {
            for p in [
                "stages",
                "run.json",
                "report.json",
                "report.md",
                "size_vs_ppl.svg",
            ] {
                let p = out.join(p);
                let _ = match p.is_dir() {
                    true => std::fs::remove_dir_all(&p),
                    false => std::fs::remove_file(&p),
                };
            }
            RunState::default()
        }
        _ => RunState::load(out)?,
    };
    let non_empty = out.is_dir()
        && std::fs::read_dir(out)
            .map_err(|e| CoreError::io(out, e))?
            .next()
            .is_some();
    if non_empty && !state_path.is_file() && !opts.overwrite {
        let msg = "exists and is not a recipe run dir (no run.json); choose another `out`";
        return Err(CoreError::setting("out", out.display(), msg));
    }
    let stages = out.join("stages");
    std::fs::create_dir_all(&stages).map_err(|e| CoreError::io(&stages, e))?;
    Ok(state)
}

/// Runs every stage of `recipe` (skipping unchanged ones with `resume`), measures a report
/// row per model (`speed` measures decode tokens/s when the recipe asks for it), writes
/// `report.json`, `report.md` and `size_vs_ppl.svg`, and links `final` to the last stage.
pub fn run(
    recipe: &Recipe,
    opts: &RunOptions,
    progress: &Progress,
    speed: Option<SpeedProbe>,
) -> Result<Report> {
    let stages = check(recipe, &opts.stages)?;
    let keys = stage_keys(recipe)?;
    let mut state = prepare(recipe, opts)?;
    state.recipe = recipe.path.clone();
    let n = stages.len();
    let mut timings: Vec<(f64, bool)> = Vec::with_capacity(n);
    for (i, cfg) in stages.iter().enumerate() {
        let s = &recipe.stages[i];
        let dir = recipe.stage_dir(i);
        let rec = state
            .done(&s.name, &keys[i])
            .filter(|_| dir.join("config.json").is_file());
        if let Some(rec) = rec.filter(|_| opts.resume) {
            let (name, kind) = (&s.name, &s.kind);
            eprintln!(
                "[{}/{n}] {name} ({kind}): unchanged, resumed from {}",
                i + 1,
                dir.display()
            );
            timings.push((rec.seconds, true));
            continue;
        }
        eprintln!(
            "[{}/{n}] {} ({}) → {}",
            i + 1,
            s.name,
            s.kind,
            dir.display()
        );
        let t0 = Instant::now();
        cfg.run(progress)
            .map_err(|e| CoreError::Invalid(format!("stage {} ({}): {e}", s.name, s.kind)))?;
        let seconds = t0.elapsed().as_secs_f64();
        eprintln!("[{}/{n}] {} done in {seconds:.1} s", i + 1, s.name);
        state.record(StageRecord {
            name: s.name.clone(),
            key: keys[i].clone(),
            seconds,
        });
        state.save(&recipe.out)?;
        timings.push((seconds, false));
    }
    link_final(recipe)?;
    progress.note(format_args!("measuring {} models for the report", n + 1));
    let rows = rows(recipe, &timings, &opts.stages.device, speed)?;
    let report = Report::new(&recipe.name, rows, &recipe.thresholds);
    report.write(&recipe.out)?;
    Ok(report)
}

/// `<run dir>/final`: where the last stage's output is reached.
pub fn final_dir(recipe: &Recipe) -> PathBuf {
    recipe.out.join("final")
}

/// Points `<run dir>/final` at the last stage's output (a relative symlink on unix).
fn link_final(recipe: &Recipe) -> Result<()> {
    let link = final_dir(recipe);
    let last = recipe.stage_dir(recipe.stages.len() - 1);
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    {
        let rel = last.strip_prefix(&recipe.out).unwrap_or(&last);
        std::os::unix::fs::symlink(rel, &link).map_err(|e| CoreError::io(&link, e))?;
    }
    #[cfg(not(unix))]
    let _ = last;
    Ok(())
}
