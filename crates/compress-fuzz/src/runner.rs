//! Runs a target's cases: each seed once as is, then mutated inputs; per case it catches
//! panics (the hook silenced, the message kept), times the case and measures its largest
//! single allocation and peak live bytes. Failing inputs are written for replay.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::alloc;
pub use crate::failure::{save_failure, Failure};
pub use crate::paths::workspace_root;
use crate::targets::Target;

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Cases to run (seeds included).
    pub cases: u64,
    /// RNG seed.
    pub seed: u64,
    /// A case slower than this fails.
    pub time_limit: Duration,
    /// Where failing inputs go (`<dir>/<target>/`).
    pub failure_dir: PathBuf,
    /// Most failing inputs written per run.
    pub max_failure_files: usize,
    /// Write every input to `<failure_dir>/<target>/current.bin` before running it, so that a
    /// case that aborts the process (an allocation the system refuses) can be replayed.
    pub save_each: bool,
}

impl RunConfig {
    /// `cases` cases from RNG seed `seed`, failures under `target/fuzz-failures`.
    pub fn new(cases: u64, seed: u64) -> Self {
        Self {
            cases,
            seed,
            time_limit: Duration::from_secs(2),
            failure_dir: workspace_root().join("target").join("fuzz-failures"),
            max_failure_files: 50,
            save_each: false,
        }
    }
}

/// What one case did.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// The parser accepted the input.
    pub accepted: bool,
    /// Allocation counters.
    pub alloc: alloc::AllocStats,
    /// Wall time.
    pub time: Duration,
    /// The failure, if any.
    pub failure: Option<Failure>,
}

/// Totals of a run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Target name.
    pub target: String,
    /// Cases run.
    pub cases: u64,
    /// Cases the parser accepted.
    pub accepted: u64,
    /// Failed cases (any reason).
    pub failures: u64,
    /// Cases that panicked.
    pub panics: u64,
    /// Cases over the allocation limit.
    pub over_alloc: u64,
    /// Cases over the time limit.
    pub slow: u64,
    /// Largest (single allocation / input length) of any case.
    pub max_alloc_ratio: f64,
    /// Largest (single allocation / input length) of cases with inputs of at least
    /// [`LARGE_INPUT`] bytes (where the floor does not hide the factor).
    pub max_alloc_ratio_large: f64,
    /// Largest single allocation of any case (bytes).
    pub max_single_alloc: usize,
    /// Input length of the case with the largest single allocation.
    pub max_single_alloc_input: usize,
    /// Largest single allocation of the unmutated seeds (what valid files need; the floor
    /// of the allocation limit is chosen above it).
    pub seed_max_single_alloc: usize,
    /// Largest peak of live bytes of any case.
    pub peak_live: usize,
    /// Largest input run.
    pub max_input: usize,
    /// Slowest case (µs).
    pub max_time_us: u64,
    /// Mean case time (µs).
    pub mean_time_us: f64,
    /// Whether all cases ran (false in a checkpoint written while running).
    pub complete: bool,
    /// Wall time of the run (s).
    pub seconds: f64,
    /// Cases per second.
    pub cases_per_s: f64,
    /// Failing inputs written.
    pub failure_files: Vec<PathBuf>,
    /// Failure messages (first few).
    pub messages: Vec<String>,
}

/// Inputs at least this long count as large in [`Report::max_alloc_ratio_large`].
pub const LARGE_INPUT: usize = 16 * 1024;

thread_local! {
    static SILENT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records, instead of printing, panics on threads running
/// cases, and defers to the previous hook elsewhere.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let silenced = SILENT.with(|s| {
                let mut s = s.borrow_mut();
                s.as_mut().map(|m| *m = info.to_string()).is_some()
            });
            if !silenced {
                previous(info);
            }
        }));
    });
}

/// Runs `input` through `target` once, measured; `floor` is the allocation limit's floor.
pub fn run_case(target: &mut dyn Target, input: &[u8], time_limit: Duration) -> CaseResult {
    install_hook();
    SILENT.with(|s| *s.borrow_mut() = Some(String::new()));
    let t0 = Instant::now();
    alloc::start();
    let outcome = catch_unwind(AssertUnwindSafe(|| target.run_one(input)));
    let stats = alloc::stop();
    let time = t0.elapsed();
    let message = SILENT.with(|s| s.borrow_mut().take()).unwrap_or_default();
    let limit = target.alloc_limit(input);
    let failure = match outcome {
        Err(_) => Some(Failure::Panic(message)),
        Ok(_) if stats.max_single > limit => Some(Failure::Alloc {
            bytes: stats.max_single,
            limit,
        }),
        Ok(_) if time > time_limit => Some(Failure::Slow(time)),
        Ok(_) => None,
    };
    CaseResult {
        accepted: outcome.unwrap_or(false),
        alloc: stats,
        time,
        failure,
    }
}

