//! The summarize world: an analogue of the DPO paper's TL;DR summarization.
//!
//! A document is `doc_min_len..=doc_max_len` words: `min_facts..=max_facts` distinct fact words
//! at random positions among filler words. The prompt is the document followed by `tldr`; the
//! response is the summary. Every fact word f has a salience s_f in [0, 1), drawn once per world.
//!
//! Gold judge of a summary (its words up to `<eos>`):
//!
//!   gold = sum of s_f over the distinct facts of the document it mentions
//!          - length_penalty * (number of words)
//!          - repeat_penalty * (number of words that repeat an earlier word)
//!          - hallucination_penalty * (number of distinct facts not in the document)
//!
//! The best summary lists the document's facts with s_f > length_penalty, once each (any
//! order). Reference summaries (the human-written ones, SFT's data) are near-optimal with
//! noise: in document order, each worthwhile fact is kept with probability 1 - ref_drop, each
//! other fact of the document is put in with probability ref_add, and with probability
//! ref_hallucinate one fact not in the document is appended. Their likelihood is exact, so
//! SFT's held-out NLL has a floor to compare with.
//!
//! Preference pairs come from a separate labeller policy (off-policy, as in the paper): in
//! document order it keeps each fact with probability labeller_keep regardless of salience,
//! repeats a kept fact with probability labeller_repeat, and inserts a fact not in the document
//! with probability labeller_hallucinate. Label noise is Bradley-Terry (`[prefs] labels`).
//! Headline metric: win rate against the reference summary under the gold judge.

use super::{
    names, Capabilities, Corpus, Splits, TextWorld, Texts, Vocab, WorldSpec, EOS, N_SPECIAL,
};
use crate::draw::{derive_seed, Rng};
use serde::{Deserialize, Serialize};

use crate::config::{in_range, in_unit, need, non_negative, ConfigError, MAX_COUNT};

const FACTS: &[&str] = &[
    "fire", "flood", "mayor", "strike", "election", "merger", "storm", "verdict", "budget",
    "outbreak", "protest", "scandal", "recall", "lawsuit", "drought", "treaty", "layoffs",
    "heatwave", "bankruptcy", "rescue", "arrest", "ceasefire", "blackout", "landslide",
    "acquisition", "resignation", "recession", "vaccine", "earthquake", "tariff", "leak", "award",
];
const FILLER: &[&str] = &[
    "the", "a", "and", "said", "today", "reports", "city", "people", "officials", "after", "local",
    "week", "news", "update", "residents", "sources", "on", "in", "that", "were",
];
const SEP: &str = "tldr";

/// Validated settings of the summarize world (see the scenario's `[world]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SummarizeConfig {
    /// Fact words, each with a salience in [0, 1) drawn once per world.
    pub n_facts: usize,
    /// Filler words.
    pub n_filler: usize,
    /// Shortest document, in words.
    pub doc_min_len: usize,
    /// Longest document, in words.
    pub doc_max_len: usize,
    /// Fewest distinct facts in a document.
    pub min_facts: usize,
    /// Most distinct facts in a document.
    pub max_facts: usize,
    /// Gold lost per summary word (a fact is worth mentioning above it).
    pub length_penalty: f64,
    /// Gold lost per word that repeats an earlier one.
    pub repeat_penalty: f64,
    /// Gold lost per distinct fact not in the document.
    pub hallucination_penalty: f64,
    /// Reference summaries: probability of dropping each worthwhile fact.
    pub ref_drop: f64,
    /// Reference summaries: probability of adding each other fact of the document.
    pub ref_add: f64,
    /// Reference summaries: probability of appending one fact not in the document.
    pub ref_hallucinate: f64,
    /// Labeller policy: probability of keeping each fact, whatever its salience.
    pub labeller_keep: f64,
    /// Labeller policy: probability of repeating a kept fact.
    pub labeller_repeat: f64,
    /// Labeller policy: probability of inserting a fact not in the document.
    pub labeller_hallucinate: f64,
    /// Documents with reference summaries for SFT.
    pub n_train: usize,
    /// Documents with reference summaries for SFT's validation.
    pub n_val: usize,
    /// Documents for training the methods (preference data, PPO rollouts).
    pub n_train_prompts: usize,
    /// Held-out documents for evaluation, each with one reference summary.
    pub n_eval_prompts: usize,
    /// A shifted document distribution for evaluation only (generalisation, as the paper's
    /// CNN/DailyMail test of TL;DR policies): the same judge, vocabulary and reference process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftConfig>,
}

