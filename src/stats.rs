//! Statistics: means with normal and t-intervals, win rates with Wilson intervals, and paired
//! comparisons of two methods over seeds.
//!
//! A seed fixes the world, SFT, preference data, reward model and evaluation samples for every
//! method, so two methods are compared by their per-seed differences (a paired t-interval), never
//! by the overlap of two unpaired intervals: the seed-to-seed spread they share cancels.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// The two-sided 95% level of every interval, and the power of the detectable difference.
pub const ALPHA: f64 = 0.05;
pub const POWER: f64 = 0.8;

/// The `p` quantile of Student's t with `df` degrees of freedom.
fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).expect("degrees of freedom > 0").inverse_cdf(p)
}

/// Mean and 95% half-width (Student t over `xs.len() - 1` degrees of freedom; 0 for one value).
/// Non-finite values are left out.
pub fn mean_ci_t(xs: &[f64]) -> (f64, f64) {
    let xs: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t_quantile(1.0 - ALPHA / 2.0, (n - 1) as f64) * (var / n as f64).sqrt())
}

/// A paired comparison of A against B over seeds: the differences A - B, their mean with a 95%
/// t-interval, and the smallest true difference a two-sided 5% test would detect with 80% power
/// at the observed spread: (t_{0.975, n-1} + t_{0.8, n-1}) s / sqrt(n).
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    pub diffs: Vec<f64>,
    pub mean: f64,
    pub ci95: f64,
    pub mdd80: f64,
}

/// What a paired interval supports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// The interval lies above 0: A is ahead.
    Above,
    /// The interval lies below 0: A is behind.
    Below,
    /// The interval contains 0 (or there are too few seeds for one).
    Inconclusive,
}

impl Paired {
    /// From per-seed differences; every one must be finite (a seed that did not reach a budget
    /// has no difference there, and the caller leaves the comparison out).
    pub fn new(diffs: &[f64]) -> Paired {
        let n = diffs.len();
        let (mean, ci95) = mean_ci_t(diffs);
        let mdd80 = if n >= 2 {
            let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
            let df = (n - 1) as f64;
            (t_quantile(1.0 - ALPHA / 2.0, df) + t_quantile(POWER, df)) * sd / (n as f64).sqrt()
        } else {
            f64::NAN
        };
        Paired { diffs: diffs.to_vec(), mean, ci95: if n >= 2 { ci95 } else { f64::NAN }, mdd80 }
    }

    pub fn lo(&self) -> f64 {
        self.mean - self.ci95
    }

    pub fn hi(&self) -> f64 {
        self.mean + self.ci95
    }

    pub fn verdict(&self) -> Verdict {
        if !self.ci95.is_finite() {
            Verdict::Inconclusive
        } else if self.lo() > 0.0 {
            Verdict::Above
        } else if self.hi() < 0.0 {
            Verdict::Below
        } else {
            Verdict::Inconclusive
        }
    }

    /// "above", "below", or "inconclusive, detectable difference d" (d at 80% power).
    pub fn verdict_text(&self) -> String {
        match self.verdict() {
            Verdict::Above => "above".into(),
            Verdict::Below => "below".into(),
            Verdict::Inconclusive if self.diffs.len() < 2 => "inconclusive, one seed (no interval)".into(),
            Verdict::Inconclusive => format!("inconclusive, detectable difference {:.3}", self.mdd80),
        }
    }
}

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
