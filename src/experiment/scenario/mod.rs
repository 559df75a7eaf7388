//! Scenario files: each section is read into the configuration type declared beside the code it
//! configures (serde, `deny_unknown_fields`, its `Default` and `validate()`); this module parses,
//! applies `--set`, expands the method tables through the registry and checks what spans
//! sections. Every error is one line naming the file, the key and the fix, raised before any
//! work.

mod parse;

use std::path::{Path, PathBuf};

pub use crate::config::shown;
use parse::err;
pub use parse::{File, Override, ReportConfig, SeedRun};

pub use super::methods::{Method, MethodKind, Overrides};
pub use crate::algo::dpo::{PrefLoss, TrainConfig};
pub use crate::algo::reward::RewardConfig;
pub use crate::algo::sft::SftConfig;
pub use crate::algo::trainer::Faults;
use crate::config::ConfigError;
pub use crate::data::{Labels, PrefSource, PrefsConfig};
pub use crate::eval::EvalConfig;
pub use crate::model::{GptConfig, SampleConfig};
use crate::world::Capabilities;
pub use crate::world::WorldConfig;

/// A KL budget counts as reached when a run lands within this relative distance of it (the
/// calibration and the top-ups read it; `sweep.calibration_aim` may not exceed it).
pub const TOLERANCE: f64 = 0.25;

/// The default `[sweep] calibration_aim`: the calibration settles a budget at this relative
/// distance.
pub const AIM: f64 = 0.1;

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
    /// The policy's network: `[model]` over the world's vocabulary.
    pub model: GptConfig,
    /// The reward model's (and critic's) network.
    pub reward_model: GptConfig,
    pub sft: SftConfig,
    pub sample: SampleConfig,
    pub prefs: PrefsConfig,
    pub reward: RewardConfig,
    pub train: TrainConfig,
    /// `[eval]`, with `optimal_samples` filled in.
    pub eval: EvalConfig,
    /// Every method run of this seed: one per grid value, in the registry's order, then this
    /// seed's own runs (`[sweep] seed_runs`).
    pub methods: Vec<Method>,
    /// How many of `methods` every seed runs (the rest are this seed's own).
    pub n_shared: usize,
    /// `[sweep] seed_runs`: runs of one seed only, each with its method.
    pub seed_runs: Vec<(SeedRun, Method)>,
    /// `[sweep] top_up_rounds`: per-seed top-ups after the sweep (0: none).
    pub top_up_rounds: usize,
    /// `[sweep] calibrate`: whether the grids are calibrated to the budgets (false: they are
    /// already, and the budgets only name the report's).
    pub calibrate: bool,
    /// Best-of-N's grid of N, if it runs.
    pub best_of_n: Option<Vec<usize>>,
    /// `[sweep] budgets`: the KL budgets the grids are calibrated to (empty: no calibration).
    pub budgets: Vec<f64>,
    /// `[sweep] pilot_seed` or `pilot_seeds`: where the calibration runs (default [1000]).
    pub pilot_seeds: Vec<u64>,
    /// `[sweep] calibration_rounds`.
    pub calibration_rounds: usize,
    /// `[sweep] calibration_aim`: a budget is settled once a pilot run lands within this
    /// relative distance of it (and nearer it than any other budget).
    pub calibration_aim: f64,
    /// `[tune]`: equal tuning before the sweep (None: the settings run as written).
    pub tune: Option<Tune>,
    /// The resolved scenario as TOML (every default filled in), written next to the results.
    pub resolved_toml: String,
    pub source: PathBuf,
    /// `[faults]`: failures injected on purpose (tests only; part of no cache key).
    pub faults: Faults,
}

/// Equal tuning, as validated: the tuning seeds, the reference budget, and per method table its
/// configurations, each a list of overrides (`dpo.lr = 0.0001`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tune {
    pub seeds: Vec<u64>,
    pub budget: f64,
    pub tables: Vec<(String, Vec<Vec<Override>>)>,
}

impl Scenario {
    /// Read, override (`--set` strings, as the command line gives them) and validate a
    /// scenario file.
    pub fn load(path: &Path, sets: &[String]) -> Result<Scenario, ScenarioError> {
        Scenario::load_with(path, &parse_sets(&path.display().to_string(), sets)?)
    }

    /// Read, override and validate a scenario file.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: String::new(),
            key: "(file)".into(),
            problem: format!("cannot read the scenario file: {e}"),
            fix: "pass the path of an existing scenario, e.g. scenarios/sentiment.toml".into(),
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let parsed = parse::parse(&text, &file, overrides)?;
        validate(parsed, &text, &file, &stem, path)
    }

    /// A scenario from its text, with `--set` strings.
    pub fn from_str(
        text: &str,
        file: &str,
        default_name: &str,
        sets: &[String],
        path: &Path,
    ) -> Result<Scenario, ScenarioError> {
        let parsed = parse::parse(text, file, &parse_sets(file, sets)?)?;
        validate(parsed, text, file, default_name, path)
    }

    /// The same scenario for one seed of its sweep.
    pub fn with_seed(&self, seed: u64) -> Scenario {
        let mut methods = self.methods[..self.n_shared].to_vec();
        methods.extend(self.seed_runs.iter().filter(|(r, _)| r.seed == seed).map(|(_, m)| *m));
        Scenario { seed, methods, ..self.clone() }
    }

    /// The sampling budget a model must fit: `<bos>` + the longest prompt + new tokens.
    pub fn max_prompt_len(&self) -> usize {
        self.world.prompt_max_len()
    }
}

