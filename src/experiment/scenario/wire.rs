//! The scenario file as written (serde wire structs) and its validation into [`Scenario`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{EvalConfig, Labels, Method, MethodKind, Overrides, PrefLoss, PrefSource, PrefsConfig, RewardConfig, SampleConfig, Scenario, ScenarioError, SftConfig, TrainConfig, WorldConfig};
use crate::algo::ppo::{KlControl, KlEstimator};
use crate::experiment::methods::SWEEP_GRIDS;
use crate::config::{sampling_temperature, MAX_BATCH, MAX_STEPS, MIN_TEMPERATURE};
use crate::model::GptConfig;
use crate::world::{SentimentConfig, SummarizeConfig};

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ScenarioWire {
    /// Name of the scenario: results go to results/<name>/ (default: the file's stem).
    #[serde(default)]
    pub name: String,
    /// The one seed every RNG of every stage is derived from.
    #[serde(default)]
    pub seed: u64,
    pub world: WorldWire,
    #[serde(default)]
    pub model: ModelWire,
    #[serde(default)]
    pub sft: SftConfig,
    #[serde(default)]
    pub sample: SampleConfig,
    #[serde(default)]
    pub prefs: PrefsWire,
    #[serde(default)]
    pub reward: RewardWire,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalWire,
    /// DPO (sigmoid loss); one run per beta.
    pub dpo: Option<BetaGridWire>,
    /// IPO (Azar et al.); one run per beta (their tau).
    pub ipo: Option<BetaGridWire>,
    /// Conservative DPO (label smoothing); one run per beta.
    pub cdpo: Option<CdpoWire>,
    /// Preferred-FT: SFT on the chosen responses.
    pub preferred_ft: Option<PreferredFtWire>,
    /// Unlikelihood: maximise log p(y_w) - alpha log p(y_l); one run per alpha.
    pub unlikelihood: Option<UnlikelihoodWire>,
    /// PPO against the learned reward model; one run per target_kl and per kl_coef.
    pub ppo: Option<PpoWire>,
    /// PPO against the world's gold reward (the paper's PPO-GT).
    pub ppo_gt: Option<PpoWire>,
    /// Best-of-N from pi_SFT, ranked by the reward model.
    pub best_of_n: Option<BestOfNWire>,
    /// Seeds (and method grids, moved into their tables when read).
    pub sweep: Option<SweepWire>,
    #[serde(default)]
    pub report: ReportWire,
}

