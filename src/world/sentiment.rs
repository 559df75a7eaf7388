//! The sentiment world: an analogue of the DPO paper's IMDb controlled-sentiment task.
//!
//! A review has a latent sentiment z in {negative, positive} (prior 1/2). Given z, words follow
//! a bigram chain whose logits are a random base table tilted by z:
//!
//!   logit_z(w | prev) = base[prev][w] + tilt * sign(z) * polarity(w),   polarity in {+1, -1, 0}
//!
//! Length: after `min_len` words the review stops with probability `stop_prob` at each step,
//! and always at `max_len`. The stopping hazard does not depend on z.
//!
//! Gold reward: p(positive | text) under this very process (Bayes-optimal classifier):
//! sigmoid(log p(text | pos) - log p(text | neg)); the hazard cancels. Prompts are 2 to 8 word
//! prefixes of held-out reviews, so a negative prefix makes a positive review costly in KL.
//! Fluency and the per-token NLL use the Bayes predictive p(w_t | w_<t), which marginalises z.
//!
//! Past `max_len` the true process has no mass under either z. The gold reward there is defined
//! by the same formula: the posterior of z given the words, the length law (which does not
//! depend on z inside the support) left out. A policy's text may run past `max_len` when
//! `prompt_max_len + sample.max_new_tokens > max_len`; its gold is this definition, not an
//! extrapolation of a posterior that exists.
//!
//! A labeller with a spurious taste (`[world.labeller]`, used with `[prefs] labels = "world"`):
//! it ranks two completions by gold + `bonus` x the count of one `word` in each, a word of the
//! neutral list to which the true process gives the polarity `polarity` (default 0; negative:
//! the process uses it more in negative reviews, as "very" in "very dull"). The labeller reads
//! the word as emphasis and likes it; a reward model learned from its pairs rewards it; a policy
//! that optimises that reward far enough repeats it, and with a negative polarity each
//! repetition is evidence for a negative review, so its gold falls while the proxy keeps rising:
//! the world where the proxy is hacked (Gao et al. 2022's overoptimisation). With polarity 0 the
//! word carries no sentiment and a long enough completion has room for both it and the words
//! that carry sentiment: gold need not fall.

use super::{
    logsumexp, names, sigmoid, Capabilities, Corpus, Splits, TextWorld, Vocab, WorldSpec, EOS,
    N_SPECIAL,
};
use crate::draw::{derive_seed, Rng};
use serde::{Deserialize, Serialize};

use crate::config::{at_least_one, need, non_negative, ConfigError};

const POSITIVE: &[&str] = &[
    "great", "superb", "wonderful", "brilliant", "moving", "charming", "delightful", "stunning",
    "masterful", "touching", "gripping", "witty", "beautiful", "clever", "fresh", "powerful",
    "heartfelt", "vivid", "elegant", "joyful", "hilarious", "compelling", "inspired", "flawless",
];
const NEGATIVE: &[&str] = &[
    "awful", "boring", "dull", "tedious", "clumsy", "bland", "painful", "messy", "lifeless",
    "forgettable", "annoying", "shallow", "weak", "predictable", "stale", "pointless", "confusing",
    "ugly", "lazy", "hollow", "dreadful", "silly", "cheap", "tiresome",
];
const NEUTRAL: &[&str] = &[
    "the", "film", "movie", "plot", "actor", "actress", "scene", "story", "director", "cast",
    "ending", "script", "camera", "music", "and", "was", "is", "very", "quite", "but", "a", "it",
    "with", "this", "its", "of", "in", "by", "as", "feels", "seems", "performance", "dialogue",
    "score", "character", "pacing", "tone", "visuals", "runtime", "sequel", "premise", "twist",
    "humor", "drama", "then", "also", "rather", "simply",
];

