//! Scenario files: TOML wire structs (`deny_unknown_fields`) validated into the types the code
//! uses. Every error is one line naming the file, the key and the fix, raised before any work.

mod wire;

use std::path::{Path, PathBuf};

use crate::model::GptConfig;
use crate::world::{SentimentConfig, SummarizeConfig};
pub use wire::ScenarioWire;
// The configurations live beside the code they configure; the scenario puts them together.
pub use crate::algo::dpo::{PrefLoss, TrainConfig};
pub use crate::algo::reward::RewardConfig;
pub use crate::algo::sft::SftConfig;
pub use crate::data::{Labels, PrefSource, PrefsConfig};
pub use crate::model::SampleConfig;
pub use super::methods::{Method, MethodKind, Overrides};

/// A scenario error: one line, `FILE[:LINE]: `KEY`: PROBLEM; fix: FIX`.
#[derive(thiserror::Error, Debug)]
#[error("{file}{line}: `{key}`: {problem}; fix: {fix}")]
pub struct ScenarioError {
    pub file: String,
    pub line: String,
    pub key: String,
    pub problem: String,
    pub fix: String,
}

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// The seed of this pipeline (the first of `seeds` as loaded; see [`Scenario::with_seed`]).
    pub seed: u64,
    /// Every seed of the sweep (`[sweep] seeds`, default `[seed]`).
    pub seeds: Vec<u64>,
    pub world: WorldConfig,
    pub model: GptConfig,
    pub sft: SftConfig,
    pub sample: SampleConfig,
    pub prefs: PrefsConfig,
    pub reward: RewardConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    /// Every method run, in the order of the file: one per grid value.
    pub methods: Vec<Method>,
    /// Best-of-N's grid of N, if it runs.
    pub best_of_n: Option<Vec<usize>>,
    /// The resolved scenario as TOML (every default filled in), written next to the results.
    pub resolved_toml: String,
    pub source: PathBuf,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum WorldConfig {
    Sentiment(SentimentConfig),
    Summarize(SummarizeConfig),
}

#[derive(Clone, PartialEq, serde::Serialize)]
pub struct EvalConfig {
    /// Evaluate every this many steps (and at the end).
    pub every: usize,
    /// Samples per evaluation prompt.
    pub samples_per_prompt: usize,
    /// Temperatures of the final evaluation (empty: none).
    pub temperatures: Vec<f64>,
    /// Fraction of the held-out prompts that choose checkpoints (the rest report them).
    pub selection_fraction: f64,
    /// Samples of pi_SFT per prompt behind the importance-sampling frontier.
    pub optimal_samples: usize,
    /// The smallest effective sample size, over prompts, of a kept point of that frontier.
    pub optimal_min_ess: f64,
}

/// Written by hand so that a scenario without `temperatures` keeps the run-folder hashes it had
/// before the field existed (cached method runs stay valid).
impl std::fmt::Debug for EvalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("EvalConfig");
        d.field("every", &self.every).field("samples_per_prompt", &self.samples_per_prompt);
        if !self.temperatures.is_empty() {
            d.field("temperatures", &self.temperatures);
        }
        d.field("selection_fraction", &self.selection_fraction).field("optimal_samples", &self.optimal_samples).field("optimal_min_ess", &self.optimal_min_ess);
        d.finish()
    }
}

impl Scenario {
    /// Read, override and validate a scenario file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: String::new(),
            key: "(file)".into(),
            problem: format!("cannot read the scenario file: {e}"),
            fix: "pass the path of an existing scenario, e.g. scenarios/sentiment.toml".into(),
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        Scenario::from_str(&text, &file, &stem, overrides, path)
    }

    pub fn from_str(
        text: &str,
        file: &str,
        default_name: &str,
        overrides: &[String],
        path: &Path,
    ) -> Result<Scenario, ScenarioError> {
        let wire = wire::parse(text, file, overrides)?;
        wire::validate(wire, text, file, default_name, path)
    }

    /// The same scenario for one seed of its sweep.
    pub fn with_seed(&self, seed: u64) -> Scenario {
        Scenario { seed, ..self.clone() }
    }

    /// The sampling budget a model must fit: `<bos>` + the longest prompt + new tokens.
    pub fn max_prompt_len(&self) -> usize {
        match &self.world {
            WorldConfig::Sentiment(c) => c.prompt_max_len,
            WorldConfig::Summarize(c) => c.prompt_max_len(),
        }
    }
}
