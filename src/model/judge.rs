//! A frozen decoder reward model as a judge: a `*ForSequenceClassification` checkpoint with one
//! output (GPT-2, GPT-NeoX, the Llama family), its own tokenizer reading the decoded text, its
//! score read at the last token, as transformers reads it (Gao et al.'s gold reward models and
//! the public HH and TL;DR reward models are of this kind).

use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

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
