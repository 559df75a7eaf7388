//! Bradley-Terry reward model (Ziegler et al. 2019; Ouyang et al. 2022), trained on the same
//! preference pairs as DPO.
//!
//! Implementation details (setting in `[reward]`):
//! 1. Architecture: the SFT trunk plus a scalar head (`score`), initialised from pi_SFT; the
//!    score is read at the last real response token.
//! 2. Loss: -log sigmoid(r_w - r_l - `margin`) + `center_coef` * mean((r_w + r_l)^2).
//! 3. AdamW (betas 0.9, 0.999), constant `lr`, gradient-norm clip `grad_clip`.
//! 4. `epochs` passes over the shuffled training pairs (3 in the paper); validation accuracy
//!    after each epoch; the best-validation weights are kept.
//!
//! Or a frozen judge as the proxy (`[reward.classifier]`, TRL's sentiment example: a DistilBERT
//! IMDb classifier as PPO's reward): nothing is trained; the methods optimise the judge's score
//! of the decoded text ([`Proxy`]), its agreement with the validation labels is logged as the
//! reward model's accuracy, and PPO's critic starts from the reward model's starting weights
//! (pi_SFT's trunk with a new head) as it would otherwise start from the trained one.

use anyhow::Result;
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

use super::common::{clip_grad_norm, concat_prompt_response};
use super::trainer::Trainer;
use serde::{Deserialize, Serialize};

use crate::config::{
    in_range, learning_rate, need, non_negative, positive, ConfigError, MAX_BATCH,
};
use crate::data::{Pair, PairTensors};
use crate::draw::{derive_seed, Rng};
use crate::model::judge::{JudgeConfig, TextJudge};
use crate::model::{sample::positions_of, Gpt, GptConfig, Rollout, Rows, ScalarHead};
use crate::world::Vocab;

/// `[reward]`: Bradley-Terry reward model training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Passes over the training pairs; the best validation epoch is kept.
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Loss -log sigmoid(r_w - r_l - margin).
    pub margin: f64,
    /// Adds center_coef * mean((r_w + r_l)^2), keeping rewards centred.
    pub center_coef: f64,
    /// Gradient-norm clip.
    pub grad_clip: f64,
    /// The reward model's (and so PPO's critic's) size; each absent one is `[model]`'s. A
    /// different size gets its trunk from an SFT model of that size trained on the same
    /// reviews (its own cached SFT stage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_layer: Option<usize>,
    /// The reward model's own width (default: `[model]`'s; then it is trained on its own SFT trunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_model: Option<usize>,
    /// The reward model's own heads (default: `[model]`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_head: Option<usize>,
    /// A Hugging Face decoder checkpoint folder the reward model (and so the critic) starts
    /// from instead of pi_SFT: a `*ForSequenceClassification` one brings its one-output
    /// `score` head, a causal LM gets a new head; then trained on the preference pairs as
    /// usual. Its architecture and sizes come from its config.json. "" for none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub init: String,
    /// A frozen judge as the proxy reward instead of a trained reward model: an encoder
    /// classifier (BERT, RoBERTa, DistilBERT) or a decoder reward model folder, with the keys
    /// of `[world.gold]` (`init`, `label`, `reward`, `batch`, `reads`). The critic still starts
    /// from the reward model's starting weights (pi_SFT's, or `init`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier: Option<JudgeConfig>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            epochs: 3,
            batch_size: 64,
            lr: 3e-4,
            margin: 0.0,
            center_coef: 0.0,
            grad_clip: 1.0,
            n_layer: None,
            d_model: None,
            n_head: None,
            init: String::new(),
            classifier: None,
        }
    }
}

