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
