//! The dataset world: prompts, demonstrations, preference pairs and reference responses from
//! local files (see `dataset_read` for the formats), tokenized by a checkpoint's own tokenizer,
//! judged by a reward classifier given as a folder (the gold model).
//!
//! Token layout. alignlab's pipeline keeps `<pad>`, `<bos>`, `<eos>` at 0, 1, 2. A tokenizer
//! that already has them there (one `export --hf` wrote) is used as it is; any other's ids are
//! shifted by 3, the three specials taking rows of its own (`<pad>` from its pad or EOS token,
//! `<bos>` from its BOS or EOS token, `<eos>` from its EOS token: see `checkpoint_rows`), and its
//! own special tokens are never emitted. A checkpoint's distribution over the other tokens is
//! unchanged by the shift.
//!
//! Splits: a test file, or a seeded fraction of the rows (`split_seed`, not the run's seed: every
//! seed of a study is evaluated on the same prompts). SFT trains on the training rows' prompt and
//! chosen (or only) response; the methods train on the training rows' prompts; evaluation uses
//! the test rows' prompts, with the first test row's chosen response of each as its reference.
//! In the `text` format (IMDb reviews) a prompt is the first 2 to 8 tokens of a review, as in the
//! DPO paper, and SFT trains on whole reviews.
//!
//! Gold: a classifier folder (`[world.gold]`) scores the decoded text, prompt and response
//! (or the response alone), in batches, on the run's device.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::dataset_read::{read, Columns, Format, Row};
use super::{Capabilities, Corpus, FilePair, Splits, TextWorld, Vocab, WorldSpec, EOS, N_SPECIAL};
use crate::config::{expand_path as expand, need, ConfigError};
use crate::draw::{derive_seed, Rng};
use crate::model::judge::{JudgeConfig, TextJudge};
use crate::model::tokenizer::{Template, Tokenizer};

/// What to do with a row longer than `max_prompt_tokens` or `max_response_tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlong {
    /// Keep the prompt's last tokens and the response's first (TRL's truncation), counted in
    /// the run summary.
    Truncate,
    /// Refuse the dataset, naming the row.
    Refuse,
}

/// Validated settings of the dataset world (the scenario's `[world]` table, `kind = "dataset"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// The tokenizer's folder (tokenizer.json, tokenizer_config.json): the policy's.
    pub tokenizer: String,
    /// The rows' layout: `"preference"`, `"prompt_completion"`, `"text"`, `"hh"` or `"tldr"`.
    pub format: Format,
    /// The training rows: JSON lines, or Parquet (a `.parquet` file).
    pub train: String,
    /// The test rows; empty: a seeded `test_fraction` of the training file.
    pub test: String,
    /// The fraction of the rows held out for evaluation when there is no test file.
    pub test_fraction: f64,
    /// The fraction of the training rows SFT validates on.
    pub sft_val_fraction: f64,
    /// The seed of the splits and of the `text` format's prompt lengths.
    pub split_seed: u64,
    /// At most this many rows of each file, in file order (0: all).
    pub max_rows: usize,
    /// The prompt template: `{prompt}` marks where the row's prompt goes.
    pub template: String,
    /// Where each field is found in a row.
    pub columns: Columns,
    /// The longest prompt, in tokens (the template included).
    pub max_prompt_tokens: usize,
    /// The longest response, in tokens.
    pub max_response_tokens: usize,
    /// A longer row: `"truncate"` (counted) or `"refuse"`.
    pub overlong: Overlong,
    /// Keep an empty response as one that ends at once (`<eos>` alone) instead of refusing it.
    pub empty_responses: bool,
    /// The `text` format's shortest prompt, in tokens.
    pub prompt_min_tokens: usize,
    /// The `text` format's longest prompt, in tokens (the paper: 2 to 8).
    pub prompt_max_tokens: usize,
    /// At most this many evaluation prompts (0: every test prompt).
    pub n_eval_prompts: usize,
    /// The gold judge.
    pub gold: Option<JudgeConfig>,
    /// The files' SHA-256 (data, tokenizer, judge), which alignlab writes into the resolved
    /// scenario and the cache keys; a value given here must match the files.
    pub fingerprint: Fingerprint,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            tokenizer: String::new(),
            format: Format::Preference,
            train: String::new(),
            test: String::new(),
            test_fraction: 0.1,
            sft_val_fraction: 0.05,
            split_seed: 0,
            max_rows: 0,
            template: "{prompt}".into(),
            columns: Columns::default(),
            max_prompt_tokens: 64,
            max_response_tokens: 64,
            overlong: Overlong::Truncate,
            empty_responses: false,
            prompt_min_tokens: 2,
            prompt_max_tokens: 8,
            n_eval_prompts: 0,
            gold: None,
            fingerprint: Fingerprint::default(),
        }
    }
}

