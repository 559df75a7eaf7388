//! The command line: every subcommand with its arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use alignlab::device::DeviceChoice;

#[derive(Parser)]
#[command(name = "alignlab", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ALIGNLAB_GIT_COMMIT"), ")"), about = "RLHF vs DPO in controlled worlds with a known gold reward")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// A scenario's settings as given on the command line.
#[derive(clap::Args, Clone)]
pub struct Settings {
    /// Override a scenario setting, e.g. --set sft.lr=1e-3 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// What the matrix products run in, as `--set model.precision=...`: fp32, or bf16 on the
    /// CPU's AMX/AVX512-BF16 units or a GPU's tensor cores.
    #[arg(long, value_name = "fp32|bf16")]
    pub precision: Option<String>,
}

impl Settings {
    /// The `--set` overrides, `--precision` last.
    pub fn sets(&self) -> Vec<String> {
        let mut sets = self.set.clone();
        if let Some(p) = &self.precision {
            sets.push(format!("model.precision={}", toml::Value::String(p.clone())));
        }
        sets
    }
}

#[derive(clap::Args, Clone)]
pub struct Common {
    #[command(flatten)]
    pub settings: Settings,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Torch intra-op threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A finished stage in runs/ that cannot be read (a truncated or corrupt file): `recompute`
    /// moves its folder aside (`<folder>.corrupt-<k>`) with a warning and computes it again;
    /// `refuse` stops with the error. E.g. --on-corrupt refuse.
    #[arg(long, value_enum, default_value_t = OnCorrupt::Recompute)]
    pub on_corrupt: OnCorrupt,
}

/// What a finished stage that cannot be read does (`--on-corrupt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnCorrupt {
    Recompute,
    Refuse,
}

impl Common {
    pub fn sets(&self) -> Vec<String> {
        self.settings.sets()
    }

    /// Resolve the device, set the thread counts (see [`alignlab::device::setup`]) and the
    /// corrupt-stage rule.
    pub fn setup(&self) -> anyhow::Result<tch::Device> {
        alignlab::experiment::set_refuse_corrupt(self.on_corrupt == OnCorrupt::Refuse);
        alignlab::device::setup(self.device, self.threads)
    }

