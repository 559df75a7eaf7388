//! A frozen decoder reward model as a judge: a `*ForSequenceClassification` checkpoint with one
//! output (GPT-2, GPT-NeoX, the Llama family), its own tokenizer reading the decoded text, its
//! score read at the last token, as transformers reads it (Gao et al.'s gold reward models and
//! the public HH and TL;DR reward models are of this kind). And the judge a scenario names by
//! folder, either kind, as the gold (`[world.gold]`) or as a frozen proxy reward
//! (`[reward.classifier]`): [`JudgeConfig`], opened once into a [`TextJudge`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use tch::{nn, Device, Kind, Tensor};

use super::encoder::{Classifier, RewardOf};
use crate::config::{expand_path, need, ConfigError};

use super::checkpoint::{err, HfError};
use super::config::Precision;
use super::gpt::{Gpt, Rows};
use super::heads::ScalarHead;
use super::tokenizer::Tokenizer;

/// A decoder reward model with its tokenizer, scoring text.
pub struct DecoderJudge {
    vs: nn::VarStore,
    gpt: Gpt,
    head: ScalarHead,
    pub tokenizer: Tokenizer,
    block: i64,
    device: Device,
    /// Its weight files.
    pub files: Vec<std::path::PathBuf>,
}

impl DecoderJudge {
    /// `dir` (config.json, weights, tokenizer.json): a one-output sequence classifier.
    pub fn open(dir: &Path, device: Device) -> Result<DecoderJudge, HfError> {
        let mut ck = super::hf::open(dir)?;
        let config = dir.join("config.json");
        if ck.num_labels != Some(1) {
            return Err(err(
                &config,
                "is not a reward model with one output (a *ForSequenceClassification with num_labels = 1)",
                "give a reward model's folder, or an encoder classifier (BERT, RoBERTa, DistilBERT) with a label",
            ));
        }
        ck.gpt.arch.as_mut().expect("a checkpoint's architecture").tied = true;
        let cfg =
            super::hf::network(&ck, ck.gpt.vocab_size, ck.gpt.block_size, Precision::Fp32, None)?;
        let tokenizer = Tokenizer::open(dir)?;
        tokenizer.check_fits(dir, cfg.vocab_size)?;
        let vs = nn::VarStore::new(device);
        let gpt = Gpt::new(&vs.root(), &cfg);
        let head = ScalarHead::new(vs.root(), cfg.d_model);
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        if !super::hf::load(&ck, &cfg, &vars, "")? {
            return Err(err(
                &config,
                "has no `score.weight`",
                "give the reward model's full checkpoint",
            ));
        }
        let files = ck.files.clone();
        Ok(DecoderJudge { vs, gpt, head, tokenizer, block: cfg.block_size, device, files })
    }

    /// Its weights moved to `device`.
    pub fn to_device(&mut self, device: Device) {
        self.vs.set_device(device);
        self.device = device;
    }

    /// Its weights' bytes.
    pub fn bytes(&self) -> f64 {
        let vars = self.vs.variables();
        vars.values().map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as f64).sum()
    }

    /// The device its weights are on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The score of each text, in batches of `batch`, read at its last token (texts longer than
    /// the model's positions keep their end).
    pub fn score(&self, texts: &[String], batch: usize) -> Vec<f64> {
        let rows: Vec<Vec<i64>> = texts
            .iter()
            .map(|s| {
                let mut ids = self.tokenizer.encode_with(s, true);
                if ids.is_empty() {
                    ids.push(self.pad());
                }
                let cut = ids.len().saturating_sub(self.block as usize);
                ids.split_off(cut)
            })
            .collect();
        rows.chunks(batch.max(1)).flat_map(|c| self.score_ids(c)).collect()
    }

    fn pad(&self) -> i64 {
        self.tokenizer.pad.or(self.tokenizer.eos).unwrap_or(0)
    }

    /// The score of each row of token ids (non-empty, within the positions), at its last token.
    pub fn score_ids(&self, rows: &[Vec<i64>]) -> Vec<f64> {
        let (tokens, valid) = super::sample::right_pad(rows, self.pad(), self.device);
        let last: Vec<i64> = rows.iter().map(|ids| ids.len() as i64 - 1).collect();
        let last = Tensor::from_slice(&last).view([-1, 1]).to_device(self.device);
        let s = tch::no_grad(|| {
            let h = self.gpt.forward_rows(&tokens, None, Some(&valid), Rows::Index(&last));
            self.head.forward(&h).squeeze_dim(1)
        });
        Vec::<f64>::try_from(s.to_kind(Kind::Double).to_device(Device::Cpu)).expect("a vector")
    }
}

/// What a judge reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reads {
    /// The prompt and the response as one text (the DPO paper's IMDb judge reads the review).
    Full,
    /// The response alone.
    Response,
}