/// `--set` strings read into overrides; the first that is not `key=value` is the error.
pub fn parse_sets(file: &str, sets: &[String]) -> Result<Vec<Override>, ScenarioError> {
    sets.iter()
        .map(|ov| {
            Override::parse(ov).map_err(|problem| ScenarioError {
                file: file.into(),
                line: String::new(),
                key: shown(&format!("--set {ov}")),
                problem: crate::config::compact_numbers(&problem),
                fix: "write --set section.key=value, e.g. --set sft.lr=1e-3".into(),
            })
        })
        .collect()
}

/// Where a check's error points: the file, its text (for the line of a key) and the keys
/// `--set` wrote.
struct Check<'a> {
    file: &'a str,
    text: &'a str,
    sets: &'a [String],
}

impl Check<'_> {
    fn at(&self, e: ConfigError) -> ScenarioError {
        err(self.file, self.text, self.sets, &e.key, e.problem, e.fix)
    }

    fn need(&self, cond: bool, key: &str, problem: String, fix: &str) -> Result<(), ScenarioError> {
        if cond {
            Ok(())
        } else {
            Err(err(self.file, self.text, self.sets, key, problem, fix))
        }
    }
}

/// What `[sweep]` decides besides the grids: the seeds, the calibration and the top-ups.
struct SweepPlan {
    seeds: Vec<u64>,
    budgets: Vec<f64>,
    pilot_seeds: Vec<u64>,
    calibration_rounds: usize,
    calibration_aim: f64,
    top_up_rounds: usize,
    calibrate: bool,
}

/// Each section's own checks, then those that span sections; the first violation is reported.
fn validate(
    parsed: parse::Parsed,
    text: &str,
    file: &str,
    default_name: &str,
    path: &Path,
) -> Result<Scenario, ScenarioError> {
    let (w, sets) = (parsed.file, &parsed.sets);
    let c = Check { file, text, sets };
    let (name, model, rm) = sections(&c, &w, default_name)?;
    let (best_of_n, candidates) = best_of_n_grid(&c, &w)?;
    let (methods, resolved, ppo_batch) = method_runs(&c, &parsed.methods, &w.sample)?;
    c.need(
        w.world.capabilities().gold || !parsed.methods.iter().any(|(n, _)| *n == "ppo_gt"),
        "ppo_gt",
        format!("PPO-GT trains on the gold reward, and this {} world has no gold reward", w.world.kind()),
        "remove [ppo_gt], or give the dataset world a judge ([world.gold] init = \"<classifier folder>\")",
    )?;
    even_checkpoints(&c, &w, &methods)?;
    let proxy = proxy_classifier(&w).map_err(|e| c.at(e))?;
    memory(&w, (&model, &rm), ppo_batch, proxy).map_err(|e| c.at(e))?;
    let plan = sweep_plan(&c, &w)?;
    // Runs of one seed only: the table's KL knob at one value, checked like the table's grid.
    let n_shared = methods.len();
    let seed_runs = seed_runs(&c, &parsed.methods, &w, &plan.seeds, &methods)?;
    // The names the scenario runs, which the report may compare and the tuning may tune.
    let names = methods.iter().map(|m: &Method| m.name());
    let bon = best_of_n.as_ref().map(|_| "best_of_n".to_string());
    let ran = crate::stats::distinct(std::iter::once("sft".to_string()).chain(names).chain(bon));
    let compare = comparisons(&c, &w, &ran)?;
    let tune = tuning(&c, &w, &plan, &ran)?;
    let mut file_ = w.clone();
    file_.name = name.clone();
    file_.report.compare = compare;
    // The sections in their order, then the methods in theirs.
    let resolved_toml = std::iter::once(toml::to_string(&file_))
        .chain(resolved.iter().map(toml::to_string))
        .collect::<Result<Vec<_>, _>>()
        .expect("the resolved scenario serializes")
        .join("\n");
    let eval = EvalConfig {
        optimal_samples: Some(w.eval.optimal_samples.unwrap_or(candidates)),
        ..w.eval.clone()
    };
    let parse::File { world, sft, sample, prefs, reward, train, faults, .. } = w;
    let sc = Scenario {
        name,
        seed: plan.seeds[0],
        seeds: plan.seeds,
        world,
        model,
        reward_model: rm,
        sft,
        sample,
        prefs,
        reward,
        train,
        eval,
        methods,
        n_shared,
        seed_runs,
        top_up_rounds: plan.top_up_rounds,
        calibrate: plan.calibrate,
        best_of_n,
        budgets: plan.budgets,
        pilot_seeds: plan.pilot_seeds,
        calibration_rounds: plan.calibration_rounds,
        calibration_aim: plan.calibration_aim,
        tune,
        resolved_toml,
        source: path.to_path_buf(),
        faults,
    };
    // `methods` holds the first seed's own runs too.
    Ok(sc.with_seed(sc.seed))
}

/// `sft.steps = 0` keeps pi_SFT at the starting weights: only a checkpoint's.
fn sft_from_init(c: &Check, w: &parse::File) -> Result<(), ScenarioError> {
    c.need(
        w.sft.steps > 0 || !w.model.init.is_empty(),
        "sft.steps",
        "0 steps leave pi_SFT at random weights".into(),
        "train for some steps, e.g. 1500; 0 is for a model.init checkpoint that is already fine-tuned",
    )
}