/// `[world.shift]`: how the shifted documents differ from the training distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftConfig {
    /// Shortest shifted document, in words.
    pub doc_min_len: usize,
    /// Longest shifted document, in words.
    pub doc_max_len: usize,
    /// Fewest distinct facts in a shifted document.
    pub min_facts: usize,
    /// Most distinct facts in a shifted document.
    pub max_facts: usize,
    /// The shifted documents draw their filler from the last `filler_share` of the filler
    /// words only (another register; the first ones never appear).
    pub filler_share: f64,
    /// Facts first, in a lede (news style), instead of at random positions.
    pub facts_first: bool,
    /// Shifted documents for evaluation, each with one reference summary.
    pub n_eval_prompts: usize,
}

/// How documents are drawn: the training distribution's or a shift's.
struct DocStyle {
    min_len: usize,
    max_len: usize,
    min_facts: usize,
    max_facts: usize,
    /// Filler words `filler_lo..n_filler`.
    filler_lo: usize,
    facts_first: bool,
}

impl Default for SummarizeConfig {
    fn default() -> Self {
        SummarizeConfig {
            n_facts: 32,
            n_filler: 20,
            doc_min_len: 8,
            doc_max_len: 14,
            min_facts: 2,
            max_facts: 5,
            length_penalty: 0.35,
            repeat_penalty: 0.5,
            hallucination_penalty: 0.5,
            ref_drop: 0.2,
            ref_add: 0.2,
            ref_hallucinate: 0.1,
            labeller_keep: 0.5,
            labeller_repeat: 0.15,
            labeller_hallucinate: 0.3,
            n_train: 20_000,
            n_val: 1_000,
            n_train_prompts: 2_000,
            n_eval_prompts: 256,
            shift: None,
        }
    }
}

impl SummarizeConfig {
    /// Range and consistency checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_sizes()?;
        self.check_rates()?;
        self.check_counts()?;
        Ok(())
    }

    /// The vocabulary, the document lengths and the facts per document.
    fn check_sizes(&self) -> Result<(), ConfigError> {
        in_range("n_facts", self.n_facts, 2, 1024, "use e.g. 32 fact words")?;
        in_range("n_filler", self.n_filler, 1, 1024, "use e.g. 20 filler words")?;
        need(
            self.min_facts >= 1 && self.min_facts <= self.max_facts,
            "min_facts",
            || {
                format!(
                    "facts per document {}..{} is not a valid range",
                    self.min_facts, self.max_facts
                )
            },
            "use 1 <= min_facts <= max_facts",
        )?;
        need(
            self.max_facts < self.n_facts,
            "max_facts",
            || {
                format!(
                    "max_facts {} leaves no fact outside the document (n_facts {})",
                    self.max_facts, self.n_facts
                )
            },
            "use max_facts < n_facts",
        )?;
        need(
            self.doc_min_len >= self.max_facts && self.doc_min_len <= self.doc_max_len,
            "doc_min_len",
            || {
                format!(
                    "document lengths {}..{} must be a range starting at max_facts ({}) or more",
                    self.doc_min_len, self.doc_max_len, self.max_facts
                )
            },
            "use max_facts <= doc_min_len <= doc_max_len",
        )?;
        Ok(())
    }

    /// The judge's penalties and the reference and labeller processes' probabilities.
    fn check_rates(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("length_penalty", self.length_penalty),
            ("repeat_penalty", self.repeat_penalty),
            ("hallucination_penalty", self.hallucination_penalty),
        ] {
            non_negative(key, v, "use a penalty such as 0.35")?;
        }
        for (key, v) in [
            ("ref_drop", self.ref_drop),
            ("ref_add", self.ref_add),
            ("ref_hallucinate", self.ref_hallucinate),
            ("labeller_keep", self.labeller_keep),
            ("labeller_repeat", self.labeller_repeat),
            ("labeller_hallucinate", self.labeller_hallucinate),
        ] {
            in_unit(key, v, "use a probability such as 0.2")?;
        }
        need(
            self.ref_drop < 1.0 && self.ref_add > 0.0 && self.ref_hallucinate < 1.0,
            "ref_drop",
            || {
                "the reference process must be able to write every summary SFT can learn (ref_drop < 1, ref_add > 0, ref_hallucinate < 1)".into()
            },
            "use e.g. ref_drop = 0.2, ref_add = 0.2, ref_hallucinate = 0.1",
        )?;
        Ok(())
    }

    /// The corpora and prompt and `[world.shift]`.
    fn check_counts(&self) -> Result<(), ConfigError> {
        in_range("doc_max_len", self.doc_max_len, 1, MAX_COUNT, "use e.g. 14 words")?;
        if let Some(s) = &self.shift {
            need(
                s.min_facts >= 1 && s.min_facts <= s.max_facts && s.max_facts < self.n_facts,
                "shift.min_facts",
                || {
                    format!(
                        "facts per shifted document {}..{} is not a range in 1..{}",
                        s.min_facts, s.max_facts, self.n_facts
                    )
                },
                "use 1 <= min_facts <= max_facts < n_facts",
            )?;
            need(
                s.doc_min_len >= s.max_facts
                    && s.doc_min_len <= s.doc_max_len
                    && s.doc_max_len <= 64,
                "shift.doc_min_len",
                || {
                    format!("shifted document lengths {}..{} must be a range from max_facts ({}) to at most 64", s.doc_min_len, s.doc_max_len, s.max_facts)
                },
                "use max_facts <= doc_min_len <= doc_max_len <= 64",
            )?;
            need(
                s.filler_share > 0.0 && s.filler_share <= 1.0,
                "shift.filler_share",
                || format!("must be in (0, 1] (got {})", s.filler_share),
                "use e.g. 0.5: the last half of the filler words",
            )?;
            in_range("shift.n_eval_prompts", s.n_eval_prompts, 1, MAX_COUNT, "use e.g. 256")?;
        }
        Ok(())
    }
}

