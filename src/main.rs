//! The alignlab binary: `run`, `check`, `world`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use alignlab::device::{self, DeviceChoice};
use alignlab::experiment::{self, ProgressMode, RunOptions};
use alignlab::scenario::Scenario;

#[derive(Parser)]
#[command(name = "alignlab", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ALIGNLAB_GIT_COMMIT"), ")"), about = "RLHF vs DPO in controlled worlds with a known gold reward")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Override a scenario setting, e.g. --set sft.lr=1e-3 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Torch intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario's stages and write results/<name>/.
    Run {
        file: PathBuf,
        #[command(flatten)]
        common: Common,
        /// Results folder root.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Run folder root (checkpoints, cached stages).
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
        /// Progress as one JSON object per line on stderr (stage, step, total, rate, eta_s).
        #[arg(long)]
        json_progress: bool,
        /// Method runs at a time, each a child process (`alignlab cell`) with threads/jobs
        /// torch threads.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// Run one cell of a scenario's sweep (what `run --jobs N` starts; a cluster array job runs
    /// the same command). Results go to the run folder; `run` merges them.
    Cell {
        file: PathBuf,
        #[command(flatten)]
        common: Common,
        /// The seed of the cell.
        #[arg(long)]
        seed: u64,
        /// The cell's index: a method run in file order (`alignlab cells FILE` lists them).
        #[arg(long)]
        index: usize,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// Build the shared stages (world, SFT, preference data, reward model) of every seed, or of
    /// one, without running any method.
    Prepare {
        file: PathBuf,
        #[command(flatten)]
        common: Common,
        /// Only this seed.
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
        /// Progress as one JSON object per line on stderr.
        #[arg(long)]
        json_progress: bool,
    },
    /// List a scenario's cells (seed, index, method, setting) and whether each has finished.
    Cells {
        file: PathBuf,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
    },
    /// Validate a scenario file and print it resolved (every default filled in).
    Check {
        file: PathBuf,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Print prompts and sampled texts of a scenario's world with their gold reward.
    World {
        file: PathBuf,
        /// How many prompts and texts to print.
        #[arg(long, default_value_t = 5)]
        show: usize,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Regenerate every table and plot of a results folder from its CSVs; with --paper, of every
    /// folder under results/, then paper/README.md from them.
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
    /// Export a run folder's policy as a Hugging Face transformers GPT-2 checkpoint (config.json,
    /// model.safetensors, tokenizer.json, ...), with alignlab's logits and greedy continuations
    /// of a few prompts for `baselines/hf/check.py`.
    Export {
        /// A method's (or SFT's) run folder, e.g. runs/sentiment/dpo-beta=0.1-<hash>.
        run_dir: PathBuf,
        /// The output folder.
        #[arg(long)]
        hf: PathBuf,
    },
    /// Export the preference pairs of a preference-data run folder (runs/<scenario>/prefs-<hash>)
    /// as TRL's JSON lines: prompt, chosen, rejected as text and token ids, split, gold rewards.
    ExportPrefs { prefs_dir: PathBuf, out: PathBuf },
    /// The tabular world's convergence to pi* (DPO, IPO, PPO-GT; exact by enumeration): writes
    /// tabular.csv and tabular.{png,svg}.
    Tabular {
        #[command(flatten)]
        common: Common,
        /// Output folder.
        #[arg(long, default_value = "results/tabular")]
        out: PathBuf,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Benchmarks: matmul peak, SFT tokens/s and MFU, sampling tokens/s with and without cache.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Fewer repetitions (for smoke tests).
        #[arg(long)]
        quick: bool,
    },
}

fn setup(common: &Common) -> Result<tch::Device> {
    if let Some(t) = common.threads {
        anyhow::ensure!((1..=1024).contains(&t), "--threads {t} is not a thread count; fix: pass --threads 1 or more (or leave it out: all cores)");
    }
    let dev = device::resolve(common.device)?;
    let threads = common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    tch::set_num_threads(threads as i32);
    tch::set_num_interop_threads(1);
    // The data-parallel CPU work outside libtorch (gold scoring, the importance-sampling
    // frontier, reports over folders) runs on as many threads as torch gets, never beside a
    // torch op, so the two never oversubscribe the cores. RAYON_NUM_THREADS, if set, wins.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
    Ok(dev)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { file, set } => {
            let sc = Scenario::load(&file, &set)?;
            print!("{}", sc.resolved_toml);
        }
        Cmd::World { file, show, set } => {
            let sc = Scenario::load(&file, &set)?;
            print!("{}", experiment::show_world(&sc, show));
        }
        Cmd::Run {
            file,
            common,
            results,
            runs,
            jobs,
            quiet,
            json_progress,
        } => {
            // The whole invocation's wall time: tuning and calibration included.
            let t_start = std::time::Instant::now();
            let sc = Scenario::load(&file, &common.set)?;
            anyhow::ensure!(
                jobs >= 1,
                "--jobs must be at least 1; fix: pass --jobs 1 (in process) or more"
            );
            let device = setup(&common)?;
            let threads = tch::get_num_threads();
            eprintln!("alignlab: scenario {} (seeds {:?}) on {device:?}, {threads} threads, {jobs} job(s)", sc.name, sc.seeds);
            let mut cell_args = vec![
                file.display().to_string(),
                "--runs".into(),
                runs.display().to_string(),
                "--device".into(),
                common.device.to_string(),
            ];
            cell_args.extend(
                common
                    .set
                    .iter()
                    .flat_map(|s| ["--set".to_string(), s.clone()]),
            );
            let progress = ProgressMode::choose(quiet, json_progress);
            let opts = RunOptions {
                results_root: results,
                runs_root: runs,
                device,
                progress,
                jobs,
                threads: threads as usize,
                cell_args,
            };
            let out = opts.results_root.join(&sc.name);
            let summary = experiment::run_scenario(&file, &common.set, opts, t_start)?;
            summary.print();
            println!(
                "\nfrontier plot: {}",
                alignlab::report::report(&out)?.display()
            );
            if !summary.failed.is_empty() {
                anyhow::bail!("{} method run(s) failed (the others finished and are in the results):\n  {}\nfix: see each error above; rerunning the same command retries only these", summary.failed.len(), summary.failed.join("\n  "));
            }
        }
        Cmd::Cell {
            file,
            common,
            seed,
            index,
            runs,
        } => {
            let sc = Scenario::load(&file, &common.set)?.with_seed(seed);
            anyhow::ensure!(
                sc.seeds.contains(&seed),
                "seed {seed} is not in the scenario's seeds {:?}; fix: pick one of them",
                sc.seeds
            );
            // Before any stage runs: a wrong index must not cost an SFT.
            let cells = sc.methods.len() + usize::from(sc.best_of_n.is_some());
            anyhow::ensure!(index < cells, "cell {index} does not exist: the scenario has {cells} cells per seed (indices 0..{}); fix: `alignlab cells {}` lists them", cells.saturating_sub(1), file.display());
            let device = setup(&common)?;
            let opts = RunOptions {
                results_root: PathBuf::from("results"),
                runs_root: runs,
                device,
                progress: ProgressMode::Quiet,
                jobs: 1,
                threads: tch::get_num_threads() as usize,
                cell_args: vec![],
            };
            experiment::run_cell(&sc, &opts, index)?;
        }
        Cmd::Prepare {
            file,
            common,
            seed,
            runs,
            quiet,
            json_progress,
        } => {
            let sc = Scenario::load(&file, &common.set)?;
            let device = setup(&common)?;
            let opts = RunOptions {
                results_root: PathBuf::from("results"),
                runs_root: runs,
                device,
                progress: ProgressMode::choose(quiet, json_progress),
                jobs: 1,
                threads: tch::get_num_threads() as usize,
                cell_args: vec![],
            };
            for s in sc.seeds.iter().filter(|s| seed.is_none_or(|x| x == **s)) {
                experiment::prepare(&sc.with_seed(*s), &opts)?;
                println!("seed {s}: shared stages ready");
            }
        }
        Cmd::Cells { file, set, runs } => {
            let sc = Scenario::load(&file, &set)?;
            let opts = RunOptions {
                results_root: PathBuf::from("results"),
                runs_root: runs,
                device: tch::Device::Cpu,
                progress: ProgressMode::Quiet,
                jobs: 1,
                threads: 1,
                cell_args: vec![],
            };
            let pending = experiment::pending_cells(&sc, &opts);
            for &seed in &sc.seeds {
                let s = sc.with_seed(seed);
                let labels: Vec<String> = s
                    .methods
                    .iter()
                    .map(|m| format!("{} {}", m.name(), m.setting()))
                    .chain(s.best_of_n.iter().map(|_| "best_of_n".to_string()))
                    .collect();
                for (i, label) in labels.iter().enumerate() {
                    let state = if pending.iter().any(|p| p.0 == seed && p.1 == i) {
                        "pending"
                    } else {
                        "done"
                    };
                    println!("--seed {seed} --index {i}\t{label}\t{state}");
                }
            }
        }
        Cmd::Report {
            dir,
            paper: true,
            paper_dir,
        } => {
            let results = dir.unwrap_or_else(|| PathBuf::from("results"));
            let path = alignlab::report::paper::write(&results, &paper_dir)?;
            println!("paper: {}", path.display());
        }
        Cmd::Report { dir: Some(dir), .. } => {
            let plot = alignlab::report::report(&dir)?;
            println!(
                "tables: {}/frontier.csv, fits.csv, report.md",
                dir.display()
            );
            println!("frontier plot: {}", plot.display());
        }
        Cmd::Report { dir: None, .. } => unreachable!("clap requires DIR without --paper"),
        Cmd::Export { run_dir, hf } => {
            experiment::export::hf(&run_dir, &hf)?;
            println!("written: {} (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json, alignlab_check.safetensors)", hf.display());
        }
        Cmd::ExportPrefs { prefs_dir, out } => {
            let n = experiment::export::prefs(&prefs_dir, &out)?;
            println!("written: {} ({n} pairs)", out.display());
        }
        Cmd::Tabular { common, out, seed } => {
            setup(&common)?;
            let rows = alignlab::experiment::tabular::convergence(&out, seed)?;
            alignlab::report::plot::tabular(&out, &rows)?;
            alignlab::experiment::tabular::unseen_mass(&out, seed)?;
            for r in rows.iter().filter(|r| {
                rows.iter()
                    .filter(|q| q.series == r.series)
                    .map(|q| q.step)
                    .max()
                    == Some(r.step)
            }) {
                println!(
                    "{:40} step {:5}  {} = {:.3e}",
                    r.series, r.step, r.metric, r.value
                );
            }
            println!(
                "written: {}/tabular.csv, tabular_unseen.csv, tabular.png, tabular.svg",
                out.display()
            );
        }
        Cmd::Bench { common, quick } => {
            let device = setup(&common)?;
            alignlab::bench::run(device, quick)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Output piped into `head` ends quietly when the reader goes away, as in other command-line
    // tools, instead of panicking on a broken pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    // A file-size limit (`ulimit -f`) makes writes fail with an error, like a full disk, instead
    // of killing the process with SIGXFSZ before it can say what happened.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Start the profile's clock (see `profile`): what happens before the first stage is start-up.
    alignlab::profile::stage("startup", "", 0, "startup");
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
