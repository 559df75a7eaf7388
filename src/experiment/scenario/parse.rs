//! A scenario file as written: TOML, `--set` overrides, `[sweep]` grids moved into their
//! tables, the method tables set apart, and serde's errors as one line naming the key.

use serde::{Deserialize, Serialize};

use super::ScenarioError;
use crate::algo::best_of_n::BestOfNConfig;
use crate::algo::dpo::TrainConfig;
use crate::algo::reward::RewardConfig;
use crate::algo::sft::SftConfig;
use crate::algo::trainer::Faults;
use crate::config::{compact_numbers, find_line, read, shown, ConfigError};
use crate::data::PrefsConfig;
use crate::eval::EvalConfig;
use crate::experiment::methods;
use crate::model::{ModelConfig, SampleConfig};
use crate::world::WorldConfig;

/// Every section of a scenario but its methods, each declared beside the code it configures.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Name of the scenario: results go to results/<name>/ (default: the file's stem).
    #[serde(default)]
    pub name: String,
    /// The one seed every RNG of every stage is derived from.
    #[serde(default)]
    pub seed: u64,
    /// The world (`kind` and its settings).
    pub world: WorldConfig,
    /// The policy's network.
    #[serde(default)]
    pub model: ModelConfig,
    /// Supervised fine-tuning of pi_SFT.
    #[serde(default)]
    pub sft: SftConfig,
    /// How responses are sampled.
    #[serde(default)]
    pub sample: SampleConfig,
    /// The preference pairs.
    #[serde(default)]
    pub prefs: PrefsConfig,
    /// The reward model.
    #[serde(default)]
    pub reward: RewardConfig,
    /// The preference methods' shared optimisation.
    #[serde(default)]
    pub train: TrainConfig,
    /// The evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Best-of-N, if it runs.
    pub best_of_n: Option<BestOfNConfig>,
    /// Seeds (the method grids are moved into their tables when read).
    pub sweep: Option<Sweep>,
    /// What the report compares.
    #[serde(default)]
    pub report: ReportConfig,
    /// Equal tuning (see `experiment::tune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<TuneFile>,
    /// `[faults]`: failures injected on purpose, for tests only.
    #[serde(default, skip_serializing_if = "Faults::is_none")]
    pub faults: Faults,
}

/// `[tune]`: tuning seeds, the reference budget, and per method table a grid of its settings
/// (`[tune.dpo] lr = [1e-4, 3e-4]`), the same number of configurations for every table.
#[derive(Deserialize, Serialize, Debug, Clone)]
pub struct TuneFile {
    /// Tuning seeds (apart from the reported and pilot seeds).
    pub seeds: Vec<u64>,
    /// The KL budget (nats) at which configurations are compared.
    pub budget: f64,
    /// Per method table, `[tune.<table>]`: a grid of its settings; every table the same number of configurations.
    #[serde(flatten)]
    pub tables: std::collections::BTreeMap<String, toml::Table>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// One full pipeline (world, SFT, data, reward model, methods) per seed.
    pub seeds: Option<Vec<u64>>,
    /// KL budgets (nats) each calibrated method's grid is fitted to, on the pilot seed (see
    /// `experiment::calibrate`); empty: the grids run as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<f64>,
    /// The seed the calibration runs on, never reported (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pilot_seed: Option<u64>,
    /// Several pilot seeds instead of one: each setting's landed KL is the mean over them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pilot_seeds: Option<Vec<u64>>,
    /// Search rounds of the calibration after the first (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_rounds: Option<usize>,
    /// How near a budget the search aims (relative; default 0.1, see `experiment::calibrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_aim: Option<f64>,
    /// Rounds of per-seed top-ups after the sweep (default 0: none; see
    /// `experiment::calibrate::top_ups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up_rounds: Option<usize>,
    /// Whether the grids are calibrated to the budgets (default true). False: the grids run as
    /// written, already calibrated (a results folder's `scenario.resolved.toml`, whose seed
    /// runs are its top-ups), and the budgets only name the report's; no pilot runs, no
    /// top-ups. What a rerun of a folder's sweep under float noise uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrate: Option<bool>,
    /// Runs of one seed only (the top-ups `alignlab run` adds; they may be written by hand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seed_runs: Vec<SeedRun>,
}