/// Validated settings of the sentiment world (see the scenario's `[world]` table).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SentimentConfig {
    /// Positive words in the vocabulary.
    pub n_positive: usize,
    /// Negative words in the vocabulary.
    pub n_negative: usize,
    /// Neutral words in the vocabulary.
    pub n_neutral: usize,
    /// Logit shift towards words of the latent polarity (and away from the opposite).
    pub tilt: f64,
    /// Standard deviation of the base bigram logits; larger is a more predictable language.
    pub sharpness: f64,
    /// Shortest review, in words.
    pub min_len: usize,
    /// Longest review, in words.
    pub max_len: usize,
    /// Per-word probability that a review ends once it has `min_len` words.
    pub stop_prob: f64,
    /// Shortest prompt (a prefix of a held-out review), in words.
    pub prompt_min_len: usize,
    /// Longest prompt, in words (the paper: 2 to 8).
    pub prompt_max_len: usize,
    /// Reviews of SFT's training corpus.
    pub n_train: usize,
    /// Reviews of SFT's validation corpus.
    pub n_val: usize,
    /// Prompts for training the methods (preference data, PPO rollouts).
    pub n_train_prompts: usize,
    /// Held-out prompts for evaluation.
    pub n_eval_prompts: usize,
    /// The world's own labeller with a spurious taste (`[prefs] labels = "world"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labeller: Option<LabellerConfig>,
}

/// `[world.labeller]`: a labeller that likes one neutral word.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabellerConfig {
    /// The neutral word the labeller likes (one of the world's neutral words).
    pub word: String,
    /// What one occurrence of the word is worth to the labeller, in units of gold (p(positive)).
    pub bonus: f64,
    /// The word's polarity in the true process, in [-1, 1] (0: neutral, as the other neutral
    /// words; -1: as a negative word).
    #[serde(default)]
    pub polarity: f64,
}

impl Default for SentimentConfig {
    fn default() -> Self {
        SentimentConfig {
            n_positive: 12,
            n_negative: 12,
            n_neutral: 24,
            tilt: 1.0,
            sharpness: 2.0,
            min_len: 8,
            max_len: 20,
            stop_prob: 0.15,
            prompt_min_len: 2,
            prompt_max_len: 8,
            n_train: 20_000,
            n_val: 2_000,
            n_train_prompts: 2_000,
            n_eval_prompts: 256,
            labeller: None,
        }
    }
}