    /// The device and the corrupt-stage rule as a cell's command line repeats them.
    pub fn cell_flags(&self) -> Vec<String> {
        let corrupt = if self.on_corrupt == OnCorrupt::Refuse { "refuse" } else { "recompute" };
        vec!["--device".into(), self.device.to_string(), "--on-corrupt".into(), corrupt.into()]
    }
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a scenario's stages and write results/<name>/.
    #[command(
        after_help = "Example:\n  alignlab run scenarios/sentiment.toml --jobs 2\n  alignlab run scenarios/paper-sentiment.toml --set sweep.seeds=[0,1] --precision bf16 --tensorboard tensorboard"
    )]
    Run(RunArgs),
    /// Run one cell of a scenario's sweep (what `run --jobs N` starts; a cluster array job runs
    /// the same command). Results go to the run folder; `run` merges them.
    #[command(
        after_help = "Example:\n  alignlab cell scenarios/paper-sentiment.toml --seed 0 --index 3 --threads 1"
    )]
    Cell {
        /// The scenario file, e.g. scenarios/sentiment.toml.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
        /// The seed of the cell.
        #[arg(long)]
        seed: u64,
        /// The cell's index: a method run in file order (`alignlab cells FILE` lists them).
        #[arg(long)]
        index: usize,
        /// Run folder root (checkpoints, cached stages).
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// Build the shared stages (world, SFT, preference data, reward model) of every seed, or of
    /// one, without running any method.
    #[command(after_help = "Example:\n  alignlab prepare scenarios/paper-sentiment.toml --seed 0")]
    Prepare {
        /// The scenario file, e.g. scenarios/sentiment.toml.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
        /// Only this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Run folder root (checkpoints, cached stages).
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
        /// Progress as one JSON object per line on stderr.
        #[arg(long)]
        json_progress: bool,
    },
    /// Evaluate a policy trained elsewhere (Hugging Face format over the world's vocabulary,
    /// e.g. TRL's output from an `alignlab export --hf` policy) on the scenario's evaluation:
    /// gold, exact KL to pi_SFT, proxy, win rate; pi_SFT beside it. E.g.
    /// `alignlab eval scenarios/sentiment.toml --policy trl-out`.
    #[command(
        after_help = "Example:\n  alignlab eval scenarios/sentiment.toml --policy trl-out --frontier results/sentiment"
    )]
    Eval {
        /// The scenario file whose world, pi_SFT and evaluation the policy is measured in.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
        /// The policy's folder (config.json and model.safetensors).
        #[arg(long)]
        policy: PathBuf,
        /// The scenario's seed whose pi_SFT and evaluation prompts are used (default: its first).
        #[arg(long)]
        seed: Option<u64>,
        /// Run folder root (the scenario's cached stages, computed where missing).
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Also write the `metric,policy,sft` table to this CSV file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Place the policy on this results folder's frontier plot (the scenario's, e.g.
        /// results/sentiment): a row of its external.csv (named by the policy's folder), and the
        /// folder's report and plots drawn again.
        #[arg(long)]
        frontier: Option<PathBuf>,
    },
    /// List a scenario's cells (seed, index, method, setting) and whether each has finished.
    #[command(after_help = "Example:\n  alignlab cells scenarios/paper-sentiment.toml")]
    Cells {
        /// The scenario file, e.g. scenarios/sentiment.toml.
        file: PathBuf,
        #[command(flatten)]
        settings: Settings,
        /// Run folder root (checkpoints, cached stages).
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// Validate a scenario file and print it resolved (every default filled in).
    #[command(
        after_help = "Example:\n  alignlab check scenarios/sentiment.toml --set dpo.beta=[0.05,0.1]"
    )]
    Check {
        /// The scenario file, e.g. scenarios/sentiment.toml.
        file: PathBuf,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print prompts and sampled texts of a scenario's world with their gold reward.
    #[command(after_help = "Example:\n  alignlab world scenarios/summarize.toml --show 5")]
    World {
        /// The scenario file, e.g. scenarios/sentiment.toml.
        file: PathBuf,
        /// How many prompts and texts to print.
        #[arg(long, default_value_t = 5)]
        show: usize,
        #[command(flatten)]
        settings: Settings,
    },
    /// Regenerate every table and plot of a results folder from its CSVs; with --paper, of every
    /// folder under results/, then paper/README.md from them.
    #[command(
        after_help = "Example:\n  alignlab report results/sentiment\n  alignlab report --paper"
    )]
    Report {
        /// A results folder, e.g. results/sentiment (with --paper: the results root).
        #[arg(required_unless_present = "paper")]
        dir: Option<PathBuf>,
        /// Regenerate every results folder and write the paper (paper/README.md).
        #[arg(long)]
        paper: bool,
        /// Where --paper writes README.md.
        #[arg(long, default_value = "paper")]
        paper_dir: PathBuf,
    },
    /// A results folder's metrics.csv and eval.csv as TensorBoard event files, one TensorBoard
    /// run per method run (<method>/<setting>/seed<k>), training metrics as train/<name>,
    /// evaluations as eval/<name>. E.g. `alignlab tensorboard results/sentiment`, then
    /// `tensorboard --logdir tensorboard/sentiment`.
    #[command(
        after_help = "Example:\n  alignlab tensorboard results/sentiment && tensorboard --logdir tensorboard/sentiment"
    )]
    Tensorboard {
        /// The results folder, e.g. results/sentiment.
        dir: PathBuf,
        /// Where the event files go (default: tensorboard/<the folder's name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare two results folders of one scenario (e.g. fp32 and bf16) paired by seed: gold at
    /// each KL budget and win rate at each temperature, each tested for equivalence (two
    /// one-sided tests), and the drift of exact KL and implicit accuracy. Writes
    /// equivalence.{csv,md} into B.
    #[command(
        after_help = "Example:\n  alignlab equivalence results/paper-sentiment results/paper-sentiment-bf16"
    )]
    Equivalence {
        /// The baseline results folder, e.g. results/paper-sentiment.
        a: PathBuf,
        /// The results folder compared with it, e.g. results/paper-sentiment-bf16.
        b: PathBuf,
        /// Equivalence margin of gold reward.
        #[arg(long, default_value_t = alignlab::report::equivalence::GOLD_MARGIN)]
        gold_margin: f64,
        /// Equivalence margin of win rate.
        #[arg(long, default_value_t = alignlab::report::equivalence::WINRATE_MARGIN)]
        winrate_margin: f64,
    },
    /// Export a run folder's policy as a Hugging Face transformers checkpoint of its family
    /// (GPT-2, GPT-NeoX, Llama or Qwen2: config.json, model.safetensors, tokenizer.json, ...),
    /// or a reward-model folder or a PPO run's critic/ as its *ForSequenceClassification, with
    /// alignlab's outputs on a few inputs for `baselines/hf/check.py`.
    #[command(
        after_help = "Example:\n  alignlab export runs/sentiment/dpo-beta=0.1-<hash> --hf dpo-hf\n  alignlab export runs/sentiment/ppo-target_kl=3-<hash>/critic --hf critic-hf"
    )]
    Export {
        /// A method's (or SFT's) run folder, e.g. runs/sentiment/dpo-beta=0.1-<hash>; a reward
        /// model's (reward-<hash>); a PPO run's critic (ppo-<...>/critic).
        run_dir: PathBuf,
        /// The output folder.
        #[arg(long)]
        hf: PathBuf,
    },
    /// Export the preference pairs of a preference-data run folder (runs/<scenario>/prefs-<hash>)
    /// as TRL's JSON lines: prompt, chosen, rejected as text and token ids, split, gold rewards.
    #[command(
        after_help = "Example:\n  alignlab export-prefs runs/sentiment/prefs-<hash> prefs.jsonl"
    )]
    ExportPrefs {
        /// A preference-data run folder, e.g. runs/sentiment/prefs-<hash>.
        prefs_dir: PathBuf,
        /// The JSON-lines file to write, e.g. prefs.jsonl.
        out: PathBuf,
    },
    /// The tabular world's convergence to pi* (DPO, IPO, PPO-GT; exact by enumeration): writes
    /// tabular.csv and tabular.{png,svg}.
    #[command(after_help = "Example:\n  alignlab tabular --out results/tabular --seed 7")]
    Tabular {
        #[command(flatten)]
        common: Common,
        /// Output folder.
        #[arg(long, default_value = "results/tabular")]
        out: PathBuf,
        /// The world's and the runs' seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Benchmarks: the fp32 and bf16 matmul peaks; the SFT step, the DPO step and sampling with
    /// the KV cache, each in fp32 and bf16 (quick and d256 sizes), and a GPT-2-small-shaped SFT
    /// step (not with --quick); sampling at batch 256 with and without the KV cache; PPO's
    /// generation alone; a PPO iteration; stacked policies; the rayon CPU work. With --real, the
    /// real sizes instead (docs/benchmarks.md lists the same).
    #[command(after_help = "Example:\n  alignlab bench --threads 2\n  alignlab bench --real")]
    Bench {
        #[command(flatten)]
        common: Common,
        /// Fewer repetitions (for smoke tests).
        #[arg(long)]
        quick: bool,
        /// Only the steps at real checkpoints' sizes (random weights): GPT-2 small's DPO step
        /// and generation in fp32 and bf16, a Qwen2.5-0.5B-shaped DPO step, PPO with four
        /// GPT-2-small-shaped models; with peak memory. Minutes.
        #[arg(long)]
        real: bool,
    },
}

/// `alignlab run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The scenario file.
    pub file: PathBuf,
    #[command(flatten)]
    pub common: Common,
    /// Results folder root.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Run folder root (checkpoints, cached stages).
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Progress as one JSON object per line on stderr (stage, step, total, rate, eta_s).
    #[arg(long)]
    pub json_progress: bool,
    /// Method runs at a time, each a child process (`alignlab cell`) with threads/jobs
    /// torch threads.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Also write the run's metrics.csv and eval.csv as TensorBoard event files under
    /// DIR/<scenario>/ (see `alignlab tensorboard`), e.g. --tensorboard tensorboard.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
}
