//! Scenario files: TOML wire structs (`deny_unknown_fields`) validated into the types the code
//! uses. Every error is one line naming the file, the key and the fix, raised before any work.

mod wire;

use std::path::{Path, PathBuf};

use crate::model::GptConfig;
use crate::world::SentimentConfig;
pub use wire::ScenarioWire;

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
    pub seed: u64,
    pub world: WorldConfig,
    pub model: GptConfig,
    pub sft: SftConfig,
    pub sample: SampleConfig,
    /// The resolved scenario as TOML (every default filled in), written next to the results.
    pub resolved_toml: String,
    pub source: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub enum WorldConfig {
    Sentiment(SentimentConfig),
}

/// Supervised fine-tuning on the world's demonstrations.
#[derive(Clone, Debug, PartialEq)]
pub struct SftConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    /// The cosine schedule decays to lr * min_lr_ratio.
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub eval_every: usize,
}

/// Generation settings for evaluation and `alignlab world --show`.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleConfig {
    pub max_new_tokens: usize,
    pub temperature: f64,
    /// 0 means no top-k truncation.
    pub top_k: usize,
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

    /// The sampling budget a model must fit: `<bos>` + the longest prompt + new tokens.
    pub fn max_prompt_len(&self) -> usize {
        match &self.world {
            WorldConfig::Sentiment(c) => c.prompt_max_len,
        }
    }
}
