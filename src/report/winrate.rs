//! Win rates against the reference responses (summarize world): by sampling temperature at the
//! end of training (the paper's Fig. 2 right) and over training steps (Fig. 3 right).
//!
//! One seed: the 95% Wilson interval of the win rate over the evaluation samples. Several
//! seeds: the mean over seeds with a 95% t-interval over seeds (training variance included).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::distinct;
use super::frontier::mean_ci_t;
use crate::experiment::Metrics;

/// One policy's win rate at one temperature (or step).
#[derive(Clone, Debug)]
pub struct WinRow {
    pub method: String,
    pub setting: String,
    /// The temperature, or the step for the curves over training.
    pub x: f64,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub seeds: usize,
}

impl WinRow {
    pub fn label(&self) -> String {
        if self.setting.is_empty() {
            self.method.clone()
        } else {
            format!("{} {}", self.method, self.setting)
        }
    }
}

/// The temperature of an `eval_t{T}/winrate` metric.
pub(super) fn temperature_of(metric: &str) -> Option<f64> {
    temperature_in("eval_t", metric)
}

/// The temperature of a `{family}{T}/winrate` metric (`eval_t`, or `shift_t` on shifted inputs).
pub(super) fn temperature_in(family: &str, metric: &str) -> Option<f64> {
    metric.strip_prefix(family)?.strip_suffix("/winrate")?.parse().ok()
}

/// Mean and interval over seeds of per-seed (rate, lo, hi).
fn combine(method: &str, setting: &str, x: f64, per_seed: &[(f64, f64, f64)]) -> WinRow {
    let (mean, lo, hi) = if per_seed.len() == 1 {
        per_seed[0]
    } else {
        let v: Vec<f64> = per_seed.iter().map(|p| p.0).collect();
        let (m, ci) = mean_ci_t(&v);
        (m, m - ci, m + ci)
    };
    WinRow {
        method: method.into(),
        setting: setting.into(),
        x,
        mean,
        lo,
        hi,
        seeds: per_seed.len(),
    }
}

type Key = (String, String, u64, usize);

/// Every (method, setting, seed, step)'s metrics.
pub(super) fn by_run(evals: &Metrics) -> (Vec<Key>, BTreeMap<Key, BTreeMap<String, f64>>) {
    let mut order = Vec::new();
    let mut map: BTreeMap<Key, BTreeMap<String, f64>> = BTreeMap::new();
    for r in &evals.rows {
        let k = (r.method.clone(), r.setting.clone(), r.seed, r.step);
        if !map.contains_key(&k) {
            order.push(k.clone());
        }
        map.entry(k).or_default().insert(r.metric.clone(), r.value);
    }
    (order, map)
}

/// Win rate against the references at each final-evaluation temperature, per policy.
/// Per seed: the step and its (win rate, lower, upper).
type PerSeed = BTreeMap<u64, (usize, Triple)>;
/// A win rate with its interval: (value, lower, upper).
type Triple = (f64, f64, f64);

pub fn by_temperature(evals: &Metrics) -> Vec<WinRow> {
    let (order, map) = by_run(evals);
    // Per (method, setting): per temperature: per seed (the last step that has it).
    let mut acc: Vec<((String, String), BTreeMap<u64, PerSeed>)> = Vec::new();
    for k in &order {
        let m = &map[k];
        for (metric, &w) in m {
            let Some(t) = temperature_of(metric) else {
                continue;
            };
            let prefix = format!("eval_t{t}/");
            let (lo, hi) = (
                m.get(&format!("{prefix}winrate_lo")).copied().unwrap_or(f64::NAN),
                m.get(&format!("{prefix}winrate_hi")).copied().unwrap_or(f64::NAN),
            );
            let id = (k.0.clone(), k.1.clone());
            let i = match acc.iter().position(|a| a.0 == id) {
                Some(i) => i,
                None => {
                    acc.push((id, BTreeMap::new()));
                    acc.len() - 1
                }
            };
            let slot = acc[i].1.entry(t.to_bits()).or_default();
            if slot.get(&k.2).is_none_or(|s| s.0 <= k.3) {
                slot.insert(k.2, (k.3, (w, lo, hi)));
            }
        }
    }
    let mut out = Vec::new();
    for ((method, setting), temps) in acc {
        let mut ts: Vec<(f64, Vec<Triple>)> = temps
            .into_iter()
            .map(|(t, seeds)| (f64::from_bits(t), seeds.into_values().map(|v| v.1).collect()))
            .collect();
        ts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (t, per_seed) in ts {
            out.push(combine(&method, &setting, t, &per_seed));
        }
    }
    out
}