impl SummarizeConfig {
    /// The longest prompt: a document (of either distribution) and `tldr`.
    pub fn prompt_max_len(&self) -> usize {
        self.doc_max_len.max(self.shift.as_ref().map_or(0, |s| s.doc_max_len)) + 1
    }

    /// The longest reference summary: every fact and one hallucination.
    pub fn summary_max_len(&self) -> usize {
        self.max_facts + 1
    }
}

pub struct SummarizeWorld {
    pub cfg: SummarizeConfig,
    pub corpus: Corpus,
    /// salience[token] for fact tokens, None for other tokens.
    pub salience: Vec<Option<f64>>,
    pub sep: i64,
    /// One reference summary per evaluation prompt.
    pub eval_references: Vec<Vec<i64>>,
    /// Shifted documents and their reference summaries, where the world has a shift.
    pub shifted_prompts: Vec<Vec<i64>>,
    pub shifted_references: Vec<Vec<i64>>,
}

impl SummarizeWorld {
    pub fn new(cfg: &SummarizeConfig, seed: u64) -> SummarizeWorld {
        let mut words = names(FACTS, cfg.n_facts);
        words.extend(names(FILLER, cfg.n_filler));
        words.push(SEP.to_string());
        let vocab = Vocab::new(words);
        let sep = (vocab.size() - 1) as i64;
        let mut rng = Rng::new(derive_seed(seed, "world/summarize/salience"));
        let mut salience = vec![None; vocab.size()];
        for s in salience.iter_mut().skip(N_SPECIAL).take(cfg.n_facts) {
            *s = Some(rng.uniform());
        }
        let mut w = SummarizeWorld {
            cfg: cfg.clone(),
            corpus: Corpus { vocab, ..Corpus::default() },
            salience,
            sep,
            eval_references: vec![],
            shifted_prompts: vec![],
            shifted_references: vec![],
        };
        // Every document from a stream of its own, in parallel.
        let ww = &w;
        let train =
            super::drawn(seed, "world/summarize/train", cfg.n_train, |r| ww.sample_example(r));
        let val = super::drawn(seed, "world/summarize/val", cfg.n_val, |r| ww.sample_example(r));
        let train_prompts =
            super::drawn(seed, "world/summarize/train_prompts", cfg.n_train_prompts, |r| {
                ww.sample_document(r)
            });
        let eval: Vec<(Vec<i64>, Vec<i64>)> =
            super::drawn(seed, "world/summarize/eval_prompts", cfg.n_eval_prompts, |r| {
                ww.sample_example(r)
            });
        (w.corpus.train, w.corpus.val, w.corpus.train_prompts) = (train, val, train_prompts);
        (w.corpus.eval_prompts, w.eval_references) = eval.into_iter().unzip();
        // From a stream of its own: the other draws are those of a world without a shift.
        if let Some(s) = &cfg.shift {
            let style = DocStyle {
                min_len: s.doc_min_len,
                max_len: s.doc_max_len,
                min_facts: s.min_facts,
                max_facts: s.max_facts,
                filler_lo: cfg.n_filler
                    - ((s.filler_share * cfg.n_filler as f64).round() as usize)
                        .clamp(1, cfg.n_filler),
                facts_first: s.facts_first,
            };
            let ww = &w;
            let shifted: Vec<(Vec<i64>, Vec<i64>)> =
                super::drawn(seed, "world/summarize/shift", s.n_eval_prompts, |r| {
                    let doc = ww.sample_styled(&style, r);
                    let summary = ww.sample_reference(&doc, r);
                    (doc, summary)
                });
            (w.shifted_prompts, w.shifted_references) = shifted.into_iter().unzip();
        }
        w
    }

