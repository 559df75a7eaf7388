//! Evaluation: statistics and the policy evaluator.

pub mod optimal;
pub mod policy;

pub use policy::Evaluator;

pub use crate::stats::{mean_ci, win_rate, Stat};

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
pub fn split_metrics(n_sel: usize, gold: &[f64], kl: Option<&[f64]>, refs: Option<&[f64]>) -> Vec<(String, f64)> {
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
            out.push((format!("eval/winrate_{half}"), win_rate(&gold[range.clone()], &refs[range]).0));
        }
    }
    out
}

/// Metric names of an evaluation at another temperature: `eval/x` becomes `eval_t{T}/x`.
pub fn at_temperature(metric: &str, t: f64) -> String {
    metric.replacen("eval/", &format!("eval_t{t}/"), 1)
}
