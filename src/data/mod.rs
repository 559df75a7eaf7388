//! Preference data: K completions per prompt, all K(K-1)/2 pairs, labels from the gold reward.
//!
//! Completions come from pi_SFT (the paper's IMDb setting) or, off-policy, from the world's true
//! process. Labels are deterministic (the higher gold reward wins; ties dropped) or
//! Bradley-Terry noisy: y_i wins with probability sigmoid((g_i - g_j) / temperature). The split
//! is by prompt, so no validation prompt is seen in training.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use tch::{Device, Kind, Tensor};

use serde::{Deserialize, Serialize};

use crate::config::{in_range, need, sampling_temperature, ConfigError, MIN_TEMPERATURE};
use crate::draw::{derive_seed, Rng};
use crate::model::{generate, left_pad, Gpt, SampleSettings};
use crate::world::{TextWorld, PAD};

/// Where the preference pairs' completions come from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefSource {
    /// K completions per prompt from pi_SFT (the paper's IMDb setting).
    Sft,
    /// Off-policy, sentiment world: completions from the world's true process.
    TrueProcess,
    /// Off-policy, summarize world: summaries from the world's labeller policy (as in TL;DR).
    Labeller,
    /// The dataset world's own pairs, labelled by the file (`labels = "world"`) or relabelled
    /// by the gold judge.
    Dataset,
}

/// How a pair is labelled, as written in `[prefs] labels`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// The higher gold reward wins (the paper's setting); ties are dropped.
    Deterministic,
    /// y_1 wins with probability sigmoid((gold_1 - gold_2) / bt_temperature).
    BradleyTerry,
    /// The world's own labeller (the dialogue world's: partial agreement with gold, and a
    /// spurious taste); online methods, which label with a reward, treat it as deterministic.
    World,
}

/// Which of the world's training prompts the online methods (PPO, PPO-GT, the policy-gradient
/// family, online DPO) roll out on, as written in `[prefs] rollout_prompts`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPrompts {
    /// Only the preference data's training prompts: the prompts held out to validate the reward
    /// model (and DPO) are never trained on by any method (the default).
    Train,
    /// Every training prompt, the validation prompts of the preference data included (the first
    /// wave's protocol, kept so that its scenarios reproduce their results).
    All,
}

/// A labelling rule with its parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Labels {
    Deterministic,
    BradleyTerry { temperature: f64 },
    World,
}

/// `[prefs]`: the preference data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefsConfig {
    /// Completions per prompt; all k(k-1)/2 pairs are used.
    pub k: usize,
    /// Who writes the completions: `"sft"` (pi_SFT, on-policy, the paper's sentiment setting), `"true_process"` or `"labeller"` (off-policy, where the world has one).
    pub source: PrefSource,
    /// How a pair is labelled: `"deterministic"` (the higher gold wins, the paper's), `"bradley_terry"` (noisy at `bt_temperature`) or `"world"` (the world's own labeller).
    pub labels: LabelKind,
    /// The Bradley-Terry labels' temperature (rewards are in [0, 1]).
    pub bt_temperature: f64,
    /// Fraction of prompts (with all their pairs) held out for validation.
    pub val_fraction: f64,
    /// Sampling temperature of the completions.
    pub temperature: f64,
    /// Which training prompts the online methods roll out on.
    pub rollout_prompts: RolloutPrompts,
}

impl Default for PrefsConfig {
    fn default() -> Self {
        PrefsConfig {
            k: 4,
            source: PrefSource::Sft,
            labels: LabelKind::Deterministic,
            bt_temperature: 0.1,
            val_fraction: 0.1,
            temperature: 1.0,
            rollout_prompts: RolloutPrompts::Train,
        }
    }
}

