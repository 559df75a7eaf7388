//! Encoder classifiers as reward models (a gold judge or a proxy): BERT, RoBERTa and
//! DistilBERT `*ForSequenceClassification` checkpoints, frozen, with their own tokenizer
//! reading the decoded text, as sentiment pipelines use them (the DPO paper's IMDb gold is a
//! RoBERTa-large sentiment classifier, TRL's sentiment example a DistilBERT one).
//!
//! All three are post-LayerNorm encoders with learned positions and bidirectional attention over
//! the real tokens; they differ in names, in RoBERTa's positions (counted from the padding id)
//! and in the head: BERT's pooler (tanh) then the classifier, RoBERTa's dense + tanh + out_proj,
//! DistilBERT's pre_classifier + ReLU + classifier, each on the first token.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

use super::checkpoint::{err, read_config, read_safetensors, HfError};
use super::tokenizer::Tokenizer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind3 {
    Bert,
    Roberta,
    DistilBert,
}

/// What of the chosen label's logit is the reward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardOf {
    /// The label's logit (TRL's sentiment example).
    #[default]
    Logit,
    /// Its log-probability under the softmax over labels.
    LogProb,
    /// Its probability (the DPO paper's IMDb reward).
    Prob,
}

/// A frozen encoder classifier with its tokenizer, scoring text.
pub struct Classifier {
    kind: Kind3,
    w: BTreeMap<String, Tensor>,
    prefix: &'static str,
    n_layer: i64,
    n_head: i64,
    eps: f64,
    max_len: i64,
    pad: i64,
    pub labels: Vec<String>,
    label: i64,
    reward: RewardOf,
    pub tokenizer: Tokenizer,
}

/// The supported encoder `model_type`s.
pub const SUPPORTED: &str = "bert, roberta, distilbert";

/// Whether `dir`'s `config.json` names one of the supported encoders as its `model_type`.
pub fn is_encoder(dir: &Path) -> bool {
    let model_type = read_config(dir, "")
        .ok()
        .and_then(|(_, v)| v.get("model_type").and_then(Value::as_str).map(String::from));
    model_type.is_some_and(|t| SUPPORTED.split(", ").any(|s| s == t))
}

impl Classifier {
    /// `dir` (config.json, model.safetensors, tokenizer.json); `label` a label's name in
    /// `id2label` or its index.
    pub fn open(
        dir: &Path,
        label: &str,
        reward: RewardOf,
        device: Device,
    ) -> Result<Classifier, HfError> {
        let (file, v) = read_config(
            dir,
            "pass a Hugging Face classifier folder (config.json beside model.safetensors and tokenizer.json)",
        )?;
        let int = |k: &str| v.get(k).and_then(Value::as_i64);
        let (kind, prefix, n_layer, n_head, eps) = shape_of(&v, &file)?;
        let labels = label_names(&v);
        let label_i = label_index(&labels, label, &file)?;
        let tokenizer = Tokenizer::open(dir)?;
        let pad = int("pad_token_id").or(tokenizer.pad).unwrap_or(0);
        let positions = int("max_position_embeddings").ok_or_else(|| {
            err(
                &file,
                "has no `max_position_embeddings`",
                "use the config.json the checkpoint came with",
            )
        })?;
        // RoBERTa's positions start after the padding id.
        let max_len = if kind == Kind3::Roberta { positions - pad - 1 } else { positions };
        let weights = dir.join("model.safetensors");
        let w: BTreeMap<String, Tensor> = read_safetensors(&weights)?
            .into_iter()
            .map(|(k, t)| (k, t.to_kind(Kind::Float).to_device(device)))
            .collect();
        let c = Classifier {
            kind,
            w,
            prefix,
            n_layer,
            n_head,
            eps,
            max_len,
            pad,
            labels,
            label: label_i as i64,
            reward,
            tokenizer,
        };
        c.check_tensors(&weights)?;
        tokenizer_fits(&c, dir)?;
        Ok(c)
    }

    fn names(&self) -> Vec<String> {
        let p = self.prefix;
        let mut n = vec![
            format!("{p}.embeddings.word_embeddings.weight"),
            format!("{p}.embeddings.position_embeddings.weight"),
        ];
        n.extend(match self.kind {
            Kind3::Bert => vec![format!("{p}.pooler.dense.weight"), "classifier.weight".into()],
            Kind3::Roberta => {
                vec!["classifier.dense.weight".into(), "classifier.out_proj.weight".into()]
            }
            Kind3::DistilBert => vec!["pre_classifier.weight".into(), "classifier.weight".into()],
        });
        n
    }