/// A run on one seed of the sweep only: `table`'s KL knob (beta, alpha, target KL, ...) at
/// `value`, added where that seed's calibrated run missed `budget` (a top-up).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SeedRun {
    pub seed: u64,
    pub table: String,
    pub value: f64,
    /// The budget it is for (the report's landed-KL table reads it).
    pub budget: f64,
}

/// What the report compares. Read by `alignlab report` from the resolved scenario.
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Pairs of methods compared paired by seed, A against B: at each KL budget (gold reward)
    /// and each evaluation temperature (win rate). Default: DPO against PPO, PPO-GT and
    /// Best-of-N; in the summarize and dataset worlds, DPO against PPO, PPO-GT and SFT; in
    /// dialogue, against PPO, PPO-GT, Best-of-N, Preferred-FT and SFT (those the scenario runs).
    pub compare: Vec<[String; 2]>,
}

/// A scenario as written: its sections and its method tables, in the registry's order.
pub struct Parsed {
    pub file: File,
    pub methods: Vec<(&'static str, toml::Table)>,
    /// The keys `--set` wrote: an error on one points there, not at the file's line.
    pub sets: Vec<String>,
}

/// The one-line error of `key` (dotted, in full), with the line where the text writes it, or
/// ` (--set)` where one of `sets` wrote it.
pub fn err(
    file: &str,
    text: &str,
    sets: &[String],
    key: &str,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ScenarioError {
    let line = if sets.iter().any(|s| s == key) {
        " (--set)".into()
    } else {
        find_line(text, key).map(|l| format!(":{l}")).unwrap_or_default()
    };
    ScenarioError {
        file: file.into(),
        line,
        key: shown(key),
        problem: compact_numbers(&problem.into()),
        fix: fix.into(),
    }
}

/// Parse TOML, apply `--set a.b=value` overrides, move `[sweep]` grids, set the method tables
/// apart and deserialize the sections.
pub fn parse(text: &str, file: &str, overrides: &[Override]) -> Result<Parsed, ScenarioError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| format!(":{}", text[..s.start].lines().count().max(1)))
            .unwrap_or_default();
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
            key: shown(&format!("--set {}", ov.to_arg())),
            problem: compact_numbers(&problem),
            fix: "write --set section.key=value, e.g. --set sft.lr=1e-3".into(),
        })?;
    }
    let sets: Vec<String> = overrides.iter().map(|o| o.key.clone()).collect();
    let at = |e: ConfigError| err(file, text, &sets, &e.key, e.problem, e.fix);
    expand_sweep(&mut table).map_err(at)?;
    let mut methods = Vec::new();
    for name in methods::tables() {
        match table.remove(name) {
            None => {}
            Some(toml::Value::Table(t)) => methods.push((name, t)),
            Some(_) => {
                return Err(at(ConfigError {
                    key: name.into(),
                    problem: "is not a table".into(),
                    fix: format!("write [{name}] with its settings"),
                }))
            }
        }
    }
    // `[world]` is an enum tagged by `kind`, which serde reads as a whole: its field errors
    // would name only `world`. Read the chosen world's table on its own first, so that an
    // error names `world.<key>` and its line.
    if let Some(toml::Value::Table(world)) = table.get("world") {
        let mut inner = world.clone();
        let kind = inner.remove("kind");
        // A missing or unknown kind: the full read below says so.
        if let Some(read) = kind
            .as_ref()
            .and_then(|k| k.as_str())
            .and_then(|k| WorldConfig::read_table(k, toml::Value::Table(inner)))
        {
            read.map_err(at)?;
        }
    }
    let file_ = read::<File>("", toml::Value::Table(table)).map_err(|mut e| {
        if e.problem.starts_with("unknown field") && !e.key.contains('.') {
            e.problem = format!("{}; or a method: {}", e.problem, methods::tables().join(", "));
        }
        at(e)
    })?;
    Ok(Parsed { file: file_, methods, sets })
}