impl SentimentConfig {
    /// Range and consistency checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_lengths()?;
        self.check_prompts()?;
        self.check_labeller()?;
        Ok(())
    }

    /// The vocabulary, the review lengths and the prompt lengths.
    fn check_lengths(&self) -> Result<(), ConfigError> {
        need(
            self.n_positive >= 1 && self.n_negative >= 1,
            "n_positive",
            || {
                format!(
                    "needs at least one positive and one negative word (got {} and {})",
                    self.n_positive, self.n_negative
                )
            },
            "set n_positive and n_negative to 1 or more",
        )?;
        need(
            self.n_positive.saturating_add(self.n_negative).saturating_add(self.n_neutral) <= 4096,
            "n_neutral",
            || "the vocabulary is larger than 4096 words".into(),
            "use fewer words; this is a CPU-sized world",
        )?;
        non_negative("tilt", self.tilt, "use a tilt such as 1.0")?;
        non_negative("sharpness", self.sharpness, "use a sharpness such as 2.0")?;
        at_least_one("min_len", self.min_len, "set min_len = 1 or more")?;
        need(
            self.max_len >= self.min_len,
            "max_len",
            || format!("max_len {} is below min_len {}", self.max_len, self.min_len),
            "set max_len >= min_len",
        )?;
        need(
            self.stop_prob > 0.0 && self.stop_prob <= 1.0,
            "stop_prob",
            || format!("must be in (0, 1] (got {})", self.stop_prob),
            "use a stopping probability such as 0.15",
        )?;
        need(
            self.prompt_min_len >= 1 && self.prompt_min_len <= self.prompt_max_len,
            "prompt_min_len",
            || {
                format!(
                    "prompt lengths {}..{} are not a valid range",
                    self.prompt_min_len, self.prompt_max_len
                )
            },
            "use 1 <= prompt_min_len <= prompt_max_len",
        )?;
        need(
            self.prompt_max_len <= self.max_len,
            "prompt_max_len",
            || {
                format!(
                    "prompt_max_len {} exceeds the longest review ({} words)",
                    self.prompt_max_len, self.max_len
                )
            },
            "use prompt_max_len <= max_len",
        )?;
        Ok(())
    }

    /// The prompts: drawable in reasonable time, and enough of them.
    fn check_prompts(&self) -> Result<(), ConfigError> {
        // Prompts are prefixes of reviews long enough for a drawn length: the chance that a
        // draw succeeds, exactly, so that prompt sampling cannot loop (nearly) forever.
        let p_long = |len: usize| {
            if len <= self.min_len {
                1.0
            } else if len <= self.max_len {
                (1.0 - self.stop_prob).powi((len - self.min_len) as i32)
            } else {
                0.0
            }
        };
        let accept = (self.prompt_min_len..=self.prompt_max_len).map(p_long).sum::<f64>()
            / (self.prompt_max_len - self.prompt_min_len + 1) as f64;
        need(
            accept >= 1e-3,
            "prompt_min_len",
            || {
                format!("a review is long enough for a prompt with probability {accept:.2e} (reviews stop after min_len {} words with probability {} per word)", self.min_len, self.stop_prob)
            },
            "lower prompt_min_len to at most min_len, or lower stop_prob",
        )?;
        Ok(())
    }

    /// `[world.labeller]`: a neutral word of this world, a bonus and a polarity in range.
    fn check_labeller(&self) -> Result<(), ConfigError> {
        if let Some(l) = &self.labeller {
            let neutral = names(NEUTRAL, self.n_neutral);
            need(
                neutral.contains(&l.word),
                "labeller.word",
                || {
                    format!(
                        "`{}` is not one of this world's {} neutral words",
                        crate::config::shown(&l.word),
                        self.n_neutral
                    )
                },
                &format!(
                    "use a neutral word, e.g. \"{}\"",
                    neutral.get(17).or(neutral.last()).map_or("very", |w| w.as_str())
                ),
            )?;
            need(
                l.bonus.is_finite() && l.bonus > 0.0 && l.bonus <= 10.0,
                "labeller.bonus",
                || format!("must be in (0, 10] (got {})", l.bonus),
                "use e.g. 0.3 (gold is in [0, 1])",
            )?;
            need(
                l.polarity.is_finite() && l.polarity.abs() <= 1.0,
                "labeller.polarity",
                || format!("must be in [-1, 1] (got {})", l.polarity),
                "use 0 (neutral) or e.g. -0.5 (leans negative)",
            )?;
        }
        Ok(())
    }
}

/// Index of z in the per-z tables.
pub const NEG: usize = 0;
pub const POS: usize = 1;

pub struct SentimentWorld {
    pub cfg: SentimentConfig,
    pub corpus: Corpus,
    /// polarity[token] in {+1, -1, 0}.
    pub polarity: Vec<f64>,
    /// logp[z][prev * V + next] = log p_z(next word | prev), -inf for non-words as next.
    logp: [Vec<f64>; 2],
    /// The labeller's word and its bonus, where the world has a labeller.
    labeller: Option<(i64, f64)>,
}

