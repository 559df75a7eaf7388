//! Batched generation: left-padded prompts, a KV cache, temperature, top-k and EOS.
//!
//! Returns the response tokens, their log-probs under the sampling distribution (temperature
//! and top-k applied; for greedy decoding, the log-prob at temperature 1) and a response mask
//! that covers every generated token up to and including `<eos>`.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{Gpt, KvCache};
use crate::config::{at_least_one, need, sampling_temperature, ConfigError, MIN_TEMPERATURE};
use crate::tokens::{BOS, EOS, PAD};

/// Generation settings of a scenario (`[sample]`): evaluation, PPO's rollouts, `world --show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleConfig {
    /// New tokens at most per response (with `<bos>` and the longest prompt, within the block).
    pub max_new_tokens: usize,
    /// 0 (greedy) or in [0.01, 4]; 1.0 for the frontier.
    pub temperature: f64,
    /// 0 means no top-k truncation.
    pub top_k: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig { max_new_tokens: 16, temperature: 1.0, top_k: 0 }
    }
}

impl SampleConfig {
    /// Range checks (the fit with the model's block is the scenario's cross-section check).
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("max_new_tokens", self.max_new_tokens, "generate at least one token")?;
        need(
            sampling_temperature(self.temperature, true),
            "temperature",
            || {
                format!(
                    "must be 0 (greedy) or in [{MIN_TEMPERATURE}, 4] (got {})",
                    self.temperature
                )
            },
            "use 1.0 for the frontier (0 is greedy)",
        )
    }
}

#[derive(Clone, Debug)]
pub struct SampleSettings {
    /// 0 is greedy decoding.
    pub temperature: f64,
    /// 0 disables top-k truncation.
    pub top_k: i64,
    pub max_new_tokens: i64,
    /// Decode with the KV cache (true) or re-run the whole sequence each step (for checks).
    pub use_cache: bool,
}

pub struct Rollout {
    /// `[B, P]` left-padded prompts, each starting with `<bos>`.
    pub prompt: Tensor,
    /// `[B, P]` bool: real prompt tokens.
    pub prompt_valid: Tensor,
    /// `[B, N]` sampled tokens, `<pad>` after `<eos>`.
    pub response: Tensor,
    /// `[B, N]` log-prob of each sampled token under the sampling distribution, 0 when masked.
    pub logprobs: Tensor,
    /// `[B, N]` float: 1 for generated tokens (up to and including `<eos>`).
    pub mask: Tensor,
}

impl Rollout {
    /// `[B, P + N]` prompt and response.
    pub fn tokens(&self) -> Tensor {
        Tensor::cat(&[&self.prompt, &self.response], 1)
    }

    /// `[B, P + N]` bool: real tokens (prompt tokens and every response column; response
    /// padding comes after the last real token, so causal attention never sees it).
    pub fn valid(&self) -> Tensor {
        Tensor::cat(
            &[self.prompt_valid.shallow_clone(), self.response.ones_like().to_kind(Kind::Bool)],
            1,
        )
    }

    /// `[B, P + N]` position ids counted from each row's first real token.
    pub fn positions(&self) -> Tensor {
        positions_of(&self.valid())
    }

    /// Prompt token ids per row as the world wrote them (padding and `<bos>` dropped), on the
    /// host: what the world's gold reward reads.
    pub fn prompt_rows(&self) -> Vec<Vec<i64>> {
        let toks: Vec<Vec<i64>> =
            Vec::<Vec<i64>>::try_from(self.prompt.to_device(Device::Cpu)).unwrap();
        let valid: Vec<Vec<bool>> =
            Vec::<Vec<bool>>::try_from(self.prompt_valid.to_device(Device::Cpu)).unwrap();
        toks.into_iter()
            .zip(valid)
            .map(|(t, v)| {
                t.into_iter().zip(v).filter(|(_, v)| *v).map(|(t, _)| t).skip(1).collect()
            })
            .collect()
    }

