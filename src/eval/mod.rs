//! Evaluation: statistics and the policy evaluator.

pub mod optimal;
pub mod policy;

pub use policy::Evaluator;

pub use crate::stats::{mean_ci, win_rate, Stat};

use serde::{Deserialize, Serialize};

use crate::config::{
    at_least_one, in_range, need, sampling_temperature, ConfigError, MIN_TEMPERATURE,
};

/// `[eval]`: how and when every policy is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many steps (and at the end).
    pub every: usize,
    /// Evaluate every trained run at this many evenly spaced points after step 0 (every
    /// `length / checkpoints` steps or iterations), in place of `every` and each
    /// policy-gradient table's `eval_every`: every method then offers the selected frontier the
    /// same number of candidate checkpoints per run, whatever its length (equal density per
    /// run, not per unit of compute). Absent: `every` and `eval_every` as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<usize>,
    /// Samples per evaluation prompt.
    pub samples_per_prompt: usize,
    /// Sampling temperatures of the final evaluation of every policy (SFT, each method's last
    /// step, Best-of-N): gold reward, KL and, where the world has references, win rate.
    pub temperatures: Vec<f64>,
    /// Sampling temperatures at which every evaluation during training is repeated
    /// (`eval_t{T}/...` at each step): win rate over training at several temperatures (the
    /// DPO paper's Fig. 3 right). Each costs one more evaluation per evaluation step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub curve_temperatures: Vec<f64>,
    /// Sampling temperatures of the final evaluation of every policy on the world's shifted
    /// inputs (`[world.shift]`; metrics `shift_t{T}/...`): generalisation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shift_temperatures: Vec<f64>,
    /// Fraction of the held-out prompts in the selection half: which checkpoint of which
    /// setting a method contributes at a budget is chosen there; the test half is reported.
    pub selection_fraction: f64,
    /// Samples of pi_SFT per prompt behind the importance-sampling frontier (an inner bound of
    /// the optimal one), taken from Best-of-N's candidates; absent: all of them
    /// (samples_per_prompt x the largest N), which the scenario fills in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimal_samples: Option<usize>,
    /// A beta of that frontier is kept only if every prompt's effective sample size is at least
    /// this (past it the point reflects the sample, not pi*).
    pub optimal_min_ess: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            every: 100,
            checkpoints: None,
            samples_per_prompt: 2,
            temperatures: vec![],
            curve_temperatures: vec![],
            shift_temperatures: vec![],
            selection_fraction: 0.5,
            optimal_samples: None,
            optimal_min_ess: 8.0,
        }
    }
}

impl EvalConfig {
    /// The evaluation interval of a run of `length` steps whose own setting is `every`.
    pub fn interval(&self, length: usize, every: usize) -> usize {
        self.checkpoints.map_or(every, |n| (length / n).max(1))
    }

    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("every", self.every, "evaluate every 100 steps (as in the paper)")?;
        if let Some(n) = self.checkpoints {
            in_range("checkpoints", n, 1, 1000, "use e.g. 10")?;
        }
        in_range("samples_per_prompt", self.samples_per_prompt, 1, 1024, "use e.g. 2")?;
        let t = &self.temperatures;
        need(
            t.iter().all(|t| sampling_temperature(*t, true)),
            "temperatures",
            || {
                format!(
                    "every temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, 4] (got {t:?})"
                )
            },
            "use e.g. [0.0, 0.25, 0.5, 0.75, 1.0] (0 is greedy)",
        )?;
        need(
            t.iter().enumerate().all(|(i, v)| !t[..i].contains(v)),
            "temperatures",
            || format!("lists a temperature twice ({t:?})"),
            "list each temperature once",
        )?;
        let c = &self.curve_temperatures;
        need(
            c.iter().all(|t| sampling_temperature(*t, true)),
            "curve_temperatures",
            || {
                format!(
                    "every temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, 4] (got {c:?})"
                )
            },
            "use e.g. [0.25, 0.5, 0.75, 1.0]",
        )?;
        need(
            c.iter().enumerate().all(|(i, v)| !c[..i].contains(v)),
            "curve_temperatures",
            || format!("lists a temperature twice ({c:?})"),
            "list each temperature once",
        )?;
        let c = &self.shift_temperatures;
        need(
            c.iter().all(|t| sampling_temperature(*t, true)),
            "shift_temperatures",
            || {
                format!(
                    "every temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, 4] (got {c:?})"
                )
            },
            "use e.g. [0.0, 0.25]",
        )?;
        need(
            c.iter().enumerate().all(|(i, v)| !c[..i].contains(v)),
            "shift_temperatures",
            || format!("lists a temperature twice ({c:?})"),
            "list each temperature once",
        )?;
        need(
            self.selection_fraction > 0.0 && self.selection_fraction < 1.0,
            "selection_fraction",
            || format!("must be in (0, 1) (got {})", self.selection_fraction),
            "use 0.5: half the held-out prompts choose checkpoints, half report them",
        )?;
        need(
            self.optimal_min_ess.is_finite() && self.optimal_min_ess >= 1.0,
            "optimal_min_ess",
            || format!("must be a number >= 1 (got {})", self.optimal_min_ess),
            "use e.g. 8",
        )
    }
}

/// The metrics of a [`win_rate`]: `eval/winrate` and its interval `eval/winrate_lo|hi`.
pub fn winrate_metrics((rate, lo, hi): (f64, f64, f64)) -> [(&'static str, f64); 3] {
    [("eval/winrate", rate), ("eval/winrate_lo", lo), ("eval/winrate_hi", hi)]
}

/// How many of `n_prompts` held-out prompts form the selection half (the first ones; the rest
/// are the test half): `fraction` of them rounded, at least one on each side. Prompts are drawn
/// i.i.d. by the world, so the first ones are as random a half as any.
pub fn selection_prompts(n_prompts: usize, fraction: f64) -> usize {
    if n_prompts < 2 {
        return 0;
    }
    ((n_prompts as f64 * fraction).round() as usize).clamp(1, n_prompts - 1)
}

/// The metrics of one evaluation on the selection half (`{name}_sel`) and the test half
/// (`{name}_test`) of its rows, rows `..n_sel` being the selection half: gold reward and KL, and
/// the win rate where `refs` holds each row's reference reward.
pub fn split_metrics(
    n_sel: usize,
    gold: &[f64],
    kl: Option<&[f64]>,
    refs: Option<&[f64]>,
) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if n_sel == 0 || n_sel >= gold.len() {
        return out;
    }
    for (half, range) in [("sel", 0..n_sel), ("test", n_sel..gold.len())] {
        let g = mean_ci(&gold[range.clone()]);
        out.push((format!("eval/gold_{half}"), g.mean));
        out.push((format!("eval/gold_ci_{half}"), g.ci95));
        if let Some(kl) = kl {
            out.push((format!("eval/kl_{half}"), mean_ci(&kl[range.clone()]).mean));
        }
        if let Some(refs) = refs {
            out.push((
                format!("eval/winrate_{half}"),
                win_rate(&gold[range.clone()], &refs[range]).0,
            ));
        }
    }
    out
}

/// Metric names of an evaluation at another temperature: `eval/x` becomes `eval_t{T}/x`.
pub fn at_temperature(metric: &str, t: f64) -> String {
    metric.replacen("eval/", &format!("eval_t{t}/"), 1)
}
