//! The method registry: every method a scenario can run, with its name in tables and CSVs, its
//! setting label, the part of its run folder's cache key it owns, its grids and how a table of
//! the scenario becomes its runs.
//!
//! The offline preference methods are the variants of [`PrefLoss`]: a scenario table named after
//! one (`[dpo]`, `[ipo]`, ...) holds its parameters (a list is a grid, one run per value; several
//! lists give their product) and the `[train]` overrides `lr`, `steps` and `batch_size`. Adding such a loss
//! touches only `algo/dpo.rs`. The online methods: PPO against the reward model (`[ppo]`) or the
//! gold reward (`[ppo_gt]`), grids `target_kl`, `kl_coef` and `rollout_batch`; the critic-free
//! `[rloo]`, `[reinforce_pp]`, `[grpo]`, grid `kl_coef`; online DPO (`[online_dpo]`,
//! `[online_dpo_gt]`, Tang et al.'s control `[online_dpo_shuffled]`), whose keys are a
//! preference table's plus `loss` and `sync_every`.

use anyhow::Result;
use serde::Deserialize;

use crate::algo::dpo::{PrefLoss, TrainConfig};
use crate::algo::pg::{Estimator, PgConfig};
use crate::algo::ppo::{KlControl, PpoConfig};
use crate::config::{need, read, ConfigError, MAX_STEPS};
use crate::model::SampleConfig;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum MethodKind {
    /// An offline preference loss on the pairs.
    Pref(PrefLoss),
    /// PPO with a critic, against the reward model or (`gold`) the world's gold reward;
    /// `batch_grid`: the table sweeps `rollout_batch`, which the setting label then shows.
    Ppo { gold: bool, cfg: PpoConfig, batch_grid: bool },
    /// A critic-free estimator (RLOO, REINFORCE++, GRPO) against the reward model.
    Pg { est: Estimator, cfg: PgConfig },
    /// A preference loss on pairs the policy samples, labelled by the reward model or (`gold`)
    /// the gold reward; the sampler synced every `sync_every` steps. `shuffled` (Tang et al.'s
    /// control): the same loss offline, from pi_SFT, on the pooled and shuffled pairs of that
    /// online run.
    Online { gold: bool, loss: PrefLoss, sync_every: usize, shuffled: bool },
}

/// How runs scored by the gold reward pass their prompts to it: 2, the prompt as the world
/// wrote it; 1 (before commit b25cbc3) passed the rollout's left-padded row, `<pad>`s and
/// `<bos>` first. The dialogue judge reads the request's intent at position 1 and scored every
/// such rollout as answering no request (length and repeats only), so dialogue runs carry
/// `gold_prompts=2` in their cache key ([`Method::cache_key`] with `gold_reads_padding`). The
/// sentiment and summarize golds skip those tokens (tests/dialogue.rs checks it), so their
/// runs are the same bytes under both (checked on sentiment PPO-GT tuning runs: eval.csv
/// identical) and keep their key.
pub const GOLD_PROMPTS: u32 = 2;

/// The PPO tables and whether each scores with the gold reward.
const PPO_TABLES: [(&str, bool); 2] = [("ppo", false), ("ppo_gt", true)];
/// The grids of a PPO table: one run per value of each.
const PPO_GRIDS: [&str; 3] = ["target_kl", "kl_coef", "rollout_batch"];
/// The critic-free tables.
const PG_TABLES: [Estimator; 3] = [Estimator::Rloo, Estimator::ReinforcePp, Estimator::Grpo];
/// The online preference tables, whether each labels with the gold reward, and whether it is
/// Tang et al.'s control (offline on the online run's pairs, shuffled).
const ONLINE_TABLES: [(&str, bool, bool); 3] = [
    ("online_dpo", false, false),
    ("online_dpo_gt", true, false),
    ("online_dpo_shuffled", false, true),
];
/// Keys of a preference table that are not its loss's parameters.
const OPT_KEYS: [&str; 3] = ["lr", "steps", "batch_size"];

/// Per-method overrides of `[train]`, the keys of a preference table besides its loss's.
#[derive(Clone, Copy, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub lr: Option<f64>,
    pub steps: Option<usize>,
    pub batch_size: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Method {
    pub kind: MethodKind,
    pub opt: Overrides,
}

