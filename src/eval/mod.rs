//! Evaluation: statistics and the policy evaluator.

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

/// Metric names of an evaluation at another temperature: `eval/x` becomes `eval_t{T}/x`.
pub fn at_temperature(metric: &str, t: f64) -> String {
    metric.replacen("eval/", &format!("eval_t{t}/"), 1)
}