/// The fingerprint as written in the scenario, and the files read once per configuration
/// (shared by its clones): written out, it is the files' own once they are read.
#[derive(Clone, Default)]
pub struct Fingerprint {
    claimed: String,
    data: Arc<OnceLock<Result<Arc<Data>, ConfigError>>>,
}

impl Fingerprint {
    fn value(&self) -> &str {
        match self.data.get() {
            Some(Ok(d)) => &d.fingerprint,
            _ => &self.claimed,
        }
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Fingerprint) -> bool {
        self.value() == other.value()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.value())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.value())
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Fingerprint { claimed: String::deserialize(d)?, ..Fingerprint::default() })
    }
}

/// A dataset read, tokenized and split.
pub struct Data {
    corpus: Corpus,
    /// The training rows' pairs.
    pairs: Vec<FilePair>,
    references: Vec<Vec<i64>>,
    tokenizer: Arc<Tokenizer>,
    offset: i64,
    gold: Option<Arc<TextJudge>>,
    truncated: usize,
    fingerprint: String,
    prompt_max_len: usize,
    max_text_len: usize,
}

impl DatasetConfig {
    fn data(&self) -> Result<Arc<Data>, ConfigError> {
        self.fingerprint.data.get_or_init(|| self.load().map(Arc::new)).clone()
    }

    /// Range checks, then the files read and checked (every problem before any work).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let frac = |key: &str, v: f64, fix: &str| {
            need(v > 0.0 && v < 1.0, key, || format!("must be in (0, 1) (got {v})"), fix)
        };
        frac("test_fraction", self.test_fraction, "use e.g. 0.1")?;
        frac("sft_val_fraction", self.sft_val_fraction, "use e.g. 0.05")?;
        need(
            self.max_prompt_tokens >= 1 && self.max_response_tokens >= 1,
            "max_prompt_tokens",
            || "max_prompt_tokens and max_response_tokens must be at least 1".into(),
            "use e.g. 64 and 64",
        )?;
        need(
            self.prompt_min_tokens >= 1 && self.prompt_min_tokens <= self.prompt_max_tokens,
            "prompt_min_tokens",
            || {
                format!(
                    "{}..{} is not a range of prompt lengths",
                    self.prompt_min_tokens, self.prompt_max_tokens
                )
            },
            "use 1 <= prompt_min_tokens <= prompt_max_tokens (the paper: 2 and 8)",
        )?;
        let data = self.data()?;
        let c = &data.corpus;
        need(
            !c.train.is_empty() && !c.val.is_empty() && c.eval_prompts.len() >= 2,
            "train",
            || {
                format!(
                    "the rows give {} SFT training and {} validation demonstrations and {} distinct evaluation prompts; it takes at least 1, 1 and 2",
                    c.train.len(),
                    c.val.len(),
                    c.eval_prompts.len()
                )
            },
            "give more rows (a few hundred at least), or a test file",
        )?;
        let claimed = &self.fingerprint.claimed;
        need(
            claimed.is_empty() || *claimed == data.fingerprint,
            "fingerprint",
            || format!("the files' fingerprint is {} now, not {claimed}", data.fingerprint),
            "the data changed since this scenario was written: remove `fingerprint`, or restore the files",
        )
    }

    fn load(&self) -> Result<Data, ConfigError> {
        let fail = |key: &str, problem: String, fix: &str| ConfigError {
            key: key.into(),
            problem,
            fix: fix.into(),
        };
        let template = Template::new(&self.template).map_err(|p| ConfigError {
            key: "template".into(),
            problem: p,
            fix: "write {prompt} once where the row's prompt goes, e.g. \"Human: {prompt}\\n\\nAssistant:\"".into(),
        })?;
        need(
            !self.tokenizer.is_empty(),
            "tokenizer",
            || "is not set".into(),
            "name the policy's tokenizer folder (tokenizer.json), e.g. the checkpoint's",
        )?;
        need(
            !self.train.is_empty(),
            "train",
            || "is not set".into(),
            "name the training rows' file (JSON lines or .parquet)",
        )?;
        let tok_dir = expand(&self.tokenizer, "tokenizer")?;
        let tokenizer = Tokenizer::open(&tok_dir).map_err(|e| e.at("tokenizer"))?;
        // Each file's rows and the SHA-256 of its bytes, read once.
        let read_file = |key: &str, path: &str| -> Result<(String, Vec<Row>), ConfigError> {
            let file = expand(path, key)?;
            let (mut rows, sha256) = read(&file, self.format, &self.columns, self.empty_responses)
                .map_err(|e| fail(key, e.problem, &e.fix))?;
            if self.max_rows > 0 {
                rows.truncate(self.max_rows);
            }
            Ok((sha256, rows))
        };
        let (train_sha, mut train) = read_file("train", &self.train)?;
        let mut files = vec![train_sha];
        let test = if self.test.is_empty() {
            split_off(
                &mut train,
                self.test_fraction,
                derive_seed(self.split_seed, "world/dataset/test"),
            )
        } else {
            let (f, rows) = read_file("test", &self.test)?;
            files.push(f);
            rows
        };
        // The judge reads the policy's decoded text.
        let sample = tokenizer.decode(&(0..tokenizer.rows().min(512)).collect::<Vec<_>>());
        let gold = self.gold.as_ref().map(|g| g.open("gold", &sample)).transpose()?;
        let fingerprint =
            fingerprint(&files, &tok_dir, gold.as_ref().map(|g| g.fingerprint.as_str()));
        let enc = RowEncoder::new(self, tokenizer, template)?;
        enc.build(train, test, gold, fingerprint)
    }

    fn loaded(&self) -> Arc<Data> {
        self.data().expect("the scenario validated the dataset world")
    }
}

