//! Direct Preference Optimization and its family (Rafailov et al. 2023, arXiv 2305.18290),
//! plus the paper's baselines trained on the same pairs: Preferred-FT and Unlikelihood.
//!
//! Notation: s_w = log pi(y_w|x) - log pi_ref(y_w|x), s_l likewise, Delta = s_w - s_l, with
//! log-probs summed over the response tokens. Implicit reward r_hat = beta * s.
//!
//! Implementation details (setting):
//! 1. Loss kind (`[dpo]`, `[ipo]`, `[cdpo]`): sigmoid DPO (Eq. 7), IPO (Azar et al. Eq. 17, not
//!    length-normalised, as in the DPO reference code), conservative DPO (`label_smoothing`).
//! 2. Reference log-probs computed once for the whole dataset, without gradients, and cached.
//! 3. Optimiser: AdamW (betas 0.9, 0.999, no weight decay) with linear warm-up over
//!    `train.warmup_steps` then a constant rate, as in the paper (which used RMSprop; Adam is
//!    the common choice of the reference code's users and is more stable on tiny models).
//! 4. Gradient-norm clipping at `train.grad_clip` (10 in the reference code).
//! 5. Batches of `train.batch_size` pairs from shuffled epochs; chosen and rejected in one
//!    forward pass.
//! 6. Preferred-FT: mean token NLL of the chosen response (SFT on y_w).
//! 7. Unlikelihood: -(log pi(y_w) - alpha log pi(y_l)); without DPO's weighting it degenerates.

use anyhow::Result;
use tch::{nn, Kind, Tensor};

use super::adam::Adam;
use super::common::{pair_logps, rows_index};
use super::trainer::{CkptParts, Trainer};
use crate::data::{PairBatch, PairTensors};
use crate::draw::{derive_seed, Rng};
use crate::model::Gpt;
use serde::{Deserialize, Serialize};

use crate::config::{in_range, learning_rate, need, positive, ConfigError, MAX_BATCH, MAX_STEPS};

/// Optimisation shared by the preference methods (DPO family, Preferred-FT, Unlikelihood):
/// `[train]`, which a method's table may override (`lr`, `steps`, `batch_size`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser steps (batches of pairs), 1 to 10^7.
    pub steps: usize,
    /// Pairs per step (the paper: 64).
    pub batch_size: usize,
    /// Peak learning rate, in [0, 1). Tiny models need far more than the paper's 1e-6.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Global gradient-norm clip (the DPO reference code: 10), finite and > 0.
    pub grad_clip: f64,
    /// Which evaluated checkpoint a run keeps as its final policy (see [`Keep`]).
    #[serde(skip_serializing_if = "Keep::is_last")]
    pub keep: Keep,
}

/// The checkpoint a preference run keeps, chosen among its evaluations (step 0, pi_SFT,
/// included), as `[train] keep` names it. `last` is the DPO reference code's and TRL's (no
/// selection); `val_accuracy` is the reward model's rule (the best held-out accuracy, here the
/// implicit reward's on the validation pairs); `selection_gold` the best gold on the selection
/// half of the evaluation prompts (the half the report chooses on, never the half it reports).
/// Ties go to the earliest step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    #[default]
    Last,
    ValAccuracy,
    SelectionGold,
}

impl Keep {
    pub fn is_last(&self) -> bool {
        *self == Keep::Last
    }

    /// The evaluation metric it maximises, if it selects.
    pub fn metric(&self) -> Option<&'static str> {
        match self {
            Keep::Last => None,
            Keep::ValAccuracy => Some("eval/implicit_acc"),
            Keep::SelectionGold => Some("eval/gold_sel"),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 400,
            batch_size: 64,
            lr: 1e-4,
            warmup_steps: 50,
            grad_clip: 10.0,
            keep: Keep::Last,
        }
    }
}

