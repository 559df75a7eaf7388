//! The controlled worlds: data-generating processes with an exactly known gold reward.
//!
//! Every world shares the token layout of [`Vocab`]: `<pad>`, `<bos>`, `<eos>`, then words.
//! A text is a sequence of word tokens; a model sees `<bos> text <eos>`.

pub mod dataset;
pub mod dataset_read;
pub mod dialogue;
pub mod sentiment;
pub mod summarize;
pub mod tabular;

pub use dataset::{DatasetConfig, DatasetWorld};
pub use dialogue::{DialogueConfig, DialogueWorld};
pub use sentiment::{SentimentConfig, SentimentWorld};
pub use summarize::{SummarizeConfig, SummarizeWorld};
pub use tabular::{TabularConfig, TabularWorld};

use crate::config::{counts, ConfigError};
use crate::draw::Rng;

/// The world registry: one line per world, `Variant(ConfigType) = "kind"`. It makes
/// [`WorldConfig`] (`[world]`, chosen by `kind`), its [`WorldConfig::spec`] (everything else is
/// asked of the world through [`WorldSpec`]) and [`WorldConfig::read_table`]. A world is its
/// own file (its config, with `impl WorldSpec`, and its world, with `impl TextWorld`), its
/// `pub mod` line below, and its line here.
macro_rules! registry {
    ($($variant:ident($cfg:ty) = $kind:literal),* $(,)?) => {
        /// `[world]`: the text world, chosen by `kind`, with its own settings. (One per
        /// scenario: the dataset world's larger config costs nothing worth a box.)
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind")]
        pub enum WorldConfig {
            $(#[serde(rename = $kind)] $variant($cfg)),*
        }

        impl WorldConfig {
            /// Every world's `kind`, in registry order.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// What the chosen world declares about itself.
            pub fn spec(&self) -> &dyn WorldSpec {
                match self {
                    $(WorldConfig::$variant(c) => c),*
                }
            }

            /// `[world]`'s table (without `kind`) read as the `kind` world's config on its own,
            /// so that an error names `world.<key>`; None for an unknown kind.
            pub fn read_table(
                kind: &str,
                table: toml::Value,
            ) -> Option<Result<WorldConfig, ConfigError>> {
                match kind {
                    $($kind => Some(crate::config::read::<$cfg>("world", table).map(WorldConfig::$variant)),)*
                    _ => None,
                }
            }
        }
    };
}

registry! {
    Sentiment(SentimentConfig) = "sentiment",
    Summarize(SummarizeConfig) = "summarize",
    Dialogue(DialogueConfig) = "dialogue",
    Dataset(DatasetConfig) = "dataset",
}

/// What a world can do beyond the pipeline every world runs, declared by the world and checked
/// in one place (the scenario's validation, `Capabilities::check`): a setting that needs a
/// capability the world lacks is refused before any work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Capabilities {
    /// A true generative process writes off-policy completions (`prefs.source = "true_process"`).
    pub true_process: bool,
    /// A labeller policy writes off-policy completions (`prefs.source = "labeller"`).
    pub labeller_policy: bool,
    /// Its own labelling rule (`prefs.labels = "world"`).
    pub labeller: bool,
    /// Preference pairs of its own, labelled (`prefs.source = "dataset"`).
    pub file_pairs: bool,
    /// A gold reward (every world but a dataset without a `[world.gold]` judge).
    pub gold: bool,
    /// Reference responses on the evaluation prompts: win rates against them.
    pub references: bool,
    /// A shifted input distribution (`eval.shift_temperatures`).
    pub shifted_inputs: bool,
    /// The texts' likelihood under the true process (`eval/fluency`).
    pub fluency: bool,
    /// A feature its labeller likes and its gold does not (`eval/spurious`).
    pub spurious: bool,
    /// Its gold reward read the rollouts' padded prompt rows differently before they were
    /// passed as written (such worlds' gold-scored runs carry `gold_prompts` in their key).
    pub gold_reads_padding: bool,
    /// The method pairs the report compares by default (those the scenario runs).
    pub comparisons: &'static [[&'static str; 2]],
}