/// Every table of a scenario that holds a method, in the order the methods run.
pub fn tables() -> Vec<&'static str> {
    let pref = PrefLoss::names().iter().copied();
    pref.chain(PPO_TABLES.map(|t| t.0))
        .chain(PG_TABLES.map(|e| e.name()))
        .chain(ONLINE_TABLES.map(|t| t.0))
        .collect()
}

/// Whether `[sweep] table.key = [...]` names a grid: a preference loss's parameter (offline or
/// online, and `sync_every`), a KL grid of PPO or of a critic-free method, or Best-of-N's `n`.
pub fn is_grid(table: &str, key: &str) -> bool {
    let loss_param = !OPT_KEYS.contains(&key) && key != "loss";
    let pref = (PrefLoss::names().contains(&table) || ONLINE_TABLES.iter().any(|t| t.0 == table))
        && loss_param;
    let ppo = PPO_TABLES.iter().any(|t| t.0 == table) && PPO_GRIDS.contains(&key);
    let pg = PG_TABLES.iter().any(|e| e.name() == table) && key == "kl_coef";
    pref || ppo || pg || (table == "best_of_n" && key == "n")
}

/// The grids `[sweep]` may set, for messages.
pub const GRIDS: &str = "a preference loss's parameter (e.g. dpo.beta, unlikelihood.alpha, online_dpo.beta, online_dpo.sync_every), ppo.target_kl, ppo.kl_coef, ppo_gt.target_kl, ppo_gt.kl_coef, rloo.kl_coef, reinforce_pp.kl_coef, grpo.kl_coef, best_of_n.n";

/// A list of numbers at `key` of `table` (absent: empty), each value once.
fn number_grid(name: &str, table: &mut toml::Table, key: &str) -> Result<Vec<f64>, ConfigError> {
    let values: Vec<f64> = table
        .remove(key)
        .map(|v| read(&format!("{name}.{key}"), v))
        .transpose()?
        .unwrap_or_default();
    need(
        distinct(&values),
        key,
        || format!("lists a value twice ({values:?})"),
        "list each value once",
    )
    .map_err(|e| e.within(name))?;
    Ok(values)
}

/// The runs of method table `name` as written, and the table resolved (every default filled in).
/// PPO and the critic-free methods sample their rollouts with `[sample]`. Errors name the key
/// in full (`dpo.beta`).
pub fn expand(name: &str, table: &toml::Table, sample: &SampleConfig) -> Expanded {
    let mut rest = table.clone();
    if let Some(&(_, gold)) = PPO_TABLES.iter().find(|t| t.0 == name) {
        return expand_ppo(name, gold, rest, sample);
    }
    if let Some(&est) = PG_TABLES.iter().find(|e| e.name() == name) {
        return expand_pg(name, est, rest, sample);
    }
    let opt = overrides(name, &mut rest)?;
    if let Some(&(_, gold, shuffled)) = ONLINE_TABLES.iter().find(|t| t.0 == name) {
        return expand_online((name, table), (gold, shuffled), rest, opt);
    }
    need(
        !rest.contains_key("loss"),
        "loss",
        || "unknown field `loss`: the table's name is its loss".into(),
        "remove the key",
    )
    .map_err(|e| e.within(name))?;
    let losses = loss_runs(name, name, &rest)?;
    let resolved = with_defaults(table, &losses[0]);
    let runs = losses.into_iter().map(|loss| Method { kind: MethodKind::Pref(loss), opt });
    Ok((runs.collect(), resolved))
}
/// The runs of a method table, and the table resolved.
type Expanded = Result<(Vec<Method>, toml::Table), ConfigError>;