/// A seeded `fraction` of `rows` (at least one, and at least one left), removed and returned in
/// file order.
fn split_off(rows: &mut Vec<Row>, fraction: f64, seed: u64) -> Vec<Row> {
    let n = rows.len();
    let k = ((n as f64 * fraction).round() as usize).clamp(1.min(n), n.saturating_sub(1));
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let mut chosen = vec![false; n];
    order[..k].iter().for_each(|&i| chosen[i] = true);
    let (mut keep, mut out) = (vec![], vec![]);
    for (row, c) in std::mem::take(rows).into_iter().zip(chosen) {
        if c {
            out.push(row);
        } else {
            keep.push(row);
        }
    }
    *rows = keep;
    out
}

/// SHA-256 over the data files' digests, the tokenizer and the judge's fingerprint.
fn fingerprint(files: &[String], tok_dir: &Path, judge: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_bytes());
    }
    h.update(std::fs::read(tok_dir.join("tokenizer.json")).unwrap_or_default());
    if let Some(fp) = judge {
        h.update(fp.as_bytes());
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A row's (prompt, chosen, rejected) ids.
type RowIds = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// Rows to token ids: the template, the shift to alignlab's layout, the length limits.
struct RowEncoder<'a> {
    cfg: &'a DatasetConfig,
    tokenizer: Tokenizer,
    template: Template,
    offset: i64,
    truncated: std::cell::Cell<usize>,
}

impl<'a> RowEncoder<'a> {
    fn new(
        cfg: &'a DatasetConfig,
        tokenizer: Tokenizer,
        template: Template,
    ) -> Result<Self, ConfigError> {
        let native = (tokenizer.pad, tokenizer.bos, tokenizer.eos) == (Some(0), Some(1), Some(2));
        need(
            native || tokenizer.eos.is_some(),
            "tokenizer",
            || "the tokenizer names no eos_token (in tokenizer_config.json or config.json)".into(),
            "use the checkpoint's tokenizer folder, with its tokenizer_config.json",
        )?;
        Ok(RowEncoder {
            cfg,
            template,
            offset: if native { 0 } else { N_SPECIAL as i64 },
            tokenizer,
            truncated: std::cell::Cell::new(0),
        })
    }

    fn ids(&self, text: &str) -> Vec<i64> {
        self.tokenizer.encode(text).into_iter().map(|i| i + self.offset).collect()
    }