    /// Response token ids per row, up to and including `<eos>`, on the host.
    pub fn response_rows(&self) -> Vec<Vec<i64>> {
        let resp: Vec<Vec<i64>> =
            Vec::<Vec<i64>>::try_from(self.response.to_device(Device::Cpu)).unwrap();
        let mask: Vec<Vec<f32>> =
            Vec::<Vec<f32>>::try_from(self.mask.to_device(Device::Cpu)).unwrap();
        resp.into_iter()
            .zip(mask)
            .map(|(r, m)| r.into_iter().zip(m).filter(|(_, m)| *m > 0.0).map(|(t, _)| t).collect())
            .collect()
    }
}

impl Rollout {
    /// `f` of every row's (prompt as written, response), as a `[B]` float tensor on the
    /// rollout's device: how a gold reward or a judge scores a sampled batch.
    pub fn score_rows(&self, f: impl FnOnce(&[(&[i64], &[i64])]) -> Vec<f64>) -> Tensor {
        let (prompts, responses) = (self.prompt_rows(), self.response_rows());
        let s: Vec<f32> =
            f(&row_pairs(&prompts, &responses)).into_iter().map(|x| x as f32).collect();
        Tensor::from_slice(&s).to_device(self.response.device())
    }
}

/// Each (prompt, response) of two lists of rows, as the slices a gold reward or a judge reads.
pub fn row_pairs<'a>(
    prompts: &'a [Vec<i64>],
    responses: &'a [Vec<i64>],
) -> Vec<(&'a [i64], &'a [i64])> {
    prompts.iter().zip(responses).map(|(p, r)| (&p[..], &r[..])).collect()
}

/// Position ids from a validity mask `[B, T]`: 0 at each row's first real token.
pub fn positions_of(valid: &Tensor) -> Tensor {
    (valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0)
}

/// Left-pad `<bos> prompt` rows into `[B, P]` tokens and a `[B, P]` validity mask.
pub fn left_pad(prompts: &[Vec<i64>], device: Device) -> (Tensor, Tensor) {
    let p = prompts.iter().map(|x| x.len() + 1).max().unwrap_or(1);
    let mut toks = vec![PAD; prompts.len() * p];
    let mut valid = vec![false; prompts.len() * p];
    for (i, pr) in prompts.iter().enumerate() {
        let start = p - pr.len() - 1;
        toks[i * p + start] = BOS;
        valid[i * p + start] = true;
        for (j, &t) in pr.iter().enumerate() {
            toks[i * p + start + 1 + j] = t;
            valid[i * p + start + 1 + j] = true;
        }
    }
    let shape = [prompts.len() as i64, p as i64];
    (
        Tensor::from_slice(&toks).view(shape).to_device(device),
        Tensor::from_slice(&valid).view(shape).to_device(device),
    )
}

/// Rows of ids padded on the right with `pad` to the longest (at least 1): `[B, T]` and the
/// real tokens' mask, as encoders and reward models read whole texts.
pub fn right_pad(rows: &[Vec<i64>], pad: i64, device: Device) -> (Tensor, Tensor) {
    let t = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut flat = vec![pad; rows.len() * t];
    let mut valid = vec![false; rows.len() * t];
    for (r, ids) in rows.iter().enumerate() {
        flat[r * t..r * t + ids.len()].copy_from_slice(ids);
        valid[r * t..r * t + ids.len()].iter_mut().for_each(|v| *v = true);
    }
    let shape = [rows.len() as i64, t as i64];
    (
        Tensor::from_slice(&flat).view(shape).to_device(device),
        Tensor::from_slice(&valid).view(shape).to_device(device),
    )
}

/// The log-probs `[.., V]` of the distribution a policy samples from, given its logits: divided
/// by `temperature` (0, greedy decoding, is measured at temperature 1) and, with `top_k` > 0,
/// truncated to the k most likely tokens (the others get -inf). The one place where sampling,
/// PPO's log-probs and the evaluator's KL turn logits into a sampling distribution.
pub fn sampling_logprobs(logits: &Tensor, temperature: f64, top_k: i64) -> Tensor {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let mut l = logits / t;
    let v = *l.size().last().expect("logits have a vocabulary dimension");
    if temperature > 0.0 && top_k > 0 && top_k < v {
        let (top, _) = l.topk(top_k, -1, true, true);
        let kth = top.narrow(-1, top_k - 1, 1); // [.., 1]
        l = l.masked_fill(&l.lt_tensor(&kth), f64::NEG_INFINITY);
    }
    l.log_softmax(-1, Kind::Float)
}

