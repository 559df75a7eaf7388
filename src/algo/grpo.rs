//! GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300) and Dr. GRPO (Liu et al. 2025,
//! arXiv 2503.20783), run by the critic-free loop of `pg.rs`.
//!
//! Implementation details (setting in `[grpo]`):
//! 1. G = `group_size` samples per prompt; the reward is the score alone.
//! 2. Advantage A_i = (R_i - mean_g R) / (std_g R + 1e-4), the unbiased std of the group and
//!    TRL's epsilon, the same on every token of sample i. `scale_std = false` (Dr. GRPO) does
//!    not divide by the std.
//! 3. KL to pi_ref as a loss term: + kl_coef * k3(pi, pi_ref) per token, with gradient
//!    (`kl_estimator` k3 by default; kl_coef 0 is TRL's current default and allowed).
//! 4. Loss: the clipped surrogate (and the KL term) as each response's token mean, then the mean
//!    over responses (`length_norm = true`); Dr. GRPO (`length_norm = false`) sums each
//!    response's tokens and divides by the generation budget `sample.max_new_tokens` instead.

use tch::{Kind, Tensor};

use super::pg_config::{on_tokens, PgConfig, Recipe};
use super::rollout::Aggregate;

/// (R_i - mean_g R) / (std_g R + 1e-4) over groups of `k` consecutive rows of `r` `[B]`, or
/// without the division when `scale_std` is false.
pub fn group_advantages(r: &Tensor, k: usize, scale_std: bool) -> Tensor {
    let g = r.view([-1, k as i64]);
    let centred = &g - g.mean_dim(1, true, Kind::Float);
    let a = if scale_std { centred / (g.std_dim(1, true, true) + 1e-4) } else { centred };
    a.reshape([-1])
}

pub(super) fn recipe(cfg: &PgConfig) -> Recipe {
    let scale_std = cfg.scale_std.unwrap_or(true);
    let aggregate = if cfg.length_norm.unwrap_or(true) {
        Aggregate::SeqMean
    } else {
        Aggregate::SeqSumOver(cfg.max_new_tokens as f64)
    };
    Recipe {
        advantages: Box::new(move |score, _kl, mask, k| {
            on_tokens(&group_advantages(score, k, scale_std), mask)
        }),
        kl_in_loss: true,
        aggregate,
    }
}