    /// `ids` cut to `max` (from the front: a prompt keeps its end), or refused.
    fn limit(
        &self,
        mut ids: Vec<i64>,
        max: usize,
        front: bool,
        what: &str,
        line: &str,
    ) -> Result<Vec<i64>, ConfigError> {
        if ids.len() <= max {
            return Ok(ids);
        }
        if self.cfg.overlong == Overlong::Refuse {
            return Err(ConfigError {
                key: "overlong".into(),
                problem: format!("{line}: the {what} has {} tokens, more than {max}", ids.len()),
                fix: format!("raise max_{what}_tokens, or set overlong = \"truncate\""),
            });
        }
        self.truncated.set(self.truncated.get() + 1);
        if front {
            ids.drain(..ids.len() - max);
        } else {
            ids.truncate(max);
        }
        Ok(ids)
    }

    /// A row as (prompt, chosen, rejected) ids, responses without `<eos>`.
    fn row(&self, r: &Row, rng: &mut Rng) -> Result<RowIds, ConfigError> {
        let c = self.cfg;
        if c.format == Format::Text {
            let text = self.limit(
                self.ids(&r.chosen),
                c.max_prompt_tokens + c.max_response_tokens,
                false,
                "response",
                &r.at,
            )?;
            need(
                text.len() > c.prompt_min_tokens,
                "train",
                || {
                    format!(
                        "{}: the text has {} tokens, too few for a {}-token prompt and a response",
                        r.at,
                        text.len(),
                        c.prompt_min_tokens
                    )
                },
                "drop the row, or lower prompt_min_tokens",
            )?;
            let n = rng.range(c.prompt_min_tokens, c.prompt_max_tokens).min(text.len() - 1);
            return Ok((text[..n].to_vec(), text[n..].to_vec(), None));
        }
        let prompt = self.limit(
            self.ids(&self.template.apply(&r.prompt)),
            c.max_prompt_tokens,
            true,
            "prompt",
            &r.at,
        )?;
        let chosen =
            self.limit(self.ids(&r.chosen), c.max_response_tokens, false, "response", &r.at)?;
        let rejected = match &r.rejected {
            Some(t) => {
                Some(self.limit(self.ids(t), c.max_response_tokens, false, "response", &r.at)?)
            }
            None => None,
        };
        let empty = prompt.is_empty()
            || !c.empty_responses
                && (chosen.is_empty() || rejected.as_ref().is_some_and(Vec::is_empty));
        need(
            !empty,
            "train",
            || format!("{}: a prompt or response has no tokens", r.at),
            "drop the row",
        )?;
        Ok((prompt, chosen, rejected))
    }

    fn build(
        self,
        train: Vec<Row>,
        test: Vec<Row>,
        gold: Option<Arc<TextJudge>>,
        fingerprint: String,
    ) -> Result<Data, ConfigError> {
        let c = self.cfg;
        let mut rng = Rng::new(derive_seed(c.split_seed, "world/dataset/prompts"));
        let mut encode = |rows: &[Row]| -> Result<Vec<_>, ConfigError> {
            rows.iter().map(|r| self.row(r, &mut rng)).collect()
        };
        let (train_ids, test) = (encode(&train)?, encode(&test)?);
        let pairs = file_pairs(&train, &train_ids);
        let demos: Vec<(Vec<i64>, Vec<i64>)> = train_ids
            .iter()
            .map(|(p, ch, _)| match c.format {
                Format::Text => (vec![], [p.clone(), ch.clone()].concat()),
                _ => (p.clone(), ch.clone()),
            })
            .collect();
        let (sft_train, sft_val) = sft_split(demos.len(), c.sft_val_fraction, c.split_seed);
        let eval = eval_prompts(&test, c.n_eval_prompts);
        let prompt_max_len = train_ids.iter().chain(&test).map(|(p, _, _)| p.len()).max();
        let prompt_max_len = prompt_max_len.unwrap_or(0);
        let longest_response =
            train_ids.iter().map(|(_, ch, rj)| ch.len().max(rj.as_ref().map_or(0, Vec::len)));
        let max_text_len =
            demos.iter().map(|(p, r)| p.len() + r.len()).max().unwrap_or(0).max(
                prompt_max_len + c.max_response_tokens.min(longest_response.max().unwrap_or(0)),
            );
        let tokenizer = Arc::new(self.tokenizer);
        let rows =
            N_SPECIAL as i64 * (self.offset > 0) as i64 + tokenizer.rows().max(N_SPECIAL as i64);
        let vocab = Vocab::with_decoder(
            (N_SPECIAL as i64..rows).map(|i| tokenizer.id_to_token(i - self.offset)).collect(),
            tokenizer.clone(),
            self.offset,
        );
        let corpus = Corpus {
            vocab,
            train: sft_train.iter().map(|&i| demos[i].clone()).collect(),
            val: sft_val.iter().map(|&i| demos[i].clone()).collect(),
            // Distinct, in file order.
            train_prompts: distinct(train_ids.iter().map(|(p, _, _)| p.clone())),
            eval_prompts: eval.iter().map(|(p, _)| p.clone()).collect(),
        };
        Ok(Data {
            corpus,
            pairs,
            references: eval.into_iter().map(|(_, r)| r).collect(),
            tokenizer,
            offset: self.offset,
            gold,
            truncated: self.truncated.get(),
            fingerprint,
            prompt_max_len,
            max_text_len,
        })
    }
}

