//! A run's report: one row per model (the original, then each stage's output) with its size,
//! bits per parameter, sparsity, parameters (active ones for MoE), held-out ppl, KL from the
//! original and runtime decode speed; the threshold checks on the last row; rendered as
//! `report.json`, `report.md` and `size_vs_ppl.svg`.

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::format::Thresholds;
use crate::error::{CoreError, Result};

/// One measured model.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Row {
    /// `original`, or the stage name.
    pub name: String,
    /// `model`, or the stage kind.
    pub kind: String,
    /// Bytes of weights on disk (safetensors files).
    pub size_bytes: u64,
    /// Parameters.
    pub parameters: usize,
    /// Parameters each token uses (fewer than `parameters` for MoE).
    pub active_parameters: usize,
    /// Bits on disk per parameter (scales and zero points included).
    pub bits_per_param: f64,
    /// Fraction of zeroed weights (from `sparsity_config`; 0 for dense).
    pub sparsity: f64,
    /// Held-out perplexity.
    pub ppl: f64,
    /// Mean KL(original ‖ this) per token (0 for the original).
    pub kld: f64,
    /// Top-1 agreement with the original.
    pub top1_agree: f64,
    /// Runtime decode tokens/s (one sequence), when measured.
    pub decode_tokens_per_s: Option<f64>,
    /// Seconds the stage took (0 for the original, and for a stage resumed from an earlier run).
    pub stage_seconds: f64,
    /// Whether the stage was skipped by `--resume`.
    pub resumed: bool,
}

/// One threshold check.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Check {
    /// The threshold key.
    pub name: String,
    /// Its limit.
    pub limit: f64,
    /// The measured value.
    pub value: f64,
    /// Whether it passed.
    pub passed: bool,
}

/// The whole report.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Report {
    /// Recipe name.
    pub recipe: String,
    /// Original first, then each stage.
    pub rows: Vec<Row>,
    /// Threshold checks on the last row.
    pub checks: Vec<Check>,
    /// True when every check passed.
    pub passed: bool,
}

/// Checks `last` against `t`, with `original` as the baseline.
pub fn check(t: &Thresholds, original: &Row, last: &Row) -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |name: &str, limit: Option<f64>, value: f64, upper: bool| {
        if let Some(limit) = limit {
            let passed = match upper {
                true => value <= limit,
                false => value >= limit,
            };
            out.push(Check {
                name: name.into(),
                limit,
                value,
                passed,
            });
        }
    };
    push(
        "max_ppl_increase",
        t.max_ppl_increase,
        last.ppl / original.ppl - 1.0,
        true,
    );
    push("max_ppl", t.max_ppl, last.ppl, true);
    push("max_kld", t.max_kld, last.kld, true);
    push(
        "min_compression",
        t.min_compression,
        original.size_bytes as f64 / last.size_bytes.max(1) as f64,
        false,
    );
    out
}

impl Report {
    /// The report of `rows` (original first) under `thresholds`.
    pub fn new(recipe: &str, rows: Vec<Row>, thresholds: &Thresholds) -> Self {
        let checks = match (rows.first(), rows.last()) {
            (Some(o), Some(l)) => check(thresholds, o, l),
            _ => Vec::new(),
        };
        Self {
            recipe: recipe.into(),
            passed: checks.iter().all(|c| c.passed),
            rows,
            checks,
        }
    }

