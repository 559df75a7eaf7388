//! Pure tensor helpers shared by the algorithms.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Log-prob of each target token: logits `[B, T, V]`, targets `[B, T]` -> `[B, T]`.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Tensor {
    logits.log_softmax(-1, Kind::Float).gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1)
}

/// Mean of `x` over positions where `mask` is 1.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    (x * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// Linear warm-up over `warmup` steps, then cosine decay to `min_ratio` at `total`.
pub fn warmup_cosine(step: usize, total: usize, warmup: usize, min_ratio: f64) -> f64 {
    if step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Global gradient norm over `vars`, then rescale gradients so the norm is at most `max_norm`.
/// Returns the norm before clipping (the `grad_norm` metric).
pub fn clip_grad_norm(vars: &[Tensor], max_norm: f64) -> f64 {
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = vars.iter().map(|v| v.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return 0.0;
    }
    let sq: Vec<Tensor> = grads.iter().map(|g| g.pow_tensor_scalar(2).sum(Kind::Float)).collect();
    let norm = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[]);
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in &grads {
            let _ = g.shallow_clone().g_mul_scalar_(scale);
        }
    }
    norm
}

/// Stop a stage on a NaN or Inf, naming where it happened and what survives.
pub fn check_finite(value: f64, what: &str, stage: &str, step: usize, last_good: &str) -> Result<()> {
    if !value.is_finite() {
        bail!(
            "{stage}: {what} is {value} at step {step}; last good checkpoint: {last_good}; fix: lower the learning rate or raise the gradient clip of [{stage}] and rerun (finished stages are kept)"
        );
    }
    Ok(())
}