impl PrefsConfig {
    /// The labelling rule.
    pub fn label_rule(&self) -> Labels {
        match self.labels {
            LabelKind::Deterministic => Labels::Deterministic,
            LabelKind::BradleyTerry => Labels::BradleyTerry { temperature: self.bt_temperature },
            LabelKind::World => Labels::World,
        }
    }

    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("k", self.k, 2, 16, "use k = 4 (all 6 pairs, as in the paper)")?;
        need(
            self.bt_temperature.is_finite()
                && self.bt_temperature >= 1e-6
                && self.bt_temperature <= 1e6,
            "bt_temperature",
            || format!("must be in [1e-6, 1e6] (got {})", self.bt_temperature),
            "use e.g. 0.1 (rewards are in [0, 1])",
        )?;
        need(
            self.val_fraction > 0.0 && self.val_fraction < 1.0,
            "val_fraction",
            || format!("must be in (0, 1) (got {})", self.val_fraction),
            "use e.g. 0.1",
        )?;
        need(
            sampling_temperature(self.temperature, false),
            "temperature",
            || format!("must be in [{MIN_TEMPERATURE}, 4] (got {})", self.temperature),
            "sample completions at temperature 1.0",
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub prompt: Vec<i64>,
    pub chosen: Vec<i64>,
    pub rejected: Vec<i64>,
    pub gold_chosen: f64,
    pub gold_rejected: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PrefData {
    pub train: Vec<Pair>,
    pub val: Vec<Pair>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// K completions per prompt, labelled pairs, split by prompt.
pub fn build(
    world: &dyn TextWorld,
    sft: &Gpt,
    cfg: &PrefsConfig,
    max_new_tokens: usize,
    seed: u64,
    device: Device,
) -> PrefData {
    if let (PrefSource::Dataset, Some(pairs)) = (cfg.source, world.file_pairs()) {
        return file_pairs(world, pairs, cfg, seed);
    }
    let prompts = world.train_prompts();
    let k = cfg.k;
    // 1. Completions, prompt-major: completions[i * k + j].
    let completions = completions(world, sft, cfg, max_new_tokens, (seed, device));
    crate::profile::count(crate::profile::Count::GoldQueries, completions.len() as f64);
    let items: Vec<(&[i64], &[i64])> =
        completions.iter().enumerate().map(|(i, c)| (&prompts[i / k][..], &c[..])).collect();
    let gold = world.gold_batch(&items);
    // 2. Split prompts.
    let is_val = validation_prompts(prompts.len(), cfg.val_fraction, seed);
    // 3. All pairs, labelled.
    let mut label_rng = Rng::new(derive_seed(seed, "prefs/labels"));
    let mut data = PrefData { train: vec![], val: vec![] };
    for (pi, prompt) in prompts.iter().enumerate() {
        for a in 0..k {
            for b in a + 1..k {
                let (ia, ib) = (pi * k + a, pi * k + b);
                let a_wins = match cfg.label_rule() {
                    Labels::World => match world.labeller_prefers_first(
                        prompt, &completions[ia], &completions[ib], &mut label_rng,
                    ) {
                        Some(first) => first,
                        None => unreachable!("the scenario checks that the world has a labeller"),
                    },
                    Labels::Deterministic => {
                        if gold[ia] == gold[ib] {
                            continue;
                        }
                        gold[ia] > gold[ib]
                    }
                    Labels::BradleyTerry { temperature } => {
                        label_rng.bernoulli(sigmoid((gold[ia] - gold[ib]) / temperature))
                    }
                };
                let (w, l) = if a_wins { (ia, ib) } else { (ib, ia) };
                let pair = Pair {
                    prompt: prompt.clone(),
                    chosen: completions[w].clone(),
                    rejected: completions[l].clone(),
                    gold_chosen: gold[w],
                    gold_rejected: gold[l],
                };
                if is_val[pi] {
                    data.val.push(pair);
                } else {
                    data.train.push(pair);
                }
            }
        }
    }
    data
}

/// The world's own pairs, split by prompt as sampled ones are; labelled by the file
/// (`labels = "world"`) or by the gold judge.
fn file_pairs(
    world: &dyn TextWorld,
    pairs: &[crate::world::FilePair],
    cfg: &PrefsConfig,
    seed: u64,
) -> PrefData {
    let mut index = std::collections::HashMap::new();
    for f in pairs {
        let n = index.len();
        index.entry(&f.prompt).or_insert(n);
    }
    let items: Vec<(&[i64], &[i64])> = pairs
        .iter()
        .flat_map(|f| [(&f.prompt[..], &f.chosen[..]), (&f.prompt[..], &f.rejected[..])])
        .collect();
    crate::profile::count(crate::profile::Count::GoldQueries, items.len() as f64);
    let gold = world.gold_batch(&items);
    let is_val = validation_prompts(index.len(), cfg.val_fraction, seed);
    let mut label_rng = Rng::new(derive_seed(seed, "prefs/labels"));
    let mut data = PrefData { train: vec![], val: vec![] };
    for (i, f) in pairs.iter().enumerate() {
        let (p, c, r) = (&f.prompt, &f.chosen, &f.rejected);
        let (gc, gr) = (gold[2 * i], gold[2 * i + 1]);
        let keep = match cfg.label_rule() {
            Labels::World => true,
            Labels::Deterministic if gc == gr => continue,
            Labels::Deterministic => gc > gr,
            Labels::BradleyTerry { temperature } => {
                label_rng.bernoulli(sigmoid((gc - gr) / temperature))
            }
        };
        let (chosen, rejected, gold_chosen, gold_rejected) =
            if keep { (c, r, gc, gr) } else { (r, c, gr, gc) };
        let pair = Pair {
            prompt: p.clone(),
            chosen: chosen.clone(),
            rejected: rejected.clone(),
            gold_chosen,
            gold_rejected,
        };
        if f.val.unwrap_or(is_val[index[p]]) {
            data.val.push(pair);
        } else {
            data.train.push(pair);
        }
    }
    data
}

/// `cfg.k` completions of each training prompt, prompt-major (`[i * k + j]`): sampled from
/// pi_SFT, or drawn off-policy from the world.
fn completions(
    world: &dyn TextWorld,
    sft: &Gpt,
    cfg: &PrefsConfig,
    max_new_tokens: usize,
    (seed, device): (u64, Device),
) -> Vec<Vec<i64>> {
    let prompts = world.train_prompts();
    let k = cfg.k;
    match cfg.source {
        PrefSource::Sft => {
            let rows: Vec<Vec<i64>> =
                prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), k)).collect();
            let settings = SampleSettings {
                temperature: cfg.temperature,
                top_k: 0,
                max_new_tokens: max_new_tokens as i64,
                use_cache: true,
            };
            tch::manual_seed(derive_seed(seed, "prefs/sampling") as i64);
            let mut out = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(1024) {
                let (prompt, valid) = left_pad(chunk, device);
                out.extend(generate(sft, &prompt, &valid, &settings).response_rows());
            }
            out
        }
        PrefSource::TrueProcess | PrefSource::Labeller | PrefSource::Dataset => {
            let mut rng = Rng::new(derive_seed(seed, "prefs/true_process"));
            prompts
                .iter()
                .flat_map(|p| {
                    (0..k)
                        .map(|_| world.offpolicy_completion(p, max_new_tokens, &mut rng))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }
}

/// Which of `n` prompts hold validation pairs: a seeded `fraction` of them, at least one and,
/// with two or more prompts, at least one left for training.
fn validation_prompts(n: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut rng = Rng::new(derive_seed(seed, "prefs/split"));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let n_val = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
    let mut is_val = vec![false; n];
    for &i in &order[..n_val] {
        is_val[i] = true;
    }
    is_val
}

fn join(ts: &[i64]) -> String {
    ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ")
}

impl PrefData {
    /// The prompts online methods roll out on: with [`RolloutPrompts::Train`], the world's
    /// training prompts less every prompt of a validation pair (in the world's order).
    pub fn rollout_prompts(
        &self,
        world_prompts: &[Vec<i64>],
        which: RolloutPrompts,
    ) -> Vec<Vec<i64>> {
        match which {
            RolloutPrompts::All => world_prompts.to_vec(),
            RolloutPrompts::Train => {
                let held_out: std::collections::HashSet<&[i64]> =
                    self.val.iter().map(|p| &p.prompt[..]).collect();
                world_prompts.iter().filter(|p| !held_out.contains(&p[..])).cloned().collect()
            }
        }
    }

    /// One line per pair: `split|prompt|chosen|rejected|gold_chosen|gold_rejected`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (split, pairs) in [("train", &self.train), ("val", &self.val)] {
            for p in pairs {
                let _ = writeln!(
                    s,
                    "{split}|{}|{}|{}|{}|{}",
                    join(&p.prompt),
                    join(&p.chosen),
                    join(&p.rejected),
                    p.gold_chosen,
                    p.gold_rejected
                );
            }
        }
        s
    }

    pub fn from_text(text: &str) -> Result<PrefData> {
        let mut d = PrefData { train: vec![], val: vec![] };
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() != 6 {
                bail!("line {}: expected 6 fields", i + 1);
            }
            let toks = |s: &str| -> Result<Vec<i64>> {
                s.split_whitespace()
                    .map(|t| t.parse::<i64>().with_context(|| format!("line {}: bad token", i + 1)))
                    .collect()
            };
            let pair = Pair {
                prompt: toks(f[1])?,
                chosen: toks(f[2])?,
                rejected: toks(f[3])?,
                gold_chosen: f[4].parse()?,
                gold_rejected: f[5].parse()?,
            };
            match f[0] {
                "train" => d.train.push(pair),
                "val" => d.val.push(pair),
                s => bail!("line {}: unknown split {s}", i + 1),
            }
        }
        Ok(d)
    }