    fn check_tensors(&self, file: &Path) -> Result<(), HfError> {
        for name in self.names() {
            if !self.w.contains_key(&name) {
                return Err(err(file, format!("has no tensor `{name}`"), "use the weights this config.json came with (a *ForSequenceClassification checkpoint)"));
            }
        }
        let out = self.head_out().size()[0];
        if out != self.labels.len() as i64 {
            return Err(err(
                file,
                format!("the classifier has {out} outputs for {} labels", self.labels.len()),
                "use the config.json the checkpoint came with",
            ));
        }
        Ok(())
    }

    fn t(&self, name: &str) -> &Tensor {
        &self.w[name]
    }

    fn linear(&self, x: &Tensor, name: &str) -> Tensor {
        x.linear(self.t(&format!("{name}.weight")), self.w.get(&format!("{name}.bias")))
    }

    fn norm(&self, x: &Tensor, name: &str) -> Tensor {
        let d = x.size()[2];
        x.layer_norm(
            [d],
            Some(self.t(&format!("{name}.weight"))),
            Some(self.t(&format!("{name}.bias"))),
            self.eps,
            false,
        )
    }

    fn head_out(&self) -> &Tensor {
        match self.kind {
            Kind3::Roberta => self.t("classifier.out_proj.weight"),
            _ => self.t("classifier.weight"),
        }
    }

    /// Logits over the labels `[B, labels]` of `ids` `[B, T]` (`valid` marks real tokens).
    pub fn logits(&self, ids: &Tensor, valid: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let p = self.prefix;
            let (b, t) = ids.size2().unwrap();
            let pos = match self.kind {
                Kind3::Roberta => {
                    valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) * valid.to_kind(Kind::Int64)
                        + self.pad
                }
                _ => Tensor::arange(t, (Kind::Int64, ids.device()))
                    .unsqueeze(0)
                    .expand([b, t], false),
            };
            let emb = |n: &str, i: &Tensor| {
                Tensor::embedding(
                    self.t(&format!("{p}.embeddings.{n}.weight")),
                    i,
                    -1,
                    false,
                    false,
                )
            };
            let mut x = emb("word_embeddings", ids) + emb("position_embeddings", &pos);
            if self.kind != Kind3::DistilBert {
                x += emb("token_type_embeddings", &ids.zeros_like());
            }
            let mut x = self.norm(&x, &format!("{p}.embeddings.LayerNorm"));
            let mask = valid.view([b, 1, 1, t]);
            for i in 0..self.n_layer {
                x = self.layer(&x, &mask, i);
            }
            let first = x.select(1, 0);
            match self.kind {
                Kind3::Bert => self.linear(
                    &self.linear(&first, &format!("{p}.pooler.dense")).tanh(),
                    "classifier",
                ),
                Kind3::Roberta => self
                    .linear(&self.linear(&first, "classifier.dense").tanh(), "classifier.out_proj"),
                Kind3::DistilBert => {
                    self.linear(&self.linear(&first, "pre_classifier").relu(), "classifier")
                }
            }
        })
    }

    /// One post-LayerNorm encoder layer.
    fn layer(&self, x: &Tensor, mask: &Tensor, i: i64) -> Tensor {
        let (b, t, d) = x.size3().unwrap();
        let heads = |y: Tensor| y.view([b, t, self.n_head, d / self.n_head]).transpose(1, 2);
        let (q, k, v, o, ln1, fc1, fc2, ln2) = match self.kind {
            Kind3::DistilBert => {
                let l = format!("distilbert.transformer.layer.{i}");
                let n = |s: &str| format!("{l}.{s}");
                (
                    n("attention.q_lin"),
                    n("attention.k_lin"),
                    n("attention.v_lin"),
                    n("attention.out_lin"),
                    n("sa_layer_norm"),
                    n("ffn.lin1"),
                    n("ffn.lin2"),
                    n("output_layer_norm"),
                )
            }
            _ => {
                let l = format!("{}.encoder.layer.{i}", self.prefix);
                let n = |s: &str| format!("{l}.{s}");
                (
                    n("attention.self.query"),
                    n("attention.self.key"),
                    n("attention.self.value"),
                    n("attention.output.dense"),
                    n("attention.output.LayerNorm"),
                    n("intermediate.dense"),
                    n("output.dense"),
                    n("output.LayerNorm"),
                )
            }
        };
        let (q, k, v) =
            (heads(self.linear(x, &q)), heads(self.linear(x, &k)), heads(self.linear(x, &v)));
        let y =
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, false);
        let y = self.linear(&y.transpose(1, 2).contiguous().view([b, t, d]), &o);
        let x = self.norm(&(y + x), &ln1);
        let f = self.linear(&self.linear(&x, &fc1).gelu("none"), &fc2);
        self.norm(&(f + &x), &ln2)
    }

    /// Token ids of `texts` as the classifier reads them (its special tokens added, cut to its
    /// positions, keeping the last special token), padded: `[B, T]` and the real tokens' mask.
    pub fn encode(&self, texts: &[String], device: Device) -> (Tensor, Tensor) {
        let rows: Vec<Vec<i64>> = texts
            .iter()
            .map(|s| {
                let mut ids = self.tokenizer.encode_with(s, true);
                if ids.len() as i64 > self.max_len {
                    let last = *ids.last().expect("non-empty");
                    ids.truncate(self.max_len as usize - 1);
                    ids.push(last);
                }
                ids
            })
            .collect();
        super::sample::right_pad(&rows, self.pad, device)
    }

    /// Its weights moved to `device`.
    pub fn to_device(&mut self, device: Device) {
        for t in self.w.values_mut() {
            *t = t.to_device(device);
        }
    }

    /// Its weights' bytes.
    pub fn bytes(&self) -> f64 {
        self.w.values().map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as f64).sum()
    }

    /// The device its weights are on.
    pub fn device(&self) -> Device {
        self.w.values().next().map_or(Device::Cpu, Tensor::device)
    }

    /// The reward of each text: the chosen label's logit, log-probability or probability.
    pub fn score(&self, texts: &[String], batch: usize, device: Device) -> Vec<f64> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch.max(1)) {
            let (ids, valid) = self.encode(chunk, device);
            let logits = self.logits(&ids, &valid);
            let r = match self.reward {
                RewardOf::Logit => logits.select(1, self.label),
                RewardOf::LogProb => logits.log_softmax(1, Kind::Float).select(1, self.label),
                RewardOf::Prob => logits.softmax(1, Kind::Float).select(1, self.label),
            };
            out.extend(
                Vec::<f64>::try_from(r.to_kind(Kind::Double).to_device(Device::Cpu))
                    .expect("a vector"),
            );
        }
        out
    }
}

