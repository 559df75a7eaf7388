//! Supervised fine-tuning (SFT): maximum likelihood on the world's demonstrations.
//!
//! This produces pi_SFT, which is pi_ref and the starting point of every method (as in the DPO
//! paper). Preferred-FT reuses it on the chosen responses.
//!
//! Implementation details (setting in `[sft]`):
//! 1. Sequences are `<bos> words <eos>`; the loss is the mean token NLL of `words <eos>`,
//!    padding ignored.
//! 2. AdamW (betas 0.9, 0.99), weight decay `weight_decay` on every parameter.
//! 3. Learning rate: linear warm-up over `warmup_steps`, cosine decay to `lr * min_lr_ratio`.
//! 4. Global gradient-norm clipping at `grad_clip`; the pre-clip norm is logged.
//! 5. Data order: shuffled epochs from the scenario seed; batches trimmed to their longest row.
//! 6. Every `eval_every` steps: held-out NLL per token, beside the true process's NLL.

use anyhow::Result;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Reduction, Tensor};

use super::common::{clip_grad_norm, rows_index, warmup_cosine};
use super::trainer::Trainer;
use serde::{Deserialize, Serialize};

use crate::config::{
    at_least_one, in_range, in_unit, learning_rate, need, non_negative, positive, ConfigError,
    MAX_BATCH, MAX_STEPS,
};
use crate::draw::{derive_seed, Rng};
use crate::model::Gpt;
use crate::world::{BOS, EOS, PAD};

/// Supervised fine-tuning on the world's demonstrations (`[sft]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Optimiser steps, 1 to 10^7.
    pub steps: usize,
    /// Demonstrations per step.
    pub batch_size: usize,
    /// Peak learning rate of AdamW, in [0, 1).
    pub lr: f64,
    /// Linear warm-up steps before the cosine decay.
    pub warmup_steps: usize,
    /// The cosine schedule decays to lr * min_lr_ratio, in [0, 1].
    pub min_lr_ratio: f64,
    /// Decoupled weight decay, >= 0.
    pub weight_decay: f64,
    /// Global gradient-norm clip, finite and > 0.
    pub grad_clip: f64,
    /// Held-out NLL every this many steps.
    pub eval_every: usize,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            steps: 1500,
            batch_size: 64,
            lr: 2e-3,
            warmup_steps: 100,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            grad_clip: 1.0,
            eval_every: 250,
        }
    }
}

impl SftConfig {
    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // 0: pi_SFT is the starting checkpoint itself (the scenario allows it with model.init).
        in_range("steps", self.steps, 0, MAX_STEPS, "train for some steps, e.g. 1500")?;
        in_range("batch_size", self.batch_size, 1, MAX_BATCH, "use e.g. 64")?;
        need(
            self.warmup_steps <= MAX_STEPS,
            "warmup_steps",
            || format!("must be at most {MAX_STEPS} (got {})", self.warmup_steps),
            "use e.g. 100",
        )?;
        learning_rate("lr", self.lr, "use a learning rate such as 2e-3")?;
        in_unit("min_lr_ratio", self.min_lr_ratio, "use e.g. 0.1")?;
        non_negative("weight_decay", self.weight_decay, "use 0 or a small value such as 0.01")?;
        positive("grad_clip", self.grad_clip, "use e.g. 1.0")?;
        at_least_one("eval_every", self.eval_every, "evaluate every few hundred steps")
    }
}

/// Token sequences `<bos> words <eos> <pad>...` as one `[N, L]` tensor, with row lengths.
/// `targets` is the same with the prompt's tokens (of [`SeqData::from_examples`]) set to
/// `<pad>`, so that the loss covers the response and `<eos>` only.
pub struct SeqData {
    pub seqs: Tensor,
    pub targets: Tensor,
    pub lens: Vec<usize>,
}

impl SeqData {
    /// Whole texts, every word scored.
    pub fn new(texts: &[Vec<i64>], device: Device) -> SeqData {
        let examples: Vec<(Vec<i64>, Vec<i64>)> =
            texts.iter().map(|t| (vec![], t.clone())).collect();
        SeqData::from_examples(&examples, device)
    }

