//! The importance-sampling frontier: an inner bound of the optimal reward-KL frontier.

/// One point of the importance-sampling frontier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IsPoint {
    pub beta: f64,
    /// KL(pi*_N || pi_ref), mean over prompts; at most log N.
    pub kl: f64,
    /// E_{pi*_N}[r], mean over prompts.
    pub gold: f64,
    /// Effective sample size 1 / sum w^2 of the normalised weights: mean and smallest over prompts.
    pub ess_mean: f64,
    pub ess_min: f64,
}

/// An inner bound of the optimal frontier: for each beta, pi* proportional to
/// pi_ref exp(r / beta) restricted to N samples of pi_ref per prompt (`rewards[prompt]` holds
/// them), by self-normalised importance sampling. The reweighted sample is itself a policy
/// reachable from pi_ref, so its (KL, reward) is attainable; pi* proper does at least as well,
/// and its KL is not capped at log N as this one's is. A point is close to pi*'s only while every
/// prompt keeps a large effective sample size (`ess_min`).
pub fn optimal_frontier(rewards: &[Vec<f64>], betas: &[f64]) -> Vec<IsPoint> {
    use rayon::prelude::*;
    // One beta per task; each sums over the prompts in order, so any thread count gives the
    // same bytes.
    betas
        .par_iter()
        .map(|&beta| {
            let (mut kl, mut r, mut ess, mut ess_min) = (0.0, 0.0, 0.0, f64::INFINITY);
            for row in rewards {
                let n = row.len() as f64;
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = row.iter().map(|x| ((x - m) / beta).exp()).collect();
                let z: f64 = w.iter().sum();
                let e = 1.0 / w.iter().map(|x| (x / z).powi(2)).sum::<f64>();
                ess += e;
                ess_min = ess_min.min(e);
                for (wi, ri) in w.iter().zip(row) {
                    let p = wi / z;
                    if p > 0.0 {
                        kl += p * (p * n).ln();
                    }
                    r += p * ri;
                }
            }
            let rows = rewards.len() as f64;
            IsPoint { beta, kl: kl / rows, gold: r / rows, ess_mean: ess / rows, ess_min }
        })
        .collect()
}
