//! RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics",
//! arXiv 2402.14740), run by the critic-free loop of `pg.rs`.
//!
//! Implementation details (setting in `[rloo]`):
//! 1. k = `group_size` samples per prompt (the paper: 2 or 4).
//! 2. Sequence reward R_i = score_i - kl_coef * sum_t kl_it, the KL in the reward (k1 by
//!    default, `kl_estimator`), as in the paper and TRL's RLOO.
//! 3. Advantage A_i = R_i - mean_{j != i} R_j = k / (k - 1) (R_i - mean_j R_j), the same on every
//!    token of sample i; no normalisation.
//! 4. Loss: the clipped surrogate summed over a response's tokens, then the mean over responses:
//!    REINFORCE on the sequence log-prob (clipping acts only after the first step of an
//!    iteration, `ppo_epochs` > 1).

use tch::{Kind, Tensor};

use super::pg_config::{on_tokens, PgConfig, Recipe};
use super::rollout::Aggregate;

/// A_i = R_i - mean_{j != i} R_j over groups of `k` consecutive rows of `r` `[B]`.
pub fn loo_advantages(r: &Tensor, k: usize) -> Tensor {
    let g = r.view([-1, k as i64]);
    let others = (g.sum_dim_intlist(1, true, Kind::Float) - &g) / (k as f64 - 1.0);
    (g - others).reshape([-1])
}

pub(super) fn recipe(_cfg: &PgConfig) -> Recipe {
    Recipe {
        advantages: Box::new(|score, kl_penalty, mask, k| {
            let reward = score - kl_penalty.sum_dim_intlist(1, false, Kind::Float);
            on_tokens(&loo_advantages(&reward, k), mask)
        }),
        kl_in_loss: false,
        aggregate: Aggregate::SeqSum,
    }
}
