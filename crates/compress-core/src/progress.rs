//! Progress of long work: indicatif bars and one-line notes on stderr, silent when quiet.
//! Every stage's `run` takes one; the CLI and the recipe runner make it from `-q`.

use std::fmt::Display;

use indicatif::{ProgressBar, ProgressStyle};

/// Where a run shows its progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    /// Bars and notes on stderr unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self { quiet }
    }

    /// Shows nothing (library callers that print their own output).
    pub fn hidden() -> Self {
        Self { quiet: true }
    }

    /// A bar over `total` `unit`s of `what` (hidden when quiet or off a terminal).
    pub fn bar(&self, total: u64, what: &str, unit: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        let template = format!("{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}})");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }

    /// A spinner with a message (hidden when quiet).
    pub fn spinner(&self) -> ProgressBar {
        match self.quiet {
            true => ProgressBar::hidden(),
            false => ProgressBar::new_spinner(),
        }
    }

    /// One line on stderr, unless quiet.
    pub fn note(&self, line: impl Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}