impl TrainConfig {
    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("steps", self.steps, 1, MAX_STEPS, "use e.g. 400")?;
        in_range("batch_size", self.batch_size, 1, MAX_BATCH, "use 64 (as in the paper)")?;
        need(
            self.warmup_steps <= MAX_STEPS,
            "warmup_steps",
            || format!("must be at most {MAX_STEPS} (got {})", self.warmup_steps),
            "use e.g. 50",
        )?;
        learning_rate("lr", self.lr, "use e.g. 1e-4")?;
        positive("grad_clip", self.grad_clip, "use 10 (the DPO reference code)")
    }
}

/// The offline preference losses. Each is a method of its own: a scenario table named after it
/// (`[dpo]`, `[ipo]`, ...), whose keys are the variant's fields (a list is a grid: one run per
/// value) beside the `[train]` overrides `lr`, `steps` and `batch_size`. The variant names are the registry:
/// adding a loss that needs only log-probs is one variant here and its arm in
/// [`preference_loss`]. TRL's `loss_type` name is given where it has one. Delta is the
/// difference of the summed log-ratios, D = beta Delta, l(z) = -log sigmoid(z).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "loss", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrefLoss {
    /// DPO, l(D) (Rafailov et al. 2023, Eq. 7; TRL `sigmoid`).
    Dpo { beta: f64 },
    /// IPO, (Delta - 1/(2 beta))^2 (Azar et al. 2023, Eq. 17; TRL `ipo`). By default on summed
    /// log-ratios, as in the DPO reference code; `length_normalize = true` divides each
    /// log-ratio by its response's length first, as TRL does.
    Ipo {
        beta: f64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        length_normalize: bool,
    },
    /// Conservative DPO, (1 - eps) l(D) + eps l(-D) with eps = `label_smoothing` in (0, 0.5)
    /// (the DPO authors' note; TRL has no such loss_type).
    Cdpo { beta: f64, label_smoothing: f64 },
    /// Preferred-FT: SFT on the chosen responses, the mean token NLL over the batch.
    PreferredFt {},
    /// Unlikelihood: -(log pi(y_w) - alpha log pi(y_l)); without DPO's weighting it degenerates.
    Unlikelihood { alpha: f64 },
    /// SLiC's hinge, max(0, 1 - D) (Zhao et al. 2023; TRL `hinge`, with beta the reciprocal of
    /// the margin).
    Hinge { beta: f64 },
    /// Robust DPO, [(1 - eps) l(D) - eps l(-D)] / (1 - 2 eps) (Chowdhury et al. 2024; TRL
    /// `robust`): unbiased for the clean loss when labels flip at rate eps = `label_smoothing`.
    Robust { beta: f64, label_smoothing: f64 },
    /// SimPO, l(beta (log pi(y_w) / |y_w| - log pi(y_l) / |y_l|) - gamma) (Meng et al. 2024):
    /// no reference, length-normalised, target margin `gamma` >= 0.
    Simpo { beta: f64, gamma: f64 },
    /// KTO on the pairs as unpaired examples (Ethayarajh et al. 2024; TRL's KTO trainer):
    /// (lambda_d (1 - sigmoid(beta (s_w - z0))) + lambda_u (1 - sigmoid(beta (z0 - s_l)))) / 2,
    /// s the log-ratio, z0 the batch's mean log-ratio of its chosen and rejected responses,
    /// clamped at 0, without gradient (TRL estimates it on mismatched prompt-response pairs).
    Kto {
        beta: f64,
        #[serde(default = "one")]
        lambda_d: f64,
        #[serde(default = "one")]
        lambda_u: f64,
    },
    /// ORPO, NLL(y_w) + lambda l(log odds(y_w) - log odds(y_l)) with odds(y) = p / (1 - p) and p
    /// the per-token mean probability exp(log pi(y) / |y|); no reference (Hong et al. 2024;
    /// TRL's ORPO, whose `beta` is lambda). Where the NLL is taken is `nll`: by default each
    /// chosen response's token mean, averaged over pairs (alignlab's); `"sequence"` is TRL's
    /// ORPOTrainer, one token mean over the batch's chosen sequences, prompt tokens included.
    Orpo {
        lambda: f64,
        #[serde(default, skip_serializing_if = "OrpoNll::is_default")]
        nll: OrpoNll,
    },
    /// EXO, sigmoid(D) (log sigmoid(D) - log(1 - eps)) + sigmoid(-D) (log sigmoid(-D) - log eps)
    /// (Ji et al. 2024; TRL `exo_pair`, eps = `label_smoothing`, 1e-3 there by default).
    ExoPair { beta: f64, label_smoothing: f64 },
    /// NCA, l(beta s_w) + l(-beta s_w) / 2 + l(-beta s_l) / 2 (Chen et al. 2024; TRL `nca_pair`).
    NcaPair { beta: f64 },
}