/// Move the grids of `[sweep]` (`dpo.beta = [...]`) into their method tables, leaving `seeds`.
fn expand_sweep(table: &mut toml::Table) -> Result<(), ConfigError> {
    let Some(toml::Value::Table(sweep)) = table.remove("sweep") else {
        return Ok(());
    };
    let fail = |key: String, problem: &str, fix: String| {
        Err(ConfigError { key, problem: problem.into(), fix })
    };
    let mut kept = toml::Table::new();
    for (section, v) in sweep {
        if matches!(
            section.as_str(),
            "seeds"
                | "budgets"
                | "pilot_seed"
                | "pilot_seeds"
                | "calibration_rounds"
                | "calibration_aim"
                | "top_up_rounds"
                | "calibrate"
                | "seed_runs"
        ) {
            kept.insert(section, v);
            continue;
        }
        let toml::Value::Table(inner) = v else {
            return fail(
                format!("sweep.{section}"),
                "is not a grid",
                format!("write grids as `method.key = [...]`: seeds, {}", methods::GRIDS),
            );
        };
        for (key, list) in inner {
            let full = format!("{section}.{key}");
            if !methods::is_grid(&section, &key) {
                return fail(
                    format!("sweep.{full}"),
                    "is not a sweepable grid",
                    format!(
                        "sweep seeds, {}; other settings go in their own table",
                        methods::GRIDS
                    ),
                );
            }
            if !list.is_array() {
                return fail(
                    format!("sweep.{full}"),
                    "is not a list",
                    format!("write `{full} = [v1, v2, ...]`"),
                );
            }
            match table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => {
                    t.insert(key, list);
                }
                _ => {
                    return fail(
                        section.clone(),
                        "is not a table",
                        format!("write [{section}] as a table"),
                    )
                }
            }
        }
    }
    table.insert("sweep".into(), toml::Value::Table(kept));
    Ok(())
}

/// A setting replaced: a dotted key (`sft.lr`, `sweep.seeds`) and its value. `--set key=value`
/// is read into one at the command line; the protocol's phases (tuning, calibration, top-ups)
/// make them typed, and write them back as `--set` only for a cell's command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: toml::Value,
}

impl Override {
    pub fn new(key: &str, value: impl Into<toml::Value>) -> Override {
        Override { key: key.to_string(), value: value.into() }
    }

    /// `key=value` as `--set` takes it: the value is TOML, or else a bare string.
    pub fn parse(ov: &str) -> Result<Override, String> {
        let (key, raw) = ov.split_once('=').ok_or_else(|| format!("`{ov}` has no `=`"))?;
        let key = key.trim();
        if key.split('.').any(|p| p.is_empty()) {
            return Err(format!("`{key}` is not a dotted key"));
        }
        let value: toml::Value = match toml::from_str::<toml::Table>(&format!("x = {raw}")) {
            Ok(mut t) => t.remove("x").unwrap(),
            Err(_) => toml::Value::String(raw.trim().to_string()),
        };
        Ok(Override { key: key.to_string(), value })
    }

    /// The `--set` argument that gives the same override (for a cell's command line).
    pub fn to_arg(&self) -> String {
        format!("{}={}", self.key, self.value)
    }

    /// Overrides as `--set` would write them, space-separated (for messages).
    pub fn args(overrides: &[Override]) -> String {
        overrides.iter().map(Override::to_arg).collect::<Vec<_>>().join(" ")
    }

    /// A list of numbers at `key` (a grid), each written as a TOML float.
    pub fn floats(key: &str, values: &[f64]) -> Override {
        Override::new(key, values.iter().map(|v| toml::Value::Float(*v)).collect::<Vec<_>>())
    }

    /// A list of integers at `key`.
    pub fn ints<T: Copy + Into<i64>>(key: &str, values: &[T]) -> Override {
        Override::new(
            key,
            values.iter().map(|v| toml::Value::Integer((*v).into())).collect::<Vec<_>>(),
        )
    }
}

fn apply_override(table: &mut toml::Table, ov: &Override) -> Result<(), String> {
    let parts: Vec<&str> = ov.key.split('.').collect();
    let value = ov.value.clone();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry =
            cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