    /// (prompt, response) pairs: `<bos> prompt response <eos>`, scored on `response <eos>`.
    pub fn from_examples(examples: &[(Vec<i64>, Vec<i64>)], device: Device) -> SeqData {
        let l = examples.iter().map(|(p, r)| p.len() + r.len() + 2).max().unwrap_or(2);
        let mut flat = vec![PAD; examples.len() * l];
        let mut tflat = vec![PAD; examples.len() * l];
        let mut lens = Vec::with_capacity(examples.len());
        for (i, (p, r)) in examples.iter().enumerate() {
            let row = &mut flat[i * l..(i + 1) * l];
            row[0] = BOS;
            row[1..1 + p.len()].copy_from_slice(p);
            row[1 + p.len()..1 + p.len() + r.len()].copy_from_slice(r);
            row[1 + p.len() + r.len()] = EOS;
            let n = p.len() + r.len() + 2;
            tflat[i * l + 1 + p.len()..i * l + n].copy_from_slice(&row[1 + p.len()..n]);
            lens.push(n);
        }
        let shape = [examples.len() as i64, l as i64];
        SeqData {
            seqs: Tensor::from_slice(&flat).view(shape).to_device(device),
            targets: Tensor::from_slice(&tflat).view(shape).to_device(device),
            lens,
        }
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// (inputs, targets) `[B, T]` for the rows `idx`, trimmed to their longest row.
    pub fn batch(&self, idx: &[usize]) -> (Tensor, Tensor) {
        let t = idx.iter().map(|&i| self.lens[i]).max().unwrap() as i64;
        let index = rows_index(idx).to_device(self.seqs.device());
        let rows = self.seqs.index_select(0, &index).narrow(1, 0, t);
        let targets = self.targets.index_select(0, &index).narrow(1, 1, t - 1);
        (rows.narrow(1, 0, t - 1), targets)
    }
}

/// Summed token NLL and the number of tokens, over a whole dataset (no gradients).
pub fn nll(model: &Gpt, data: &SeqData, batch: usize) -> (f64, f64) {
    let _guard = tch::no_grad_guard();
    let mut sum = 0.0;
    let mut count = 0.0;
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch) {
        let (inp, tgt) = data.batch(chunk);
        let logits = model.logits(&model.forward(&inp, None, None, None));
        let v = logits.size()[2];
        sum += logits
            .view([-1, v])
            .cross_entropy_loss::<Tensor>(&tgt.reshape([-1]), None, Reduction::Sum, PAD, 0.0)
            .double_value(&[]);
        count += tgt.ne(PAD).sum(Kind::Float).double_value(&[]);
    }
    (sum, count)
}

/// The SFT loss on one batch: mean NLL of the target tokens, padding ignored.
pub fn sft_loss(model: &Gpt, inp: &Tensor, tgt: &Tensor) -> Tensor {
    let logits = model.logits(&model.forward(inp, None, None, None)); // [B, T, V]
    let v = logits.size()[2];
    logits.view([-1, v]).cross_entropy_loss::<Tensor>(
        &tgt.reshape([-1]),
        None,
        Reduction::Mean,
        PAD,
        0.0,
    )
}

pub struct SftReport {
    pub train_nll: f64,
    pub val_nll: f64,
    pub tokens: f64,
    pub seconds: f64,
}

/// Train `model` (whose variables live in `vs`) on `train`; evaluate on `val`.
/// `t` names the run in the metrics (`sft`, `preferred_ft`, ...).
pub fn train(
    model: &Gpt,
    vs: &nn::VarStore,
    train: &SeqData,
    val: &SeqData,
    cfg: &SftConfig,
    t: &mut Trainer,
) -> Result<SftReport> {
    let (label, seed) = (t.name.clone(), t.seed);
    let mut opt = nn::adamw(0.9, 0.99, cfg.weight_decay).build(vs, cfg.lr)?;
    let vars = vs.trainable_variables();
    let mut rng = Rng::new(derive_seed(seed, &format!("{}/order", t.stream)));
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut cursor = order.len();
    let start = std::time::Instant::now();
    let mut tokens = 0.0;
    let mut train_ema = f64::NAN;
    for step in 0..cfg.steps {
        // 1. Next batch from a shuffled epoch.
        let mut idx = Vec::with_capacity(cfg.batch_size);
        while idx.len() < cfg.batch_size {
            if cursor == order.len() {
                rng.shuffle(&mut order);
                cursor = 0;
            }
            idx.push(order[cursor]);
            cursor += 1;
        }
        let (inp, tgt) = train.batch(&idx);
        // 2. Loss, gradient, clip, scheduled step.
        let lr = cfg.lr * warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio);
        opt.set_lr(lr);
        opt.zero_grad();
        let loss = sft_loss(model, &inp, &tgt);
        loss.backward();
        let grad_norm = clip_grad_norm(&vars, cfg.grad_clip);
        let loss_v = loss.double_value(&[]);
        t.check_finite(loss_v, "the loss")?;
        t.check_finite(grad_norm, "the gradient norm")?;
        opt.step();
        crate::profile::count(crate::profile::Count::GradSteps, 1.0);
        tokens += tgt.ne(PAD).sum(Kind::Float).double_value(&[]);
        train_ema = if train_ema.is_nan() { loss_v } else { 0.98 * train_ema + 0.02 * loss_v };
        // 3. Metrics and periodic held-out NLL (`t` counts the steps in `cfg.eval_every`).
        let s = step + 1;
        let evaluate = t.step_done(cfg.steps, loss_v);
        if s % 10 == 0 || s == cfg.steps {
            t.log(s, &format!("{label}/loss/train"), loss_v);
            t.log(s, &format!("{label}/grad_norm"), grad_norm);
            t.log(s, &format!("{label}/lr"), lr);
        }
        if evaluate {
            let (sum, n) = nll(model, val, 512);
            t.log(s, &format!("{label}/nll/val"), sum / n);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (sum, n) = nll(model, val, 512);
    if cfg.steps == 0 {
        t.log(0, &format!("{label}/nll/val"), sum / n);
    }
    Ok(SftReport { train_nll: train_ema, val_nll: sum / n, tokens, seconds })
}