/// Inputs being mutated: the seeds plus accepted mutants (bounded).
struct Corpus {
    seeds: Vec<Vec<u8>>,
    grown: Vec<Vec<u8>>,
}

const MAX_GROWN: usize = 256;

impl Corpus {
    fn pick(&self, rng: &mut StdRng) -> &[u8] {
        match self.grown.is_empty() || rng.random_bool(0.6) {
            true => &self.seeds[rng.random_range(0..self.seeds.len())],
            false => &self.grown[rng.random_range(0..self.grown.len())],
        }
    }

    fn add(&mut self, rng: &mut StdRng, input: Vec<u8>) {
        match self.grown.len() < MAX_GROWN {
            true => self.grown.push(input),
            false => {
                let i = rng.random_range(0..MAX_GROWN);
                self.grown[i] = input;
            }
        }
    }
}

/// Runs `cfg.cases` cases of `target`; `tick` is called after each case.
pub fn run(target: &mut dyn Target, cfg: &RunConfig, mut tick: impl FnMut(&Report)) -> Report {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let seeds = target.seeds();
    assert!(!seeds.is_empty(), "target {} has no seeds", target.name());
    let keys = target.keys(&seeds);
    let mut corpus = Corpus {
        seeds: seeds.clone(),
        grown: Vec::new(),
    };
    let mut r = Report {
        target: target.name().to_string(),
        ..Report::default()
    };
    let current = Arc::new(Mutex::new(Vec::new()));
    let watchdog = crate::watchdog::Watchdog::start(
        cfg.failure_dir.join(target.name()),
        Arc::clone(&current),
        cfg.time_limit * 30,
    );
    let start = Instant::now();
    let mut total_time = Duration::ZERO;
    for i in 0..cfg.cases {
        let input = match seeds.get(i as usize) {
            Some(s) => s.clone(),
            None => {
                let base = corpus.pick(&mut rng).to_vec();
                target.mutate(&mut rng, &base, &corpus.seeds, &keys)
            }
        };
        current.lock().map(|mut c| c.clone_from(&input)).ok();
        if cfg.save_each {
            let dir = cfg.failure_dir.join(target.name());
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("current.bin"), &input);
        }
        watchdog.begin();
        let res = run_case(target, &input, cfg.time_limit);
        watchdog.end();
        total_time += res.time;
        if (i as usize) < seeds.len() {
            r.seed_max_single_alloc = r.seed_max_single_alloc.max(res.alloc.max_single);
        }
        record(&mut r, cfg, target.name(), &input, &res);
        if res.accepted && res.failure.is_none() && i as usize >= seeds.len() {
            corpus.add(&mut rng, input);
        }
        r.seconds = start.elapsed().as_secs_f64();
        r.mean_time_us = total_time.as_secs_f64() * 1e6 / r.cases.max(1) as f64;
        r.cases_per_s = r.cases as f64 / r.seconds.max(1e-9);
        tick(&r);
    }
    r.complete = true;
    r
}

fn record(r: &mut Report, cfg: &RunConfig, name: &str, input: &[u8], res: &CaseResult) {
    r.cases += 1;
    r.accepted += u64::from(res.accepted);
    let ratio = res.alloc.max_single as f64 / input.len().max(1) as f64;
    r.max_alloc_ratio = r.max_alloc_ratio.max(ratio);
    if input.len() >= LARGE_INPUT {
        r.max_alloc_ratio_large = r.max_alloc_ratio_large.max(ratio);
    }
    if res.alloc.max_single > r.max_single_alloc {
        r.max_single_alloc = res.alloc.max_single;
        r.max_single_alloc_input = input.len();
    }
    r.peak_live = r.peak_live.max(res.alloc.peak_live);
    r.max_input = r.max_input.max(input.len());
    r.max_time_us = r.max_time_us.max(res.time.as_micros() as u64);
    let Some(f) = &res.failure else { return };
    r.failures += 1;
    match f {
        Failure::Panic(_) => r.panics += 1,
        Failure::Alloc { .. } => r.over_alloc += 1,
        Failure::Slow(_) => r.slow += 1,
    }
    if r.messages.len() < 20 {
        r.messages.push(format!("{f:?}"));
    }
    if r.failure_files.len() < cfg.max_failure_files {
        if let Ok(p) = save_failure(&cfg.failure_dir.join(name), input, f) {
            r.failure_files.push(p);
        }
    }
}
