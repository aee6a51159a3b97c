//! The long mode: `fuzz [--target NAME|all] [--cases N] [--seed S] [--json FILE]` runs N cases
//! per target and prints cases, failures, panics, the largest single allocation against the
//! input size, peak live bytes and time per case.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use compress_fuzz::runner::{run, Report, RunConfig};
use compress_fuzz::targets::{by_name, NAMES};
use indicatif::{ProgressBar, ProgressStyle};

struct Args {
    targets: Vec<String>,
    cases: u64,
    seed: u64,
    json: Option<std::path::PathBuf>,
    time_limit: Duration,
    save_each: bool,
    replay: Vec<std::path::PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        targets: NAMES.iter().map(|s| s.to_string()).collect(),
        cases: 10_000,
        seed: 1,
        json: None,
        time_limit: Duration::from_secs(2),
        save_each: false,
        replay: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag}: needs a value"));
        match flag.as_str() {
            "--target" => match value()?.as_str() {
                "all" => {}
                t if by_name_known(t) => a.targets = vec![t.to_string()],
                t => bail!("--target {t}: unknown (one of all, {})", NAMES.join(", ")),
            },
            "--cases" => a.cases = value()?.parse().context("--cases")?,
            "--seed" => a.seed = value()?.parse().context("--seed")?,
            "--json" => a.json = Some(value()?.into()),
            "--time-limit-ms" => {
                a.time_limit = Duration::from_millis(value()?.parse().context("--time-limit-ms")?)
            }
            "--save-each" => a.save_each = true,
            "--replay" => a.replay.push(value()?.into()),
            "-h" | "--help" => {
                println!("fuzz [--target NAME|all] [--cases N] [--seed S] [--json FILE] [--time-limit-ms MS] [--save-each] [--replay FILE]...");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    Ok(a)
}

fn by_name_known(t: &str) -> bool {
    NAMES.contains(&t)
}

fn print_row(r: &Report) {
    println!(
        "{:<17} {:>9} {:>9} {:>6} {:>6} {:>10.1} {:>10.1} {:>12} {:>12} {:>12} {:>9.1} {:>9} {:>9.0}",
        r.target,
        r.cases,
        r.accepted,
        r.failures,
        r.panics,
        r.max_alloc_ratio,
        r.max_alloc_ratio_large,
        r.seed_max_single_alloc,
        r.max_single_alloc,
        r.peak_live,
        r.mean_time_us,
        r.max_time_us,
        r.cases_per_s
    );
}

/// Runs each `--replay` file through the (single) target and prints what it did.
fn replay(a: &Args) -> Result<()> {
    let [name] = a.targets.as_slice() else {
        bail!("--replay needs one --target");
    };
    let mut target = by_name(name).context("unknown target")?;
    for p in &a.replay {
        let input = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        let r = compress_fuzz::runner::run_case(target.as_mut(), &input, a.time_limit);
        println!(
            "{}: {} bytes, accepted {}, {:?}, max alloc {} B, peak live {} B, failure {:?}",
            p.display(),
            input.len(),
            r.accepted,
            r.time,
            r.alloc.max_single,
            r.alloc.peak_live,
            r.failure
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    if !a.replay.is_empty() {
        return replay(&a);
    }
    let mut reports = Vec::new();
    for name in &a.targets {
        let mut target = by_name(name).context("unknown target")?;
        let mut cfg = RunConfig::new(a.cases, a.seed);
        cfg.time_limit = a.time_limit;
        cfg.save_each = a.save_each;
        let bar = ProgressBar::new(a.cases);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>15} {bar:30} {pos}/{len} {per_sec} {msg}")
                .context("progress template")?,
        );
        bar.set_prefix(name.clone());
        let mut last = std::time::Instant::now();
        let r = run(target.as_mut(), &cfg, |r| {
            if r.cases % 256 == 0 {
                bar.set_position(r.cases);
                bar.set_message(format!("{} failures", r.failures));
                // A checkpoint every 10 s (`complete: false`), so a run stopped early reports.
                if last.elapsed().as_secs() >= 10 {
                    last = std::time::Instant::now();
                    if let Some(p) = &a.json {
                        let done: Vec<&Report> = reports.iter().chain([r]).collect();
                        let _ = serde_json::to_string_pretty(&done).map(|t| std::fs::write(p, t));
                    }
                }
            }
        });
        bar.finish_and_clear();
        reports.push(r);
    }
    println!(
        "{:<17} {:>9} {:>9} {:>6} {:>6} {:>10} {:>10} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "target",
        "cases",
        "accepted",
        "fail",
        "panic",
        "alloc/len",
        "≥16K a/l",
        "seed alloc B",
        "max alloc B",
        "peak live B",
        "mean µs",
        "max µs",
        "cases/s"
    );
    reports.iter().for_each(print_row);
    for r in &reports {
        for (m, f) in r.messages.iter().zip(
            r.failure_files
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        ) {
            println!("{}: {m} ({f:?})", r.target);
        }
    }
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&reports)?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let failures: u64 = reports.iter().map(|r| r.failures).sum();
    if failures > 0 {
        bail!("{failures} failing cases");
    }
    Ok(())
}