impl RewardConfig {
    /// The reward model's architecture, given the policy's.
    pub fn model(&self, policy: &GptConfig) -> GptConfig {
        let or = |v: Option<usize>, d: i64| v.map(|v| v as i64).unwrap_or(d);
        GptConfig {
            n_layer: or(self.n_layer, policy.n_layer),
            d_model: or(self.d_model, policy.d_model),
            n_head: or(self.n_head, policy.n_head),
            ..policy.clone()
        }
    }

    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        need(
            self.epochs >= 1 && self.epochs <= 10_000,
            "epochs",
            || format!("must be in 1..=10000 (got {})", self.epochs),
            "use 3 epochs (as in the paper)",
        )?;
        in_range("batch_size", self.batch_size, 1, MAX_BATCH, "use e.g. 64")?;
        learning_rate("lr", self.lr, "use e.g. 3e-4")?;
        need(
            self.margin.is_finite(),
            "margin",
            || format!("must be finite (got {})", self.margin),
            "use margin = 0",
        )?;
        non_negative("center_coef", self.center_coef, "use center_coef = 0 (or e.g. 0.01)")?;
        positive("grad_clip", self.grad_clip, "use e.g. 1.0")
    }
}

pub struct RewardModel {
    pub gpt: Gpt,
    pub head: ScalarHead,
}

impl RewardModel {
    /// Trunk variables at the root (GPT-2 names), the head under `score`.
    pub fn new(p: &nn::Path, cfg: &GptConfig) -> RewardModel {
        RewardModel { gpt: Gpt::new(p, cfg), head: ScalarHead::new(p.clone(), cfg.d_model) }
    }

    /// Score of each (prompt, response) at its last real response token: `[B]`.
    pub fn score(
        &self,
        prompt: &Tensor,
        prompt_valid: &Tensor,
        response: &Tensor,
        mask: &Tensor,
    ) -> Tensor {
        let (tokens, valid) = concat_prompt_response(prompt, prompt_valid, response);
        let last = mask.sum_dim_intlist(1, false, Kind::Int64).clamp_min(1) - 1 + prompt.size()[1]; // [B]
        let hidden = self.gpt.forward_rows(
            &tokens,
            Some(&positions_of(&valid)),
            Some(&valid),
            Rows::Index(&last.unsqueeze(1)),
        ); // [B, 1, C]
        self.head.forward(&hidden).squeeze_dim(1)
    }
}

/// The proxy reward the methods optimise: the reward model trained here, or a frozen judge
/// reading the decoded text (`[reward.classifier]`).
#[derive(Clone, Copy)]
pub enum Proxy<'a> {
    Trained(&'a RewardModel),
    Frozen(&'a TextJudge, &'a Vocab),
}

impl Proxy<'_> {
    /// The score of each row of a sampled batch: `[B]`, on the batch's device.
    pub fn score(&self, ro: &Rollout) -> Tensor {
        match self {
            Proxy::Trained(rm) => rm.score(&ro.prompt, &ro.prompt_valid, &ro.response, &ro.mask),
            Proxy::Frozen(judge, vocab) => {
                ro.score_rows(|items| judge.score(items, &|t| vocab.render(t)))
            }
        }
    }
}

/// A frozen judge's accuracy and Bradley-Terry loss on labelled pairs (how well the proxy
/// agrees with the labels; a tie counts one half, as every accuracy over pairs does).
pub fn judge_accuracy(judge: &TextJudge, vocab: &Vocab, pairs: &[Pair]) -> (f64, f64) {
    let items: Vec<(&[i64], &[i64])> = pairs
        .iter()
        .flat_map(|p| [(&p.prompt[..], &p.chosen[..]), (&p.prompt[..], &p.rejected[..])])
        .collect();
    let s = judge.score(&items, &|t| vocab.render(t));
    let (c, r): (Vec<f64>, Vec<f64>) = s.chunks(2).map(|x| (x[0], x[1])).unzip();
    let (loss, acc) = reward_loss(&Tensor::from_slice(&c), &Tensor::from_slice(&r), 0.0, 0.0);
    (acc.double_value(&[]), loss.double_value(&[]))
}

/// Bradley-Terry loss and accuracy from chosen and rejected scores `[B]`.
pub fn reward_loss(
    r_chosen: &Tensor,
    r_rejected: &Tensor,
    margin: f64,
    center_coef: f64,
) -> (Tensor, Tensor) {
    let bt = -(r_chosen - r_rejected - margin).log_sigmoid().mean(Kind::Float);
    let loss = if center_coef > 0.0 {
        bt + (r_chosen + r_rejected).square().mean(Kind::Float) * center_coef
    } else {
        bt
    };
    let acc = super::common::pair_right(r_chosen, r_rejected).mean(Kind::Float);
    (loss, acc)
}

