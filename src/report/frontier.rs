//! Reward-vs-KL frontiers: envelopes, values at KL budgets with confidence intervals over seeds,
//! the optimal frontier by self-normalised importance sampling, and Gao et al.'s fits.

pub use crate::stats::{at_budget, envelope, envelope_indices};

/// One evaluated policy seen on two disjoint halves of the held-out prompts: the selection half
/// (which decides what a method contributes) and the test half (what is reported).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitPoint {
    pub kl_sel: f64,
    pub gold_sel: f64,
    pub kl_test: f64,
    pub gold_test: f64,
}

/// What a set of policies offers at KL `budget`, chosen on the selection half and reported on
/// the test half: the selection half's envelope names the two policies (or one) and the mixture
/// weight that reach the budget; the result is that mixture's test-half (gold, KL). None when no
/// policy's selection-half KL reaches the budget: a value is never read past the KL evaluated.
pub fn selected_at_budget(points: &[SplitPoint], budget: f64) -> Option<(f64, f64)> {
    let reach =
        points.iter().map(|p| p.kl_sel).filter(|k| k.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    if reach < budget {
        return None;
    }
    let sel: Vec<(f64, f64)> = points.iter().map(|p| (p.kl_sel, p.gold_sel)).collect();
    let hull = envelope_indices(&sel);
    let kl = |i: usize| sel[i].0.max(0.0);
    let first = *hull.first()?;
    if budget < kl(first) {
        return None;
    }
    for w in hull.windows(2) {
        let (i, j) = (w[0], w[1]);
        if budget <= kl(j) {
            let lam = (budget - kl(i)) / (kl(j) - kl(i));
            let (a, b) = (points[i], points[j]);
            return Some((
                (1.0 - lam) * a.gold_test + lam * b.gold_test,
                (1.0 - lam) * a.kl_test + lam * b.kl_test,
            ));
        }
    }
    let last = points[*hull.last()?];
    Some((last.gold_test, last.kl_test))
}

/// The old procedure on the test half alone: the envelope chosen and read on the same samples
/// (no extrapolation either). Its excess over [`selected_at_budget`] is the selection bias.
pub fn same_sample_at_budget(points: &[SplitPoint], budget: f64) -> Option<f64> {
    let test: Vec<(f64, f64)> = points.iter().map(|p| (p.kl_test, p.gold_test)).collect();
    let reach =
        test.iter().map(|p| p.0).filter(|k| k.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    (reach >= budget).then(|| at_budget(&envelope(&test), budget)).filter(|v| v.is_finite())
}

pub use crate::stats::mean_ci_t;

pub use crate::eval::optimal::{optimal_frontier, IsPoint};

/// Gao et al. (2022) functional forms in d = sqrt(KL), for the reward gain over the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FitForm {
    /// R(d) = d (a - b d): Best-of-N.
    BestOfN,
    /// R(d) = d (a - b log d): RL.
    Rl,
}

/// Least-squares fit of (a, b) and R^2 to points (KL, gain). None with fewer than 3 points,
/// when the points do not span a range of d (the smallest d above half the largest: two
/// parameters would be fitted to one cluster) or for a singular system.
pub fn fit_gao(points: &[(f64, f64)], form: FitForm) -> Option<(f64, f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(k, r)| k.is_finite() && r.is_finite() && *k > 0.0)
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let (dmin, dmax) = pts
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.0.sqrt()), hi.max(p.0.sqrt())));
    if dmin > 0.5 * dmax {
        return None;
    }
    // gain = a * f1(d) + b * f2(d), f1 = d, f2 = -d^2 or -d log d.
    let basis = |kl: f64| {
        let d = kl.sqrt();
        (
            d,
            match form {
                FitForm::BestOfN => -d * d,
                FitForm::Rl => -d * d.ln(),
            },
        )
    };
    let (mut s11, mut s12, mut s22, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(k, y) in &pts {
        let (f1, f2) = basis(k);
        s11 += f1 * f1;
        s12 += f1 * f2;
        s22 += f2 * f2;
        s1y += f1 * y;
        s2y += f2 * y;
    }
    let det = s11 * s22 - s12 * s12;
    if det.abs() < 1e-12 {
        return None;
    }
    let a = (s1y * s22 - s2y * s12) / det;
    let b = (s11 * s2y - s12 * s1y) / det;
    let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
    let ss_tot: f64 = pts.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let ss_res: f64 = pts
        .iter()
        .map(|&(k, y)| {
            let (f1, f2) = basis(k);
            (y - a * f1 - b * f2).powi(2)
        })
        .sum();
    Some((a, b, if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN }))
}

/// The fitted curve at KL `kl`.
pub fn gao_curve(a: f64, b: f64, form: FitForm, kl: f64) -> f64 {
    let d = kl.sqrt();
    match form {
        FitForm::BestOfN => d * (a - b * d),
        FitForm::Rl => {
            if d > 0.0 {
                d * (a - b * d.ln())
            } else {
                0.0
            }
        }
    }
}
