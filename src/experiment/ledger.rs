//! What runs cost: each run's work at its last evaluation, per method and over a set of runs, and
//! the cost ledger of own wall seconds kept in the run and stage folders.

use super::folders;
use super::folders::{cached_timing, own_walls, shared_dirs};
use super::options::RunOptions;
use super::scenario::Scenario;
use crate::log::Metrics;

/// Per method, the mean over its runs (settings x seeds) of each run's final compute, in
/// [`WORK`] order.
pub fn compute_totals(evals: &Metrics) -> Vec<(String, usize, Vec<f64>)> {
    use crate::profile::WORK;
    let last = run_work(evals);
    let methods = {
        let mut m: Vec<String> = Vec::new();
        for (k, _) in &last {
            if !m.contains(&k.0) {
                m.push(k.0.clone());
            }
        }
        m
    };
    methods
        .into_iter()
        .map(|m| {
            let runs: Vec<&crate::profile::Work> =
                last.iter().filter(|(k, _)| k.0 == m).map(|(_, v)| v).collect();
            let mean = (0..WORK.len())
                .map(|i| runs.iter().map(|v| v[i]).sum::<f64>() / runs.len() as f64)
                .collect();
            (m, runs.len(), mean)
        })
        .collect()
}

/// Each run's work, (method, setting, seed) and its `compute/*` rows at its last evaluation.
pub fn run_work(evals: &Metrics) -> Vec<((String, String, u64), crate::profile::Work)> {
    use crate::profile::{Work, WORK};
    let mut last: Vec<((String, String, u64), usize, Work)> = Vec::new();
    for r in evals.rows.iter().filter(|r| r.metric.starts_with("compute/")) {
        let Some(i) = WORK.iter().position(|w| r.metric == format!("compute/{w}")) else {
            continue;
        };
        let key = (r.method.clone(), r.setting.clone(), r.seed);
        match last.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, step, v)) if r.step > *step => {
                *step = r.step;
                *v = [f64::NAN; WORK.len()];
                v[i] = r.value;
            }
            Some((_, step, v)) if r.step == *step => v[i] = r.value,
            Some(_) => {}
            None => {
                let mut v = [f64::NAN; WORK.len()];
                v[i] = r.value;
                last.push((key, r.step, v));
            }
        }
    }
    last.into_iter().map(|(k, _, v)| (k, v)).collect()
}

/// The work of a set of method runs (a protocol's tuning, its calibration, its sweep): how many
/// and the sum of their work. A Best-of-N point is charged N/N_max of its seed's candidates, so
/// the sweep takes each seed's largest N, the candidates drawn once.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunsWork {
    pub runs: usize,
    pub work: crate::profile::Work,
    /// The cost ledger: the runs' own wall seconds (`{method}/time/run_s` of their folders'
    /// `timing.csv`), whether they ran in this invocation or an earlier one, and how many runs
    /// had one (folders written before it was kept have none).
    pub wall_s: f64,
    pub timed: usize,
}

impl RunsWork {
    /// Add the runs in `evals` (one run's or a sweep's `eval.csv`).
    pub fn add(&mut self, evals: &Metrics) {
        let all = run_work(evals);
        // Each seed's Best-of-N point with the most work (its largest N).
        let mut bon_max: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
        for (k, w) in all.iter().filter(|(k, _)| k.0 == "best_of_n") {
            let m = bon_max.entry(k.2).or_insert(f64::MIN);
            *m = m.max(w[0]);
        }
        for (k, w) in &all {
            if k.0 == "best_of_n" && w[0] < bon_max[&k.2] {
                continue;
            }
            self.runs += 1;
            crate::profile::add_work(&mut self.work, w, 1.0);
        }
    }

    /// Add the runs' own wall times in `timing` (one run's or a sweep's `timing.csv`).
    pub fn add_timing(&mut self, timing: &Metrics) {
        for secs in folders::own_walls(timing) {
            self.wall_s += secs;
            self.timed += 1;
        }
    }