fn one() -> f64 {
    1.0
}

/// Where ORPO's NLL term is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrpoNll {
    /// Each chosen response's token mean, averaged over the pairs (alignlab's default).
    #[default]
    Response,
    /// One token mean over the batch's chosen sequences, prompt and response (TRL's
    /// ORPOTrainer: its cross-entropy over every non-padding token after the first).
    Sequence,
}

impl OrpoNll {
    fn is_default(&self) -> bool {
        *self == OrpoNll::Response
    }
}

impl PrefLoss {
    /// Every loss's name, in declaration order: the scenario tables that are preference methods.
    pub fn names() -> &'static [&'static str] {
        crate::config::variant_names::<PrefLoss>("loss")
    }

    /// Its name in tables and CSVs (its scenario table): the serde tag.
    pub fn name(&self) -> String {
        match self.fields().remove("loss") {
            Some(toml::Value::String(name)) => name,
            _ => unreachable!("PrefLoss serializes with its tag"),
        }
    }

    /// Its parameters as written (a switch left at its default is not listed).
    pub fn params(&self) -> Vec<(String, toml::Value)> {
        let mut fields = self.fields();
        fields.remove("loss");
        fields.into_iter().collect()
    }

    fn fields(&self) -> toml::Table {
        toml::Table::try_from(self).expect("PrefLoss serializes to a table")
    }

    /// Whether the loss reads the reference's log-probs (SimPO and ORPO do not: their callers
    /// may skip the reference pass).
    pub fn uses_reference(&self) -> bool {
        !matches!(self, PrefLoss::Simpo { .. } | PrefLoss::Orpo { .. })
    }

    /// Its setting, e.g. `beta=0.1`; the label also seeds the run's batch order.
    pub fn setting(&self) -> String {
        let shown = |v: &toml::Value| {
            v.as_float()
                .or(v.as_integer().map(|i| i as f64))
                .map(|f| f.to_string())
                .or(v.as_str().map(String::from))
                .unwrap_or_else(|| v.to_string())
        };
        self.params().iter().map(|(k, v)| format!("{k}={}", shown(v))).collect::<Vec<_>>().join(";")
    }

    /// Range checks: a flip rate in (0, 0.5), a margin >= 0, every other number in [1e-4, 1e4].
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in self.params() {
            let Some(v) = v.as_float().or(v.as_integer().map(|i| i as f64)) else {
                continue;
            };
            match key.as_str() {
                "label_smoothing" => need(
                    v > 0.0 && v < 0.5,
                    &key,
                    || format!("must be in (0, 0.5) (got {v})"),
                    "use e.g. 0.1 (0 is plain DPO)",
                )?,
                "gamma" => need(
                    v.is_finite() && (0.0..=1e4).contains(&v),
                    &key,
                    || format!("must be in [0, 1e4] (got {v})"),
                    "use e.g. 0.5",
                )?,
                _ => need(
                    v.is_finite() && (1e-4..=1e4).contains(&v),
                    &key,
                    || format!("every {key} must be in [1e-4, 1e4] (got {v})"),
                    "use values such as [0.1, 1.0]",
                )?,
            }
        }
        Ok(())
    }
}