impl SentimentWorld {
    /// Build the process and draw every split, deterministically from `seed`.
    pub fn new(cfg: &SentimentConfig, seed: u64) -> SentimentWorld {
        let mut words = names(POSITIVE, cfg.n_positive);
        words.extend(names(NEGATIVE, cfg.n_negative));
        words.extend(names(NEUTRAL, cfg.n_neutral));
        let vocab = Vocab::new(words);
        let v = vocab.size();
        let mut polarity = vec![0.0; v];
        for (i, p) in polarity.iter_mut().enumerate().skip(N_SPECIAL) {
            let w = i - N_SPECIAL;
            *p = if w < cfg.n_positive {
                1.0
            } else if w < cfg.n_positive + cfg.n_negative {
                -1.0
            } else {
                0.0
            };
        }
        if let Some(l) = &cfg.labeller {
            let w =
                vocab.words.iter().position(|w| *w == l.word).expect("validated: a neutral word");
            polarity[w] = l.polarity;
        }
        let mut rng = Rng::new(derive_seed(seed, "world/sentiment/process"));
        let mut base = vec![0.0; v * v];
        // Rows: <bos> and every word as the previous token.
        for prev in 1..v {
            for next in N_SPECIAL..v {
                base[prev * v + next] = cfg.sharpness * rng.normal();
            }
        }
        let mut logp = [vec![f64::NEG_INFINITY; v * v], vec![f64::NEG_INFINITY; v * v]];
        for (z, sign) in [(NEG, -1.0), (POS, 1.0)] {
            for prev in 1..v {
                let row: Vec<f64> = (N_SPECIAL..v)
                    .map(|next| base[prev * v + next] + cfg.tilt * sign * polarity[next])
                    .collect();
                let lse = logsumexp(&row);
                for (k, next) in (N_SPECIAL..v).enumerate() {
                    logp[z][prev * v + next] = row[k] - lse;
                }
            }
        }
        let mut world = SentimentWorld {
            cfg: cfg.clone(),
            corpus: Corpus { vocab, ..Corpus::default() },
            polarity,
            logp,
            labeller: None,
        };
        world.labeller = cfg.labeller.as_ref().map(|l| {
            (
                world
                    .corpus
                    .vocab
                    .words
                    .iter()
                    .position(|w| *w == l.word)
                    .expect("validated: a neutral word") as i64,
                l.bonus,
            )
        });
        // Every review and prompt from a stream of its own, in parallel.
        let w = &world;
        let train =
            super::drawn(seed, "world/sentiment/train", cfg.n_train, |r| w.sample_review(r).1);
        let val = super::drawn(seed, "world/sentiment/val", cfg.n_val, |r| w.sample_review(r).1);
        let train_prompts =
            super::drawn(seed, "world/sentiment/train_prompts", cfg.n_train_prompts, |r| {
                w.sample_prompt(r)
            });
        let eval_prompts =
            super::drawn(seed, "world/sentiment/eval_prompts", cfg.n_eval_prompts, |r| {
                w.sample_prompt(r)
            });
        (world.corpus.train, world.corpus.val) = (whole(train), whole(val));
        (world.corpus.train_prompts, world.corpus.eval_prompts) = (train_prompts, eval_prompts);
        world
    }

    fn v(&self) -> usize {
        self.corpus.vocab.size()
    }

    /// log p_z(next | prev) for a word `next`.
    pub fn log_trans(&self, z: usize, prev: i64, next: i64) -> f64 {
        self.logp[z][prev as usize * self.v() + next as usize]
    }

    /// Stopping hazard after `t` words.
    pub fn hazard(&self, t: usize) -> f64 {
        if t >= self.cfg.max_len {
            1.0
        } else if t >= self.cfg.min_len {
            self.cfg.stop_prob
        } else {
            0.0
        }
    }

    /// Draw (z, words) from the true process; words exclude `<bos>` and `<eos>`.
    pub fn sample_review(&self, rng: &mut Rng) -> (usize, Vec<i64>) {
        let z = if rng.bernoulli(0.5) { POS } else { NEG };
        let v = self.v();
        let mut prev = super::BOS;
        let mut words = Vec::new();
        loop {
            if rng.bernoulli(self.hazard(words.len())) {
                break;
            }
            let row = &self.logp[z][prev as usize * v..(prev as usize + 1) * v];
            let probs: Vec<f64> = row.iter().map(|l| l.exp()).collect();
            let next = rng.categorical(&probs) as i64;
            words.push(next);
            prev = next;
        }
        (z, words)
    }

    /// A 2 to 8 word prefix of a fresh review (held out from the SFT corpus).
    fn sample_prompt(&self, rng: &mut Rng) -> Vec<i64> {
        loop {
            let (_, words) = self.sample_review(rng);
            let len = rng.range(self.cfg.prompt_min_len, self.cfg.prompt_max_len);
            if words.len() >= len {
                return words[..len].to_vec();
            }
        }
    }