/// A judge given as a `*ForSequenceClassification` folder: an encoder classifier (BERT,
/// RoBERTa, DistilBERT; the label's logit, log-probability or probability) or a decoder reward
/// model with one output (GPT-2, GPT-NeoX, the Llama family; its score). `[world.gold]` and
/// `[reward.classifier]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// The judge's folder (config.json, the weights, tokenizer.json).
    pub init: String,
    /// An encoder's label whose score is the reward: a name of `id2label` or an index.
    #[serde(default = "default_label")]
    pub label: String,
    /// An encoder's reward: `"logit"`, `"log_prob"` or `"prob"` of the label (the DPO paper:
    /// prob).
    #[serde(default = "default_reward_of")]
    pub reward: RewardOf,
    /// Texts per judge batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// `"full"` (prompt and response) or `"response"`.
    #[serde(default = "default_reads")]
    pub reads: Reads,
    /// The judge once opened, shared by the configuration's clones.
    #[serde(skip)]
    opened: Opened,
}

fn default_label() -> String {
    "1".into()
}
fn default_reward_of() -> RewardOf {
    RewardOf::Prob
}
fn default_batch() -> usize {
    64
}
fn default_reads() -> Reads {
    Reads::Full
}

/// A configuration's judge, opened at most once.
#[derive(Clone, Default)]
struct Opened(Arc<OnceLock<Result<Arc<TextJudge>, ConfigError>>>);

impl PartialEq for Opened {
    fn eq(&self, _: &Opened) -> bool {
        true
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened({})", self.0.get().is_some())
    }
}

/// The judge model: an encoder classifier or a decoder reward model.
enum Judge {
    Encoder(Box<Classifier>),
    Decoder(Box<DecoderJudge>),
}

/// A judge opened from its folder: scores text, in batches, on the run's device.
pub struct TextJudge {
    judge: Mutex<Judge>,
    pub batch: usize,
    pub reads: Reads,
    /// SHA-256 of its config.json and weights (see `checkpoint::fingerprint_of`).
    pub fingerprint: String,
    /// Its weights' bytes.
    pub bytes: f64,
}

impl JudgeConfig {
    /// The judge, opened and checked on first use (errors under `table`, e.g. `gold`, with
    /// `<table>.init`): `sample`, some of the policy's decoded text, must come out of the
    /// judge's tokenizer as something other than unknown tokens.
    pub fn open(&self, table: &str, sample: &str) -> Result<Arc<TextJudge>, ConfigError> {
        self.opened.0.get_or_init(|| self.open_now(table, sample).map(Arc::new)).clone()
    }

    /// The judge if [`JudgeConfig::open`] has opened it.
    pub fn opened(&self) -> Option<Arc<TextJudge>> {
        self.opened.0.get().and_then(|r| r.as_ref().ok().cloned())
    }

    fn open_now(&self, table: &str, sample: &str) -> Result<TextJudge, ConfigError> {
        let key = format!("{table}.init");
        let dir = expand_path(&self.init, &key)?;
        let fail = |e: super::checkpoint::HfError| e.at(&key);
        need(
            self.batch >= 1,
            &format!("{table}.batch"),
            || "must be at least 1".into(),
            "use e.g. 64",
        )?;
        let judge = if super::encoder::is_encoder(&dir) {
            let c = Classifier::open(&dir, &self.label, self.reward, Device::Cpu).map_err(fail)?;
            Judge::Encoder(Box::new(c))
        } else {
            Judge::Decoder(Box::new(DecoderJudge::open(&dir, Device::Cpu).map_err(fail)?))
        };
        let tokenizer = match &judge {
            Judge::Encoder(c) => &c.tokenizer,
            Judge::Decoder(d) => &d.tokenizer,
        };
        let ids = tokenizer.encode(sample);
        need(
            !sample.trim().is_empty() && ids.iter().any(|&i| Some(i) != tokenizer.unk),
            &key,
            || {
                format!(
                    "{}: its tokenizer reads the policy's text as unknown tokens only",
                    dir.display()
                )
            },
            "use a judge whose tokenizer covers the policy's language",
        )?;
        let (weights, bytes) = match &judge {
            Judge::Encoder(c) => (vec![dir.join("model.safetensors")], c.bytes()),
            Judge::Decoder(d) => (d.files.clone(), d.bytes()),
        };
        let fingerprint =
            super::checkpoint::fingerprint_of(&dir.join("config.json"), &weights).map_err(fail)?;
        let (batch, reads) = (self.batch, self.reads);
        Ok(TextJudge { judge: Mutex::new(judge), batch, reads, fingerprint, bytes })
    }
}

impl TextJudge {
    /// The score of each (prompt, response), rendered as text by `render` (the prompt and the
    /// response together, or the response alone, as the judge reads), on the run's device (the
    /// judge is read on the CPU and moves there at its first batch).
    pub fn score(&self, items: &[(&[i64], &[i64])], render: &dyn Fn(&[i64]) -> String) -> Vec<f64> {
        let texts: Vec<String> = items
            .iter()
            .map(|(p, r)| match self.reads {
                Reads::Full => render(&[p, *r].concat()),
                Reads::Response => render(r),
            })
            .collect();
        let device = crate::device::current();
        match &mut *self.judge.lock().expect("the judge's lock") {
            Judge::Encoder(c) => {
                if c.device() != device {
                    c.to_device(device);
                }
                c.score(&texts, self.batch, device)
            }
            Judge::Decoder(d) => {
                if d.device() != device {
                    d.to_device(device);
                }
                d.score(&texts, self.batch)
            }
        }
    }
}
