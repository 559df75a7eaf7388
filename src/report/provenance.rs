//! Whether a results folder is what today's code and scenario files would make: its recorded
//! numerics version (the stages' arithmetic), its calibration rule, and its scenario (the
//! file and `--set`s it was run with, resolved again now, against the key recorded when it
//! ran). A folder that differs in any of them is stale: rerunning its scenario gives other
//! numbers.

use std::path::{Path, PathBuf};

use crate::experiment::keys::stage_hash;
use crate::experiment::protocol::parse_origin;
use crate::experiment::summary::SummaryRecord;
use crate::scenario::Scenario;

use super::numbers::Numbers;

/// Why a folder is stale (None: it is current).
pub fn stale(dir: &Path) -> Option<String> {
    let n = Numbers::of(dir);
    let numerics = n.as_ref().map_or(1, |n| n.numerics());
    let cur = crate::experiment::folders::NUMERICS;
    if numerics != cur {
        return Some(format!("numerics {numerics}, this code's are {cur}"));
    }
    if dir.join("calibration.csv").exists() {
        let r = n.as_ref().map_or(1, |n| n.calibration_rule());
        let cur = crate::experiment::calibrate::RULE;
        if r < cur {
            return Some(format!("calibration rule {r}, this code's is {cur}"));
        }
    }
    let rows: Vec<SummaryRecord> =
        crate::log::read_csv(&dir.join("summary.csv")).unwrap_or_default();
    let row = |m: &str| rows.iter().find(|r| r.stage == "run" && r.metric == m);
    let (Some(origin), Some(key)) = (row("scenario"), row("scenario key")) else {
        return Some("its scenario is not recorded (made before the `scenario` row)".into());
    };
    let (file, sets) = parse_origin(&origin.value);
    match Scenario::load(&file, &sets) {
        Err(e) => Some(format!("its scenario no longer loads: {e}")),
        Ok(sc) if stage_hash(&sc.resolved_toml) != key.value => {
            Some(format!("`{}` resolves to another scenario now", origin.value))
        }
        Ok(_) => None,
    }
}

/// The results folders under `results` (those with a `summary.csv`), sorted.
pub fn summary_dirs(results: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("summary.csv").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Every results folder under `results` and why it is stale, if it is.
pub fn check(results: &Path) -> Vec<(String, Option<String>)> {
    summary_dirs(results)
        .iter()
        .map(|d| {
            let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            (name, stale(d))
        })
        .collect()
}