fn with_eos(mut r: Vec<i64>) -> Vec<i64> {
    r.push(EOS);
    r
}

/// The rows' pairs, each response ending in `<eos>` unless the row marks it cut.
fn file_pairs(rows: &[Row], ids: &[RowIds]) -> Vec<FilePair> {
    let ended = |r: &Vec<i64>, cut: bool| if cut { r.clone() } else { with_eos(r.clone()) };
    rows.iter()
        .zip(ids)
        .filter_map(|(row, (p, ch, rj))| {
            Some(FilePair {
                prompt: p.clone(),
                chosen: ended(ch, row.cut[0]),
                rejected: ended(rj.as_ref()?, row.cut[1]),
                val: row.val,
            })
        })
        .collect()
}

/// SFT's training and validation demonstrations: a seeded `fraction` (at least one, and one
/// left where there are two) held out; each in file order.
fn sft_split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_val = ((n as f64 * fraction).round() as usize).clamp(1, n.max(2) - 1).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(derive_seed(seed, "world/dataset/sft_val")).shuffle(&mut order);
    let mut val = order.split_off(n - n_val);
    val.sort_unstable();
    order.sort_unstable();
    (order, val)
}

/// The test rows' distinct prompts in file order (at most `n`; 0: all), each with its first
/// row's chosen response as the reference.
fn eval_prompts(test: &[RowIds], n: usize) -> Vec<(Vec<i64>, Vec<i64>)> {
    let mut seen = std::collections::HashSet::new();
    let mut eval: Vec<(Vec<i64>, Vec<i64>)> = test
        .iter()
        .filter(|(p, _, _)| seen.insert(p.clone()))
        .map(|(p, ch, _)| (p.clone(), with_eos(ch.clone())))
        .collect();
    if n > 0 {
        eval.truncate(n);
    }
    eval
}

fn distinct(items: impl Iterator<Item = Vec<i64>>) -> Vec<Vec<i64>> {
    let mut seen = std::collections::HashSet::new();
    items.filter(|p| seen.insert(p.clone())).collect()
}