/// Summed response log-probs `[B]` of a batch of pairs under the policy and the reference, and
/// the chosen responses' token counts; with ORPO's `nll = "sequence"`, the policy's log-prob of
/// each prompt (sum, token count).
pub struct PairLogps<'a> {
    pub policy_chosen: &'a Tensor,
    pub policy_rejected: &'a Tensor,
    pub reference_chosen: &'a Tensor,
    pub reference_rejected: &'a Tensor,
    pub chosen_tokens: &'a Tensor,
    pub rejected_tokens: &'a Tensor,
    pub chosen_prompt: Option<(&'a Tensor, &'a Tensor)>,
}

/// A preference loss on a batch.
pub struct LossOut {
    /// Per-pair losses `[B]`.
    pub losses: Tensor,
    /// `None`: the batch loss is their mean; `Some(n)`: their sum over the sum of these
    /// per-pair token counts (a token mean).
    pub per_token: Option<Tensor>,
    /// The implicit rewards beta (log pi - log pi_ref) of chosen and rejected, where the loss
    /// has a beta.
    pub rewards: Option<(Tensor, Tensor)>,
}

impl LossOut {
    /// The scalar the optimiser minimises.
    pub fn batch_loss(&self) -> Tensor {
        match &self.per_token {
            None => self.losses.mean(Kind::Float),
            Some(n) => self.losses.sum(Kind::Float) / n.sum(Kind::Float).clamp_min(1.0),
        }
    }
}

/// Every preference loss, from the log-probs alone. Delta = s_w - s_l with s = log pi - log
/// pi_ref summed over the response.
pub fn preference_loss(loss: PrefLoss, lp: &PairLogps) -> LossOut {
    let chosen_logratio = lp.policy_chosen - lp.reference_chosen;
    let rejected_logratio = lp.policy_rejected - lp.reference_rejected;
    let delta = &chosen_logratio - &rejected_logratio;
    let implicit = |beta: f64| {
        Some(((&chosen_logratio * beta).detach(), (&rejected_logratio * beta).detach()))
    };
    let mean = |losses: Tensor, rewards| LossOut { losses, per_token: None, rewards };
    let l = |z: Tensor| -z.log_sigmoid();
    let (len_w, len_l) = (lp.chosen_tokens.clamp_min(1.0), lp.rejected_tokens.clamp_min(1.0));
    match loss {
        // -log sigmoid(beta Delta)
        PrefLoss::Dpo { beta } => mean(-(&delta * beta).log_sigmoid(), implicit(beta)),
        // (Delta - 1/(2 beta))^2
        PrefLoss::Ipo { beta, length_normalize: false } => {
            mean((&delta - 1.0 / (2.0 * beta)).square(), implicit(beta))
        }
        // (Delta / |y| - 1/(2 beta))^2, each log-ratio over its length
        PrefLoss::Ipo { beta, length_normalize: true } => mean(
            (&chosen_logratio / &len_w - &rejected_logratio / &len_l - 1.0 / (2.0 * beta)).square(),
            implicit(beta),
        ),
        // -(1 - eps) log sigmoid(beta Delta) - eps log sigmoid(-beta Delta)
        PrefLoss::Cdpo { beta, label_smoothing: eps } => mean(
            -(&delta * beta).log_sigmoid() * (1.0 - eps) - (&delta * -beta).log_sigmoid() * eps,
            implicit(beta),
        ),
        // token NLL of y_w
        PrefLoss::PreferredFt {} => LossOut {
            losses: -lp.policy_chosen,
            per_token: Some(lp.chosen_tokens.shallow_clone()),
            rewards: None,
        },
        // -(log pi(y_w) - alpha log pi(y_l))
        PrefLoss::Unlikelihood { alpha } => {
            mean(-(lp.policy_chosen - lp.policy_rejected * alpha), None)
        }
        // max(0, 1 - beta Delta)
        PrefLoss::Hinge { beta } => mean((&delta * -beta + 1.0).relu(), implicit(beta)),
        // [(1 - eps) l(D) - eps l(-D)] / (1 - 2 eps)
        PrefLoss::Robust { beta, label_smoothing: eps } => mean(
            (l(&delta * beta) * (1.0 - eps) - l(&delta * -beta) * eps) / (1.0 - 2.0 * eps),
            implicit(beta),
        ),
        // l(beta (mean log pi(y_w) - mean log pi(y_l)) - gamma)
        PrefLoss::Simpo { beta, gamma } => {
            let (w, r) = (lp.policy_chosen / &len_w * beta, lp.policy_rejected / &len_l * beta);
            mean(l(&w - &r - gamma), Some((w.detach(), r.detach())))
        }
        // (lambda_d (1 - sigmoid(beta (s_w - z0))) + lambda_u (1 - sigmoid(beta (z0 - s_l)))) / 2
        PrefLoss::Kto { beta, lambda_d, lambda_u } => mean(
            kto(&chosen_logratio, &rejected_logratio, beta, (lambda_d, lambda_u)),
            implicit(beta),
        ),
        // NLL(y_w) + lambda l(log odds(y_w) - log odds(y_l)), odds from per-token means
        PrefLoss::Orpo { lambda, nll } => {
            let (m_w, m_l) = (lp.policy_chosen / &len_w, lp.policy_rejected / &len_l);
            let log_odds = |m: &Tensor| m - (-m.exp()).log1p();
            mean(
                orpo_nll(lp, &m_w, nll) + l(log_odds(&m_w) - log_odds(&m_l)) * lambda,
                Some((m_w.detach() * lambda, m_l.detach() * lambda)),
            )
        }
        // sigmoid(D) (log sigmoid(D) - log(1 - eps)) + sigmoid(-D) (log sigmoid(-D) - log eps)
        PrefLoss::ExoPair { beta, label_smoothing: eps } => {
            mean(exo_pair(&(&delta * beta), eps), implicit(beta))
        }
        // l(beta s_w) + l(-beta s_w) / 2 + l(-beta s_l) / 2
        PrefLoss::NcaPair { beta } => {
            let (w, r) = (&chosen_logratio * beta, &rejected_logratio * beta);
            mean(l(w.shallow_clone()) + l(-&w) / 2.0 + l(-&r) / 2.0, implicit(beta))
        }
    }
}