/// What the pipeline asks of a world's config: its sizes, its capabilities, and the world.
/// A world's corpus and prompt counts, each in `1..=MAX_COUNT`.
pub struct Splits {
    pub n_train: usize,
    pub n_val: usize,
    pub n_train_prompts: usize,
    pub n_eval_prompts: usize,
}

impl Splits {
    fn validate(&self) -> Result<(), ConfigError> {
        counts(
            &[
                ("n_train", self.n_train),
                ("n_val", self.n_val),
                ("n_train_prompts", self.n_train_prompts),
                ("n_eval_prompts", self.n_eval_prompts),
            ],
            "this is a CPU-sized world: use e.g. 20000 training texts and 256 evaluation prompts",
        )
    }
}

pub trait WorldSpec {
    /// Its kind, as written in `kind`.
    fn kind(&self) -> &'static str;
    /// Range checks; the first violation is returned.
    fn validate(&self) -> Result<(), ConfigError>;
    /// Its words (the vocabulary is the special tokens and these).
    fn n_words(&self) -> usize;
    /// The longest prompt, in words.
    fn prompt_max_len(&self) -> usize;
    /// The longest demonstration (prompt and response), in words.
    fn max_text_len(&self) -> usize;
    /// Its corpus and prompt counts.
    fn splits(&self) -> Splits;
    fn capabilities(&self) -> Capabilities;
    /// Tokens of its vocabulary a policy must never emit, beyond `<pad>` and `<bos>` (a real
    /// tokenizer's own special tokens).
    fn suppressed(&self) -> Vec<i64> {
        vec![]
    }
    /// Where a checkpoint's embedding rows are shifted under the world's ids: the checkpoint
    /// rows `<pad>`, `<bos>` and `<eos>` take, the rest following from row 3 (None: unshifted).
    fn checkpoint_rows(&self) -> Option<[i64; 3]> {
        None
    }
    /// Bytes the world holds in memory beyond its corpus (a dataset's judge model).
    fn resident_bytes(&self) -> f64 {
        0.0
    }
    /// The world of `seed`.
    fn build(&self, seed: u64) -> Box<dyn TextWorld>;
}

/// Some of a vocabulary as text (its first 512 words), as a judge reads the policy's: a
/// judge's tokenizer is checked on it.
pub fn text_sample(vocab: &Vocab) -> String {
    let end = vocab.size().min(N_SPECIAL + 512) as i64;
    vocab.render(&(N_SPECIAL as i64..end).collect::<Vec<_>>())
}

impl WorldConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.spec().validate()?;
        self.spec().splits().validate()
    }

    /// The vocabulary: the special tokens and the words.
    pub fn vocab_size(&self) -> usize {
        N_SPECIAL + self.spec().n_words()
    }

    /// The longest prompt, in words.
    pub fn prompt_max_len(&self) -> usize {
        self.spec().prompt_max_len()
    }

    /// The longest demonstration (prompt and response), in words.
    pub fn max_text_len(&self) -> usize {
        self.spec().max_text_len()
    }

    pub fn n_eval_prompts(&self) -> usize {
        self.spec().splits().n_eval_prompts
    }

    /// Documents of the SFT corpora, training and validation.
    pub fn n_docs(&self) -> usize {
        let s = self.spec().splits();
        s.n_train + s.n_val
    }

    /// Its kind, as written in `kind`.
    pub fn kind(&self) -> &'static str {
        self.spec().kind()
    }

    pub fn capabilities(&self) -> Capabilities {
        self.spec().capabilities()
    }

    /// The world of `seed`.
    pub fn build(&self, seed: u64) -> Box<dyn TextWorld> {
        self.spec().build(seed)
    }
}