/// The policy's network: `[model]`'s sizes over the world's vocabulary, or `init`'s
/// checkpoint (opened and checked against its weights' headers here, before any work).
fn network(c: &Check, w: &parse::File) -> Result<GptConfig, ScenarioError> {
    let mut cfg = if w.model.init.is_empty() {
        w.model.gpt(w.world.vocab_size())
    } else {
        no_reward_sizes(c, w, "a reward model of its own size cannot start from model.init's checkpoint (it starts from pi_SFT)")?;
        from_checkpoint(c, w, "model.init", &w.model.init, true)?
    };
    cfg.suppress.extend(w.world.spec().suppressed());
    Ok(cfg)
}

/// The reward model's network: the policy's with `[reward]`'s sizes, or `reward.init`'s
/// checkpoint (its LM head, unused, left out).
fn reward_network(
    c: &Check,
    w: &parse::File,
    model: &GptConfig,
) -> Result<GptConfig, ScenarioError> {
    if w.reward.init.is_empty() {
        return Ok(w.reward.model(model));
    }
    no_reward_sizes(c, w, "reward.init's checkpoint gives the reward model its size")?;
    from_checkpoint(c, w, "reward.init", &w.reward.init, false)
}

fn no_reward_sizes(c: &Check, w: &parse::File, problem: &str) -> Result<(), ScenarioError> {
    let r = &w.reward;
    c.need(
        (r.n_layer, r.d_model, r.n_head) == (None, None, None),
        "reward.d_model",
        problem.into(),
        "remove reward.n_layer, reward.d_model and reward.n_head",
    )
}

/// The network of the checkpoint in `dir` (the scenario's `key`) over the world's vocabulary
/// and `[model]`'s block and precision; `lm_head`: whether its LM head is needed.
fn from_checkpoint(
    c: &Check,
    w: &parse::File,
    key: &str,
    dir: &str,
    lm_head: bool,
) -> Result<GptConfig, ScenarioError> {
    use crate::model::hf;
    let (vocab, block) = (w.world.vocab_size() as i64, w.model.block_size as i64);
    let dir = crate::config::expand_path(dir, key).map_err(|e| c.at(e))?;
    hf::open(&dir)
        .and_then(|mut ck| {
            if !lm_head {
                ck.gpt.arch.as_mut().expect("a checkpoint's architecture").tied = true;
            }
            // A classifier of several labels has no one score to start a reward model from.
            match ck.num_labels {
                Some(n) if n != 1 && !lm_head => Err(hf::HfError {
                    file: dir.join("config.json"),
                    problem: format!("is a classifier with {n} labels; a reward model has one output"),
                    fix: "use a reward-model checkpoint (num_labels = 1), or a causal LM for a new head".into(),
                }),
                _ => Ok(ck),
            }
        })
        .and_then(|ck| {
            hf::network(&ck, vocab, block, w.model.precision, w.world.spec().checkpoint_rows())
        })
        .map_err(|e| c.at(e.at(key)))
}

/// The sections' own checks, the model's fit to the world, and the reward model's shape:
/// the scenario's name, the policy's network and the reward model's.
fn sections(
    c: &Check,
    w: &parse::File,
    default_name: &str,
) -> Result<(String, GptConfig, GptConfig), ScenarioError> {
    let at = |e: ConfigError| c.at(e);
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let name = if w.name.is_empty() { default_name.to_string() } else { w.name.clone() };
    need(
        !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "name",
        format!("`{}` is not a plain name of at most 64 characters", shown(&name)),
        "use letters, digits, '-' and '_' only, at most 64 of them (it names the results folder)",
    )?;
    w.world.validate().map_err(|e| at(e.within("world")))?;
    let (m, s) = (&w.model, &w.sample);
    m.validate().map_err(|e| at(e.within("model")))?;
    let (max_text_len, prompt_max_len) = (w.world.max_text_len(), w.world.prompt_max_len());
    // SFT feeds `<bos> words` and predicts `words <eos>`: max_len + 1 positions.
    need(
        m.block_size > max_text_len,
        "model.block_size",
        format!(
            "block_size {} cannot hold a full demonstration (<bos> + {} words)",
            m.block_size, max_text_len
        ),
        &format!("set model.block_size >= {}", max_text_len + 1),
    )?;
    s.validate().map_err(|e| at(e.within("sample")))?;
    need(
        1 + prompt_max_len + s.max_new_tokens <= m.block_size,
        "sample.max_new_tokens",
        format!(
            "<bos> + a {prompt_max_len}-word prompt + {} new tokens exceeds block_size {}",
            s.max_new_tokens, m.block_size
        ),
        &format!(
            "lower max_new_tokens to {} or raise model.block_size",
            m.block_size.saturating_sub(1 + prompt_max_len)
        ),
    )?;
    w.sft.validate().map_err(|e| at(e.within("sft")))?;
    sft_from_init(c, w)?;
    w.prefs.validate().map_err(|e| at(e.within("prefs")))?;
    check_capabilities(w).map_err(at)?;
    w.reward.validate().map_err(|e| at(e.within("reward")))?;
    let model = network(c, w)?;
    let rm = reward_network(c, w, &model)?;
    // A checkpoint's reward model is its own size (checked against its weights above).
    need(
        rm.init.is_some() || rm.n_layer >= 1 && rm.n_layer <= 48,
        "reward.n_layer",
        format!("must be in 1..=48 (got {})", rm.n_layer),
        "use a few layers, e.g. 2",
    )?;
    need(
        rm.init.is_some() || rm.n_head >= 1 && rm.d_model >= 1 && rm.d_model % rm.n_head == 0,
        "reward.d_model",
        format!("d_model {} is not a multiple of n_head {}", rm.d_model, rm.n_head),
        "make reward.d_model divisible by reward.n_head (default: model.n_head)",
    )?;
    w.train.validate().map_err(|e| at(e.within("train")))?;
    let ev = &w.eval;
    ev.validate().map_err(|e| at(e.within("eval")))?;
    let n_eval_prompts = w.world.n_eval_prompts();
    need(
        n_eval_prompts >= 2,
        "world.n_eval_prompts",
        format!(
            "must be at least 2 to split into a selection and a test half (got {n_eval_prompts})"
        ),
        "use e.g. 256",
    )?;
    Ok((name, model, rm))
}