/// ORPO's NLL per pair `[B]`, whose mean is the batch's: minus the chosen response's token mean
/// `m_w` (alignlab's), or TRL's one token mean over the batch's chosen prompts and responses,
/// -sum(prompt + chosen) / total tokens, spread over the pairs.
fn orpo_nll(lp: &PairLogps, m_w: &Tensor, nll: OrpoNll) -> Tensor {
    match (nll, lp.chosen_prompt) {
        (OrpoNll::Response, _) => -m_w,
        (OrpoNll::Sequence, Some((sum, count))) => {
            let total = (count + lp.chosen_tokens).sum(Kind::Float).clamp_min(1.0);
            -(sum + lp.policy_chosen) * (m_w.size()[0] as f64) / total.detach()
        }
        (OrpoNll::Sequence, None) => {
            panic!("ORPO's sequence NLL needs the prompt's log-probs (pair_logps_with_prompt)")
        }
    }
}

/// KTO on the pairs as unpaired examples: the reference point z0 is the batch's mean log-ratio
/// (at least 0, without gradient); each side's loss is 1 - sigmoid of its distance from it.
fn kto(chosen: &Tensor, rejected: &Tensor, beta: f64, (lambda_d, lambda_u): (f64, f64)) -> Tensor {
    let z0 = ((chosen + rejected) / 2.0).mean(chosen.kind()).clamp_min(0.0).detach();
    let desirable = -((chosen - &z0) * beta).sigmoid() + 1.0;
    let undesirable = -((&z0 - rejected) * beta).sigmoid() + 1.0;
    (desirable * lambda_d + undesirable * lambda_u) / 2.0
}