    /// Words of a text up to the first `<eos>`, skipping tokens that are not words.
    fn words_of<'a>(&self, text: &'a [i64]) -> impl Iterator<Item = i64> + 'a {
        let n_vocab = self.v() as i64;
        text.iter()
            .take_while(|&&t| t != EOS)
            .filter(move |&&t| t >= N_SPECIAL as i64 && t < n_vocab)
            .copied()
    }

    /// log p(words | z), transitions only (the hazard is the same under both z).
    pub fn log_lik_given_z(&self, text: &[i64], z: usize) -> f64 {
        let mut prev = super::BOS;
        let mut ll = 0.0;
        for w in self.words_of(text) {
            ll += self.log_trans(z, prev, w);
            prev = w;
        }
        ll
    }

    /// Gold reward: p(positive | text) under the true process, in [0, 1].
    pub fn gold_reward(&self, text: &[i64]) -> f64 {
        sigmoid(self.log_lik_given_z(text, POS) - self.log_lik_given_z(text, NEG))
    }

    /// How often the labeller's word occurs in a response (up to `<eos>`); None without a labeller.
    pub fn spurious_count(&self, response: &[i64]) -> Option<usize> {
        let (word, _) = self.labeller?;
        Some(response.iter().take_while(|&&t| t != EOS).filter(|&&t| t == word).count())
    }

    /// Bayes-predictive NLL of a review under the true process, summed over its tokens
    /// (every word and the final `<eos>`); returns (sum of NLL, number of tokens).
    pub fn predictive_nll(&self, words: &[i64]) -> (f64, usize) {
        let mut lw = [0.5f64.ln(), 0.5f64.ln()];
        let mut prev = super::BOS;
        let mut nll = 0.0;
        for (t, &w) in words.iter().enumerate() {
            let h = self.hazard(t);
            let joint =
                [lw[NEG] + self.log_trans(NEG, prev, w), lw[POS] + self.log_trans(POS, prev, w)];
            nll -= logsumexp(&joint) - logsumexp(&lw) + (1.0 - h).ln();
            lw = joint;
            prev = w;
        }
        nll -= self.hazard(words.len()).ln();
        (nll, words.len() + 1)
    }

    /// The Bayes-predictive next-token distribution after a prefix of words, over the whole
    /// vocabulary (`<eos>` and words; 0 for `<pad>` and `<bos>`).
    pub fn predictive_next(&self, prefix: &[i64]) -> Vec<f64> {
        let mut lw = [0.0f64, 0.0];
        let mut prev = super::BOS;
        for &w in prefix {
            lw[NEG] += self.log_trans(NEG, prev, w);
            lw[POS] += self.log_trans(POS, prev, w);
            prev = w;
        }
        let norm = logsumexp(&lw);
        let post = [(lw[NEG] - norm).exp(), (lw[POS] - norm).exp()];
        let h = self.hazard(prefix.len());
        let mut p = vec![0.0; self.v()];
        p[EOS as usize] = h;
        for (next, pn) in p.iter_mut().enumerate().skip(N_SPECIAL) {
            let q = post[NEG] * self.log_trans(NEG, prev, next as i64).exp()
                + post[POS] * self.log_trans(POS, prev, next as i64).exp();
            *pn = (1.0 - h) * q;
        }
        p
    }

    /// Fluency: mean per-word log-likelihood of a text under the true process (Bayes
    /// predictive, transitions only). Non-word tokens are skipped.
    pub fn fluency(&self, text: &[i64]) -> f64 {
        let mut lw = [0.5f64.ln(), 0.5f64.ln()];
        let mut prev = super::BOS;
        let mut ll = 0.0;
        let mut n = 0usize;
        for w in self.words_of(text) {
            let joint =
                [lw[NEG] + self.log_trans(NEG, prev, w), lw[POS] + self.log_trans(POS, prev, w)];
            ll += logsumexp(&joint) - logsumexp(&lw);
            lw = joint;
            prev = w;
            n += 1;
        }
        if n == 0 {
            0.0
        } else {
            ll / n as f64
        }
    }
}

