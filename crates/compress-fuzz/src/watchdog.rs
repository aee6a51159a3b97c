//! A hang detector: a case still running after its limit has its input written (as
//! `slow-*.bin`) and the process aborted, since a stuck parser cannot be interrupted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Watches the case running on one thread.
pub struct Watchdog {
    started_ms: Arc<AtomicU64>,
    origin: Instant,
}

const IDLE: u64 = u64::MAX;

impl Watchdog {
    /// Starts the watching thread: `current` is the running input, `dir` where it goes.
    pub fn start(dir: PathBuf, current: Arc<Mutex<Vec<u8>>>, limit: Duration) -> Self {
        let started_ms = Arc::new(AtomicU64::new(IDLE));
        let origin = Instant::now();
        let weak = Arc::downgrade(&started_ms);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let Some(started) = weak.upgrade() else {
                return;
            };
            let s = started.load(Ordering::Relaxed);
            let now = origin.elapsed().as_millis() as u64;
            if s != IDLE && now.saturating_sub(s) > limit.as_millis() as u64 {
                let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                let hang = crate::failure::Failure::Slow(Duration::from_millis(now - s));
                let path = crate::failure::save_failure(&dir, &input, &hang);
                eprintln!("fuzz: a case hangs ({hang:?}); input in {path:?}; aborting");
                std::process::abort();
            }
        });
        Self { started_ms, origin }
    }

    /// A case starts.
    pub fn begin(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.started_ms.store(now, Ordering::Relaxed);
    }

    /// The case ended.
    pub fn end(&self) {
        self.started_ms.store(IDLE, Ordering::Relaxed);
    }
}