/// A PPO table (`gold`: `[ppo_gt]`): one run per target KL or coefficient, crossed with the
/// rollout batches where `rollout_batch` is a grid.
fn expand_ppo(name: &str, gold: bool, mut rest: toml::Table, sample: &SampleConfig) -> Expanded {
    let method = |kind| Method { kind, opt: Overrides::default() };
    let (target_kl, kl_coef) =
        (number_grid(name, &mut rest, "target_kl")?, number_grid(name, &mut rest, "kl_coef")?);
    // `rollout_batch` may be a grid (Xu et al.: the batch size matters), crossed with the KL runs.
    let batches = match rest.get("rollout_batch") {
        Some(toml::Value::Array(_)) => Some(number_grid(name, &mut rest, "rollout_batch")?),
        _ => None,
    };
    need(
        batches
            .as_ref()
            .is_none_or(|b| !b.is_empty() && b.iter().all(|v| v.fract() == 0.0 && *v >= 0.0)),
        "rollout_batch",
        || "must be a whole number or a list of them".into(),
        "use e.g. [64, 256]",
    )
    .map_err(|e| e.within(name))?;
    let mut cfg: PpoConfig = read(name, toml::Value::Table(rest))?;
    cfg.temperature = sample.temperature;
    let mut runs = Vec::new();
    for batch in batches.clone().unwrap_or(vec![cfg.rollout_batch as f64]) {
        let cfg = PpoConfig { rollout_batch: batch as usize, ..cfg };
        let batch_grid = batches.is_some();
        runs.extend(
            cfg.runs(&target_kl, &kl_coef)
                .map_err(|e| e.within(name))?
                .into_iter()
                .map(|cfg| method(MethodKind::Ppo { gold, cfg, batch_grid })),
        );
    }
    let mut resolved = toml::Table::try_from(cfg).expect("PpoConfig serializes");
    resolved.remove("kl");
    resolved.insert("target_kl".into(), toml::Value::try_from(target_kl).unwrap());
    resolved.insert("kl_coef".into(), toml::Value::try_from(kl_coef).unwrap());
    if let Some(b) = batches {
        resolved.insert(
            "rollout_batch".into(),
            toml::Value::try_from(b.iter().map(|&v| v as i64).collect::<Vec<_>>()).unwrap(),
        );
    }
    Ok((runs, resolved))
}

/// A critic-free table: one run per KL coefficient.
fn expand_pg(name: &str, est: Estimator, mut rest: toml::Table, sample: &SampleConfig) -> Expanded {
    let method = |kind| Method { kind, opt: Overrides::default() };
    let kl_coef = number_grid(name, &mut rest, "kl_coef")?;
    need(
        !kl_coef.is_empty(),
        "kl_coef",
        || "is missing or empty".into(),
        "give the KL coefficients to run, e.g. kl_coef = [0.02, 0.05, 0.1] (0 is allowed)",
    )
    .map_err(|e| e.within(name))?;
    if let Some(v) =
        kl_coef.iter().find(|v| !(v.is_finite() && (**v == 0.0 || (1e-6..=1e4).contains(*v))))
    {
        return Err(ConfigError {
            key: format!("{name}.kl_coef"),
            problem: format!("every coefficient must be 0 or in [1e-6, 1e4] (got {v})"),
            fix: "use e.g. [0.02, 0.05]".into(),
        });
    }
    let mut cfg = read::<PgConfig>(name, toml::Value::Table(rest))?
        .for_estimator(est)
        .map_err(|e| e.within(name))?;
    cfg.validate().map_err(|e| e.within(name))?;
    (cfg.temperature, cfg.max_new_tokens) = (sample.temperature, sample.max_new_tokens);
    let mut resolved = toml::Table::try_from(cfg).expect("PgConfig serializes");
    resolved.insert("kl_coef".into(), toml::Value::try_from(&kl_coef).unwrap());
    Ok((
        kl_coef
            .iter()
            .map(|&kl_coef| method(MethodKind::Pg { est, cfg: PgConfig { kl_coef, ..cfg } }))
            .collect(),
        resolved,
    ))
}

/// An online preference table: its loss's runs, each at every `sync_every`.
fn expand_online(
    (name, table): (&str, &toml::Table),
    (gold, shuffled): (bool, bool),
    mut rest: toml::Table,
    opt: Overrides,
) -> Expanded {
    need(
        !(shuffled && rest.contains_key("sync_every")),
        "sync_every",
        || "does not apply: the control replays the online run (sync_every = 1)".into(),
        "remove it",
    )
    .map_err(|e| e.within(name))?;
    let loss: String = rest
        .remove("loss")
        .map(|v| read(&format!("{name}.loss"), v))
        .transpose()?
        .unwrap_or_else(|| "dpo".into());
    need(
        PrefLoss::names().contains(&loss.as_str()),
        "loss",
        || {
            format!(
                "`{}` is not a preference loss (one of {})",
                crate::config::shown(&loss),
                PrefLoss::names().join(", ")
            )
        },
        "use e.g. loss = \"dpo\" or \"ipo\"",
    )
    .map_err(|e| e.within(name))?;
    let sync: Vec<usize> = match rest.remove("sync_every") {
        None => vec![1],
        Some(toml::Value::Array(v)) => read(&format!("{name}.sync_every"), toml::Value::Array(v))?,
        Some(v) => vec![read(&format!("{name}.sync_every"), v)?],
    };
    need(
        !sync.is_empty() && distinct(&sync) && sync.iter().all(|&s| (1..=MAX_STEPS).contains(&s)),
        "sync_every",
        || format!("must be distinct steps in 1..={MAX_STEPS} (got {sync:?})"),
        "use 1 (online) or e.g. [10, 50] (semi-online)",
    )
    .map_err(|e| e.within(name))?;
    let losses = loss_runs(name, &loss, &rest)?;
    let mut resolved = with_defaults(table, &losses[0]);
    resolved.entry("loss").or_insert_with(|| toml::Value::String(loss.clone()));
    if !shuffled {
        resolved.entry("sync_every").or_insert(toml::Value::Integer(1));
    }
    let runs = sync.iter().flat_map(|&sync_every| {
        losses.iter().map(move |&loss| Method {
            kind: MethodKind::Online { gold, loss, sync_every, shuffled },
            opt,
        })
    });
    Ok((runs.collect(), resolved))
}