/// Pick the next token from logits `[B, V]`: returns (token `[B]`, its log-prob `[B]`).
fn pick(logits: &Tensor, s: &SampleSettings) -> (Tensor, Tensor) {
    if s.temperature == 0.0 {
        let tok = logits.argmax(-1, false);
        let lp =
            sampling_logprobs(logits, 0.0, 0).gather(-1, &tok.unsqueeze(-1), false).squeeze_dim(-1);
        return (tok, lp);
    }
    let logp = sampling_logprobs(logits, s.temperature, s.top_k);
    let tok = logp.exp().multinomial(1, false); // [B, 1]
    let lp = logp.gather(-1, &tok, false).squeeze_dim(-1);
    (tok.squeeze_dim(-1), lp)
}

/// Sample up to `max_new_tokens` continuations of a left-padded prompt batch.
/// Uses torch's global generator: seed it (`tch::manual_seed`) for reproducible samples.
// `next_pos` is the batch's next positions, a tensor that steps with the loop, not a counter.
#[allow(clippy::explicit_counter_loop)]
pub fn generate(
    model: &Gpt,
    prompt: &Tensor,
    prompt_valid: &Tensor,
    s: &SampleSettings,
) -> Rollout {
    let _guard = tch::no_grad_guard();
    let (b, p) = prompt.size2().unwrap();
    crate::profile::count(crate::profile::Count::Samples, b as f64);
    let n = s.max_new_tokens;
    let device = prompt.device();
    // Every response column is a real key; finished rows keep decoding padding, unused.
    let key_valid =
        Tensor::cat(&[prompt_valid.shallow_clone(), Tensor::ones([b, n], (Kind::Bool, device))], 1); // [B, P+N]
    let mut cache = KvCache::new(&model.cfg, b, p + n, device);
    let prompt_pos = positions_of(prompt_valid);
    let mut next_pos = prompt_valid.to_kind(Kind::Int64).sum_dim_intlist(1, false, Kind::Int64); // [B]
    let hidden = if s.use_cache {
        model.forward(prompt, Some(&prompt_pos), Some(prompt_valid), Some(&mut cache))
    } else {
        model.forward(prompt, Some(&prompt_pos), Some(prompt_valid), None)
    };
    let mut logits = model.logits(&hidden.select(1, p - 1)); // [B, V]
    let mut done = Tensor::zeros([b], (Kind::Bool, device));
    let (mut toks, mut lps, mut masks) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = prompt.shallow_clone();
    for step in 0..n {
        let (tok, lp) = pick(&logits, s);
        let tok = tok.masked_fill(&done, PAD);
        let lp = lp.masked_fill(&done, 0.0);
        masks.push(done.logical_not().to_kind(Kind::Float));
        done = done.logical_or(&tok.eq(EOS));
        toks.push(tok);
        lps.push(lp);
        if step + 1 == n || bool::try_from(done.all()).unwrap() {
            break;
        }
        let last = toks.last().unwrap().unsqueeze(1); // [B, 1]
        let hidden = if s.use_cache {
            model.forward(
                &last,
                Some(&next_pos.unsqueeze(1)),
                Some(&key_valid.narrow(1, 0, p + step + 1)),
                Some(&mut cache),
            )
        } else {
            seq = Tensor::cat(&[&seq, &last], 1); // [B, P+step+1]
            let valid = key_valid.narrow(1, 0, p + step + 1);
            model
                .forward(&seq, Some(&positions_of(&valid)), Some(&valid), None)
                .select(1, p + step)
                .unsqueeze(1)
        };
        logits = model.logits(&hidden.select(1, 0));
        next_pos += 1;
    }
    // Finished early: pad to N columns so shapes do not depend on the draw.
    while (toks.len() as i64) < n {
        toks.push(Tensor::full([b], PAD, (Kind::Int64, device)));
        lps.push(Tensor::zeros([b], (Kind::Float, device)));
        masks.push(Tensor::zeros([b], (Kind::Float, device)));
    }
    Rollout {
        prompt: prompt.shallow_clone(),
        prompt_valid: prompt_valid.shallow_clone(),
        response: Tensor::stack(&toks, 1),
        logprobs: Tensor::stack(&lps, 1),
        mask: Tensor::stack(&masks, 1),
    }
}
