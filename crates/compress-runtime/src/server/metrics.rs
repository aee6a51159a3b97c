//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the engine's state and the
//! server's counters: sequences running/waiting, KV blocks used/free/cached, preemptions,
//! prompt and generation tokens, finished samples by reason, requests in flight, and the time
//! to first token as a histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::engine_thread::Snapshot;

/// Upper bounds (seconds) of the time-to-first-token buckets.
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// The server's own counters (the engine's come from its [`Snapshot`]).
#[derive(Default)]
pub struct Metrics {
    ttft: Mutex<Histogram>,
    finished_stop: AtomicU64,
    finished_length: AtomicU64,
    finished_abort: AtomicU64,
    in_flight: AtomicU64,
    requests: AtomicU64,
}

/// Counts an HTTP generation request as in flight while it lives.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Records one request's time to its first token.
    pub fn observe_ttft(&self, seconds: f64) {
        let mut h = self.ttft.lock().expect("metrics lock");
        if h.counts.is_empty() {
            h.counts = vec![0; TTFT_BUCKETS.len()];
        }
        if let Some(i) = TTFT_BUCKETS.iter().position(|&b| seconds <= b) {
            h.counts[i] += 1;
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Records a sample that ended for `reason` (`stop`, `length`, `abort`).
    pub fn finished(&self, reason: &str) {
        let c = match reason {
            "stop" => &self.finished_stop,
            "length" => &self.finished_length,
            _ => &self.finished_abort,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a generation request in flight until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The exposition text for the engine state `s`.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let gauges = [
            (
                "compress_num_requests_running",
                "Sequences running in the engine.",
                s.running as u64,
            ),
            (
                "compress_num_requests_waiting",
                "Sequences waiting for KV blocks or a batch slot.",
                s.waiting as u64,
            ),
            (
                "compress_kv_blocks_used",
                "KV cache blocks referenced by live sequences.",
                s.blocks_used as u64,
            ),
            (
                "compress_kv_blocks_free",
                "KV cache blocks allocatable (free or evictable).",
                s.blocks_free as u64,
            ),
            (
                "compress_kv_blocks_cached",
                "KV cache blocks registered in the prefix cache.",
                s.blocks_cached as u64,
            ),
            (
                "compress_kv_blocks_total",
                "KV cache blocks in all.",
                s.blocks_total as u64,
            ),
            (
                "compress_http_requests_in_flight",
                "Generation requests being served.",
                self.in_flight.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            metric(name, "gauge", help, v.to_string());
        }
        let counters = [
            (
                "compress_num_preemptions_total",
                "Sequences preempted for lack of KV blocks.",
                s.preemptions,
            ),
            (
                "compress_prompt_tokens_total",
                "Prompt tokens computed (prefix-cache hits excluded).",
                s.prompt_tokens,
            ),
            (
                "compress_prompt_tokens_cached_total",
                "Prompt tokens served from the prefix cache.",
                s.cached_prompt_tokens,
            ),
            (
                "compress_generation_tokens_total",
                "Tokens generated.",
                s.generated_tokens,
            ),
            (
                "compress_engine_steps_total",
                "Batched forward steps.",
                s.steps,
            ),
            (
                "compress_http_requests_total",
                "Generation requests accepted.",
                self.requests.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            metric(name, "counter", help, v.to_string());
        }
        let name = "compress_request_success_total";
        let _ = writeln!(
            out,
            "# HELP {name} Samples finished, by reason.\n# TYPE {name} counter"
        );
        for (reason, c) in [
            ("stop", &self.finished_stop),
            ("length", &self.finished_length),
            ("abort", &self.finished_abort),
        ] {
            let _ = writeln!(
                out,
                "{name}{{finished_reason=\"{reason}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let h = self.ttft.lock().expect("metrics lock");
        let name = "compress_time_to_first_token_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request to its first token.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, b) in TTFT_BUCKETS.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for s in [0.003, 0.003, 0.3, 20.0] {
            m.observe_ttft(s);
        }
        m.finished("stop");
        let text = m.render(&Snapshot {
            blocks_used: 3,
            ..Snapshot::default()
        });
        assert!(text.contains("compress_kv_blocks_used 3\n"), "{text}");
        assert!(text.contains("compress_time_to_first_token_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("compress_time_to_first_token_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("compress_time_to_first_token_seconds_bucket{le=\"0.5\"} 3\n"));
        assert!(text.contains("compress_time_to_first_token_seconds_bucket{le=\"10\"} 3\n"));
        assert!(text.contains("compress_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("compress_time_to_first_token_seconds_count 4\n"));
        assert!(text.contains("compress_request_success_total{finished_reason=\"stop\"} 1\n"));
    }
}
