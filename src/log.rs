//! Long-format metric rows (`method,setting,seed,step,metric,value`) and atomic file writes.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub method: String,
    pub setting: String,
    pub seed: u64,
    pub step: usize,
    pub metric: String,
    pub value: f64,
}

#[derive(Default, Debug)]
pub struct Metrics {
    pub rows: Vec<Row>,
}

pub const HEADER: &str = "method,setting,seed,step,metric,value";

impl Metrics {
    pub fn push(&mut self, method: &str, setting: &str, seed: u64, step: usize, metric: &str, value: f64) {
        self.rows.push(Row { method: method.into(), setting: setting.into(), seed, step, metric: metric.into(), value });
    }

    /// Split off the wall-clock rows (`.../time/...` and the profile, `profile/...`), which
    /// differ between identical runs: (deterministic rows, timing rows).
    pub fn split_timing(&self) -> (Metrics, Metrics) {
        let (t, d): (Vec<Row>, Vec<Row>) = self.rows.iter().cloned().partition(|r| r.metric.contains("/time/") || r.metric.starts_with("profile/"));
        (Metrics { rows: d }, Metrics { rows: t })
    }

    pub fn extend(&mut self, other: Metrics) {
        self.rows.extend(other.rows);
    }

    /// CSV text; floats use Rust's shortest round-trip form, so equal runs give equal bytes.
    pub fn to_csv(&self) -> String {
        let mut s = String::with_capacity(64 * self.rows.len() + 64);
        s.push_str(HEADER);
        s.push('\n');
        for r in &self.rows {
            let _ = writeln!(s, "{},{},{},{},{},{}", r.method, r.setting, r.seed, r.step, r.metric, r.value);
        }
        s
    }

    /// A cached metrics file of a run folder; a missing or corrupt one is an error naming the
    /// file and the fix (delete the folder, so the stage is recomputed).
    pub fn read(path: &Path) -> Result<Metrics> {
        let dir = path.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}; fix: delete {dir} so the stage is recomputed", path.display()))?;
        Metrics::from_csv(&text).with_context(|| format!("corrupt {}; fix: delete {dir} so the stage is recomputed", path.display()))
    }

    pub fn from_csv(text: &str) -> Result<Metrics> {
        let mut m = Metrics::default();
        for (i, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 6 {
                anyhow::bail!("line {}: expected 6 fields ({HEADER}), found {}", i + 1, f.len());
            }
            let parse_err = |what: &str| format!("line {}: bad {what}", i + 1);
            m.rows.push(Row {
                method: f[0].into(),
                setting: f[1].into(),
                seed: f[2].parse().with_context(|| parse_err("seed"))?,
                step: f[3].parse().with_context(|| parse_err("step"))?,
                metric: f[4].into(),
                value: f[5].parse().with_context(|| parse_err("value"))?,
            });
        }
        Ok(m)
    }

    /// Last value of a metric, if logged.
    pub fn last(&self, metric: &str) -> Option<f64> {
        self.rows.iter().rev().find(|r| r.metric == metric).map(|r| r.value)
    }
}

/// Write a file atomically: a temp file in the same folder, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("{}.partial", path.extension().and_then(|e| e.to_str()).unwrap_or("tmp")));
    if let Err(e) = std::fs::write(&tmp, bytes) {
        // The previous file, if any, is untouched: only the partial one is removed.
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot write {}: {e} (is the disk full?); fix: free space on that disk or write elsewhere (--results, --runs); the previous file is untouched", path.display());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}