/// A preference table as written, with the loss's defaulted parameters filled in (KTO's
/// `lambda_d`, ...): the resolved scenario lists every setting a run used.
fn with_defaults(table: &toml::Table, loss: &PrefLoss) -> toml::Table {
    let mut resolved = table.clone();
    for (key, value) in loss.params() {
        resolved.entry(key).or_insert(value);
    }
    resolved
}

/// The `[train]` overrides `lr`, `steps` and `batch_size` of a preference table, taken out of it.
fn overrides(name: &str, table: &mut toml::Table) -> Result<Overrides, ConfigError> {
    let written = toml::Table::from_iter(
        OPT_KEYS.iter().filter_map(|&k| table.remove(k).map(|v| (k.to_string(), v))),
    );
    let opt: Overrides = read(name, toml::Value::Table(written))?;
    if let Some(lr) = opt.lr {
        need(
            lr.is_finite() && (0.0..1.0).contains(&lr),
            "lr",
            || format!("must be in [0, 1) (got {lr})"),
            "use e.g. 1e-4",
        )
        .map_err(|e| e.within(name))?;
    }
    need(
        !opt.steps.is_some_and(|s| s == 0 || s > MAX_STEPS),
        "steps",
        || format!("must be in 1..={MAX_STEPS}"),
        "remove it to use train.steps",
    )
    .map_err(|e| e.within(name))?;
    need(
        !opt.batch_size.is_some_and(|b| b == 0 || b > 4096),
        "batch_size",
        || "must be in 1..=4096".into(),
        "remove it to use train.batch_size",
    )
    .map_err(|e| e.within(name))?;
    Ok(opt)
}

/// The losses `loss` of table `name` with parameters `params`: one per point of the product of
/// its lists.
fn loss_runs(name: &str, loss: &str, params: &toml::Table) -> Result<Vec<PrefLoss>, ConfigError> {
    let mut runs =
        vec![toml::Table::from_iter([("loss".to_string(), toml::Value::String(loss.into()))])];
    for (key, value) in params {
        let values = match value {
            toml::Value::Array(v) => v.clone(),
            v => vec![v.clone()],
        };
        need(
            !values.is_empty(),
            key,
            || "is an empty list".into(),
            "give at least one value, e.g. [0.1], or remove the table",
        )
        .map_err(|e| e.within(name))?;
        need(
            distinct(&values),
            key,
            || format!("lists a value twice ({value}): the run and its rows would be duplicated"),
            "list each value once",
        )
        .map_err(|e| e.within(name))?;
        runs = runs
            .iter()
            .flat_map(|run| {
                values.iter().map(move |v| {
                    let mut run = run.clone();
                    run.insert(key.clone(), v.clone());
                    run
                })
            })
            .collect();
    }
    let mut losses = Vec::new();
    for run in runs {
        // Serde reads a tagged enum from a buffer and loses the path of a field's error: a
        // value of the wrong type is named by the key that holds it.
        let loss: PrefLoss = read(name, toml::Value::Table(run.clone())).map_err(|e| match run
            .iter()
            .find(|(k, v)| *k != "loss" && !(v.is_float() || v.is_integer()))
        {
            // A word (ORPO's `nll`): serde names the choices.
            Some((key, v)) if e.key == name && e.problem.contains("unknown variant") => {
                ConfigError {
                    key: format!("{name}.{key}"),
                    problem: format!("{} (got {v})", e.problem),
                    fix: "write one of the values it lists".into(),
                }
            }
            Some((key, v)) if e.key == name => ConfigError {
                key: format!("{name}.{key}"),
                problem: format!("must be a number (got {v})"),
                fix: "write e.g. [0.1, 0.5]".into(),
            },
            _ => e,
        })?;
        loss.validate().map_err(|e| e.within(name))?;
        losses.push(loss);
    }
    Ok(losses)
}

