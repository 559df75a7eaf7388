//! Statistics: means with normal and t-intervals, win rates with Wilson intervals, paired
//! comparisons of two methods over seeds, and the upper concave envelope of (KL, reward) points
//! with its value at a KL budget (used by the report and by the tuning's selection).
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
            let sd =
                (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
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

    /// The two-sided p-value of the paired t-test of mean 0 (NaN with fewer than two seeds;
    /// with no spread, 0 for a non-zero mean and 1 for a zero one). It is below [`ALPHA`]
    /// exactly when the 95% interval excludes 0.
    pub fn p_value(&self) -> f64 {
        let n = self.diffs.len();
        if n < 2 {
            return f64::NAN;
        }
        let sd = (self.diffs.iter().map(|d| (d - self.mean).powi(2)).sum::<f64>() / (n - 1) as f64)
            .sqrt();
        if sd == 0.0 {
            return if self.mean == 0.0 { 1.0 } else { 0.0 };
        }
        let t = self.mean.abs() / (sd / (n as f64).sqrt());
        let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("degrees of freedom > 0");
        (2.0 * (1.0 - dist.cdf(t))).clamp(0.0, 1.0)
    }

    /// `above` or `below` where the interval excludes 0 on that side, else
    /// [`Paired::verdict_text`]'s "inconclusive, detectable difference d": the verdict in the
    /// words of what is compared.
    pub fn verdict_words(&self, above: &str, below: &str) -> String {
        match self.verdict() {
            Verdict::Above => above.to_string(),
            Verdict::Below => below.to_string(),
            Verdict::Inconclusive => self.verdict_text(),
        }
    }

    /// "above", "below", or "inconclusive, detectable difference d" (d at 80% power).
    pub fn verdict_text(&self) -> String {
        match self.verdict() {
            Verdict::Above => "above".into(),
            Verdict::Below => "below".into(),
            Verdict::Inconclusive if self.diffs.len() < 2 => {
                "inconclusive, one seed (no interval)".into()
            }
            Verdict::Inconclusive => {
                format!("inconclusive, detectable difference {:.3}", self.mdd80)
            }
        }
    }
}

/// The indices of the finite p-values, by ascending value.
fn ascending_finite(ps: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ps.len()).filter(|&i| ps[i].is_finite()).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    order
}

/// Holm's step-down adjustment of a family's p-values (family-wise error at the level one
/// reads them at): sorted ascending, the k-th (from 0) becomes max over j <= k of
/// min(1, (m - j) p_(j)). NaN p-values (no test) are left out of the family and stay NaN.
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let order = ascending_finite(ps);
    let m = order.len();
    let mut out = vec![f64::NAN; ps.len()];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Benjamini and Hochberg's step-up adjustment (false discovery rate): sorted ascending, the
/// k-th of m (from 1) becomes min over j >= k of min(1, m p_(j) / j). NaN p-values are left
/// out and stay NaN.
pub fn benjamini_hochberg(ps: &[f64]) -> Vec<f64> {
    let order = ascending_finite(ps);
    let m = order.len();
    let mut out = vec![f64::NAN; ps.len()];
    let mut running = 1.0f64;
    for (k, &i) in order.iter().enumerate().rev() {
        running = running.min((m as f64 * ps[i] / (k + 1) as f64).min(1.0));
        out[i] = running;
    }
    out
}

/// What two one-sided tests (TOST) at level [`ALPHA`] say of paired differences against an
/// equivalence margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Equivalence {
    /// The 90% t-interval lies inside (-margin, margin): both one-sided tests reject.
    Equivalent,
    /// The 90% t-interval lies wholly past the margin on one side.
    Different,
    /// Neither (or fewer than two seeds).
    Inconclusive,
}

impl Equivalence {
    pub fn name(self) -> &'static str {
        match self {
            Equivalence::Equivalent => "equivalent",
            Equivalence::Different => "different",
            Equivalence::Inconclusive => "inconclusive",
        }
    }
}