/// What the pipeline needs of a text world (sentiment, summarize): its data, its prompts and
/// its gold reward. A response is the tokens after the prompt, `<eos>` included when emitted.
/// Token sequences (prompts, texts) of a world.
pub type Texts<'a> = &'a [Vec<i64>];

pub trait TextWorld: Sync {
    /// The world's words, demonstrations and prompt splits.
    fn corpus(&self) -> &Corpus;
    fn vocab(&self) -> &Vocab {
        &self.corpus().vocab
    }
    /// What `alignlab world` prints: the world's size, `show` evaluation prompts and sampled
    /// texts with their gold reward.
    fn show(&self, show: usize, rng: &mut Rng) -> String;
    /// SFT demonstrations, (prompt, response) with the loss on the response and `<eos>` only;
    /// an empty prompt trains on the whole text.
    fn sft_examples(&self, val: bool) -> &[(Vec<i64>, Vec<i64>)] {
        let c = self.corpus();
        if val {
            &c.val
        } else {
            &c.train
        }
    }
    /// The true process's NLL per scored token on the validation demonstrations (SFT's floor);
    /// NaN where the world has no true process (a dataset).
    fn true_nll_per_token(&self) -> f64;
    /// Prompts for training the methods (preference data, PPO rollouts).
    fn train_prompts(&self) -> &[Vec<i64>] {
        &self.corpus().train_prompts
    }
    /// Held-out prompts for evaluation.
    fn eval_prompts(&self) -> &[Vec<i64>] {
        &self.corpus().eval_prompts
    }
    /// The gold reward of `response` to `prompt`.
    fn gold(&self, prompt: &[i64], response: &[i64]) -> f64;
    /// The gold reward of each (prompt, response), computed together (a judge model scores
    /// them in batches; the exact worlds in parallel).
    fn gold_batch(&self, items: &[(&[i64], &[i64])]) -> Vec<f64> {
        use rayon::prelude::*;
        items.par_iter().map(|(p, r)| self.gold(p, r)).collect()
    }
    /// Labelled preference pairs of the world's own (a dataset's).
    fn file_pairs(&self) -> Option<&[FilePair]> {
        None
    }
    /// Mean per-word log-likelihood under the true process, where the world has one.
    fn fluency(&self, _prompt: &[i64], _response: &[i64]) -> Option<f64> {
        None
    }
    /// A feature the labeller likes and the gold judge does not (the dialogue world: politeness
    /// words; the sentiment world with a labeller: its word), counted in a response, where the world has one: a policy that hacks the reward
    /// model learned from the labeller's pairs raises it.
    fn spurious(&self, _prompt: &[i64], _response: &[i64]) -> Option<f64> {
        None
    }
    /// An off-policy completion (the true process or a labeller) of at most `n` tokens.
    fn offpolicy_completion(&self, prompt: &[i64], n: usize, rng: &mut Rng) -> Vec<i64>;
    /// The world's own labeller's choice between two responses to `prompt` (true: the first),
    /// where the world has one (`[prefs] labels = "world"`).
    fn labeller_prefers_first(
        &self,
        _prompt: &[i64],
        _a: &[i64],
        _b: &[i64],
        _rng: &mut Rng,
    ) -> Option<bool> {
        None
    }
    /// Evaluation prompts from a shifted input distribution and a reference response for each
    /// (the same judge), where the world has a shift: generalisation.
    fn shifted_eval(&self) -> Option<(Texts<'_>, Texts<'_>)> {
        None
    }
    /// One reference response per evaluation prompt, for win rates, where the world has them.
    fn eval_references(&self) -> Option<&[Vec<i64>]> {
        None
    }
    /// Lines for the run summary: (metric, value).
    fn describe(&self) -> Vec<(String, String)>;
}

pub use crate::tokens::{BOS, EOS, N_SPECIAL, PAD};