    pub fn load(path: &Path) -> Result<PrefData> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        PrefData::from_text(&text).with_context(|| {
            format!("corrupt preference data {}; fix: delete it to regenerate", path.display())
        })
    }
}

/// A batch of pairs as tensors.
pub struct PairBatch {
    pub prompt: Tensor,
    pub prompt_valid: Tensor,
    pub chosen: Tensor,
    pub chosen_mask: Tensor,
    pub rejected: Tensor,
    pub rejected_mask: Tensor,
}

/// Every pair as padded tensors on the device: prompts left-padded (with `<bos>`), responses
/// right-padded to the longest response.
pub struct PairTensors {
    all: PairBatch,
    n: usize,
}

fn right_pad(rows: &[&Vec<i64>], width: usize, device: Device) -> (Tensor, Tensor) {
    let mut toks = vec![PAD; rows.len() * width];
    let mut mask = vec![0f32; rows.len() * width];
    for (i, r) in rows.iter().enumerate() {
        for (j, &t) in r.iter().enumerate() {
            toks[i * width + j] = t;
            mask[i * width + j] = 1.0;
        }
    }
    let shape = [rows.len() as i64, width as i64];
    (
        Tensor::from_slice(&toks).view(shape).to_device(device),
        Tensor::from_slice(&mask).view(shape).to_device(device),
    )
}