/// Best-of-N's grid, if it runs, and its candidates per prompt (the importance-sampling
/// frontier's samples).
fn best_of_n_grid(
    c: &Check,
    w: &parse::File,
) -> Result<(Option<Vec<usize>>, usize), ScenarioError> {
    let at = |e: ConfigError| c.at(e);
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let ev = &w.eval;
    let best_of_n = match &w.best_of_n {
        None => None,
        Some(b) => {
            b.validate().map_err(|e| at(e.within("best_of_n")))?;
            Some(b.n.clone())
        }
    };
    let candidates = best_of_n
        .as_ref()
        .and_then(|n| n.iter().max())
        .map(|n| n * ev.samples_per_prompt)
        .unwrap_or(0);
    if let Some(n) = ev.optimal_samples {
        need(n >= 2 && n <= candidates, "eval.optimal_samples", format!("must be in 2..={candidates}, the Best-of-N candidates per prompt (samples_per_prompt x the largest best_of_n.n) (got {n})"), "remove it to use every candidate, or raise best_of_n.n")?;
        need(
            ev.optimal_min_ess <= n as f64,
            "eval.optimal_min_ess",
            format!("{} exceeds optimal_samples {n}: no point could pass", ev.optimal_min_ess),
            "use a threshold below the sample count, e.g. 8",
        )?;
    }
    Ok((best_of_n, candidates))
}

/// With `eval.checkpoints`, every run's length a multiple of it, so that every run offers the
/// selected frontier the same number of evaluated checkpoints.
fn even_checkpoints(c: &Check, w: &parse::File, methods: &[Method]) -> Result<(), ScenarioError> {
    let Some(n) = w.eval.checkpoints else { return Ok(()) };
    for m in methods {
        let len = m.length(&w.train);
        c.need(
            len % n == 0,
            "eval.checkpoints",
            format!("{n} does not divide {}'s length, {len} steps or iterations: its runs would get another number of checkpoints than the others", m.name()),
            "make every method's steps (iterations) a multiple of eval.checkpoints, or remove it",
        )?;
    }
    Ok(())
}

