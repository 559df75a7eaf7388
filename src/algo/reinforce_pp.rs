//! REINFORCE++ (Hu 2025, arXiv 2501.03262): PPO's token rewards and clipping without a critic,
//! the advantages normalised over the whole batch; run by the critic-free loop of `pg.rs`.
//!
//! Implementation details (setting in `[reinforce_pp]`):
//! 1. Token rewards as PPO's: -kl_coef * kl_t at every response token (k1 by default,
//!    `kl_estimator`), plus the score at the last one. `baseline = true` (the paper's
//!    "REINFORCE++-baseline") first subtracts the mean score of the prompt's group.
//! 2. Return-to-go G_t = sum_{s >= t} r_s (gamma 1, no critic) as the advantage of token t.
//! 3. Advantages whitened over every response token of the batch (mean 0, std 1).
//! 4. Loss: PPO's clipped surrogate, the mean over the batch's tokens.

use tch::Tensor;

use super::pg_config::{group_mean, PgConfig, Recipe};
use super::ppo::{token_rewards, whiten};
use super::rollout::Aggregate;

/// Whitened returns-to-go `[B, N]` of the token rewards from `score` `[B]` (minus its group
/// mean when `baseline`) and the per-token KL penalty `[B, N]`.
pub fn advantages(
    score: &Tensor,
    kl_penalty: &Tensor,
    mask: &Tensor,
    k: usize,
    baseline: bool,
) -> Tensor {
    let score = if baseline { score - group_mean(score, k) } else { score.shallow_clone() };
    let rewards = token_rewards(kl_penalty, &score, mask, 1.0);
    let to_go = rewards.flip([1]).cumsum(1, tch::Kind::Float).flip([1]) * mask;
    whiten(&to_go, mask)
}

pub(super) fn recipe(cfg: &PgConfig) -> Recipe {
    let baseline = cfg.baseline.unwrap_or(false);
    Recipe {
        advantages: Box::new(move |score, kl_penalty, mask, k| {
            advantages(score, kl_penalty, mask, k, baseline)
        }),
        kl_in_loss: false,
        aggregate: Aggregate::TokenMean,
    }
}