/// EXO on a pair, `d` = beta Delta: the reverse KL from the model's label distribution
/// (sigmoid(d), sigmoid(-d)) to the smoothed labels (1 - eps, eps).
fn exo_pair(d: &Tensor, eps: f64) -> Tensor {
    let pos = d.sigmoid() * (d.log_sigmoid() - (1.0 - eps).ln());
    let neg = (-d).sigmoid() * ((-d).log_sigmoid() - eps.ln());
    pos + neg
}

/// Reference log-probs of every pair, `([N], [N])`, computed once without gradients.
pub fn reference_logps(reference: &Gpt, data: &PairTensors, batch: usize) -> (Tensor, Tensor) {
    let _guard = tch::no_grad_guard();
    let (mut c, mut r) = (Vec::new(), Vec::new());
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch) {
        let b = data.batch(chunk);
        let (lc, lr) = pair_logps(reference, &b);
        c.push(lc);
        r.push(lr);
    }
    (Tensor::cat(&c, 0), Tensor::cat(&r, 0))
}

/// The pair indices of batch `step`: epochs of a fixed-seed shuffle, read in order, so a batch
/// depends only on its step (a resumed run sees the same batches).
pub fn batch_indices(
    n: usize,
    bs: usize,
    step: usize,
    seed: u64,
    label: &str,
    cache: &mut Option<(usize, Vec<usize>)>,
) -> Vec<usize> {
    (0..bs)
        .map(|j| {
            let g = step * bs + j;
            let (epoch, pos) = (g / n, g % n);
            if cache.as_ref().map(|c| c.0) != Some(epoch) {
                let mut order: Vec<usize> = (0..n).collect();
                Rng::new(derive_seed(seed, &format!("{label}/order/{epoch}"))).shuffle(&mut order);
                *cache = Some((epoch, order));
            }
            cache.as_ref().unwrap().1[pos]
        })
        .collect()
}

/// Train a policy with one of the preference methods, from `t`'s resume point (the caller has
/// restored the weights); `t` evaluates at step 0, every `eval_every` steps and at the end.
pub fn train(
    policy: &Gpt,
    vs: &nn::VarStore,
    data: &PairTensors,
    reference: &(Tensor, Tensor),
    method: PrefLoss,
    cfg: &TrainConfig,
    t: &mut Trainer,
) -> Result<()> {
    let mut opt = Adam::new(vs, cfg.lr, (0.9, 0.999), 0.0);
    let label = t.stream.clone();
    let mut order_cache = None;
    let bs = cfg.batch_size.min(data.len());
    let start = t.start(policy, &mut opt, None)?;
    for step in start..cfg.steps {
        // 1. Batch of pairs from a shuffled epoch.
        let idx = batch_indices(data.len(), bs, step, t.seed, &label, &mut order_cache);
        let b = data.batch(&idx);
        // 2. Reference log-probs of the batch, from the cache.
        let (rc, rr) = reference;
        let index = rows_index(&idx).to_device(rc.device());
        let (reference_chosen, reference_rejected) =
            (rc.index_select(0, &index), rr.index_select(0, &index));
        // 3. The loss and the step.
        let reference = Some((&reference_chosen, &reference_rejected));
        let out = pref_step(policy, &mut opt, &b, reference, method, cfg, t)?;
        let s = step + 1;
        if s % 10 == 0 || s == cfg.steps {
            out.log(t, s);
        }
        if t.step_done(cfg.steps, out.loss) {
            t.evaluate(s, policy, &CkptParts { opts: vec![&opt], rng: [0; 7], extra: vec![] })?;
        }
    }
    Ok(())
}

