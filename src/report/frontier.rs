//! Reward-vs-KL frontiers: envelopes, values at KL budgets with confidence intervals over seeds,
//! the optimal frontier by self-normalised importance sampling, and Gao et al.'s fits.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// The upper concave envelope of (KL, reward) points, sorted by KL.
///
/// Why concave: a mixture of two policies has reward equal to the mixture of their rewards and,
/// KL being convex, KL at most the mixture of their KLs, so every point on a chord between two
/// evaluated policies is attainable (at that KL or less). Points left of the envelope's best
/// reward that are dominated are dropped; the envelope never decreases.
pub fn envelope(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|(k, r)| k.is_finite() && r.is_finite()).map(|(k, r)| (k.max(0.0), r)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    // Monotone chain for the upper hull.
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        if let Some(last) = hull.last() {
            if p.0 == last.0 {
                continue; // the same KL with a lower reward (sorted by reward, descending)
            }
        }
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            // Drop b if it lies on or below the chord from a to p.
            let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(p);
    }
    // Keep the rising part: past the best reward, more KL buys nothing.
    if let Some(best) = hull.iter().enumerate().max_by(|a, b| a.1 .1.total_cmp(&b.1 .1)).map(|(i, _)| i) {
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

/// Mean and 95% half-width (Student t over `xs.len() - 1` degrees of freedom; 0 for one value).
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
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("degrees of freedom > 0").inverse_cdf(0.975);
    (mean, t * (var / n as f64).sqrt())
}

/// The optimal frontier: for each beta, pi* proportional to pi_ref exp(r / beta) estimated by
/// self-normalised importance sampling from samples of pi_ref. `rewards[row]` holds the rewards
/// of independent samples for one prompt. Returns (beta, KL(pi* || pi_ref), E_pi*[r]), averaged
/// over rows, and the mean effective sample size 1 / sum w^2 of the normalised weights. On a
/// finite sample pi* lives on the sample, so KL is at most log(samples): a point is only
/// trustworthy while its effective sample size is large.
pub fn optimal_frontier(rewards: &[Vec<f64>], betas: &[f64]) -> Vec<(f64, f64, f64, f64)> {
    betas
        .iter()
        .map(|&beta| {
            let (mut kl, mut r, mut ess) = (0.0, 0.0, 0.0);
            for row in rewards {
                let n = row.len() as f64;
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = row.iter().map(|x| ((x - m) / beta).exp()).collect();
                let z: f64 = w.iter().sum();
                ess += 1.0 / w.iter().map(|x| (x / z).powi(2)).sum::<f64>();
                for (wi, ri) in w.iter().zip(row) {
                    let p = wi / z;
                    if p > 0.0 {
                        kl += p * (p * n).ln();
                    }
                    r += p * ri;
                }
            }
            let rows = rewards.len() as f64;
            (beta, kl / rows, r / rows, ess / rows)
        })
        .collect()
}

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
    let pts: Vec<(f64, f64)> = points.iter().copied().filter(|(k, r)| k.is_finite() && r.is_finite() && *k > 0.0).collect();
    if pts.len() < 3 {
        return None;
    }
    let (dmin, dmax) = pts.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.0.sqrt()), hi.max(p.0.sqrt())));
    if dmin > 0.5 * dmax {
        return None;
    }
    // gain = a * f1(d) + b * f2(d), f1 = d, f2 = -d^2 or -d log d.
    let basis = |kl: f64| {
        let d = kl.sqrt();
        (d, match form {
            FitForm::BestOfN => -d * d,
            FitForm::Rl => -d * d.ln(),
        })
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
    let ss_res: f64 = pts.iter().map(|&(k, y)| {
        let (f1, f2) = basis(k);
        (y - a * f1 - b * f2).powi(2)
    }).sum();
    Some((a, b, if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN }))
}

/// The fitted curve at KL `kl`.
pub fn gao_curve(a: f64, b: f64, form: FitForm, kl: f64) -> f64 {
    let d = kl.sqrt();
    match form {
        FitForm::BestOfN => d * (a - b * d),
        FitForm::Rl => if d > 0.0 { d * (a - b * d.ln()) } else { 0.0 },
    }
}