/// The encoder's kind, weight prefix, layers, heads and LayerNorm epsilon from its config.
fn shape_of(v: &Value, file: &Path) -> Result<(Kind3, &'static str, i64, i64, f64), HfError> {
    let need = |k: &str| {
        v.get(k).and_then(Value::as_i64).ok_or_else(|| {
            err(file, format!("has no `{k}`"), "use the config.json the checkpoint came with")
        })
    };
    let eps = |default: f64| v.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(default);
    let shape = match v.get("model_type").and_then(Value::as_str).unwrap_or("") {
        "bert" => (
            Kind3::Bert,
            "bert",
            need("num_hidden_layers")?,
            need("num_attention_heads")?,
            eps(1e-12),
        ),
        "roberta" => (
            Kind3::Roberta,
            "roberta",
            need("num_hidden_layers")?,
            need("num_attention_heads")?,
            eps(1e-5),
        ),
        "distilbert" => {
            (Kind3::DistilBert, "distilbert", need("n_layers")?, need("n_heads")?, 1e-12)
        }
        other => {
            return Err(err(
                file,
                format!("model_type `{other}` is not a supported encoder classifier"),
                format!(
                    "use one of: {SUPPORTED} (decoder reward models go in as model checkpoints)"
                ),
            ))
        }
    };
    let act = v.get("hidden_act").or_else(|| v.get("activation")).and_then(Value::as_str);
    match act.unwrap_or("gelu") {
        "gelu" => Ok(shape),
        act => Err(err(
            file,
            format!("activation `{act}` is not supported"),
            "use a classifier with the exact GELU (`gelu`), as BERT, RoBERTa and DistilBERT have",
        )),
    }
}

/// The index of `label`, a name among `labels` or an index.
fn label_index(labels: &[String], label: &str, file: &Path) -> Result<usize, HfError> {
    labels
        .iter()
        .position(|l| l == label)
        .or_else(|| label.parse::<usize>().ok().filter(|&i| i < labels.len()))
        .ok_or_else(|| {
            let all: Vec<String> =
                labels.iter().enumerate().map(|(i, l)| format!("{i} = {l}")).collect();
            err(
                file,
                format!("has no label `{label}` (its labels: {})", all.join(", ")),
                "name one of its labels, or give its index",
            )
        })
}

/// `id2label`'s names by index (`LABEL_i` where a config has none).
fn label_names(v: &Value) -> Vec<String> {
    let map = v.get("id2label").and_then(Value::as_object);
    let n = map
        .map_or(0, |m| m.len())
        .max(v.get("num_labels").and_then(Value::as_u64).unwrap_or(2) as usize);
    (0..n)
        .map(|i| {
            map.and_then(|m| m.get(&i.to_string()))
                .and_then(Value::as_str)
                .map_or(format!("LABEL_{i}"), String::from)
        })
        .collect()
}

fn tokenizer_fits(c: &Classifier, dir: &Path) -> Result<(), HfError> {
    let rows = c.t(&format!("{}.embeddings.word_embeddings.weight", c.prefix)).size()[0];
    c.tokenizer.check_fits(dir, rows)
}