    /// Add another set's runs and work.
    pub fn absorb(&mut self, other: &RunsWork) {
        self.runs += other.runs;
        crate::profile::add_work(&mut self.work, &other.work, 1.0);
        self.wall_s += other.wall_s;
        self.timed += other.timed;
    }

    /// The ledger as `summary.csv` gives it: `5321.4 s over 158 of 158 runs`.
    pub fn wall_line(&self) -> String {
        self.wall_ledger().line("runs")
    }

    /// The ledger as a [`Ledger`] of runs.
    pub fn wall_ledger(&self) -> Ledger {
        Ledger { wall_s: self.wall_s, timed: self.timed, stages: self.runs }
    }

    /// The ledger back from [`RunsWork::wall_line`]'s text: (seconds, runs timed, runs).
    pub fn parse_wall(text: &str) -> Option<(f64, usize, usize)> {
        let (s, rest) = text.split_once(" s over ")?;
        let (timed, rest) = rest.split_once(" of ")?;
        let runs = rest.split(' ').next()?;
        Some((s.parse().ok()?, timed.parse().ok()?, runs.parse().ok()?))
    }

    /// As `summary.csv` gives it.
    pub fn line(&self) -> String {
        let w = &self.work;
        format!("{} runs: {:.3} TFLOP, {:.0} optimiser steps, {:.0} samples, {:.0} reward-model and {:.0} gold queries", self.runs, w[0] / 1e3, w[3], w[4], w[5], w[6])
    }
}

/// The shared stages' part of the cost ledger (see [`folders::shared_ledger`]): their own wall
/// seconds, how many stage folders kept one, and how many there are.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ledger {
    pub wall_s: f64,
    pub timed: usize,
    pub stages: usize,
}

impl Ledger {
    /// Over every seed in `seeds`, each once.
    pub fn of_seeds(sc: &Scenario, opts: &RunOptions, seeds: &[u64]) -> Ledger {
        let max_threads = (opts.threads as i32).max(tch::get_num_threads());
        let mut all = Ledger::default();
        for &seed in seeds.iter().collect::<std::collections::BTreeSet<_>>() {
            all.absorb(&shared_ledger(&sc.with_seed(seed), opts, max_threads));
        }
        all
    }

    /// Add another ledger's stages.
    pub fn absorb(&mut self, other: &Ledger) {
        self.wall_s += other.wall_s;
        self.timed += other.timed;
        self.stages += other.stages;
    }

    /// Its numbers in `summary` under `part`: `{what}_s`, `{what}_timed`, `{what}_of`.
    pub fn numbers(&self, summary: &mut super::Summary, part: &str, what: &str) {
        summary.number(part, &format!("{what}_s"), self.wall_s);
        summary.number(part, &format!("{what}_timed"), self.timed as f64);
        summary.number(part, &format!("{what}_of"), self.stages as f64);
    }

    /// As `summary.csv` gives it: `812.3 s over 27 of 28 stages`, read back by
    /// [`RunsWork::parse_wall`].
    pub fn line(&self, unit: &str) -> String {
        format!("{:.1} s over {} of {} {unit}", self.wall_s, self.timed, self.stages)
    }
}

/// The shared part of the cost ledger for one seed: the wall seconds each folder of
/// [`shared_dirs`] kept when it ran. A reference folder that does not exist was never computed
/// and costs nothing; any other folder without its time counts as not timed.
pub fn shared_ledger(sc: &Scenario, opts: &RunOptions, max_threads: i32) -> Ledger {
    let dirs = shared_dirs(sc, opts, max_threads);
    let mut ledger = Ledger::default();
    for (dir, always) in dirs {
        if !always && !dir.exists() {
            continue;
        }
        ledger.stages += 1;
        if let Some(secs) = own_walls(&cached_timing(&dir).unwrap_or_default()).next() {
            ledger.wall_s += secs;
            ledger.timed += 1;
        }
    }
    ledger
}
