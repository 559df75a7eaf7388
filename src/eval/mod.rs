//! Evaluation: statistics and the policy evaluator.

pub mod optimal;
pub mod policy;

pub use policy::Evaluator;

/// A mean with a 95% normal-approximation confidence half-width.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4} ± {:.4} (n={})", self.mean, self.ci95, self.n)
    }
}

pub fn mean_ci(xs: &[f64]) -> Stat {
    let n = xs.len();
    if n == 0 {
        return Stat { mean: f64::NAN, ci95: f64::NAN, n };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    Stat { mean, ci95: 1.96 * (var / n as f64).sqrt(), n }
}

/// Win rate of `scores` against `refs` (ties count one half) with the 95% Wilson score interval
/// for a binomial proportion over the n comparisons: (rate, lo, hi).
pub fn win_rate(scores: &[f64], refs: &[f64]) -> (f64, f64, f64) {
    let n = scores.len().min(refs.len());
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let wins: f64 = scores.iter().zip(refs).map(|(a, b)| if (a - b).abs() < 1e-12 { 0.5 } else if a > b { 1.0 } else { 0.0 }).sum();
    let (p, nf, z) = (wins / n as f64, n as f64, 1.96f64);
    let centre = (p + z * z / (2.0 * nf)) / (1.0 + z * z / nf);
    let half = z / (1.0 + z * z / nf) * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    (p, centre - half, centre + half)
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
