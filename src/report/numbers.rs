//! What the paper computes with from a results folder's summary: its typed `numbers.csv`, or,
//! for a folder written before that file existed, the text of its `summary.csv`. The text
//! readers below are the only place the report parses prose, and they go when every folder has
//! been rerun with this code.

use std::path::Path;

use crate::experiment::{NumberRecord, RunsDone, RunsWork, SummaryRecord};

pub enum Numbers {
    Typed(Vec<NumberRecord>),
    /// A folder from before `numbers.csv`: its `summary.csv` rows.
    Text(Vec<SummaryRecord>),
}

impl Numbers {
    /// The folder's numbers, None without a summary.
    pub fn of(dir: &Path) -> Option<Numbers> {
        if let Ok(ns) = crate::log::read_csv(&dir.join("numbers.csv")) {
            return Some(Numbers::Typed(ns));
        }
        crate::log::read_csv(&dir.join("summary.csv")).ok().map(Numbers::Text)
    }

    fn get(&self, part: &str, quantity: &str) -> Option<f64> {
        self.all(part, quantity).into_iter().next()
    }

    fn all(&self, part: &str, quantity: &str) -> Vec<f64> {
        match self {
            Numbers::Typed(ns) => ns
                .iter()
                .filter(|r| r.part == part && r.quantity == quantity && r.value.is_finite())
                .map(|r| r.value)
                .collect(),
            Numbers::Text(_) => vec![],
        }
    }

    fn rows<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a SummaryRecord> + 'a {
        let rows = match self {
            Numbers::Text(sm) => sm.as_slice(),
            Numbers::Typed(_) => &[],
        };
        rows.iter().filter(move |r| r.stage == stage)
    }

    /// The wall seconds of `part`: `invocation` (tuning, calibration and sweep) or `run` (the
    /// sweep's alone).
    pub fn wall_s(&self, part: &str) -> Option<f64> {
        if let Numbers::Typed(_) = self {
            return self.get(part, "wall_s");
        }
        let text = self.rows(part).find(|r| r.metric == "wall time")?;
        text.value.trim_end_matches(" s").parse().ok()
    }

    /// The runs each stage of the invocation ran and found cached, in the order it ran them.
    pub fn runs_done(&self) -> Vec<(String, RunsDone)> {
        match self {
            Numbers::Typed(ns) => {
                let stages = super::distinct(
                    ns.iter().filter_map(|r| r.part.strip_prefix("runs:").map(String::from)),
                );
                stages
                    .into_iter()
                    .filter_map(|st| {
                        let part = format!("runs:{st}");
                        let ran = self.get(&part, "ran")? as usize;
                        Some((st, RunsDone { ran, cached: self.get(&part, "cached")? as usize }))
                    })
                    .collect()
            }
            Numbers::Text(_) => self
                .rows("invocation")
                .filter_map(|r| {
                    let stage = r.metric.strip_suffix(" runs")?.to_string();
                    Some((stage, RunsDone::parse(&r.value)?))
                })
                .collect(),
        }
    }

    /// `what` = `ledger` (the runs') or `shared` (the shared stages'): (seconds, timed, of),
    /// the protocol's where it has one, else the sweep's.
    pub fn ledger(&self, what: &str) -> Option<(f64, usize, usize)> {
        ["protocol", "run"].iter().find_map(|part| match self {
            Numbers::Typed(_) => Some((
                self.get(part, &format!("{what}_s"))?,
                self.get(part, &format!("{what}_timed"))? as usize,
                self.get(part, &format!("{what}_of"))? as usize,
            )),
            Numbers::Text(_) => {
                let metric = if what == "ledger" { "ledger" } else { "shared ledger" };
                let r = self.rows(part).find(|r| r.metric == metric)?;
                RunsWork::parse_wall(&r.value)
            }
        })
    }

    /// The sweep's model TFLOP as the summary writes it (one decimal).
    pub fn tflop(&self) -> Option<String> {
        if let Numbers::Typed(_) = self {
            return self.get("run", "tflop").map(|t| format!("{t:.1}"));
        }
        let r = self.rows("run").find(|r| r.metric == "profile")?;
        Some(r.value.split(" TFLOP").next()?.rsplit(' ').next()?.to_string())
    }

    /// The reward models' validation accuracies, per seed.
    pub fn reward_accuracies(&self) -> Vec<f64> {
        if let Numbers::Typed(_) = self {
            return self.all("reward", "val_accuracy");
        }
        self.rows("reward")
            .filter(|r| r.metric.starts_with("val accuracy"))
            .filter_map(|r| r.value.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// How often the preference labels agree with gold on pairs of distinct gold, in percent,
    /// per seed, as the summary writes it (`98.7%`).
    pub fn label_agreements(&self) -> Vec<String> {
        if let Numbers::Typed(_) = self {
            let all = self.all("prefs", "label_agreement_pct");
            return all.into_iter().map(|p| format!("{p:.1}%")).collect();
        }
        self.rows("prefs")
            .filter(|r| r.metric == "pairs")
            .filter_map(|r| {
                Some(
                    r.value.split("agree with gold on ").nth(1)?.split('%').next()?.to_string()
                        + "%",
                )
            })
            .collect()
    }

    /// A folder from before the invocation counted its runs: whether its compute rows say some
    /// reported runs were found cached.
    pub fn compute_rows_mention_cached(&self) -> bool {
        self.rows("compute")
            .any(|r| r.value.contains("found cached") || r.value.contains("run in this invocation"))
    }

    /// The numerics the folder was made with (1 where not recorded).
    pub fn numerics(&self) -> u32 {
        if let Numbers::Typed(_) = self {
            return self.get("run", "numerics").map_or(1, |n| n as u32);
        }
        let code = self.rows("run").find(|r| r.metric == "code");
        code.and_then(|c| c.value.rsplit("numerics ").next()?.parse().ok()).unwrap_or(1)
    }

    /// The calibration's search rule (1 where not recorded).
    pub fn calibration_rule(&self) -> u32 {
        if let Numbers::Typed(_) = self {
            return self.get("protocol", "calibration_rule").map_or(1, |n| n as u32);
        }
        let r = self.rows("protocol").find(|r| r.metric == "calibration rule");
        r.and_then(|r| r.value.split(':').next()?.parse().ok()).unwrap_or(1)
    }
}