    /// The Markdown rendering: the table of rows, then the checks.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Recipe `{}`\n\n", self.recipe);
        s += "| model | stage | size MB | bits/param | sparsity | params M | active M | ppl | KL | top-1 | decode tok/s | seconds |\n";
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.rows {
            let speed = r
                .decode_tokens_per_s
                .map_or("-".into(), |v| format!("{v:.1}"));
            let secs = match r.resumed {
                true => "resumed".to_string(),
                false => format!("{:.1}", r.stage_seconds),
            };
            s += &format!(
                "| {} | {} | {:.2} | {:.2} | {:.1}% | {:.2} | {:.2} | {:.3} | {:.4} | {:.1}% | {} | {} |\n",
                r.name,
                r.kind,
                r.size_bytes as f64 / 1e6,
                r.bits_per_param,
                r.sparsity * 100.0,
                r.parameters as f64 / 1e6,
                r.active_parameters as f64 / 1e6,
                r.ppl,
                r.kld,
                r.top1_agree * 100.0,
                speed,
                secs
            );
        }
        if !self.checks.is_empty() {
            s += "\n| threshold | limit | value | |\n|---|---|---|---|\n";
            for c in &self.checks {
                let mark = if c.passed { "pass" } else { "**FAIL**" };
                s += &format!("| {} | {} | {:.4} | {mark} |\n", c.name, c.limit, c.value);
            }
        }
        s += "\n![size vs ppl](size_vs_ppl.svg)\n";
        s
    }

    /// Writes `report.json`, `report.md` and `size_vs_ppl.svg` into `dir` (atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        use compress_format::atomic::write_atomic;
        let json = serde_json::to_string_pretty(self).expect("report serializes");
        write_atomic(&dir.join("report.json"), json.as_bytes())?;
        write_atomic(&dir.join("report.md"), self.markdown().as_bytes())?;
        write_atomic(&dir.join("size_vs_ppl.svg"), self.svg()?.as_bytes())?;
        Ok(())
    }

    /// The size (MB) vs ppl plot, each model a labelled point, in stage order.
    pub fn svg(&self) -> Result<String> {
        let err = |e: String| CoreError::Invalid(format!("size_vs_ppl.svg: {e}"));
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (720, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            let pts: Vec<(f64, f64)> = self
                .rows
                .iter()
                .map(|r| (r.size_bytes as f64 / 1e6, r.ppl))
                .collect();
            let (xmax, ymax) = pts
                .iter()
                .fold((0f64, 0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
            let ymin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let pad = ((ymax - ymin) * 0.15).max(1e-3);
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("{}: size vs perplexity", self.recipe),
                    ("sans-serif", 20),
                )
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(0f64..xmax * 1.15 + 1e-3, (ymin - pad)..(ymax + pad))
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("weights on disk (MB)")
                .y_desc("held-out ppl")
                .draw()
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), BLUE.mix(0.4)))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(self.rows.iter().zip(&pts).map(|(r, &p)| {
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 4, BLUE.filled())
                        + Text::new(r.name.clone(), (6, -14), ("sans-serif", 14))
                }))
                .map_err(|e| err(e.to_string()))?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, size: u64, ppl: f64, kld: f64) -> Row {
        Row {
            name: name.into(),
            size_bytes: size,
            ppl,
            kld,
            ..Row::default()
        }
    }

    #[test]
    fn thresholds_gate_the_last_row_against_the_original() {
        let t = Thresholds {
            max_ppl_increase: Some(0.05),
            max_kld: Some(0.01),
            min_compression: Some(3.0),
            max_ppl: None,
        };
        let ok = Report::new(
            "r",
            vec![
                row("original", 400, 100.0, 0.0),
                row("q", 100, 104.0, 0.005),
            ],
            &t,
        );
        assert!(ok.passed, "{:?}", ok.checks);
        assert_eq!(ok.checks.len(), 3);
        let bad = Report::new(
            "r",
            vec![
                row("original", 400, 100.0, 0.0),
                row("q", 200, 106.0, 0.005),
            ],
            &t,
        );
        assert!(!bad.passed);
        let failed: Vec<&str> = bad
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["max_ppl_increase", "min_compression"]);
        assert!(bad
            .markdown()
            .contains("| max_ppl_increase | 0.05 | 0.0600 | **FAIL** |"));
    }

    #[test]
    fn the_plot_is_an_svg_with_every_model() {
        let r = Report::new(
            "demo",
            vec![
                row("original", 10_000_000, 110.0, 0.0),
                row("int4", 3_000_000, 115.0, 0.02),
            ],
            &Thresholds::default(),
        );
        let svg = r.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        // plotters writes each label on its own line inside <text>.
        assert!(svg.contains("\nint4\n</text>") && svg.contains("\noriginal\n</text>"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }
}