/// A labelled pair of a dataset: responses end in `<eos>` unless the row marks them cut at a
/// length limit; `val`: the split the row names, where it names one.
#[derive(Clone, Debug, PartialEq)]
pub struct FilePair {
    pub prompt: Vec<i64>,
    pub chosen: Vec<i64>,
    pub rejected: Vec<i64>,
    pub val: Option<bool>,
}

/// What a text world's methods train and evaluate on: its words, SFT's demonstrations
/// (prompt, response + `<eos>`; an empty prompt trains on the whole text) and its prompt splits.
#[derive(Default)]
pub struct Corpus {
    pub vocab: Vocab,
    pub train: Vec<(Vec<i64>, Vec<i64>)>,
    pub val: Vec<(Vec<i64>, Vec<i64>)>,
    pub train_prompts: Vec<Vec<i64>>,
    pub eval_prompts: Vec<Vec<i64>>,
}

/// Token ids to readable words and back.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    pub words: Vec<String>,
    /// A real tokenizer's decoder, and the shift of its ids under the world's.
    decoder: Option<Decoder>,
}

#[derive(Clone)]
struct Decoder(std::sync::Arc<crate::model::tokenizer::Tokenizer>, i64);

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder(offset {})", self.1)
    }
}

impl Vocab {
    pub fn new(word_list: Vec<String>) -> Vocab {
        let mut words = vec!["<pad>".to_string(), "<bos>".to_string(), "<eos>".to_string()];
        words.extend(word_list);
        Vocab { words, decoder: None }
    }

    /// A real tokenizer's vocabulary (its tokens from id `offset` on): texts are decoded by it.
    pub fn with_decoder(
        word_list: Vec<String>,
        tokenizer: std::sync::Arc<crate::model::tokenizer::Tokenizer>,
        offset: i64,
    ) -> Vocab {
        Vocab { decoder: Some(Decoder(tokenizer, offset)), ..Vocab::new(word_list) }
    }

    pub fn size(&self) -> usize {
        self.words.len()
    }

    /// The real tokenizer behind the words, where there is one (a dataset world's).
    pub fn tokenizer(&self) -> Option<&crate::model::tokenizer::Tokenizer> {
        self.decoder.as_ref().map(|d| d.0.as_ref())
    }

    pub fn is_word(&self, t: i64) -> bool {
        t >= N_SPECIAL as i64 && (t as usize) < self.words.len()
    }

    /// Render tokens as text; stops at the first `<eos>`, skips `<pad>` and `<bos>`. A real
    /// tokenizer's text is its decoding, without the `<eos>` marker.
    pub fn render(&self, tokens: &[i64]) -> String {
        if let Some(Decoder(tok, offset)) = &self.decoder {
            let ids: Vec<i64> = tokens
                .iter()
                .take_while(|&&t| t != EOS)
                .filter(|&&t| self.is_word(t))
                .map(|t| t - offset)
                .collect();
            return tok.decode(&ids);
        }
        let mut out = Vec::new();
        for &t in tokens {
            if t == EOS {
                out.push("<eos>");
                break;
            }
            if self.is_word(t) {
                out.push(self.words[t as usize].as_str());
            }
        }
        out.join(" ")
    }
}

/// Take `n` names from a list, adding numeric suffixes when the list runs out.
pub(crate) fn names(list: &[&str], n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let base = list[i % list.len()];
            if i < list.len() {
                base.to_string()
            } else {
                format!("{}{}", base, i / list.len() + 1)
            }
        })
        .collect()
}

/// `n` draws of `f`, the i-th from the i-th independent stream of `derive_seed(seed, label)`,
/// made in parallel: every document of a corpus has its own generator, so the corpus has the
/// same bytes at any thread count.
pub(crate) fn drawn<T: Send>(
    seed: u64,
    label: &str,
    n: usize,
    f: impl Fn(&mut Rng) -> T + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    let base = crate::draw::derive_seed(seed, label);
    (0..n).into_par_iter().map(|i| f(&mut Rng::stream(base, i as u64))).collect()
}

pub(crate) fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