    fn fact_token(&self, i: usize) -> i64 {
        (N_SPECIAL + i) as i64
    }

    fn is_fact(&self, t: i64) -> bool {
        t >= 0 && self.salience.get(t as usize).is_some_and(|s| s.is_some())
    }

    /// A document and `tldr`.
    pub fn sample_document(&self, rng: &mut Rng) -> Vec<i64> {
        let c = &self.cfg;
        self.sample_styled(
            &DocStyle {
                min_len: c.doc_min_len,
                max_len: c.doc_max_len,
                min_facts: c.min_facts,
                max_facts: c.max_facts,
                filler_lo: 0,
                facts_first: false,
            },
            rng,
        )
    }

    /// A document of a style and `tldr` (the training style draws exactly as it always has).
    fn sample_styled(&self, st: &DocStyle, rng: &mut Rng) -> Vec<i64> {
        let c = &self.cfg;
        let len = st.min_len + rng.below(st.max_len - st.min_len + 1);
        let m = (st.min_facts + rng.below(st.max_facts - st.min_facts + 1)).min(len);
        let mut facts: Vec<usize> = (0..c.n_facts).collect();
        rng.shuffle(&mut facts);
        let mut positions: Vec<usize> = (0..len).collect();
        if !st.facts_first {
            rng.shuffle(&mut positions);
        }
        let fillers = c.n_filler - st.filler_lo;
        let mut doc: Vec<i64> = (0..len)
            .map(|_| (N_SPECIAL + c.n_facts + st.filler_lo + rng.below(fillers)) as i64)
            .collect();
        for j in 0..m {
            doc[positions[j]] = self.fact_token(facts[j]);
        }
        doc.push(self.sep);
        doc
    }

    /// The facts of a prompt, in document order.
    pub fn doc_facts(&self, prompt: &[i64]) -> Vec<i64> {
        prompt.iter().copied().filter(|&t| self.is_fact(t)).collect()
    }

    fn sal(&self, t: i64) -> f64 {
        self.salience[t as usize].expect("a fact token")
    }

    fn non_doc_facts(&self, facts: &[i64]) -> Vec<i64> {
        (0..self.cfg.n_facts).map(|i| self.fact_token(i)).filter(|t| !facts.contains(t)).collect()
    }

    /// A reference summary of a prompt (without `<eos>`).
    pub fn sample_reference(&self, prompt: &[i64], rng: &mut Rng) -> Vec<i64> {
        let facts = self.doc_facts(prompt);
        let mut out = Vec::new();
        for &f in &facts {
            if rng.bernoulli(self.keep_prob(f)) {
                out.push(f);
            }
        }
        let others = self.non_doc_facts(&facts);
        if !others.is_empty() && rng.bernoulli(self.cfg.ref_hallucinate) {
            out.push(others[rng.below(others.len())]);
        }
        out
    }

    fn keep_prob(&self, f: i64) -> f64 {
        if self.sal(f) > self.cfg.length_penalty {
            1.0 - self.cfg.ref_drop
        } else {
            self.cfg.ref_add
        }
    }