/// Win rate over training steps, per run: at the evaluation temperature (`eval/winrate`), and
/// at each curve temperature (`eval_t{T}/winrate` logged at two steps or more; the setting
/// then ends in `T=..`).
pub fn by_step(evals: &Metrics) -> Vec<WinRow> {
    let (order, map) = by_run(evals);
    // (metric prefix, label suffix) of every win-rate curve: the evaluation temperature's and
    // each other temperature's (a run has a curve there only if it logged two steps or more).
    let mut curves = vec![("eval/".to_string(), String::new())];
    let mut temps: Vec<f64> =
        order.iter().flat_map(|k| map[k].keys().filter_map(|m| temperature_of(m))).collect();
    temps.sort_by(|a, b| a.total_cmp(b));
    temps.dedup();
    curves.extend(temps.iter().map(|t| (format!("eval_t{t}/"), format!("T={t}"))));
    let mut out = Vec::new();
    for (prefix, suffix) in &curves {
        let win = format!("{prefix}winrate");
        let runs = distinct(
            order.iter().filter(|k| map[*k].contains_key(&win)).map(|k| (k.0.clone(), k.1.clone())),
        );
        for (method, setting) in runs {
            let mut steps: BTreeMap<usize, Vec<(f64, f64, f64)>> = BTreeMap::new();
            for k in order.iter().filter(|k| k.0 == method && k.1 == setting) {
                let m = &map[k];
                if let Some(&w) = m.get(&win) {
                    steps.entry(k.3).or_default().push((
                        w,
                        m.get(&format!("{win}_lo")).copied().unwrap_or(f64::NAN),
                        m.get(&format!("{win}_hi")).copied().unwrap_or(f64::NAN),
                    ));
                }
            }
            // One point (a final evaluation only) is no curve.
            if !suffix.is_empty() && steps.len() < 2 {
                continue;
            }
            let label = [setting.as_str(), suffix.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            for (step, per_seed) in steps {
                out.push(combine(&method, &label, step as f64, &per_seed));
            }
        }
    }
    out
}

/// The policies of the temperature figure: each run, and Best-of-N at its largest N only.
pub fn shown(rows: &[WinRow]) -> Vec<String> {
    let max_n = rows
        .iter()
        .filter(|r| r.method == "best_of_n")
        .filter_map(|r| r.setting.strip_prefix("n=")?.parse::<usize>().ok())
        .max();
    let largest = max_n.map(|n| format!("n={n}"));
    distinct(
        rows.iter()
            .filter(|r| r.method != "best_of_n" || Some(&r.setting) == largest.as_ref())
            .map(|r| r.label()),
    )
}

/// `winrate.csv`.
/// One row of `winrate.csv`: a policy's win rate at a temperature or a training step.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WinrateRecord {
    pub method: String,
    pub setting: String,
    pub axis: String,
    #[serde(with = "crate::log::float_text")]
    pub x: f64,
    #[serde(with = "crate::log::float_text")]
    pub winrate: f64,
    #[serde(with = "crate::log::float_text")]
    pub lo95: f64,
    #[serde(with = "crate::log::float_text")]
    pub hi95: f64,
    pub seeds: usize,
}

pub fn csv(temp: &[WinRow], steps: &[WinRow]) -> String {
    let mut records = Vec::new();
    for (axis, rows) in [("temperature", temp), ("step", steps)] {
        for r in rows {
            records.push(WinrateRecord {
                method: r.method.clone(),
                setting: r.setting.clone(),
                axis: axis.into(),
                x: r.x,
                winrate: r.mean,
                lo95: r.lo,
                hi95: r.hi,
                seeds: r.seeds,
            });
        }
    }
    crate::log::csv_text(&records)
}

/// Markdown: a policy-by-temperature table of win rates with their intervals.
pub fn markdown(temp: &[WinRow]) -> String {
    let mut ts: Vec<f64> = temp.iter().map(|r| r.x).collect();
    ts.sort_by(|a, b| a.total_cmp(b));
    ts.dedup();
    let seeds = temp.iter().map(|r| r.seeds).max().unwrap_or(0);
    let how = if seeds > 1 {
        format!("mean over {seeds} seeds, 95% t-interval over seeds")
    } else {
        "95% Wilson interval over the evaluation samples".to_string()
    };
    let mut s =
        format!("## Win rate against the references by sampling temperature ({how})\n\n| policy |");
    for t in &ts {
        let _ = write!(s, " T = {t} |");
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(ts.len()));
    for l in distinct(temp.iter().map(|r| r.label())) {
        let _ = write!(s, "| {l} |");
        for t in &ts {
            match temp.iter().find(|r| r.label() == l && r.x == *t) {
                Some(r) => {
                    let _ = write!(s, " {:.3} [{:.3}, {:.3}] |", r.mean, r.lo, r.hi);
                }
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}