/// Whether no value is listed twice.
pub(crate) fn distinct<T: PartialEq>(values: &[T]) -> bool {
    values.iter().enumerate().all(|(i, v)| !values[..i].contains(v))
}

impl Method {
    /// The method's name in tables and CSVs: its scenario table.
    pub fn name(&self) -> String {
        match self.kind {
            MethodKind::Pref(loss) => loss.name(),
            MethodKind::Ppo { gold, .. } => {
                PPO_TABLES.iter().find(|t| t.1 == gold).unwrap().0.to_string()
            }
            MethodKind::Pg { est, .. } => est.name().to_string(),
            // online_dpo, online_ipo_gt, online_dpo_s10: a sampler synced every s steps is a
            // method of its own (its own frontier), not a setting of the online one.
            MethodKind::Online { gold, loss, sync_every, shuffled } => {
                let sync = if sync_every > 1 { format!("_s{sync_every}") } else { String::new() };
                format!(
                    "online_{}{}{sync}{}",
                    loss.name(),
                    if gold { "_gt" } else { "" },
                    if shuffled { "_shuffled" } else { "" }
                )
            }
        }
    }

    /// The method's setting, e.g. `beta=0.1`.
    pub fn setting(&self) -> String {
        match self.kind {
            MethodKind::Pref(loss) => loss.setting(),
            MethodKind::Ppo { cfg, batch_grid, .. } => {
                let kl = match cfg.kl {
                    KlControl::Adaptive { target, .. } => format!("target_kl={target}"),
                    KlControl::Fixed { coef } => format!("kl_coef={coef}"),
                };
                if batch_grid {
                    format!("{kl};rollout_batch={}", cfg.rollout_batch)
                } else {
                    kl
                }
            }
            MethodKind::Pg { cfg, .. } => format!("kl_coef={}", cfg.kl_coef),
            MethodKind::Online { loss, .. } => loss.setting(),
        }
    }

    /// The method's part of its run folder's cache key: its kind with every setting, and for
    /// the offline methods the optimisation they run with (PPO's is in its kind).
    /// `gold_reads_padding`: whether the world's gold scored the padded rows differently (the
    /// dialogue judge; see [`GOLD_PROMPTS`]).
    pub fn cache_key(&self, base: &TrainConfig, gold_reads_padding: bool) -> String {
        #[derive(serde::Serialize)]
        struct Key {
            kind: MethodKind,
            train: Option<TrainConfig>,
        }
        let train = matches!(self.kind, MethodKind::Pref(_) | MethodKind::Online { .. })
            .then(|| self.train_config(base));
        let gold = if gold_reads_padding
            && matches!(
                self.kind,
                MethodKind::Ppo { gold: true, .. } | MethodKind::Online { gold: true, .. }
            ) {
            format!("|gold_prompts={GOLD_PROMPTS}")
        } else {
            String::new()
        };
        format!("method|{}{gold}", super::keys::key_of(&Key { kind: self.kind, train }))
    }

    /// The run's length: its steps, or its iterations (PPO and the critic-free methods).
    pub fn length(&self, base: &TrainConfig) -> usize {
        match &self.kind {
            MethodKind::Pref(_) | MethodKind::Online { .. } => self.train_config(base).steps,
            MethodKind::Ppo { cfg, .. } => cfg.iterations,
            MethodKind::Pg { cfg, .. } => cfg.iterations,
        }
    }

    /// A rough cost of the run, in sequence passes (a forward or a generated sequence 1, a
    /// backward 2), to start a sweep's longest cells first. It orders work only: no result
    /// depends on it.
    pub fn cost(&self, base: &TrainConfig) -> f64 {
        let t = self.train_config(base);
        match &self.kind {
            // Chosen and rejected, forward and backward.
            MethodKind::Pref(_) => (t.steps * t.batch_size) as f64 * 6.0,
            // Two samples per prompt, their reference pass, the loss on both.
            MethodKind::Online { shuffled: false, .. } => (t.steps * t.batch_size) as f64 * 10.0,
            // The online run first, then the offline pass on its pairs.
            MethodKind::Online { shuffled: true, .. } => (t.steps * t.batch_size) as f64 * 16.0,
            // Rollout, old, reference and value passes; each epoch policy and critic.
            MethodKind::Ppo { cfg, .. } => {
                (cfg.iterations * cfg.rollout_batch) as f64 * (4.0 + 6.0 * cfg.ppo_epochs as f64)
            }
            MethodKind::Pg { cfg, .. } => {
                (cfg.iterations * cfg.prompts_per_iteration * cfg.group_size) as f64
                    * (3.0 + 3.0 * cfg.ppo_epochs as f64)
            }
        }
    }