/// One optimiser step on a batch of pairs: what it logs.
pub struct Step {
    pub loss: f64,
    pub grad_norm: f64,
    pub logged: Vec<(&'static str, Tensor)>,
}

impl Step {
    /// `{name}/loss`, `{name}/grad_norm` and the logged tensors, at step `s`.
    pub fn log(&self, t: &mut Trainer, s: usize) {
        let name = t.name.clone();
        t.log(s, &format!("{name}/loss"), self.loss);
        t.log(s, &format!("{name}/grad_norm"), self.grad_norm);
        for (k, v) in &self.logged {
            t.log(s, &format!("{name}/{k}"), v.double_value(&[]));
        }
    }
}

/// The trainer's current step of a preference loss on batch `b`, given the reference's log-probs of its pairs
/// (`None` for a reference-free loss, whose caller skipped the reference pass): the policy's
/// log-probs of chosen and rejected in one forward pass (the prompt once), the loss, warm-up,
/// clipping, a NaN guard and the Adam step.
pub fn pref_step(
    policy: &Gpt,
    opt: &mut Adam,
    b: &PairBatch,
    reference: Option<(&Tensor, &Tensor)>,
    method: PrefLoss,
    cfg: &TrainConfig,
    t: &Trainer,
) -> Result<Step> {
    let step = t.step;
    anyhow::ensure!(
        reference.is_some() || !method.uses_reference(),
        "{} needs the reference's log-probs",
        method.name()
    );
    let sequence_nll = matches!(method, PrefLoss::Orpo { nll: OrpoNll::Sequence, .. });
    let (policy_chosen, policy_rejected, prompt) = if sequence_nll {
        let (c, r, p) = super::common::pair_logps_with_prompt(policy, b);
        (c, r, Some(p))
    } else {
        let (c, r) = pair_logps(policy, b);
        (c, r, None)
    };
    // A reference-free loss reads no reference log-probs: zeros stand in for them.
    let zeros = policy_chosen.zeros_like().detach();
    let (reference_chosen, reference_rejected) = reference.unwrap_or((&zeros, &zeros));
    let chosen_tokens = b.chosen_mask.sum_dim_intlist(1, false, Kind::Float);
    let rejected_tokens = b.rejected_mask.sum_dim_intlist(1, false, Kind::Float);
    let out = preference_loss(
        method,
        &PairLogps {
            policy_chosen: &policy_chosen,
            policy_rejected: &policy_rejected,
            reference_chosen,
            reference_rejected,
            chosen_tokens: &chosen_tokens,
            rejected_tokens: &rejected_tokens,
            chosen_prompt: prompt.as_ref().map(|(s, n)| (s, n)),
        },
    );
    let mut logged: Vec<(&'static str, Tensor)> = vec![];
    if let Some((chosen, rejected)) = &out.rewards {
        logged.push(("rewards/chosen", chosen.mean(Kind::Float)));
        logged.push(("rewards/rejected", rejected.mean(Kind::Float)));
        logged.push((
            "rewards/accuracies",
            super::common::pair_right(chosen, rejected).mean(Kind::Float),
        ));
        logged.push(("rewards/margins", (chosen - rejected).mean(Kind::Float)));
    }
    let loss = out.batch_loss();
    logged.push(("logps/chosen", policy_chosen.detach().mean(Kind::Float)));
    logged.push(("logps/rejected", policy_rejected.detach().mean(Kind::Float)));
    // Likelihood displacement (Razin et al. 2024): both log-ratios falling.
    if reference.is_some() {
        logged.push((
            "dynamics/logratio_chosen",
            (policy_chosen.detach() - reference_chosen).mean(Kind::Float),
        ));
        logged.push((
            "dynamics/logratio_rejected",
            (policy_rejected.detach() - reference_rejected).mean(Kind::Float),
        ));
    }
    let lr = cfg.lr * ((step + 1) as f64 / cfg.warmup_steps.max(1) as f64).min(1.0);
    opt.set_lr(lr);
    opt.zero_grad();
    loss.backward();
    let grad_norm = opt.clip_grad_norm(cfg.grad_clip);
    let loss_v = loss.double_value(&[]);
    t.check_finite(loss_v, "the loss")?;
    t.check_finite(grad_norm, "the gradient norm")?;
    opt.step();
    Ok(Step { loss: loss_v, grad_norm, logged })
}