/// Every method run of the method tables, each table resolved, and the largest rollout batch
/// of an online method.
fn method_runs(
    c: &Check,
    tables: &[(&'static str, toml::Table)],
    s: &SampleConfig,
) -> Result<(Vec<Method>, Vec<toml::Table>, usize), ScenarioError> {
    let at = |e: ConfigError| c.at(e);
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let mut methods = Vec::new();
    let mut resolved = Vec::new();
    let mut ppo_batch = 0;
    for (table_name, table) in tables {
        let (runs, table) = super::methods::expand(table_name, table, s).map_err(at)?;
        for run in &runs {
            let rollouts = match run.kind {
                MethodKind::Ppo { cfg, .. } => cfg.rollout_batch,
                MethodKind::Pg { cfg, .. } => cfg.prompts_per_iteration * cfg.group_size,
                _ => 0,
            };
            if rollouts > 0 {
                need(
                    s.temperature > 0.0,
                    "sample.temperature",
                    format!(
                        "{} samples its rollouts at sample.temperature, which is 0 (greedy)",
                        run.name()
                    ),
                    "use sample.temperature = 1.0",
                )?;
                ppo_batch = ppo_batch.max(rollouts);
            }
        }
        methods.extend(runs);
        resolved
            .push(toml::Table::from_iter([(table_name.to_string(), toml::Value::Table(table))]));
    }
    Ok((methods, resolved, ppo_batch))
}

/// `[sweep] seeds`: every pipeline's seed (default: the scenario's `seed`), each once.
fn sweep_seeds(c: &Check, w: &parse::File) -> Result<Vec<u64>, ScenarioError> {
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    Ok(match w.sweep.as_ref().and_then(|s| s.seeds.clone()) {
        None => vec![w.seed],
        Some(v) => {
            need(
                !v.is_empty(),
                "sweep.seeds",
                "is an empty list".into(),
                "give at least one seed, e.g. [0, 1, 2], or remove it",
            )?;
            need(
                crate::experiment::methods::distinct(&v),
                "sweep.seeds",
                "lists a seed twice".into(),
                "list each seed once",
            )?;
            v
        }
    })
}

/// `[sweep]`'s seeds, KL budgets, pilot seeds, calibration and top-ups.
fn sweep_plan(c: &Check, w: &parse::File) -> Result<SweepPlan, ScenarioError> {
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let seeds = sweep_seeds(c, w)?;
    let sweep = w.sweep.clone();
    let budgets = sweep.as_ref().map(|s| s.budgets.clone()).unwrap_or_default();
    let (one_pilot, pilots) = (
        sweep.as_ref().and_then(|s| s.pilot_seed),
        sweep.as_ref().and_then(|s| s.pilot_seeds.clone()),
    );
    need(
        one_pilot.is_none() || pilots.is_none(),
        "sweep.pilot_seeds",
        "is given with sweep.pilot_seed".into(),
        "keep one of the two: pilot_seed = 1000 or pilot_seeds = [1000, 1001]",
    )?;
    let pilot_seeds = pilots.clone().unwrap_or_else(|| vec![one_pilot.unwrap_or(1000)]);
    need(
        !pilot_seeds.is_empty()
            && pilot_seeds.len() <= 8
            && crate::experiment::methods::distinct(&pilot_seeds),
        "sweep.pilot_seeds",
        format!("must list 1 to 8 distinct seeds (got {pilot_seeds:?})"),
        "use e.g. [1000, 1001]",
    )?;
    let calibration_rounds = sweep.as_ref().and_then(|s| s.calibration_rounds).unwrap_or(3);
    need(
        budgets.len() <= 16
            && budgets.iter().all(|b| b.is_finite() && *b > 0.0 && *b <= 64.0)
            && budgets.windows(2).all(|w| w[0] < w[1]),
        "sweep.budgets",
        format!("must be at most 16 increasing KL budgets in (0, 64] nats (got {budgets:?})"),
        "use e.g. [0.5, 1.0, 2.0, 4.0]",
    )?;
    let pilot_key = if pilots.is_some() { "sweep.pilot_seeds" } else { "sweep.pilot_seed" };
    if let Some(s) = pilot_seeds.iter().find(|s| !budgets.is_empty() && seeds.contains(s)) {
        need(false, pilot_key, format!("seed {s} is also a reported seed: the calibration would choose settings on data it reports"), "pick pilot seeds outside sweep.seeds (default 1000)")?;
    }
    need(
        (1..=6).contains(&calibration_rounds),
        "sweep.calibration_rounds",
        format!("must be in 1..=6 (got {calibration_rounds})"),
        "use 3",
    )?;
    let calibration_aim = sweep.as_ref().and_then(|s| s.calibration_aim).unwrap_or(AIM);
    need(
        calibration_aim.is_finite() && calibration_aim > 0.0 && calibration_aim <= TOLERANCE,
        "sweep.calibration_aim",
        format!("must be in (0, {}] (got {calibration_aim})", TOLERANCE),
        "use 0.1: the search stops for a budget once a pilot run lands within 10% of it",
    )?;
    let top_up_rounds = sweep.as_ref().and_then(|s| s.top_up_rounds).unwrap_or(0);
    need(
        top_up_rounds <= 4,
        "sweep.top_up_rounds",
        format!("must be in 0..=4 (got {top_up_rounds})"),
        "use 2: a seed whose calibrated run missed a budget gets at most 2 runs of its own",
    )?;
    need(
        top_up_rounds == 0 || !budgets.is_empty(),
        "sweep.top_up_rounds",
        "tops up calibrated grids, and sweep.budgets is empty".into(),
        "give sweep.budgets, or remove top_up_rounds",
    )?;
    let calibrate = sweep.as_ref().and_then(|s| s.calibrate).unwrap_or(true);
    need(
        calibrate || top_up_rounds == 0,
        "sweep.top_up_rounds",
        "tops up a calibration, and sweep.calibrate is false".into(),
        "set sweep.top_up_rounds = 0 (the folder's own top-ups are its seed_runs)",
    )?;
    Ok(SweepPlan {
        seeds,
        budgets,
        pilot_seeds,
        calibration_rounds,
        calibration_aim,
        top_up_rounds,
        calibrate,
    })
}

/// `[sweep] seed_runs`: runs of one seed only, each a table's KL knob at one value.
fn seed_runs(
    c: &Check,
    tables: &[(&'static str, toml::Table)],
    w: &parse::File,
    seeds: &[u64],
    methods: &[Method],
) -> Result<Vec<(SeedRun, Method)>, ScenarioError> {
    let at = |e: ConfigError| c.at(e);
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let (sweep, s, n_shared) = (&w.sweep, &w.sample, methods.len());
    let mut seed_runs: Vec<(SeedRun, Method)> = Vec::new();
    for r in sweep.as_ref().map(|s| s.seed_runs.clone()).unwrap_or_default() {
        let key = "sweep.seed_runs";
        need(
            seeds.contains(&r.seed),
            key,
            format!("names seed {}, which is not in sweep.seeds {seeds:?}", r.seed),
            "give each run a seed of the sweep",
        )?;
        need(
            r.value.is_finite() && r.value > 0.0 && r.budget.is_finite() && r.budget > 0.0,
            key,
            format!(
                "{} at {} for budget {} needs a positive value and budget",
                r.table, r.value, r.budget
            ),
            "write e.g. { seed = 3, table = \"dpo\", value = 0.2, budget = 2.0 }",
        )?;
        let raw = tables.iter().find(|(n, _)| *n == r.table).map(|(_, t)| t.clone());
        let knob = raw.as_ref().and_then(|t| {
            super::methods::knob(
                &toml::Table::from_iter([(r.table.clone(), toml::Value::Table(t.clone()))]),
                &r.table,
            )
        });
        let (Some(mut table), Some(knob)) = (raw, knob) else {
            return Err(err(
                c.file,
                c.text,
                c.sets,
                key,
                format!(
                    "names `{}`, which is not a method table of this scenario with a KL knob",
                    r.table
                ),
                "name a table the scenario runs with a grid of beta, alpha, target_kl or kl_coef",
            ));
        };
        table.insert(knob.into(), toml::Value::Array(vec![toml::Value::Float(r.value)]));
        let (runs, _) = super::methods::expand(&r.table, &table, s).map_err(at)?;
        let (m, shared) = (runs[0], &methods[..n_shared]);
        need(
            runs.len() == 1
                && !shared.contains(&m)
                && !seed_runs.iter().any(|(o, x)| o.seed == r.seed && *x == m),
            key,
            format!(
                "{} {knob} = {} on seed {} is already a run of the sweep",
                r.table, r.value, r.seed
            ),
            "list each run once, outside the table's grid",
        )?;
        seed_runs.push((r, m));
    }
    Ok(seed_runs)
}

/// The pairs the report compares: `[report] compare`, each a pair of names the scenario runs
/// (`ran`), or the world's defaults among them.
fn comparisons(
    c: &Check,
    w: &parse::File,
    ran: &[String],
) -> Result<Vec<[String; 2]>, ScenarioError> {
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let compare: Vec<[String; 2]> = if w.report.compare.is_empty() {
        let defaults = w.world.capabilities().comparisons;
        defaults
            .iter()
            .filter(|p| p.iter().all(|m| ran.iter().any(|r| r == m)))
            .map(|p| p.map(String::from))
            .collect()
    } else {
        for [a, b] in &w.report.compare {
            need(
                a != b,
                "report.compare",
                format!("compares `{a}` with itself"),
                "name two different methods, e.g. [\"dpo\", \"ppo\"]",
            )?;
            for m in [a, b] {
                need(
                    ran.contains(m),
                    "report.compare",
                    format!(
                        "names `{m}`, which this scenario does not run (it runs {})",
                        ran.join(", ")
                    ),
                    "compare methods the scenario runs, or add the method's table",
                )?;
            }
        }
        w.report.compare.clone()
    };
    Ok(compare)
}

/// `[tune]`: the tuning seeds (apart from the reported and the pilot seeds), its budget, and
/// per tuned table its configurations, the same number for each.
fn tuning(
    c: &Check,
    w: &parse::File,
    plan: &SweepPlan,
    ran: &[String],
) -> Result<Option<Tune>, ScenarioError> {
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    let (seeds, budgets, pilot_seeds) = (&plan.seeds, &plan.budgets, &plan.pilot_seeds);
    let tune = match &w.tune {
        Some(t) if !t.seeds.is_empty() => {
            need(
                t.seeds.iter().all(|s| {
                    !seeds.contains(s) && (budgets.is_empty() || !pilot_seeds.contains(s))
                }),
                "tune.seeds",
                format!(
                    "{:?} shares a seed with the reported seeds {seeds:?} or the pilot seed",
                    t.seeds
                ),
                "tune on seeds of their own, e.g. [2000, 2001]",
            )?;
            need(
                t.budget.is_finite() && t.budget > 0.0 && t.budget <= 64.0,
                "tune.budget",
                format!("must be a KL budget in (0, 64] nats (got {})", t.budget),
                "use the scenario's reference budget, e.g. 1.0",
            )?;
            need(
                !t.tables.is_empty(),
                "tune",
                "names no method table to tune".into(),
                "add e.g. [tune.dpo] lr = [1e-4, 3e-4] and [tune.ppo] lr = [3e-5, 1e-4]",
            )?;
            let mut tables = Vec::new();
            for (table, keys) in &t.tables {
                tables.push((table.clone(), table_configs(c, table, keys, ran)?));
            }
            let n = tables[0].1.len();
            need(
                tables.iter().all(|t| t.1.len() == n),
                "tune",
                format!(
                    "the tables have different numbers of configurations ({})",
                    tables
                        .iter()
                        .map(|t| format!("{} {}", t.0, t.1.len()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "give every tuned method the same number of configurations (equal tuning)",
            )?;
            need(n <= 32, "tune", format!("{n} configurations per method"), "use at most 32")?;
            let shapes: Vec<(String, Vec<usize>)> =
                tables.iter().map(|(t, configs)| (t.clone(), grid_shape(configs))).collect();
            need(
                shapes.iter().all(|s| s.1 == shapes[0].1),
                "tune",
                format!(
                    "the tables vary different numbers of settings or points per setting ({}): their robustness spreads would not compare",
                    shapes.iter().map(|(t, s)| format!("{t} {}", shape_text(s))).collect::<Vec<_>>().join(", ")
                ),
                "vary the same number of settings with as many values each in every table, e.g. lr x one own setting, two values each",
            )?;
            Some(Tune { seeds: t.seeds.clone(), budget: t.budget, tables })
        }
        _ => None,
    };
    Ok(tune)
}

/// The points per setting a table's configurations vary, in descending order, with
/// `usize::MAX` last where they are not the full product of those values, each once.
fn grid_shape(configs: &[Vec<Override>]) -> Vec<usize> {
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    for ov in configs.iter().flatten() {
        let v = ov.value.to_string();
        match values.iter_mut().find(|(k, _)| *k == ov.key) {
            Some((_, vs)) if !vs.contains(&v) => vs.push(v),
            Some(_) => {}
            None => values.push((ov.key.clone(), vec![v])),
        }
    }
    let mut shape: Vec<usize> = values.iter().map(|(_, v)| v.len()).filter(|&n| n > 1).collect();
    shape.sort_unstable_by(|a, b| b.cmp(a));
    let mut distinct: Vec<String> = configs.iter().map(|c| Override::args(c)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if shape.iter().product::<usize>() != configs.len() || distinct.len() != configs.len() {
        shape.push(usize::MAX);
    }
    shape
}

/// A grid shape as `2 x 2`, `2 x 2, not each combination once`, or `one point`.
fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> =
        shape.iter().filter(|&&n| n != usize::MAX).map(|n| n.to_string()).collect();
    let dims = if dims.is_empty() { "one point".to_string() } else { dims.join(" x ") };
    if shape.last() == Some(&usize::MAX) {
        format!("{dims}, not each combination once")
    } else {
        dims
    }
}

/// A tuned table's configurations: `configs = [{...}, ...]` as listed, or the product of its
/// lists, each a list of overrides; a key that is a grid of the sweep is refused.
fn table_configs(
    c: &Check,
    table: &str,
    keys: &toml::Table,
    ran: &[String],
) -> Result<Vec<Vec<Override>>, ScenarioError> {
    let need = |cond: bool, key: &str, problem: String, fix: &str| c.need(cond, key, problem, fix);
    need(
        ran.iter().any(|r| r == table) && table != "sft" && table != "best_of_n",
        &format!("tune.{table}"),
        format!(
            "`{table}` is not a trained method this scenario runs (it runs {})",
            ran.join(", ")
        ),
        "tune the tables the scenario runs",
    )?;
    let mut configs: Vec<Vec<Override>> = vec![vec![]];
    let grid_key = |key: &str| {
        need(
            !crate::experiment::methods::is_grid(table, key),
            &format!("tune.{table}.{key}"),
            "is a grid of the sweep (calibrated to the budgets or listed), not a tuned setting"
                .into(),
            "tune the optimisation: lr, and e.g. batch_size, or for PPO ppo_epochs",
        )?;
        need(
            key != "steps" && key != "iterations",
            &format!("tune.{table}.{key}"),
            "nests its configurations: the learning rate does not depend on the length, so a shorter run is the first part of a longer one, and every run's checkpoints along the way already offer it".into(),
            "tune another setting (e.g. batch_size, or for PPO ppo_epochs), or set the length in the method's table",
        )
    };
    // `configs = [{ lr = 1e-4, iterations = 60 }, ...]`: the configurations listed,
    // in place of a product of lists (so that every method can have as many while
    // varying different numbers of settings).
    if let Some(list) = keys.get("configs") {
        let items: Option<Vec<&toml::Table>> = list
            .as_array()
            .filter(|a| !a.is_empty())
            .and_then(|a| a.iter().map(|v| v.as_table().filter(|t| !t.is_empty())).collect());
        need(items.is_some() && keys.len() == 1, &format!("tune.{table}.configs"), "is not a non-empty list of non-empty tables, alone in its table".into(), "write `configs = [{ lr = 1e-4, iterations = 60 }, { lr = 3e-4, iterations = 120 }]`, or lists of values without `configs`")?;
        configs = Vec::new();
        for c in items.unwrap() {
            for key in c.keys() {
                grid_key(key)?;
            }
            configs.push(
                c.iter().map(|(k, v)| Override::new(&format!("{table}.{k}"), v.clone())).collect(),
            );
        }
        return Ok(configs);
    }
    for (key, list) in keys {
        let items = list.as_array().filter(|a| !a.is_empty());
        need(
            items.is_some(),
            &format!("tune.{table}.{key}"),
            "is not a non-empty list".into(),
            &format!("write `{key} = [v1, v2, ...]`"),
        )?;
        grid_key(key)?;
        configs = configs
            .iter()
            .flat_map(|c| {
                items.unwrap().iter().map(move |v| {
                    c.iter()
                        .cloned()
                        .chain([Override::new(&format!("{table}.{key}"), v.clone())])
                        .collect::<Vec<_>>()
                })
            })
            .collect();
    }
    Ok(configs)
}

/// The settings that need something of the world (a writer of off-policy completions, its own
/// labeller, shifted inputs) against what the world declares it has ([`Capabilities`]): the
/// one place a world's capabilities are checked.
fn check_capabilities(w: &parse::File) -> Result<(), ConfigError> {
    let (kind, caps) = (w.world.kind(), w.world.capabilities());
    if !caps.gold {
        let gold_fix =
            "give the dataset world a judge ([world.gold] init = \"<classifier folder>\")";
        let needs_gold = |on: bool, key: &str, why: &str| {
            crate::config::need(
                on,
                key,
                || format!("{why}, and this {kind} world has no gold reward"),
                gold_fix,
            )
        };
        needs_gold(
            w.prefs.source == PrefSource::Dataset
                && w.prefs.labels == crate::data::LabelKind::World,
            "prefs.labels",
            "pairs sampled from pi_SFT or relabelled need the gold reward to label them",
        )?;
    }
    let writers = |c: Capabilities| {
        let mut v = vec!["\"sft\""];
        if c.true_process {
            v.push("\"true_process\" (off-policy)");
        }
        if c.labeller_policy {
            v.push("\"labeller\" (off-policy)");
        }
        v.join(" or ")
    };
    match w.prefs.source {
        PrefSource::TrueProcess => crate::config::need(
            caps.true_process,
            "prefs.source",
            || format!("the {kind} world has no true process to write completions"),
            &format!("use source = {}", writers(caps)),
        )?,
        PrefSource::Labeller => crate::config::need(
            caps.labeller_policy,
            "prefs.source",
            || format!("the {kind} world has no labeller policy"),
            &format!("use source = {}", writers(caps)),
        )?,
        PrefSource::Dataset => crate::config::need(
            caps.file_pairs,
            "prefs.source",
            || format!("the {kind} world has no preference pairs of its own"),
            &format!("use source = {}, or a dataset world with pairs (format \"preference\", \"hh\" or \"tldr\")", writers(caps)),
        )?,
        PrefSource::Sft => {}
    }
    crate::config::need(
        w.prefs.labels != crate::data::LabelKind::World
            || caps.labeller
            || w.prefs.source == PrefSource::Dataset,
        "prefs.labels",
        || format!("\"world\" labels by the world's own labeller, and this {kind} world has none"),
        "use labels = \"deterministic\" or \"bradley_terry\" (the dialogue world has a labeller; the sentiment world has one with [world.labeller]; a dataset's own labels are source = \"dataset\")",
    )?;
    crate::config::need(
        w.eval.shift_temperatures.is_empty() || caps.shifted_inputs,
        "eval.shift_temperatures",
        || format!("evaluates on shifted inputs, and this {kind} world has none"),
        "remove shift_temperatures, or give the summarize world a [world.shift]",
    )
}

/// `[reward.classifier]`'s judge opened and checked on the world's text (kept for the run):
/// its weights' bytes, 0 without one.
fn proxy_classifier(w: &File) -> Result<f64, ConfigError> {
    let Some(c) = &w.reward.classifier else { return Ok(0.0) };
    let sample = crate::world::text_sample(w.world.build(0).vocab());
    Ok(c.open("reward.classifier", &sample)?.bytes)
}

/// Memory, estimated before any work: a size typed in the billions fails here with the
/// estimate, not in an allocation abort after SFT. The largest part names the key to lower.
fn memory(
    w: &File,
    (model, rm): (&GptConfig, &GptConfig),
    ppo_batch: usize,
    proxy: f64,
) -> Result<(), ConfigError> {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let (t, v, heads) = (model.block_size as f64, model.vocab_size as f64, model.n_head as f64);
    let (d, l, rd, rl) =
        (model.d_model as f64, model.n_layer as f64, rm.d_model as f64, rm.n_layer as f64);
    // Policy with gradient and two Adam moments, the frozen reference, the reward model and a
    // critic of its size with theirs; float32.
    let weights = 4.0 * (5.0 * model.n_params() as f64 + 5.0 * rm.n_params() as f64);
    // Activations kept per token and layer: about 8 d plus the MLP's hidden (4 d in alignlab's
    // own GPT), and the attention scores.
    let fc = model.arch().fc_rows().max(rm.arch().fc_rows()) as f64;
    let per_row = |d: f64, l: f64| t * (l * (8.0 * d + 2.0 * fc + 2.0 * heads * t) + 3.0 * v) * 4.0;
    let batches = [
        ("sft.batch_size", w.sft.batch_size),
        ("train.batch_size", 2 * w.train.batch_size),
        ("reward.batch_size", 2 * w.reward.batch_size),
        ("ppo.rollout_batch", ppo_batch),
    ];
    let (batch_key, batch) = batches.iter().max_by_key(|b| b.1).copied().unwrap();
    let activations = 2.0 * batch as f64 * per_row(d.max(rd), l.max(rl));
    // Evaluation scores every row at once: two models' logits and a few copies of them.
    let rows = (w.world.n_eval_prompts() * w.eval.samples_per_prompt) as f64;
    let evaluation = rows * (per_row(d, l) + 6.0 * t * v * 4.0);
    let corpora = w.world.n_docs() as f64 * (t + 4.0) * 8.0 * 2.0;
    // The largest network names the key: a reward.init checkpoint may outweigh the policy.
    let weights_key = match (model.init.is_some(), rm.init.is_some()) {
        (_, true) if rm.n_params() > model.n_params() => "reward.init",
        (true, _) => "model.init",
        _ => "model.d_model",
    };
    let corpora_key = if w.world.kind() == "dataset" { "world.max_rows" } else { "world.n_train" };
    // A dataset world's judge, held (in fp32) for the whole run.
    let judge = w.world.spec().resident_bytes();
    let parts = [
        (weights_key, weights),
        (batch_key, activations),
        ("eval.samples_per_prompt", evaluation),
        (corpora_key, corpora),
        ("world.gold.init", judge),
        ("reward.classifier.init", proxy),
    ];
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let available = available_memory();
    if total <= available {
        return Ok(());
    }
    let (key, _) = parts.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let problem = format!("the run needs about {:.1} GiB (parameters and optimiser {:.1}, a batch's activations {:.1}, evaluation {:.1}, corpora {:.1}, gold judge {:.1}, proxy classifier {:.1}), more than the {:.1} GiB available", gib(total), gib(weights), gib(activations), gib(evaluation), gib(corpora), gib(judge), gib(proxy), gib(available));
    let fix = if key.ends_with(".init") {
        "use a smaller checkpoint, or run on a machine with more memory".to_string()
    } else {
        format!("lower {key}, the largest part")
    };
    Err(ConfigError { key: key.into(), problem, fix })
}

/// Memory available to a run: `MemAvailable` of /proc/meminfo, else 16 GiB.
fn available_memory() -> f64 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    });
    kib.map(|k| k * 1024.0).unwrap_or(16.0 * (1u64 << 30) as f64)
}