    fn sample_example(&self, rng: &mut Rng) -> (Vec<i64>, Vec<i64>) {
        let doc = self.sample_document(rng);
        let summary = self.sample_reference(&doc, rng);
        (doc, summary)
    }

    /// log p(summary <eos> | prompt) under the reference process; -inf if it cannot write it.
    pub fn reference_log_lik(&self, prompt: &[i64], summary: &[i64]) -> f64 {
        let facts = self.doc_facts(prompt);
        let others = self.non_doc_facts(&facts);
        let words: Vec<i64> = summary.iter().copied().take_while(|&t| t != EOS).collect();
        // An optional trailing hallucination, then a subsequence of the facts in document order.
        let (kept, halluc) = match words.last() {
            Some(&t) if self.is_fact(t) && !facts.contains(&t) => (&words[..words.len() - 1], true),
            _ => (&words[..], false),
        };
        let mut lp = 0.0;
        let mut k = 0;
        for &f in &facts {
            let p = self.keep_prob(f);
            if k < kept.len() && kept[k] == f {
                lp += p.ln();
                k += 1;
            } else {
                lp += (1.0 - p).ln();
            }
        }
        if k < kept.len() {
            return f64::NEG_INFINITY;
        }
        let ph = if others.is_empty() { 0.0 } else { self.cfg.ref_hallucinate };
        lp + if halluc { (ph / others.len() as f64).ln() } else { (1.0 - ph).ln() }
    }

    /// The labeller policy's summary of a prompt (without `<eos>`), at most `max_len` words.
    pub fn labeller_summary(&self, prompt: &[i64], max_len: usize, rng: &mut Rng) -> Vec<i64> {
        let c = &self.cfg;
        let facts = self.doc_facts(prompt);
        let mut out = Vec::new();
        for &f in &facts {
            if rng.bernoulli(c.labeller_keep) {
                out.push(f);
                if rng.bernoulli(c.labeller_repeat) {
                    out.push(f);
                }
            }
        }
        let others = self.non_doc_facts(&facts);
        if !others.is_empty() && rng.bernoulli(c.labeller_hallucinate) {
            let at = rng.below(out.len() + 1);
            out.insert(at, others[rng.below(others.len())]);
        }
        out.truncate(max_len);
        out
    }

    /// The gold judge's score of a summary of a prompt (words up to the first `<eos>`).
    pub fn judge(&self, prompt: &[i64], summary: &[i64]) -> f64 {
        let c = &self.cfg;
        let facts = self.doc_facts(prompt);
        let words: Vec<i64> = summary
            .iter()
            .copied()
            .take_while(|&t| t != EOS)
            .filter(|&t| self.corpus.vocab.is_word(t))
            .collect();
        let mut seen: Vec<i64> = Vec::new();
        let mut score = -c.length_penalty * words.len() as f64;
        for &t in &words {
            if seen.contains(&t) {
                score -= c.repeat_penalty;
                continue;
            }
            seen.push(t);
            if self.is_fact(t) {
                score += if facts.contains(&t) { self.sal(t) } else { -c.hallucination_penalty };
            }
        }
        score
    }

    /// The best summary of a prompt: its worthwhile facts in document order.
    pub fn optimal_summary(&self, prompt: &[i64]) -> Vec<i64> {
        self.doc_facts(prompt)
            .into_iter()
            .filter(|&f| self.sal(f) > self.cfg.length_penalty)
            .collect()
    }
}