impl WorldSpec for DatasetConfig {
    fn kind(&self) -> &'static str {
        "dataset"
    }
    fn validate(&self) -> Result<(), ConfigError> {
        DatasetConfig::validate(self)
    }
    fn n_words(&self) -> usize {
        self.data().map_or(0, |d| d.corpus.vocab.size() - N_SPECIAL)
    }
    fn prompt_max_len(&self) -> usize {
        self.data().map_or(0, |d| d.prompt_max_len)
    }
    fn max_text_len(&self) -> usize {
        self.data().map_or(0, |d| d.max_text_len)
    }
    fn splits(&self) -> Splits {
        self.data().map_or(
            Splits { n_train: 1, n_val: 1, n_train_prompts: 1, n_eval_prompts: 1 },
            |d| Splits {
                n_train: d.corpus.train.len(),
                n_val: d.corpus.val.len(),
                n_train_prompts: d.corpus.train_prompts.len(),
                n_eval_prompts: d.corpus.eval_prompts.len(),
            },
        )
    }
    fn capabilities(&self) -> Capabilities {
        let data = self.data().ok();
        Capabilities {
            true_process: false,
            labeller_policy: false,
            labeller: false,
            file_pairs: data.as_ref().is_some_and(|d| !d.pairs.is_empty()),
            gold: self.gold.is_some(),
            references: data.as_ref().is_some_and(|d| !d.references.is_empty()),
            shifted_inputs: false,
            fluency: false,
            spurious: false,
            gold_reads_padding: false,
            comparisons: &[["dpo", "ppo"], ["dpo", "ppo_gt"], ["dpo", "sft"]],
        }
    }
    fn suppressed(&self) -> Vec<i64> {
        self.data().map_or(vec![], |d| {
            d.tokenizer
                .special_ids()
                .into_iter()
                .map(|i| i + d.offset)
                .filter(|&i| i >= N_SPECIAL as i64)
                .collect()
        })
    }
    fn resident_bytes(&self) -> f64 {
        let Ok(d) = self.data() else { return 0.0 };
        d.gold.as_ref().map_or(0.0, |g| g.bytes)
    }
    fn checkpoint_rows(&self) -> Option<[i64; 3]> {
        let d = self.data().ok()?;
        let t = &d.tokenizer;
        let eos = t.eos?;
        (d.offset > 0).then(|| [t.pad.unwrap_or(eos), t.bos.unwrap_or(eos), eos])
    }
    fn build(&self, _seed: u64) -> Box<dyn TextWorld> {
        Box::new(DatasetWorld { data: self.loaded() })
    }
}

/// The world over a loaded dataset.
pub struct DatasetWorld {
    data: Arc<Data>,
}

impl DatasetWorld {
    /// The training rows' pairs.
    pub fn pairs(&self) -> &[FilePair] {
        &self.data.pairs
    }
}

impl TextWorld for DatasetWorld {
    fn corpus(&self) -> &Corpus {
        &self.data.corpus
    }
    fn show(&self, show: usize, _rng: &mut Rng) -> String {
        use std::fmt::Write as _;
        let (d, v) = (&self.data, &self.data.corpus.vocab);
        let mut out = format!(
            "dataset world: {} tokens, {} train / {} val demonstrations, {} pairs, {} training and {} evaluation prompts\n",
            v.size(), d.corpus.train.len(), d.corpus.val.len(), d.pairs.len(), d.corpus.train_prompts.len(), d.corpus.eval_prompts.len()
        );
        for (i, p) in d.corpus.eval_prompts.iter().take(show).enumerate() {
            let _ = writeln!(out, "  prompt: {:?}", v.render(p));
            if let Some(r) = d.references.get(i) {
                let _ = writeln!(out, "    reference {:+.3} | {:?}", self.gold(p, r), v.render(r));
            }
        }
        out
    }
    fn true_nll_per_token(&self) -> f64 {
        f64::NAN
    }
    fn gold(&self, prompt: &[i64], response: &[i64]) -> f64 {
        self.gold_batch(&[(prompt, response)])[0]
    }
    fn gold_batch(&self, items: &[(&[i64], &[i64])]) -> Vec<f64> {
        let Some(judge) = &self.data.gold else {
            return vec![f64::NAN; items.len()];
        };
        let v = &self.data.corpus.vocab;
        judge.score(items, &|t| v.render(t))
    }
    fn offpolicy_completion(&self, _prompt: &[i64], _n: usize, _rng: &mut Rng) -> Vec<i64> {
        unreachable!("the dataset world has no off-policy writer; the scenario refuses one")
    }
    fn eval_references(&self) -> Option<&[Vec<i64>]> {
        (!self.data.references.is_empty()).then_some(&self.data.references[..])
    }
    fn file_pairs(&self) -> Option<&[FilePair]> {
        Some(&self.data.pairs)
    }
    fn describe(&self) -> Vec<(String, String)> {
        let d = &self.data;
        vec![
            ("world/dataset/fingerprint".into(), d.fingerprint.clone()),
            ("world/dataset/pairs".into(), d.pairs.len().to_string()),
            ("world/dataset/truncated_rows".into(), d.truncated.to_string()),
            ("world/dataset/token_offset".into(), d.offset.to_string()),
            (
                "world/dataset/gold".into(),
                if d.gold.is_some() {
                    "the [world.gold] judge".into()
                } else {
                    "absent (no [world.gold]): gold columns are empty; read the proxy, implicit accuracy and held-out label accuracy".into()
                },
            ),
        ]
    }
}
