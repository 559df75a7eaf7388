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

/// Per pair, 1 where the chosen score is above the rejected one, one half on a tie (a coin
/// flip's score), 0 below: `[B]`. Every accuracy over pairs uses it (the reward model's, DPO's
/// implicit rewards', a frozen proxy's, the held-out implicit accuracy); TRL's
/// `rewards/accuracies` counts a tie as wrong.
pub fn pair_right(chosen: &Tensor, rejected: &Tensor) -> Tensor {
    chosen.gt_tensor(rejected).to_kind(Kind::Float)
        + chosen.eq_tensor(rejected).to_kind(Kind::Float) * 0.5
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

/// Final hidden states `[B, N, C]` of the positions that predict the response tokens (the last
/// prompt position and every response position but the last): one forward pass over prompt +
/// response whose last block runs on those rows only.
pub fn response_hidden(
    model: &crate::model::Gpt,
    prompt: &Tensor,
    prompt_valid: &Tensor,
    response: &Tensor,
) -> Tensor {
    let (tokens, valid) = concat_prompt_response(prompt, prompt_valid, response);
    let pos = crate::model::sample::positions_of(&valid);
    let (p, n) = (prompt.size()[1], response.size()[1]);
    model.forward_rows(&tokens, Some(&pos), Some(&valid), crate::model::Rows::Range(p - 1, n))
}

/// Sum over the response of log pi(y_t | x, y_<t): `[B]`. `prompt` `[B, P]` left-padded with
/// `prompt_valid`; `response` `[B, N]` right-padded with `mask` (float). One forward pass over
/// the concatenation.
pub fn response_logps(
    model: &crate::model::Gpt,
    prompt: &Tensor,
    prompt_valid: &Tensor,
    response: &Tensor,
    mask: &Tensor,
) -> Tensor {
    let logits = model.logits(&response_hidden(model, prompt, prompt_valid, response)); // [B, N, V]
    (token_logprobs(&logits, response) * mask).sum_dim_intlist(-1, false, Kind::Float)
}

/// Sums over the response of log pi(y_t | x, y_<t) for two responses to each prompt, `[B]`
/// each, in one forward pass over `[prompt | chosen | rejected]`: the rejected tokens attend to
/// the prompt and to each other but not to the chosen ones, and their positions continue from
/// the prompt, so each response sees exactly what it sees after its prompt alone
/// (`response_logps`), while the prompt is computed once instead of twice.
pub fn pair_logps(model: &crate::model::Gpt, batch: &crate::data::PairBatch) -> (Tensor, Tensor) {
    let (chosen, rejected, _) = pair_logps_rows(model, batch, false);
    (chosen, rejected)
}

/// [`pair_logps`] and, from the same forward pass, the prompt's own log-probability under the
/// model: (its sum over the real prompt tokens after `<bos>`, their count), `[B]` each (TRL's
/// ORPO takes its NLL over the prompt and the chosen response).
pub fn pair_logps_with_prompt(
    model: &crate::model::Gpt,
    batch: &crate::data::PairBatch,
) -> (Tensor, Tensor, (Tensor, Tensor)) {
    let (chosen, rejected, prompt) = pair_logps_rows(model, batch, true);
    (chosen, rejected, prompt.expect("asked for the prompt"))
}

fn pair_logps_rows(
    model: &crate::model::Gpt,
    batch: &crate::data::PairBatch,
    with_prompt: bool,
) -> (Tensor, Tensor, Option<(Tensor, Tensor)>) {
    let crate::data::PairBatch {
        prompt,
        prompt_valid,
        chosen,
        chosen_mask,
        rejected,
        rejected_mask,
    } = batch;
    let device = prompt.device();
    let (b, p) = prompt.size2().unwrap();
    let (nc, nr) = (chosen.size()[1], rejected.size()[1]);
    let t = p + nc + nr;
    let tokens = Tensor::cat(&[prompt, chosen, rejected], 1);
    let prompt_len = prompt_valid.sum_dim_intlist(1, true, Kind::Int64); // [B, 1]
    let pos = Tensor::cat(
        &[
            crate::model::sample::positions_of(prompt_valid),
            &prompt_len + Tensor::arange(nc, (Kind::Int64, device)).unsqueeze(0),
            &prompt_len + Tensor::arange(nr, (Kind::Int64, device)).unsqueeze(0),
        ],
        1,
    );
    // The usual padding-aware causal mask (response padding only follows a response's real
    // tokens, as in `concat_prompt_response`), less the rejected -> chosen block.
    let idx = Tensor::arange(t, (Kind::Int64, device));
    let (qi, kj) = (idx.view([t, 1]), idx.view([1, t]));
    let blind = qi.ge(p + nc).logical_and(&kj.ge(p)).logical_and(&kj.lt(p + nc)); // [T, T]
    let key_valid = Tensor::cat(
        &[prompt_valid.shallow_clone(), Tensor::ones([b, nc + nr], (Kind::Bool, device))],
        1,
    ); // [B, T]
    let allowed = crate::model::gpt::attention_mask(0, t, Some(&key_valid), device)
        .logical_and(&blind.logical_not()); // [B, 1, T, T]
                                            // The rows that predict each response token: the last prompt position predicts both first
                                            // tokens.
    let rows = Tensor::cat(
        &[
            Tensor::from_slice(&[p - 1]),
            Tensor::arange_start(p, p + nc - 1, (Kind::Int64, tch::Device::Cpu)),
            Tensor::from_slice(&[p - 1]),
            Tensor::arange_start(p + nc, t - 1, (Kind::Int64, tch::Device::Cpu)),
        ],
        0,
    )
    .to_device(device);
    // With the prompt: rows 0..P-2 predict prompt tokens 1..P-1, counted where both are real
    // (left padding: the first real token, `<bos>`, is predicted by nothing).
    let (rows, targets, weights) = if with_prompt {
        let prompt_rows = Tensor::arange(p - 1, (Kind::Int64, device));
        let both = prompt_valid.narrow(1, 0, p - 1).logical_and(&prompt_valid.narrow(1, 1, p - 1));
        (
            Tensor::cat(&[prompt_rows, rows], 0),
            Tensor::cat(&[&prompt.narrow(1, 1, p - 1), chosen, rejected], 1),
            Tensor::cat(&[&both.to_kind(Kind::Float), chosen_mask, rejected_mask], 1),
        )
    } else {
        (rows, Tensor::cat(&[chosen, rejected], 1), Tensor::cat(&[chosen_mask, rejected_mask], 1))
    };
    let np = if with_prompt { p - 1 } else { 0 };
    let rows = rows.unsqueeze(0).expand([b, np + nc + nr], false);
    let hidden = model.forward_masked(&tokens, &pos, &allowed, crate::model::Rows::Index(&rows)); // [B, Np+Nc+Nr, C]
    let lp = token_logprobs(&model.logits(&hidden), &targets) * &weights;
    let sum = |from: i64, n: i64| lp.narrow(1, from, n).sum_dim_intlist(-1, false, Kind::Float);
    let prompt_part = with_prompt
        .then(|| (sum(0, np), weights.narrow(1, 0, np).sum_dim_intlist(-1, false, Kind::Float)));
    (sum(np, nc), sum(np + nc, nr), prompt_part)
}

/// `[B, P + N]` tokens and validity of a left-padded prompt followed by a right-padded
/// response (response padding comes after every real token, so causal attention ignores it).
pub fn concat_prompt_response(
    prompt: &Tensor,
    prompt_valid: &Tensor,
    response: &Tensor,
) -> (Tensor, Tensor) {
    let tokens = Tensor::cat(&[prompt, response], 1);
    let valid =
        Tensor::cat(&[prompt_valid.shallow_clone(), response.ones_like().to_kind(Kind::Bool)], 1);
    (tokens, valid)
}

/// Copy every variable of `src` into the variable of the same name in `dst` (e.g. the SFT
/// trunk into a reward model). Every variable of `src` must exist in `dst`.
pub fn copy_weights(dst: &tch::nn::VarStore, src: &tch::nn::VarStore) -> Result<()> {
    let dst_vars = dst.variables();
    let _guard = tch::no_grad_guard();
    for (name, t) in src.variables() {
        match dst_vars.get(&name) {
            Some(d) => {
                let mut d = d.shallow_clone();
                d.copy_(&t);
            }
            None => {
                bail!("cannot initialise from the checkpoint: variable {name} has no counterpart")
            }
        }
    }
    Ok(())
}

/// Row indices as an index tensor.
pub fn rows_index(rows: &[usize]) -> Tensor {
    Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>())
}