/// TOST of `diffs` (finite, paired by seed) against `margin`: the mean, the 90% t-interval's
/// half-width (the interval of two one-sided 5% tests) and the verdict.
pub fn tost(diffs: &[f64], margin: f64) -> (f64, f64, Equivalence) {
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 {
        return (mean, f64::NAN, Equivalence::Inconclusive);
    }
    let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let hw = t_quantile(1.0 - ALPHA, (n - 1) as f64) * sd / (n as f64).sqrt();
    let verdict = if mean - hw > -margin && mean + hw < margin {
        Equivalence::Equivalent
    } else if mean - hw >= margin || mean + hw <= -margin {
        Equivalence::Different
    } else {
        Equivalence::Inconclusive
    };
    (mean, hw, verdict)
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
    let var = if n > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    Stat { mean, ci95: 1.96 * (var / n as f64).sqrt(), n }
}

/// Win rate of `scores` against `refs` (ties count one half) with the 95% Wilson score interval
/// for a binomial proportion over the n comparisons: (rate, lo, hi).
pub fn win_rate(scores: &[f64], refs: &[f64]) -> (f64, f64, f64) {
    let n = scores.len().min(refs.len());
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let wins: f64 = scores
        .iter()
        .zip(refs)
        .map(|(a, b)| {
            if (a - b).abs() < 1e-12 {
                0.5
            } else if a > b {
                1.0
            } else {
                0.0
            }
        })
        .sum();
    let (p, nf, z) = (wins / n as f64, n as f64, 1.96f64);
    let centre = (p + z * z / (2.0 * nf)) / (1.0 + z * z / nf);
    let half = z / (1.0 + z * z / nf) * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    (p, centre - half, centre + half)
}

/// The upper concave envelope of (KL, reward) points, sorted by KL.
///
/// Why concave: a mixture of two policies has reward equal to the mixture of their rewards and,
/// KL being convex, KL at most the mixture of their KLs, so every point on a chord between two
/// evaluated policies is attainable (at that KL or less). Points left of the envelope's best
/// reward that are dominated are dropped; the envelope never decreases.
pub fn envelope(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    envelope_indices(points).into_iter().map(|i| (points[i].0.max(0.0), points[i].1)).collect()
}

/// The indices of the points that form the [`envelope`], in KL order.
pub fn envelope_indices(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> =
        (0..points.len()).filter(|&i| points[i].0.is_finite() && points[i].1.is_finite()).collect();
    let kl = |i: usize| points[i].0.max(0.0);
    idx.sort_by(|&a, &b| {
        kl(a).total_cmp(&kl(b)).then(points[b].1.total_cmp(&points[a].1)).then(a.cmp(&b))
    });
    // Monotone chain for the upper hull.
    let mut hull: Vec<usize> = Vec::new();
    for i in idx {
        let p = (kl(i), points[i].1);
        if let Some(&last) = hull.last() {
            if p.0 == kl(last) {
                continue; // the same KL with a lower reward (sorted by reward, descending)
            }
        }
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            let (a, b) = ((kl(a), points[a].1), (kl(b), points[b].1));
            // Drop b if it lies on or below the chord from a to p.
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(i);
    }
    // Keep the rising part: past the best reward, more KL buys nothing.
    if let Some(best) = hull
        .iter()
        .enumerate()
        .max_by(|a, b| points[*a.1].1.total_cmp(&points[*b.1].1))
        .map(|(i, _)| i)
    {
        hull.truncate(best + 1);
    }
    hull
}

/// The envelope's reward at KL `budget`: linear between envelope points, flat after the last
/// one (more KL budget than used), NaN below the first (the budget is not reached).
pub fn at_budget(env: &[(f64, f64)], budget: f64) -> f64 {
    if env.is_empty() || budget < env[0].0 {
        return f64::NAN;
    }
    for w in env.windows(2) {
        let ((k0, r0), (k1, r1)) = (w[0], w[1]);
        if budget <= k1 {
            return r0 + (r1 - r0) * (budget - k0) / (k1 - k0);
        }
    }
    env[env.len() - 1].1
}

/// The distinct items, in order of first appearance.
pub fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}
