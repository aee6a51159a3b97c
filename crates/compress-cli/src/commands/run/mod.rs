//! `compress run RECIPE.toml [--resume] [--overwrite] [--out DIR] [--check] [--json]`: a
//! recipe's stages in order, each run as its own command (`compress quantize|prune|distill|moe`
//! with the stage's keys as flags), then a report row per model and the threshold checks.
//!
//! Everything is checked before any work: the recipe's keys and files
//! ([`compress_core::recipe::Recipe::from_file`]), and every stage's flags, parsed by the same
//! clap definitions the commands use. Each stage writes `<run dir>/stages/NN-name/` and is then
//! recorded in `run.json`; `--resume` skips a stage whose key (settings, input, data) matches
//! its record and whose output exists.

mod measure;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use compress_core::recipe::format::{arg_value, RESERVED_KEYS};
use compress_core::recipe::state::stage_keys;
use compress_core::recipe::{Recipe, Report, RunState, StageRecord};

use crate::cli::{Cli, Common, RunArgs};

/// Flags of the `kind` subcommand (long names).
fn flags_of(kind: &str) -> Vec<String> {
    Cli::command()
        .find_subcommand(kind)
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The student-shaping flags of distill: with one, the stage's input is the teacher.
const STUDENT_SHAPES: &[&str] = &["student-layers", "student-width", "share-layers"];

/// The command line of stage `i` (without the program name).
fn stage_args(r: &Recipe, i: usize, common: &Common, dir: &Path) -> Result<Vec<String>> {
    let s = &r.stages[i];
    let known = flags_of(&s.kind);
    let at = format!(
        "{}: stages[{i}] ({} \"{}\")",
        r.path.display(),
        s.kind,
        s.name
    );
    let mut args = vec![
        "--device".to_string(),
        common.device.clone(),
        "--seed".into(),
        common.seed.to_string(),
    ];
    if let Some(t) = common.threads {
        args.extend(["--threads".into(), t.to_string()]);
    }
    if common.quiet {
        args.push("-q".into());
    }
    args.push(s.kind.clone());
    let path = |p: &Path| p.display().to_string();
    let input = r.input_dir(i);
    let teacher = s.teacher.map_or(r.model.clone(), |t| r.stage_dir(t));
    match s.kind.as_str() {
        "distill" if STUDENT_SHAPES.iter().any(|k| s.settings.contains_key(*k)) => {
            let t = s.teacher.map_or(input.clone(), |t| r.stage_dir(t));
            args.extend(["--teacher".into(), path(&t)]);
        }
        "distill" => {
            args.extend(["--teacher".into(), path(&teacher)]);
            args.extend(["--student".into(), path(&input)]);
        }
        _ => args.extend(["--model".into(), path(&input)]),
    }
    args.extend(["--out".into(), path(dir), "--overwrite".into()]);
    let base = r.path.parent().unwrap_or(Path::new("."));
    for (k, v) in &s.settings {
        if !known.contains(k) {
            let mut names = known.clone();
            names.retain(|n| n != "help" && !RESERVED_KEYS.contains(&n.as_str()));
            anyhow::bail!(
                "{at}: unknown key `{k}` ({} takes: {})",
                s.kind,
                names.join(", ")
            );
        }
        let value = arg_value(v).map_err(|e| anyhow::anyhow!("{at}: {k}: {e}"))?;
        let Some(value) = value else { continue };
        args.push(format!("--{k}"));
        if !value.is_empty() {
            // Relative paths in settings are relative to the recipe, like its other paths.
            let as_path = compress_core::recipe::format::normalize(&base.join(&value));
            let is_path = matches!(
                k.as_str(),
                "calib" | "data" | "eval-data" | "student" | "teacher-cache"
            );
            args.push(match is_path {
                true => path(&as_path),
                false => value,
            });
        }
    }
    // Dataset defaults from [data] where the stage uses one and does not name its own.
    let setting = |k: &str| s.settings.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let wants = |flag: &str| -> bool {
        match (s.kind.as_str(), flag) {
            ("quantize", "calib") => matches!(setting("method"), "gptq" | "awq"),
            ("quantize", "data") => setting("method") == "qat",
            ("quantize", _) => false,
            (_, "data") => true,
            _ => false,
        }
    };
    for (flag, default) in [("calib", &r.data.calib), ("data", &r.data.train)] {
        let default = default.as_ref().or(r.data.train.as_ref());
        if wants(flag) && !s.settings.contains_key(flag) {
            match default {
                Some(d) => args.extend([format!("--{flag}"), path(d)]),
                None => anyhow::bail!("{at}: needs `{flag}` (or data.train in the recipe)"),
            }
        }
    }
    Ok(args)
}

/// Parses stage `i`'s command line with the commands' own clap definitions.
fn parse_stage(r: &Recipe, i: usize, common: &Common, dir: &Path) -> Result<Cli> {
    let args = stage_args(r, i, common, dir)?;
    let s = &r.stages[i];
    Cli::try_parse_from(std::iter::once("compress".to_string()).chain(args)).map_err(|e| {
        let msg = e.to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        anyhow::anyhow!(
            "{}: stages[{i}] ({} \"{}\"): {first}",
            r.path.display(),
            s.kind,
            s.name
        )
    })
}

pub fn run(a: RunArgs, common: &Common) -> Result<()> {
    let mut recipe = Recipe::from_file(&a.recipe)?;
    if let Some(out) = &a.out {
        recipe.out = out.clone();
    }
    let out = recipe.out.clone();
    // Check every stage before doing anything.
    let stages: Vec<Cli> = (0..recipe.stages.len())
        .map(|i| {
            let cli = parse_stage(&recipe, i, common, &recipe.stage_dir(i))?;
            let s = &recipe.stages[i];
            super::check(&cli).map_err(|e| {
                anyhow::anyhow!(
                    "{}: stages[{i}] ({} \"{}\"): {e}",
                    recipe.path.display(),
                    s.kind,
                    s.name
                )
            })?;
            Ok(cli)
        })
        .collect::<Result<_>>()?;
    let keys = stage_keys(&recipe)?;
    if a.check {
        println!(
            "{}: ok ({} stages: {})",
            recipe.path.display(),
            stages.len(),
            recipe
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(" → ")
        );
        return Ok(());
    }
    let state_path = RunState::path(&out);
    let mut state = match (state_path.is_file(), a.resume, a.overwrite) {
        (true, false, false) => anyhow::bail!(
            "{}: holds an earlier run; --resume to continue it or --overwrite to start over",
            out.display()
        ),
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
        _ => RunState::load(&out)?,
    };
    if out.is_dir()
        && !state_path.is_file()
        && std::fs::read_dir(&out)?.next().is_some()
        && !a.overwrite
    {
        anyhow::bail!(
            "{}: exists and is not a recipe run dir (no run.json); choose another --out",
            out.display()
        );
    }
    std::fs::create_dir_all(out.join("stages"))
        .with_context(|| format!("creating {}", out.display()))?;
    state.recipe = recipe.path.clone();
    let n = recipe.stages.len();
    let mut timings: Vec<(f64, bool)> = Vec::with_capacity(n);
    for (i, cli) in stages.into_iter().enumerate() {
        let s = &recipe.stages[i];
        let dir = recipe.stage_dir(i);
        let key = &keys[i];
        if a.resume && dir.join("config.json").is_file() {
            if let Some(rec) = state.done(&s.name, key) {
                eprintln!(
                    "[{}/{n}] {} ({}): unchanged, resumed from {}",
                    i + 1,
                    s.name,
                    s.kind,
                    dir.display()
                );
                timings.push((rec.seconds, true));
                continue;
            }
        }
        eprintln!(
            "[{}/{n}] {} ({}) → {}",
            i + 1,
            s.name,
            s.kind,
            dir.display()
        );
        let t0 = Instant::now();
        super::run(cli).with_context(|| format!("stage {} ({})", s.name, s.kind))?;
        let seconds = t0.elapsed().as_secs_f64();
        eprintln!("[{}/{n}] {} done in {seconds:.1} s", i + 1, s.name);
        state.record(StageRecord {
            name: s.name.clone(),
            key: key.clone(),
            seconds,
        });
        state.save(&out)?;
        timings.push((seconds, false));
    }
    let final_dir = link_final(&recipe)?;
    eprintln!("measuring {} models for the report", n + 1);
    let rows = measure::rows(&recipe, &timings, common)?;
    let report = Report::new(&recipe.name, rows, &recipe.thresholds);
    report.write(&out)?;
    if a.json {
        super::print_json(&report)?;
    } else {
        println!("{}", report.markdown());
        println!(
            "report: {}; final model: {}",
            out.join("report.md").display(),
            final_dir.display()
        );
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{} (limit {}, got {:.4})", c.name, c.limit, c.value))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "recipe {}: thresholds failed: {}",
            recipe.name,
            failed.join("; ")
        );
    }
    Ok(())
}

/// Points `<run dir>/final` at the last stage's output (a relative symlink on unix).
fn link_final(recipe: &Recipe) -> Result<PathBuf> {
    let link = recipe.out.join("final");
    let last = recipe.stage_dir(recipe.stages.len() - 1);
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    {
        let rel = last.strip_prefix(&recipe.out).unwrap_or(&last);
        std::os::unix::fs::symlink(rel, &link)
            .with_context(|| format!("linking {}", link.display()))?;
        Ok(link)
    }
    #[cfg(not(unix))]
    Ok(last)
}