impl TextWorld for SummarizeWorld {
    fn show(&self, show: usize, rng: &mut Rng) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "summarize world: {} tokens, {} train / {} val documents; reference-process NLL {:.4} nats/token", self.corpus.vocab.size(), self.corpus.train.len(), self.corpus.val.len(), self.true_nll_per_token());
        let facts: Vec<String> = (0..self.cfg.n_facts)
            .map(|i| {
                format!("{} {:.2}", self.corpus.vocab.words[3 + i], self.salience[3 + i].unwrap())
            })
            .collect();
        let _ = writeln!(
            out,
            "fact saliences (worth a mention above {}): {}",
            self.cfg.length_penalty,
            facts.join(", ")
        );
        let _ = writeln!(out, "\nevaluation documents, reference summary, optimal summary and a labeller summary (gold judge):");
        for (p, r) in self.corpus.eval_prompts.iter().zip(&self.eval_references).take(show) {
            let o = self.optimal_summary(p);
            let l = self.labeller_summary(p, self.cfg.summary_max_len() + 1, rng);
            let _ = writeln!(out, "  {}", self.corpus.vocab.render(p));
            let _ = writeln!(
                out,
                "    reference {:+.3} | {}",
                self.judge(p, r),
                self.corpus.vocab.render(r)
            );
            let _ = writeln!(
                out,
                "    optimal   {:+.3} | {}",
                self.judge(p, &o),
                self.corpus.vocab.render(&o)
            );
            let _ = writeln!(
                out,
                "    labeller  {:+.3} | {}",
                self.judge(p, &l),
                self.corpus.vocab.render(&l)
            );
        }

        out
    }

    fn corpus(&self) -> &Corpus {
        &self.corpus
    }
    fn true_nll_per_token(&self) -> f64 {
        let (nll, n) = self.corpus.val.iter().fold((0.0, 0usize), |(s, n), (p, y)| {
            (s - self.reference_log_lik(p, y), n + y.len() + 1)
        });
        nll / n as f64
    }
    fn gold(&self, prompt: &[i64], response: &[i64]) -> f64 {
        self.judge(prompt, response)
    }
    fn offpolicy_completion(&self, prompt: &[i64], n: usize, rng: &mut Rng) -> Vec<i64> {
        let mut s = self.labeller_summary(prompt, n, rng);
        if s.len() < n {
            s.push(EOS);
        }
        s
    }
    fn eval_references(&self) -> Option<&[Vec<i64>]> {
        Some(&self.eval_references)
    }
    fn shifted_eval(&self) -> Option<(Texts<'_>, Texts<'_>)> {
        self.cfg.shift.as_ref().map(|_| (&self.shifted_prompts[..], &self.shifted_references[..]))
    }
    fn describe(&self) -> Vec<(String, String)> {
        let mean_ref = self
            .corpus
            .eval_prompts
            .iter()
            .zip(&self.eval_references)
            .map(|(p, r)| self.judge(p, r))
            .sum::<f64>()
            / self.corpus.eval_prompts.len().max(1) as f64;
        let mean_opt = self
            .corpus
            .eval_prompts
            .iter()
            .map(|p| self.judge(p, &self.optimal_summary(p)))
            .sum::<f64>()
            / self.corpus.eval_prompts.len().max(1) as f64;
        vec![
            ("vocabulary".into(), format!("{} tokens", self.corpus.vocab.size())),
            (
                "documents".into(),
                format!("{} train, {} val", self.corpus.train.len(), self.corpus.val.len()),
            ),
            (
                "gold of references (eval)".into(),
                format!("{mean_ref:.4} (optimal summaries {mean_opt:.4})"),
            ),
        ]
    }
}

impl WorldSpec for SummarizeConfig {
    fn kind(&self) -> &'static str {
        "summarize"
    }
    fn validate(&self) -> Result<(), ConfigError> {
        SummarizeConfig::validate(self)
    }
    fn n_words(&self) -> usize {
        self.n_facts + self.n_filler + 1
    }
    fn prompt_max_len(&self) -> usize {
        SummarizeConfig::prompt_max_len(self)
    }
    fn max_text_len(&self) -> usize {
        SummarizeConfig::prompt_max_len(self) + self.summary_max_len()
    }
    fn splits(&self) -> Splits {
        let (n_train, n_val) = (self.n_train, self.n_val);
        let (n_train_prompts, n_eval_prompts) = (self.n_train_prompts, self.n_eval_prompts);
        Splits { n_train, n_val, n_train_prompts, n_eval_prompts }
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            true_process: false,
            labeller_policy: true,
            file_pairs: false,
            gold: true,
            labeller: false,
            references: true,
            shifted_inputs: self.shift.is_some(),
            fluency: false,
            spurious: false,
            gold_reads_padding: false,
            comparisons: &[["dpo", "ppo"], ["dpo", "ppo_gt"], ["dpo", "sft"]],
        }
    }
    fn build(&self, seed: u64) -> Box<dyn TextWorld> {
        Box::new(SummarizeWorld::new(self, seed))
    }
}