    /// What the run's random streams (batch order, prompts, samples) derive from: its table and
    /// its grid values, serialised from their typed fields, never its display label (whose
    /// format may change; cDPO's once did). Runs that differ only in other settings (a tuned
    /// learning rate, a horizon) share their streams: common random numbers.
    pub fn stream_key(&self) -> String {
        format!("{}|{}", self.name(), super::keys::key_of(&self.grid()))
    }

    /// The run's value of the grid `key` (`beta`, `target_kl`, `kl_coef`), as typed.
    pub fn grid_value(&self, key: &str) -> Option<f64> {
        let v = self.grid().remove(key)?;
        v.as_float().or(v.as_integer().map(|i| i as f64))
    }

    /// The run's grid values: its loss's parameters, PPO's KL target or coefficient (and its
    /// rollout batch where that is a grid), a critic-free method's KL coefficient.
    fn grid(&self) -> toml::Table {
        match self.kind {
            MethodKind::Pref(loss) | MethodKind::Online { loss, .. } => {
                loss.params().into_iter().collect()
            }
            MethodKind::Ppo { cfg, batch_grid, .. } => {
                let mut t = toml::Table::new();
                match cfg.kl {
                    KlControl::Adaptive { target, .. } => {
                        t.insert("target_kl".into(), target.into())
                    }
                    KlControl::Fixed { coef } => t.insert("kl_coef".into(), coef.into()),
                };
                if batch_grid {
                    t.insert("rollout_batch".into(), (cfg.rollout_batch as i64).into());
                }
                t
            }
            MethodKind::Pg { cfg, .. } => {
                toml::Table::from_iter([("kl_coef".into(), cfg.kl_coef.into())])
            }
        }
    }

    /// Which shared stages the run stands on, for its compute: (preference data, reward model,
    /// reference log-probs of the pairs). PPO-GT stands on the reward model too: its critic
    /// starts from it. Online DPO with gold labels stands on neither: it draws and labels its
    /// own pairs. A preference loss that reads no reference (SimPO, ORPO: see
    /// `PrefLoss::uses_reference`) does not stand on the reference log-probs.
    pub fn uses_shared(&self) -> (bool, bool, bool) {
        match &self.kind {
            MethodKind::Pref(loss) => (true, false, loss.uses_reference()),
            MethodKind::Ppo { .. }
            | MethodKind::Pg { .. }
            | MethodKind::Online { gold: false, .. } => (true, true, false),
            MethodKind::Online { gold: true, .. } => (false, false, false),
        }
    }

    /// Which checkpoint the run keeps: `[train] keep` for the methods `[train]` configures (the
    /// offline and online preference losses), the last for the others.
    pub fn keep(&self, base: &TrainConfig) -> crate::algo::dpo::Keep {
        match self.kind {
            MethodKind::Pref(_) | MethodKind::Online { .. } => base.keep,
            _ => crate::algo::dpo::Keep::Last,
        }
    }

    pub fn train_config(&self, base: &TrainConfig) -> TrainConfig {
        let mut t = base.clone();
        if let Some(lr) = self.opt.lr {
            t.lr = lr;
        }
        if let Some(steps) = self.opt.steps {
            t.steps = steps;
        }
        if let Some(b) = self.opt.batch_size {
            t.batch_size = b;
        }
        t
    }
}

/// The knobs searched, in order of preference, where the table has them as a grid.
const KNOBS: &[&str] = &["target_kl", "kl_coef", "beta", "alpha"];

/// The knob of a method table in a resolved scenario, if it has one: the grid the calibration
/// fits to a KL budget.
pub fn knob(resolved: &toml::Table, table: &str) -> Option<&'static str> {
    let t = resolved.get(table)?.as_table()?;
    KNOBS.iter().copied().find(|k| t.contains_key(*k) && is_grid(table, k))
}