impl TextWorld for SentimentWorld {
    fn show(&self, show: usize, rng: &mut Rng) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "sentiment world: {} tokens, {} train / {} val reviews; true-process NLL {:.4} nats/token", self.corpus.vocab.size(), self.corpus.train.len(), self.corpus.val.len(), self.true_nll_per_token());
        let _ = writeln!(out, "\nevaluation prompts:");
        for p in self.corpus.eval_prompts.iter().take(show) {
            let _ = writeln!(
                out,
                "  gold {:.3}  | {}",
                self.gold_reward(p),
                self.corpus.vocab.render(p)
            );
        }
        let _ = writeln!(out, "\nreviews from the true process (z = latent sentiment):");
        for _ in 0..show {
            let (z, words) = self.sample_review(rng);
            let z = if z == POS { "pos" } else { "neg" };
            let _ = writeln!(
                out,
                "  z={z} gold {:.3}  | {}",
                self.gold_reward(&words),
                self.corpus.vocab.render(&words)
            );
        }

        out
    }

    fn corpus(&self) -> &Corpus {
        &self.corpus
    }
    fn true_nll_per_token(&self) -> f64 {
        let (s, n) = self
            .corpus
            .val
            .iter()
            .map(|(_, r)| self.predictive_nll(r))
            .fold((0.0, 0usize), |(a, b), (x, y)| (a + x, b + y));
        s / n as f64
    }
    fn gold(&self, prompt: &[i64], response: &[i64]) -> f64 {
        self.gold_reward(&[prompt, response].concat())
    }
    fn fluency(&self, prompt: &[i64], response: &[i64]) -> Option<f64> {
        Some(SentimentWorld::fluency(self, &[prompt, response].concat()))
    }
    fn offpolicy_completion(&self, prompt: &[i64], n: usize, rng: &mut Rng) -> Vec<i64> {
        let mut text = prompt.to_vec();
        let mut out = Vec::new();
        while out.len() < n {
            let p = self.predictive_next(&text);
            let t = rng.categorical(&p) as i64;
            out.push(t);
            if t == EOS {
                break;
            }
            text.push(t);
        }
        out
    }
    fn labeller_prefers_first(
        &self,
        prompt: &[i64],
        a: &[i64],
        b: &[i64],
        rng: &mut Rng,
    ) -> Option<bool> {
        let (_, bonus) = self.labeller?;
        let score = |r: &[i64]| {
            self.gold_reward(&[prompt, r].concat())
                + bonus * self.spurious_count(r).unwrap_or(0) as f64
        };
        let (sa, sb) = (score(a), score(b));
        Some(if sa == sb { rng.bernoulli(0.5) } else { sa > sb })
    }
    fn spurious(&self, _prompt: &[i64], response: &[i64]) -> Option<f64> {
        self.spurious_count(response).map(|c| c as f64)
    }
    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("vocabulary".into(), format!("{} tokens", self.corpus.vocab.size())),
            (
                "reviews".into(),
                format!("{} train, {} val", self.corpus.train.len(), self.corpus.val.len()),
            ),
        ]
    }
}

impl WorldSpec for SentimentConfig {
    fn kind(&self) -> &'static str {
        "sentiment"
    }
    fn validate(&self) -> Result<(), ConfigError> {
        SentimentConfig::validate(self)
    }
    fn n_words(&self) -> usize {
        self.n_positive + self.n_negative + self.n_neutral
    }
    fn prompt_max_len(&self) -> usize {
        self.prompt_max_len
    }
    fn max_text_len(&self) -> usize {
        self.max_len
    }
    fn splits(&self) -> Splits {
        let (n_train, n_val) = (self.n_train, self.n_val);
        let (n_train_prompts, n_eval_prompts) = (self.n_train_prompts, self.n_eval_prompts);
        Splits { n_train, n_val, n_train_prompts, n_eval_prompts }
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            true_process: true,
            labeller_policy: false,
            file_pairs: false,
            gold: true,
            labeller: self.labeller.is_some(),
            references: false,
            shifted_inputs: false,
            fluency: true,
            spurious: self.labeller.is_some(),
            gold_reads_padding: false,
            comparisons: &[["dpo", "ppo"], ["dpo", "ppo_gt"], ["dpo", "best_of_n"]],
        }
    }
    fn build(&self, seed: u64) -> Box<dyn TextWorld> {
        Box::new(SentimentWorld::new(self, seed))
    }
}

/// Reviews as SFT demonstrations: no prompt, the loss on the whole text.
fn whole(texts: Vec<Vec<i64>>) -> Vec<(Vec<i64>, Vec<i64>)> {
    texts.into_iter().map(|t| (vec![], t)).collect()
}