impl PairTensors {
    pub fn new(pairs: &[Pair], device: Device) -> PairTensors {
        let prompts: Vec<Vec<i64>> = pairs.iter().map(|p| p.prompt.clone()).collect();
        let (prompt, prompt_valid) = left_pad(&prompts, device);
        let width =
            pairs.iter().map(|p| p.chosen.len().max(p.rejected.len())).max().unwrap_or(1).max(1);
        let (chosen, chosen_mask) =
            right_pad(&pairs.iter().map(|p| &p.chosen).collect::<Vec<_>>(), width, device);
        let (rejected, rejected_mask) =
            right_pad(&pairs.iter().map(|p| &p.rejected).collect::<Vec<_>>(), width, device);
        PairTensors {
            all: PairBatch { prompt, prompt_valid, chosen, chosen_mask, rejected, rejected_mask },
            n: pairs.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn batch(&self, idx: &[usize]) -> PairBatch {
        let a = &self.all;
        let index = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>())
            .to_device(a.prompt.device());
        let sel = |t: &Tensor| t.index_select(0, &index);
        PairBatch {
            prompt: sel(&a.prompt),
            prompt_valid: sel(&a.prompt_valid),
            chosen: sel(&a.chosen),
            chosen_mask: sel(&a.chosen_mask),
            rejected: sel(&a.rejected),
            rejected_mask: sel(&a.rejected_mask),
        }
    }

    /// Response lengths `[N]` of the chosen side (for Preferred-FT's token mean).
    pub fn chosen_tokens(&self) -> Tensor {
        self.all.chosen_mask.sum_dim_intlist(1, false, Kind::Float)
    }
}