fn scores(rm: &RewardModel, data: &PairTensors, idx: &[usize]) -> (Tensor, Tensor) {
    let b = data.batch(idx);
    let n = idx.len() as i64;
    let s = rm.score(
        &Tensor::cat(&[&b.prompt, &b.prompt], 0),
        &Tensor::cat(&[&b.prompt_valid, &b.prompt_valid], 0),
        &Tensor::cat(&[&b.chosen, &b.rejected], 0),
        &Tensor::cat(&[&b.chosen_mask, &b.rejected_mask], 0),
    );
    (s.narrow(0, 0, n), s.narrow(0, n, n))
}

/// Accuracy and loss on a whole dataset, without gradients.
pub fn evaluate(rm: &RewardModel, data: &PairTensors, cfg: &RewardConfig) -> (f64, f64) {
    let _guard = tch::no_grad_guard();
    let (mut acc, mut loss) = (0.0, 0.0);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(512) {
        let (c, r) = scores(rm, data, chunk);
        let (l, a) = reward_loss(&c, &r, cfg.margin, cfg.center_coef);
        acc += a.double_value(&[]) * chunk.len() as f64;
        loss += l.double_value(&[]) * chunk.len() as f64;
    }
    (acc / data.len() as f64, loss / data.len() as f64)
}

pub struct RewardReport {
    pub best_val_acc: f64,
    pub best_epoch: usize,
}

/// Train the reward model; on return `vs` holds the best-validation weights.
pub fn train(
    rm: &RewardModel,
    vs: &nn::VarStore,
    train: &PairTensors,
    val: &PairTensors,
    cfg: &RewardConfig,
    t: &mut Trainer,
) -> Result<RewardReport> {
    let seed = t.seed;
    let total = total_steps(train.len(), cfg);
    let mut opt = nn::adamw(0.9, 0.999, 0.0).build(vs, cfg.lr)?;
    let vars = vs.trainable_variables();
    let mut rng = Rng::new(derive_seed(seed, "reward/order"));
    let (acc0, loss0) = evaluate(rm, val, cfg);
    t.log(0, "reward/val/accuracy", acc0);
    t.log(0, "reward/val/loss", loss0);
    let mut best: (f64, usize, Vec<Tensor>) = (f64::NEG_INFINITY, 0, vec![]);
    let mut step = 0;
    for epoch in 1..=cfg.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        for chunk in order.chunks(cfg.batch_size) {
            let (c, r) = scores(rm, train, chunk);
            let (loss, acc) = reward_loss(&c, &r, cfg.margin, cfg.center_coef);
            opt.zero_grad();
            loss.backward();
            let grad_norm = clip_grad_norm(&vars, cfg.grad_clip);
            let loss_v = loss.double_value(&[]);
            t.check_finite(loss_v, "the loss")?;
            opt.step();
            crate::profile::count(crate::profile::Count::GradSteps, 1.0);
            step += 1;
            t.step_done(total, loss_v);
            if step % 10 == 0 {
                t.log(step, "reward/loss/train", loss_v);
                t.log(step, "reward/accuracy/train", acc.double_value(&[]));
                t.log(step, "reward/grad_norm", grad_norm);
            }
        }
        let (acc, loss) = evaluate(rm, val, cfg);
        t.log(step, "reward/val/accuracy", acc);
        t.log(step, "reward/val/loss", loss);
        t.log(step, "reward/epoch", epoch as f64);
        if acc > best.0 {
            let _guard = tch::no_grad_guard();
            best = (acc, epoch, vars.iter().map(|v| v.copy()).collect());
        }
    }
    {
        let _guard = tch::no_grad_guard();
        for (v, b) in vars.iter().zip(&best.2) {
            v.shallow_clone().copy_(b);
        }
    }
    Ok(RewardReport { best_val_acc: best.0, best_epoch: best.1 })
}

/// Number of batches `train` will run (for progress bars).
pub fn total_steps(n_pairs: usize, cfg: &RewardConfig) -> usize {
    cfg.epochs * n_pairs.div_ceil(cfg.batch_size)
}