/// What the report compares. Read by `alignlab report` from the resolved scenario.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReportWire {
    /// Pairs of methods compared paired by seed, A against B: at each KL budget (gold reward)
    /// and each evaluation temperature (win rate). Default: DPO against PPO, PPO-GT and
    /// Best-of-N; in the summarize world, DPO against PPO and SFT (those the scenario runs).
    pub compare: Vec<[String; 2]>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SweepWire {
    /// One full pipeline (world, SFT, data, reward model, methods) per seed.
    pub seeds: Option<Vec<u64>>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimatorWire {
    K1,
    K3,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PpoWire {
    /// Adaptive KL controller targets (one run each).
    pub target_kl: Vec<f64>,
    /// Fixed KL coefficients (one run each).
    pub kl_coef: Vec<f64>,
    pub init_kl_coef: f64,
    pub horizon: f64,
    pub iterations: usize,
    pub rollout_batch: usize,
    pub minibatch_size: usize,
    pub ppo_epochs: usize,
    pub lr: f64,
    pub vf_lr: f64,
    pub clip_coef: f64,
    pub vf_clip: f64,
    pub vf_coef: f64,
    pub gamma: f64,
    pub gae_lambda: f64,
    pub kl_estimator: KlEstimatorWire,
    pub missing_eos_penalty: f64,
    pub score_norm: bool,
    pub whiten_advantages: bool,
    pub grad_clip: f64,
    pub eval_every: usize,
}

impl Default for PpoWire {
    /// The recipe's values, from `PpoConfig::default()`: declared once.
    fn default() -> Self {
        let d = crate::algo::ppo::PpoConfig::default();
        PpoWire {
            target_kl: vec![],
            kl_coef: vec![],
            init_kl_coef: 0.1,
            horizon: 10000.0,
            iterations: d.iterations,
            rollout_batch: d.rollout_batch,
            minibatch_size: d.minibatch_size,
            ppo_epochs: d.ppo_epochs,
            lr: d.lr,
            vf_lr: d.vf_lr,
            clip_coef: d.clip_coef,
            vf_clip: d.vf_clip,
            vf_coef: d.vf_coef,
            gamma: d.gamma,
            gae_lambda: d.gae_lambda,
            kl_estimator: KlEstimatorWire::K1,
            missing_eos_penalty: d.missing_eos_penalty,
            score_norm: d.score_norm,
            whiten_advantages: d.whiten_advantages,
            grad_clip: d.grad_clip,
            eval_every: d.eval_every,
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BestOfNWire {
    /// The N of each point, e.g. [1, 2, 4, 8, 16, 32, 64].
    pub n: Vec<usize>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PrefSourceWire {
    /// K completions per prompt from pi_SFT (the paper's IMDb setting).
    Sft,
    /// Off-policy, sentiment world: completions from the world's true process.
    TrueProcess,
    /// Off-policy, summarize world: summaries from the world's labeller policy (as in TL;DR).
    Labeller,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum LabelsWire {
    /// The higher gold reward wins (the paper's setting); ties are dropped.
    Deterministic,
    /// y_1 wins with probability sigmoid((gold_1 - gold_2) / bt_temperature).
    BradleyTerry,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PrefsWire {
    pub k: usize,
    pub source: PrefSourceWire,
    pub labels: LabelsWire,
    pub bt_temperature: f64,
    pub val_fraction: f64,
    pub temperature: f64,
}

impl Default for PrefsWire {
    fn default() -> Self {
        PrefsWire { k: 4, source: PrefSourceWire::Sft, labels: LabelsWire::Deterministic, bt_temperature: 0.1, val_fraction: 0.1, temperature: 1.0 }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RewardWire {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub margin: f64,
    pub center_coef: f64,
    pub grad_clip: f64,
    /// Reward-model size (default: the policy's `[model]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_layer: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_model: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_head: Option<usize>,
}

impl Default for RewardWire {
    fn default() -> Self {
        RewardWire { epochs: 3, batch_size: 64, lr: 3e-4, margin: 0.0, center_coef: 0.0, grad_clip: 1.0, n_layer: None, d_model: None, n_head: None }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct EvalWire {
    pub every: usize,
    pub samples_per_prompt: usize,
    /// Sampling temperatures of the final evaluation of every policy (SFT, each method's last
    /// step, Best-of-N): gold reward, KL and, where the world has references, win rate.
    pub temperatures: Vec<f64>,
    /// Fraction of the held-out prompts in the selection half: which checkpoint of which
    /// setting a method contributes at a budget is chosen there; the test half is reported.
    pub selection_fraction: f64,
    /// Samples of pi_SFT per prompt behind the importance-sampling frontier (an inner bound of
    /// the optimal one), taken from Best-of-N's candidates; absent: all of them
    /// (samples_per_prompt x the largest N).
    pub optimal_samples: Option<usize>,
    /// A beta of that frontier is kept only if every prompt's effective sample size is at least
    /// this (past it the point reflects the sample, not pi*).
    pub optimal_min_ess: f64,
}

impl Default for EvalWire {
    fn default() -> Self {
        EvalWire { every: 100, samples_per_prompt: 2, temperatures: vec![], selection_fraction: 0.5, optimal_samples: None, optimal_min_ess: 8.0 }
    }
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct BetaGridWire {
    /// Required: the KL strength has no honest default.
    pub beta: Vec<f64>,
    pub lr: Option<f64>,
    pub steps: Option<usize>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CdpoWire {
    pub beta: Vec<f64>,
    pub label_smoothing: f64,
    pub lr: Option<f64>,
    pub steps: Option<usize>,
}

#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct PreferredFtWire {
    pub lr: Option<f64>,
    pub steps: Option<usize>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct UnlikelihoodWire {
    pub alpha: Vec<f64>,
    pub lr: Option<f64>,
    pub steps: Option<usize>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WorldWire {
    Sentiment(SentimentConfig),
    Summarize(SummarizeConfig),
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ModelWire {
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    pub block_size: usize,
}

impl Default for ModelWire {
    fn default() -> Self {
        ModelWire { n_layer: 2, n_head: 4, d_model: 128, block_size: 32 }
    }
}

fn err(file: &str, text: &str, key: &str, problem: impl Into<String>, fix: impl Into<String>) -> ScenarioError {
    let line = find_line(text, key).map(|l| format!(":{l}")).unwrap_or_default();
    ScenarioError { file: file.into(), line, key: shown(key), problem: compact_numbers(&problem.into()), fix: fix.into() }
}

/// A message with every number of more than 16 characters written in scientific form
/// (`1e-250`, not 250 digits) and control characters escaped: one readable line.
fn compact_numbers(text: &str) -> String {
    let mut out = String::new();
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match token.parse::<f64>() {
            Ok(v) if token.len() > 16 => out.push_str(&format!("{v:e}")),
            _ => out.push_str(token),
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            if c.is_control() {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
    }
    flush(&mut token, &mut out);
    out
}

/// The 1-based line where `a.b.c` is written in the TOML text (`[a.b]` then `c = ...`).
fn find_line(text: &str, key: &str) -> Option<usize> {
    let (table, leaf) = match key.rfind('.') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => ("", key),
    };
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            // `[train]   # a comment`: the header is what stands before the comment.
            let header = line.split('#').next().unwrap_or("").trim();
            current = header.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if current == key {
                return Some(i + 1);
            }
            continue;
        }
        if current == table {
            if let Some(eq) = line.find('=') {
                if line[..eq].trim() == leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// Parse TOML, apply `--set a.b=value` overrides, and deserialize the wire structs.
pub fn parse(text: &str, file: &str, overrides: &[String]) -> Result<ScenarioWire, ScenarioError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| format!(":{}", text[..s.start].lines().count().max(1))).unwrap_or_default();
        ScenarioError {
            file: file.into(),
            line,
            key: "(syntax)".into(),
            problem: format!("not valid TOML: {}", e.message().trim().replace('\n', "; ")),
            fix: "correct the TOML syntax at that line".into(),
        }
    })?;
    for ov in overrides {
        apply_override(&mut table, ov).map_err(|problem| ScenarioError {
            file: file.into(),
            line: String::new(),
            key: shown(&format!("--set {ov}")),
            problem: compact_numbers(&problem),
            fix: "write --set section.key=value, e.g. --set sft.lr=1e-3".into(),
        })?;
    }
    expand_sweep(&mut table).map_err(|(key, problem, fix)| err(file, text, &key, problem, fix))?;
    let from_set = |key: &str| overrides.iter().any(|o| o.split('=').next().map(str::trim) == Some(key));
    // One mapping of serde's errors to a key and a fix: `path` is where serde stopped ("" at the
    // top), and an unknown or missing key's name, which is in serde's message, is appended.
    let serde_error = |path: String, msg: String| {
        let mut key = path;
        let join = |key: &str, name: &str| if key.is_empty() { name.to_string() } else { format!("{key}.{name}") };
        if let Some(name) = msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
            if !key.ends_with(name) {
                key = join(&key, name);
            }
        }
        if let Some(name) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            key = join(&key, name);
        }
        let fix = if msg.starts_with("unknown field") {
            "remove the key or correct its spelling".to_string()
        } else if msg.starts_with("missing field") {
            format!("add `{key} = ...`; this setting has no safe default")
        } else if msg.starts_with("unknown variant") {
            "use one of the listed values".to_string()
        } else if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
            "write a value of the expected type".to_string()
        } else {
            "see scenarios/sentiment.toml for a valid example".to_string()
        };
        let mut error = err(file, text, &key, msg, fix);
        if from_set(&key) {
            error.line = " (--set)".into();
        }
        error
    };
    let path = |p: String| if p == "." { String::new() } else { p };
    // `[world]` is an enum tagged by `kind`, which serde reads as a whole: its field errors
    // would name only `world`. Read the chosen world's table on its own first, so that an
    // error names `world.<key>` and its line.
    if let Some(toml::Value::Table(world)) = table.get("world") {
        let mut inner = world.clone();
        let kind = inner.remove("kind");
        let checked = match kind.as_ref().and_then(|k| k.as_str()) {
            Some("sentiment") => serde_path_to_error::deserialize::<_, SentimentConfig>(toml::Value::Table(inner)).map(|_| ()),
            Some("summarize") => serde_path_to_error::deserialize::<_, SummarizeConfig>(toml::Value::Table(inner)).map(|_| ()),
            _ => Ok(()), // a missing or unknown kind: the full read below says so
        };
        if let Err(e) = checked {
            let inner_path = path(e.path().to_string());
            let key = if inner_path.is_empty() { "world".to_string() } else { format!("world.{inner_path}") };
            return Err(serde_error(key, e.inner().message().to_string()));
        }
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| serde_error(path(e.path().to_string()), e.inner().message().to_string()))
}


/// Move the grids of `[sweep]` (`dpo.beta = [...]`) into their method tables, leaving `seeds`.
fn expand_sweep(table: &mut toml::Table) -> Result<(), (String, String, String)> {
    let Some(toml::Value::Table(sweep)) = table.remove("sweep") else { return Ok(()) };
    let mut kept = toml::Table::new();
    for (section, v) in sweep {
        if section == "seeds" {
            kept.insert(section, v);
            continue;
        }
        let toml::Value::Table(inner) = v else {
            return Err((format!("sweep.{section}"), "is not a grid".into(), format!("write grids as `method.key = [...]`, one of: seeds, {}", SWEEP_GRIDS.join(", "))));
        };
        for (key, list) in inner {
            let full = format!("{section}.{key}");
            if !SWEEP_GRIDS.contains(&full.as_str()) {
                return Err((format!("sweep.{full}"), "is not a sweepable grid".into(), format!("sweep one of: seeds, {}; other settings go in their own table", SWEEP_GRIDS.join(", "))));
            }
            if !list.is_array() {
                return Err((format!("sweep.{full}"), "is not a list".into(), format!("write `{full} = [v1, v2, ...]`")));
            }
            let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(key, list);
                }
                _ => return Err((section.clone(), "is not a table".into(), format!("write [{section}] as a table"))),
            }
        }
    }
    table.insert("sweep".into(), toml::Value::Table(kept));
    Ok(())
}

fn apply_override(table: &mut toml::Table, ov: &str) -> Result<(), String> {
    let (key, raw) = ov.split_once('=').ok_or_else(|| format!("`{ov}` has no `=`"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted key"));
    }
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("x = {raw}")) {
        Ok(mut t) => t.remove("x").unwrap(),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Upper limits that keep a typo in an exponent from allocating the machine away or running
/// for centuries; each is far past what a CPU-sized study uses.
/// Memory available to a run: `MemAvailable` of /proc/meminfo, else 16 GiB.
fn available_memory() -> f64 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()));
    kib.map(|k| k * 1024.0).unwrap_or(16.0 * (1u64 << 30) as f64)
}

/// Whether no value of a grid repeats.
fn distinct<T: PartialEq>(values: &[T]) -> bool {
    values.iter().enumerate().all(|(i, v)| !values[..i].contains(v))
}

/// User text for a one-line message: at most 64 characters, control characters escaped.
pub fn shown(text: &str) -> String {
    let head: String = text.chars().take(64).flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] }).collect();
    let more = if text.chars().count() > 64 { "..." } else { "" };
    format!("{head}{more}")
}

/// Range and consistency checks; the first violation is reported.
pub fn validate(w: ScenarioWire, text: &str, file: &str, default_name: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let e = |key: &str, problem: String, fix: &str| Err(err(file, text, key, problem, fix));
    macro_rules! need {
        ($cond:expr, $key:expr, $problem:expr, $fix:expr) => {
            if !$cond {
                return e($key, $problem, $fix);
            }
        };
    }
    let name = if w.name.is_empty() { default_name.to_string() } else { w.name.clone() };
    need!(
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "name",
        format!("`{}` is not a plain name of at most 64 characters", shown(&name)),
        "use letters, digits, '-' and '_' only, at most 64 of them (it names the results folder)"
    );
    let world_err = |c: crate::config::ConfigError| err(file, text, &format!("world.{}", c.key), c.problem, c.fix);
    let (world, vocab_size, max_text_len, prompt_max_len) = match &w.world {
        WorldWire::Sentiment(s) => {
            s.validate().map_err(world_err)?;
            let c = s.clone();
            let v = crate::world::N_SPECIAL + s.n_positive + s.n_negative + s.n_neutral;
            (WorldConfig::Sentiment(c), v, s.max_len, s.prompt_max_len)
        }
        WorldWire::Summarize(s) => {
            s.validate().map_err(world_err)?;
            let c = s.clone();
            let v = crate::world::N_SPECIAL + s.n_facts + s.n_filler + 1;
            let (p, r) = (c.prompt_max_len(), c.summary_max_len());
            (WorldConfig::Summarize(c), v, p + r, p)
        }
    };
    let m = &w.model;
    need!(m.n_layer >= 1 && m.n_layer <= 48, "model.n_layer", format!("must be in 1..=48 (got {})", m.n_layer), "use a few layers, e.g. 2");
    need!(m.n_head >= 1, "model.n_head", "must be at least 1".into(), "use e.g. 4 heads");
    need!(m.d_model >= 1 && m.d_model % m.n_head == 0, "model.d_model", format!("d_model {} is not a multiple of n_head {}", m.d_model, m.n_head), "make d_model divisible by n_head, e.g. d_model = 128 with n_head = 4");
    need!(m.d_model <= 16384 && m.n_head <= 256, "model.d_model", format!("d_model {} with {} heads is past this harness's range", m.d_model, m.n_head), "use d_model <= 16384 and n_head <= 256 (e.g. 128 and 4)");
    need!(m.block_size <= 4096, "model.block_size", format!("must be at most 4096 (got {})", m.block_size), "use a block just long enough for prompt + response, e.g. 32");
    // SFT feeds `<bos> words` and predicts `words <eos>`: max_len + 1 positions.
    need!(m.block_size >= max_text_len + 1, "model.block_size", format!("block_size {} cannot hold a full demonstration (<bos> + {} words)", m.block_size, max_text_len), &format!("set model.block_size >= {}", max_text_len + 1));
    let s = &w.sample;
    s.validate().map_err(|c| err(file, text, &format!("sample.{}", c.key), c.problem, c.fix))?;
    need!(1 + prompt_max_len + s.max_new_tokens <= m.block_size, "sample.max_new_tokens", format!("<bos> + a {prompt_max_len}-word prompt + {} new tokens exceeds block_size {}", s.max_new_tokens, m.block_size), &format!("lower max_new_tokens to {} or raise model.block_size", m.block_size.saturating_sub(1 + prompt_max_len)));
    let f = &w.sft;
    f.validate().map_err(|c| err(file, text, &format!("sft.{}", c.key), c.problem, c.fix))?;

    let p = &w.prefs;
    need!(p.k >= 2 && p.k <= 16, "prefs.k", format!("must be in 2..=16 (got {})", p.k), "use k = 4 (all 6 pairs, as in the paper)");
    need!(p.bt_temperature.is_finite() && p.bt_temperature >= 1e-6 && p.bt_temperature <= 1e6, "prefs.bt_temperature", format!("must be in [1e-6, 1e6] (got {})", p.bt_temperature), "use e.g. 0.1 (rewards are in [0, 1])");
    need!(p.val_fraction > 0.0 && p.val_fraction < 1.0, "prefs.val_fraction", format!("must be in (0, 1) (got {})", p.val_fraction), "use e.g. 0.1");
    need!(sampling_temperature(p.temperature, false), "prefs.temperature", format!("must be in [{MIN_TEMPERATURE}, 4] (got {})", p.temperature), "sample completions at temperature 1.0");
    match (p.source, &w.world) {
        (PrefSourceWire::TrueProcess, WorldWire::Summarize(_)) => return e("prefs.source", "the summarize world has no true process to write completions".into(), "use source = \"labeller\" (off-policy) or \"sft\""),
        (PrefSourceWire::Labeller, WorldWire::Sentiment(_)) => return e("prefs.source", "the sentiment world has no labeller policy".into(), "use source = \"true_process\" (off-policy) or \"sft\""),
        _ => {}
    }
    let r = &w.reward;
    need!(r.epochs >= 1 && r.epochs <= 10_000, "reward.epochs", format!("must be in 1..=10000 (got {})", r.epochs), "use 3 epochs (as in the paper)");
    need!(r.batch_size >= 1 && r.batch_size <= MAX_BATCH, "reward.batch_size", format!("must be in 1..={MAX_BATCH} (got {})", r.batch_size), "use e.g. 64");
    need!(r.lr.is_finite() && r.lr >= 0.0 && r.lr < 1.0, "reward.lr", format!("must be in [0, 1) (got {})", r.lr), "use e.g. 3e-4");
    need!(r.margin.is_finite(), "reward.margin", format!("must be finite (got {})", r.margin), "use margin = 0");
    need!(r.center_coef.is_finite() && r.center_coef >= 0.0, "reward.center_coef", format!("must be finite and >= 0 (got {})", r.center_coef), "use center_coef = 0 (or e.g. 0.01)");
    need!(r.grad_clip.is_finite() && r.grad_clip > 0.0, "reward.grad_clip", format!("must be finite and > 0 (got {})", r.grad_clip), "use e.g. 1.0");
    let t = &w.train;
    t.validate().map_err(|c| err(file, text, &format!("train.{}", c.key), c.problem, c.fix))?;
    let ev = &w.eval;
    need!(ev.every >= 1, "eval.every", "must be at least 1".into(), "evaluate every 100 steps (as in the paper)");
    need!(ev.samples_per_prompt >= 1 && ev.samples_per_prompt <= 1024, "eval.samples_per_prompt", format!("must be in 1..=1024 (got {})", ev.samples_per_prompt), "use e.g. 2");
    need!(ev.temperatures.iter().all(|t| sampling_temperature(*t, true)), "eval.temperatures", format!("every temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, 4] (got {:?})", ev.temperatures), "use e.g. [0.0, 0.25, 0.5, 0.75, 1.0] (0 is greedy)");
    need!(distinct(&ev.temperatures), "eval.temperatures", format!("lists a temperature twice ({:?})", ev.temperatures), "list each temperature once");
    need!(ev.selection_fraction > 0.0 && ev.selection_fraction < 1.0, "eval.selection_fraction", format!("must be in (0, 1) (got {})", ev.selection_fraction), "use 0.5: half the held-out prompts choose checkpoints, half report them");
    let n_eval_prompts = match &w.world {
        WorldWire::Sentiment(s) => s.n_eval_prompts,
        WorldWire::Summarize(s) => s.n_eval_prompts,
    };
    need!(n_eval_prompts >= 2, "world.n_eval_prompts", format!("must be at least 2 to split into a selection and a test half (got {n_eval_prompts})"), "use e.g. 256");
    need!(ev.optimal_min_ess.is_finite() && ev.optimal_min_ess >= 1.0, "eval.optimal_min_ess", format!("must be a number >= 1 (got {})", ev.optimal_min_ess), "use e.g. 8");
    let candidates = w.best_of_n.as_ref().and_then(|b| b.n.iter().max()).map(|n| n * ev.samples_per_prompt).unwrap_or(0);
    if let Some(n) = ev.optimal_samples {
        need!(n >= 2 && n <= candidates, "eval.optimal_samples", format!("must be in 2..={candidates}, the Best-of-N candidates per prompt (samples_per_prompt x the largest best_of_n.n) (got {n})"), "remove it to use every candidate, or raise best_of_n.n");
        need!(ev.optimal_min_ess <= n as f64, "eval.optimal_min_ess", format!("{} exceeds optimal_samples {n}: no point could pass", ev.optimal_min_ess), "use a threshold below the sample count, e.g. 8");
    }

    // Memory, estimated before any work: a size typed in the billions fails here with the
    // estimate, not in an allocation abort after SFT.
    {
        let gib = |b: f64| b / (1u64 << 30) as f64;
        let params = |d: f64, l: f64| vocab_size as f64 * d + m.block_size as f64 * d + l * (12.0 * d * d + 13.0 * d) + 2.0 * d;
        let (d, l, t, v) = (m.d_model as f64, m.n_layer as f64, m.block_size as f64, vocab_size as f64);
        let (rd, rl) = (w.reward.d_model.unwrap_or(m.d_model) as f64, w.reward.n_layer.unwrap_or(m.n_layer) as f64);
        // Policy with gradient and two Adam moments, the frozen reference, the reward model and
        // a critic of its size with theirs; float32.
        let weights = 4.0 * (5.0 * params(d, l) + 5.0 * params(rd, rl));
        let per_row = |d: f64, l: f64| t * (l * (16.0 * d + 2.0 * m.n_head as f64 * t) + 3.0 * v) * 4.0;
        let ppo_batch = [&w.ppo, &w.ppo_gt].iter().filter_map(|p| p.as_ref().map(|p| p.rollout_batch)).max().unwrap_or(0);
        let batches = [("sft.batch_size", f.batch_size), ("train.batch_size", 2 * w.train.batch_size), ("reward.batch_size", 2 * w.reward.batch_size), ("ppo.rollout_batch", ppo_batch)];
        let (batch_key, batch) = batches.iter().max_by_key(|b| b.1).copied().unwrap();
        let activations = 2.0 * batch as f64 * per_row(d.max(rd), l.max(rl));
        // Evaluation scores every row at once: two models' logits and a few copies of them.
        let rows = (n_eval_prompts * ev.samples_per_prompt) as f64;
        let evaluation = rows * (per_row(d, l) + 6.0 * t * v * 4.0);
        let n_docs = match &w.world {
            WorldWire::Sentiment(s) => s.n_train + s.n_val,
            WorldWire::Summarize(s) => s.n_train + s.n_val,
        };
        let corpora = n_docs as f64 * (t + 4.0) * 8.0 * 2.0;
        let parts = [("model.d_model", weights), (batch_key, activations), ("eval.samples_per_prompt", evaluation), ("world.n_train", corpora)];
        let total: f64 = parts.iter().map(|p| p.1).sum();
        let available = available_memory();
        if total > available {
            let (key, _) = parts.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            return e(key, format!("the run needs about {:.1} GiB (parameters and optimiser {:.1}, a batch's activations {:.1}, evaluation {:.1}, corpora {:.1}), more than the {:.1} GiB available", gib(total), gib(weights), gib(activations), gib(evaluation), gib(corpora), gib(available)), &format!("lower {key}, the largest part"));
        }
    }

    let mut methods = Vec::new();
    let opt_check = |key: &str, lr: Option<f64>, steps: Option<usize>| -> Result<(), ScenarioError> {
        if let Some(lr) = lr {
            if !(lr.is_finite() && (0.0..1.0).contains(&lr)) {
                return Err(err(file, text, &format!("{key}.lr"), format!("must be in [0, 1) (got {lr})"), "use e.g. 1e-4"));
            }
        }
        if steps.is_some_and(|s| s == 0 || s > MAX_STEPS) {
            return Err(err(file, text, &format!("{key}.steps"), format!("must be in 1..={MAX_STEPS}"), "remove it to use train.steps"));
        }
        Ok(())
    };
    let grid_check = |key: &str, values: &[f64], what: &str| -> Result<(), ScenarioError> {
        if values.is_empty() {
            return Err(err(file, text, key, "is an empty list", format!("give at least one {what}, e.g. [0.1], or remove the table")));
        }
        if let Some(v) = values.iter().find(|v| !(v.is_finite() && (1e-4..=1e4).contains(*v))) {
            return Err(err(file, text, key, format!("every {what} must be in [1e-4, 1e4] (got {v})"), "use values such as [0.1, 1.0]"));
        }
        if !distinct(values) {
            return Err(err(file, text, key, format!("lists a value twice ({values:?}): the run and its rows would be duplicated"), "list each value once"));
        }
        Ok(())
    };
    let over = |lr: Option<f64>, steps: Option<usize>| Overrides { lr, steps };
    if let Some(d) = &w.dpo {
        grid_check("dpo.beta", &d.beta, "beta")?;
        opt_check("dpo", d.lr, d.steps)?;
        methods.extend(d.beta.iter().map(|&beta| Method { kind: MethodKind::Dpo { loss: PrefLoss::Sigmoid, beta }, opt: over(d.lr, d.steps) }));
    }
    if let Some(d) = &w.ipo {
        grid_check("ipo.beta", &d.beta, "beta")?;
        opt_check("ipo", d.lr, d.steps)?;
        methods.extend(d.beta.iter().map(|&beta| Method { kind: MethodKind::Dpo { loss: PrefLoss::Ipo, beta }, opt: over(d.lr, d.steps) }));
    }
    if let Some(d) = &w.cdpo {
        grid_check("cdpo.beta", &d.beta, "beta")?;
        opt_check("cdpo", d.lr, d.steps)?;
        need!(d.label_smoothing > 0.0 && d.label_smoothing < 0.5, "cdpo.label_smoothing", format!("must be in (0, 0.5) (got {})", d.label_smoothing), "use e.g. 0.1 (0 is plain DPO)");
        methods.extend(d.beta.iter().map(|&beta| Method { kind: MethodKind::Dpo { loss: PrefLoss::Conservative { label_smoothing: d.label_smoothing }, beta }, opt: over(d.lr, d.steps) }));
    }
    if let Some(d) = &w.preferred_ft {
        opt_check("preferred_ft", d.lr, d.steps)?;
        methods.push(Method { kind: MethodKind::PreferredFt, opt: over(d.lr, d.steps) });
    }
    if let Some(d) = &w.unlikelihood {
        grid_check("unlikelihood.alpha", &d.alpha, "alpha")?;
        opt_check("unlikelihood", d.lr, d.steps)?;
        methods.extend(d.alpha.iter().map(|&alpha| Method { kind: MethodKind::Unlikelihood { alpha }, opt: over(d.lr, d.steps) }));
    }
    for (key, table, gold) in [("ppo", &w.ppo, false), ("ppo_gt", &w.ppo_gt, true)] {
        let Some(p) = table else { continue };
        let k = |f: &str| format!("{key}.{f}");
        need!(!p.target_kl.is_empty() || !p.kl_coef.is_empty(), &k("target_kl"), "neither target_kl nor kl_coef is given".into(), "give target_kl = [...] (adaptive KL) or kl_coef = [...] (fixed), e.g. target_kl = [2.0]");
        if let Some(v) = p.target_kl.iter().find(|v| !(v.is_finite() && (1e-4..=1e4).contains(*v))) {
            return e(&k("target_kl"), format!("every target must be in [1e-4, 1e4] (got {v})"), "use KL targets in nats, e.g. [1.0, 3.0]");
        }
        if let Some(v) = p.kl_coef.iter().find(|v| !(v.is_finite() && (**v == 0.0 || (1e-6..=1e4).contains(*v)))) {
            return e(&k("kl_coef"), format!("every coefficient must be 0 or in [1e-6, 1e4] (got {v})"), "use e.g. [0.05, 0.1]");
        }
        need!(distinct(&p.target_kl), &k("target_kl"), format!("lists a value twice ({:?})", p.target_kl), "list each value once");
        need!(distinct(&p.kl_coef), &k("kl_coef"), format!("lists a value twice ({:?})", p.kl_coef), "list each value once");
        need!(p.init_kl_coef.is_finite() && p.init_kl_coef > 0.0, &k("init_kl_coef"), format!("must be > 0 (got {})", p.init_kl_coef), "use e.g. 0.1");
        need!(p.horizon.is_finite() && p.horizon >= 1.0, &k("horizon"), format!("must be >= 1 (got {})", p.horizon), "use e.g. 10000 (rollouts)");
        need!(p.init_kl_coef <= 1e4, &k("init_kl_coef"), format!("must be at most 1e4 (got {})", p.init_kl_coef), "use e.g. 0.1");
        need!(p.iterations >= 1 && p.iterations <= MAX_STEPS, &k("iterations"), format!("must be in 1..={MAX_STEPS} (got {})", p.iterations), "use e.g. 100");
        need!(p.rollout_batch >= 2 && p.rollout_batch <= MAX_BATCH, &k("rollout_batch"), format!("must be in 2..={MAX_BATCH} (got {})", p.rollout_batch), "use e.g. 128");
        need!(p.ppo_epochs <= 1000, &k("ppo_epochs"), format!("must be at most 1000 (got {})", p.ppo_epochs), "use 4");
        need!(p.minibatch_size >= 1 && p.minibatch_size <= p.rollout_batch, &k("minibatch_size"), format!("must be in 1..=rollout_batch ({})", p.rollout_batch), "use e.g. rollout_batch / 4");
        need!(p.ppo_epochs >= 1, &k("ppo_epochs"), "must be at least 1".into(), "use 4");
        need!(p.lr.is_finite() && (0.0..1.0).contains(&p.lr), &k("lr"), format!("must be in [0, 1) (got {})", p.lr), "use e.g. 1e-4");
        need!(p.vf_lr.is_finite() && (0.0..1.0).contains(&p.vf_lr), &k("vf_lr"), format!("must be in [0, 1) (got {})", p.vf_lr), "use e.g. 1e-4");
        need!(p.clip_coef > 0.0 && p.clip_coef < 1.0, &k("clip_coef"), format!("must be in (0, 1) (got {})", p.clip_coef), "use 0.2");
        need!(p.vf_clip > 0.0 && p.vf_clip.is_finite(), &k("vf_clip"), format!("must be > 0 (got {})", p.vf_clip), "use 0.2");
        need!(p.vf_coef >= 0.0 && p.vf_coef.is_finite(), &k("vf_coef"), format!("must be >= 0 (got {})", p.vf_coef), "use 0.1");
        need!((0.0..=1.0).contains(&p.gamma), &k("gamma"), format!("must be in [0, 1] (got {})", p.gamma), "use 1.0");
        need!((0.0..=1.0).contains(&p.gae_lambda), &k("gae_lambda"), format!("must be in [0, 1] (got {})", p.gae_lambda), "use 0.95");
        need!(p.missing_eos_penalty.is_finite() && p.missing_eos_penalty >= 0.0, &k("missing_eos_penalty"), format!("must be >= 0 (got {})", p.missing_eos_penalty), "use 0 (off) or e.g. 1.0");
        need!(p.grad_clip.is_finite() && p.grad_clip > 0.0, &k("grad_clip"), format!("must be finite and > 0 (got {})", p.grad_clip), "use 1.0");
        need!(p.eval_every >= 1, &k("eval_every"), "must be at least 1".into(), "evaluate every few dozen iterations");
        need!(s.temperature > 0.0, "sample.temperature", "PPO samples its rollouts at sample.temperature, which is 0 (greedy)".into(), "use sample.temperature = 1.0");
        let base = crate::algo::ppo::PpoConfig {
            iterations: p.iterations,
            rollout_batch: p.rollout_batch,
            minibatch_size: p.minibatch_size,
            ppo_epochs: p.ppo_epochs,
            lr: p.lr,
            vf_lr: p.vf_lr,
            clip_coef: p.clip_coef,
            vf_clip: p.vf_clip,
            vf_coef: p.vf_coef,
            gamma: p.gamma,
            gae_lambda: p.gae_lambda,
            kl: KlControl::Fixed { coef: 0.0 },
            kl_estimator: match p.kl_estimator {
                KlEstimatorWire::K1 => KlEstimator::K1,
                KlEstimatorWire::K3 => KlEstimator::K3,
            },
            missing_eos_penalty: p.missing_eos_penalty,
            score_norm: p.score_norm,
            whiten_advantages: p.whiten_advantages,
            grad_clip: p.grad_clip,
            temperature: s.temperature,
            eval_every: p.eval_every,
        };
        for &target in &p.target_kl {
            let cfg = crate::algo::ppo::PpoConfig { kl: KlControl::Adaptive { init: p.init_kl_coef, target, horizon: p.horizon }, ..base };
            methods.push(Method { kind: MethodKind::Ppo { gold, cfg }, opt: over(None, None) });
        }
        for &coef in &p.kl_coef {
            let cfg = crate::algo::ppo::PpoConfig { kl: KlControl::Fixed { coef }, ..base };
            methods.push(Method { kind: MethodKind::Ppo { gold, cfg }, opt: over(None, None) });
        }
    }
    let seeds = match w.sweep.as_ref().and_then(|s| s.seeds.clone()) {
        None => vec![w.seed],
        Some(v) => {
            need!(!v.is_empty(), "sweep.seeds", "is an empty list".into(), "give at least one seed, e.g. [0, 1, 2], or remove it");
            let mut d = v.clone();
            d.sort();
            d.dedup();
            need!(d.len() == v.len(), "sweep.seeds", "lists a seed twice".into(), "list each seed once");
            v
        }
    };
    let best_of_n = match &w.best_of_n {
        None => None,
        Some(b) => {
            need!(!b.n.is_empty(), "best_of_n.n", "is an empty list".into(), "give the N of each point, e.g. [1, 2, 4, 8, 16]");
            need!(b.n.iter().all(|&n| (1..=256).contains(&n)), "best_of_n.n", "every N must be in 1..=256".into(), "use e.g. [1, 2, 4, 8, 16, 32, 64]");
            need!(distinct(&b.n), "best_of_n.n", format!("lists an N twice ({:?})", b.n), "list each N once");
            Some(b.n.clone())
        }
    };
    // The pairs the report compares: every name one the scenario runs.
    let mut ran: Vec<&str> = vec!["sft"];
    for m in methods.iter().map(|m: &Method| m.name()) {
        if !ran.contains(&m) {
            ran.push(m);
        }
    }
    if best_of_n.is_some() {
        ran.push("best_of_n");
    }
    let compare: Vec<[String; 2]> = if w.report.compare.is_empty() {
        let defaults: &[[&str; 2]] = match &w.world {
            WorldWire::Summarize(_) => &[["dpo", "ppo"], ["dpo", "sft"]],
            WorldWire::Sentiment(_) => &[["dpo", "ppo"], ["dpo", "ppo_gt"], ["dpo", "best_of_n"]],
        };
        defaults.iter().filter(|p| p.iter().all(|m| ran.contains(m))).map(|p| [p[0].to_string(), p[1].to_string()]).collect()
    } else {
        for [a, b] in &w.report.compare {
            need!(a != b, "report.compare", format!("compares `{a}` with itself"), "name two different methods, e.g. [\"dpo\", \"ppo\"]");
            for m in [a, b] {
                need!(ran.contains(&m.as_str()), "report.compare", format!("names `{m}`, which this scenario does not run (it runs {})", ran.join(", ")), "compare methods the scenario runs, or add the method's table");
            }
        }
        w.report.compare.clone()
    };

    let model = GptConfig {
        vocab_size: vocab_size as i64,
        block_size: m.block_size as i64,
        n_layer: m.n_layer as i64,
        n_head: m.n_head as i64,
        d_model: m.d_model as i64,
    };
    let sft = f.clone();
    let sample = s.clone();
    let mut resolved = w.clone();
    resolved.name = name.clone();
    resolved.report.compare = compare;
    let resolved_toml = toml::to_string(&resolved).expect("wire structs serialize");
    let prefs = PrefsConfig {
        k: p.k,
        source: match p.source {
            PrefSourceWire::Sft => PrefSource::Sft,
            PrefSourceWire::TrueProcess | PrefSourceWire::Labeller => PrefSource::OffPolicy,
        },
        labels: match p.labels {
            LabelsWire::Deterministic => Labels::Deterministic,
            LabelsWire::BradleyTerry => Labels::BradleyTerry { temperature: p.bt_temperature },
        },
        val_fraction: p.val_fraction,
        temperature: p.temperature,
    };
    let rm_model = GptConfig {
        n_layer: r.n_layer.unwrap_or(m.n_layer) as i64,
        d_model: r.d_model.unwrap_or(m.d_model) as i64,
        n_head: r.n_head.unwrap_or(m.n_head) as i64,
        ..model.clone()
    };
    need!(rm_model.n_layer >= 1 && rm_model.n_layer <= 48, "reward.n_layer", format!("must be in 1..=48 (got {})", rm_model.n_layer), "use a few layers, e.g. 2");
    need!(rm_model.n_head >= 1 && rm_model.d_model >= 1 && rm_model.d_model % rm_model.n_head == 0, "reward.d_model", format!("d_model {} is not a multiple of n_head {}", rm_model.d_model, rm_model.n_head), "make reward.d_model divisible by reward.n_head (default: model.n_head)");
    let reward = RewardConfig { epochs: r.epochs, batch_size: r.batch_size, lr: r.lr, margin: r.margin, center_coef: r.center_coef, grad_clip: r.grad_clip, model: rm_model };
    let train = t.clone();
    let eval = EvalConfig {
        every: ev.every,
        samples_per_prompt: ev.samples_per_prompt,
        temperatures: ev.temperatures.clone(),
        selection_fraction: ev.selection_fraction,
        optimal_samples: ev.optimal_samples.unwrap_or(candidates),
        optimal_min_ess: ev.optimal_min_ess,
    };
    Ok(Scenario { name, seed: seeds[0], seeds, world, model, sft, sample, prefs, reward, train, eval, methods, best_of_n, resolved_toml, source: path.to_path_buf() })
}
