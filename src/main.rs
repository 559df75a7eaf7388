//! The alignlab binary: `run`, `check`, `world`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use alignlab::device::{self, DeviceChoice};
use alignlab::experiment::{self, ProgressMode, RunOptions};
use alignlab::scenario::{Scenario, WorldConfig};
use alignlab::world::{SentimentWorld, SummarizeWorld};

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

/// "pilot seed 1000", or "pilot seeds [1000, 1001]".
fn pilot_words(seeds: &[u64]) -> String {
    match seeds {
        [one] => format!("pilot seed {one}"),
        _ => format!("pilot seeds {seeds:?}"),
    }
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
            let mut rng =
                alignlab::draw::Rng::new(alignlab::draw::derive_seed(sc.seed, "world/show"));
            match &sc.world {
                WorldConfig::Sentiment(c) => {
                    let w = SentimentWorld::new(c, sc.seed);
                    println!("sentiment world: {} tokens, {} train / {} val reviews; true-process NLL {:.4} nats/token", w.vocab.size(), w.train.len(), w.val.len(), w.val_nll_per_token());
                    println!("\nevaluation prompts:");
                    for p in w.eval_prompts.iter().take(show) {
                        println!("  gold {:.3}  | {}", w.gold_reward(p), w.vocab.render(p));
                    }
                    println!("\nreviews from the true process (z = latent sentiment):");
                    for _ in 0..show {
                        let (z, words) = w.sample_review(&mut rng);
                        let z = if z == alignlab::world::sentiment::POS {
                            "pos"
                        } else {
                            "neg"
                        };
                        println!(
                            "  z={z} gold {:.3}  | {}",
                            w.gold_reward(&words),
                            w.vocab.render(&words)
                        );
                    }
                }
                WorldConfig::Summarize(c) => {
                    let w = SummarizeWorld::new(c, sc.seed);
                    println!("summarize world: {} tokens, {} train / {} val documents; reference-process NLL {:.4} nats/token", w.vocab.size(), w.train.len(), w.val.len(), w.val_nll_per_token());
                    let facts: Vec<String> = (0..c.n_facts)
                        .map(|i| {
                            format!("{} {:.2}", w.vocab.words[3 + i], w.salience[3 + i].unwrap())
                        })
                        .collect();
                    println!(
                        "fact saliences (worth a mention above {}): {}",
                        c.length_penalty,
                        facts.join(", ")
                    );
                    println!("\nevaluation documents, reference summary, optimal summary and a labeller summary (gold judge):");
                    for (p, r) in w.eval_prompts.iter().zip(&w.eval_references).take(show) {
                        let o = w.optimal_summary(p);
                        let l = w.labeller_summary(p, c.summary_max_len() + 1, &mut rng);
                        println!("  {}", w.vocab.render(p));
                        println!(
                            "    reference {:+.3} | {}",
                            w.judge(p, r),
                            w.vocab.render(r)
                        );
                        println!(
                            "    optimal   {:+.3} | {}",
                            w.judge(p, &o),
                            w.vocab.render(&o)
                        );
                        println!(
                            "    labeller  {:+.3} | {}",
                            w.judge(p, &l),
                            w.vocab.render(&l)
                        );
                    }
                }
                WorldConfig::Dialogue(c) => {
                    let w = alignlab::world::DialogueWorld::new(c, sc.seed);
                    println!("dialogue world: {} tokens, {} benign and {} harmful intents, {} train / {} val requests with a chosen reply (SFT's data)", w.vocab.size(), c.n_benign, c.n_harmful, w.train.len(), w.val.len());
                    let agree = (0..4000).filter_map(|_| {
                        let p = w.sample_request(&mut rng);
                        let (a, b, first) = w.labelled_pair(&p, &mut rng);
                        let (ga, gb) = (w.judge(&p, &a), w.judge(&p, &b));
                        (ga != gb).then_some(first == (ga > gb))
                    });
                    let v: Vec<bool> = agree.collect();
                    println!("labeller: agrees with the gold judge on {:.3} of 4000 fresh pairs of distinct gold (configured {})", v.iter().filter(|x| **x).count() as f64 / v.len().max(1) as f64, c.labeller_agreement);
                    println!("\nrequests with two writer drafts, the labeller's choice (*) and the gold judge:");
                    for _ in 0..show {
                        let p = w.sample_request(&mut rng);
                        let (a, b, first) = w.labelled_pair(&p, &mut rng);
                        println!("  {}", w.vocab.render(&p));
                        for (r, chosen) in [(&a, first), (&b, !first)] {
                            println!(
                                "   {} {:+.3} | {}",
                                if chosen { "*" } else { " " },
                                w.judge(&p, r),
                                w.vocab.render(r)
                            );
                        }
                        let o = w.optimal_reply(&p);
                        println!(
                            "   optimal {:+.3} | {}",
                            w.judge(&p, &o),
                            w.vocab.render(&o)
                        );
                    }
                }
            }
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
            // The whole invocation's wall time: tuning and calibration included (`run,wall time`
            // is the sweep's alone).
            let t_start = std::time::Instant::now();
            let mut sc = Scenario::load(&file, &common.set)?;
            anyhow::ensure!(
                jobs >= 1,
                "--jobs must be at least 1; fix: pass --jobs 1 (in process) or more"
            );
            let device = setup(&common)?;
            eprintln!(
                "alignlab: scenario {} (seeds {:?}) on {:?}, {} threads, {jobs} job(s)",
                sc.name,
                sc.seeds,
                device,
                tch::get_num_threads()
            );
            let mut cell_args = vec![
                file.display().to_string(),
                "--runs".into(),
                runs.display().to_string(),
                "--device".into(),
                common.device.to_string(),
            ];
            for s in &common.set {
                cell_args.push("--set".into());
                cell_args.push(s.clone());
            }
            let opts = RunOptions {
                results_root: results,
                runs_root: runs,
                device,
                progress: ProgressMode::choose(quiet, json_progress),
                jobs,
                threads: tch::get_num_threads() as usize,
                cell_args,
            };
            // The settings fixed before the sweep: the tuned configurations, the calibrated grids.
            let mut fixed: Vec<String> = Vec::new();
            // What this invocation ran and found cached, per stage.
            let (tune_done, cal_done) = (
                std::cell::Cell::new(experiment::RunsDone::default()),
                std::cell::Cell::new(experiment::RunsDone::default()),
            );
            let run_pilot =
                |o: &RunOptions,
                 pilot: &Scenario,
                 tables: &[String],
                 extra: &[String],
                 count: &std::cell::Cell<experiment::RunsDone>| {
                    let d = experiment::run_tables(pilot, &o.with_sets(extra), tables)?;
                    let mut c = count.get();
                    c.absorb(d);
                    count.set(c);
                    anyhow::Ok(())
                };
            // Equal tuning on the tuning seeds; every configuration is checked before any work.
            let tuning = match &sc.tune {
                None => None,
                Some(t) => {
                    for c in t.tables.iter().flat_map(|x| &x.1) {
                        let sets: Vec<String> = common
                            .set
                            .iter()
                            .chain(c)
                            .cloned()
                            .chain(["tune.seeds=[]".to_string()])
                            .collect();
                        Scenario::load(&file, &sets)?;
                    }
                    let load = |extra: &[String]| -> anyhow::Result<Scenario> {
                        Ok(Scenario::load(
                            &file,
                            &common.set.iter().chain(extra).cloned().collect::<Vec<_>>(),
                        )?)
                    };
                    let tuned = experiment::tune::tune(&sc, &opts, &load, &|p, t, e| {
                        run_pilot(&opts, p, t, e, &tune_done)
                    })?;
                    eprintln!("tuned: {}", tuned.overrides.join(" "));
                    fixed.extend(tuned.overrides.iter().cloned());
                    sc = load(&fixed)?;
                    Some(tuned)
                }
            };
            // Budget-calibrated grids: searched on the pilot seed, then the sweep runs them.
            let calibration = if sc.budgets.is_empty() {
                None
            } else {
                let load = |extra: &[String]| -> anyhow::Result<Scenario> {
                    Ok(Scenario::load(
                        &file,
                        &common
                            .set
                            .iter()
                            .chain(&fixed)
                            .chain(extra)
                            .cloned()
                            .collect::<Vec<_>>(),
                    )?)
                };
                let o = opts.with_sets(&fixed);
                let cal = experiment::calibrate::calibrate(&sc, &o, &load, &|p, t, e| {
                    run_pilot(&o, p, t, e, &cal_done)
                })?;
                sc = load(&cal.overrides)?;
                fixed.extend(cal.overrides.iter().cloned());
                eprintln!("calibrated grids: {}", cal.overrides.join(" "));
                Some(cal)
            };
            let opts = opts.with_sets(&fixed);
            let load_fixed = |extra: &[String]| -> anyhow::Result<Scenario> {
                Ok(Scenario::load(
                    &file,
                    &common
                        .set
                        .iter()
                        .chain(&fixed)
                        .chain(extra)
                        .cloned()
                        .collect::<Vec<_>>(),
                )?)
            };
            let top_up = calibration.as_ref().map(|c| experiment::TopUp {
                records: &c.records,
                load: &load_fixed,
            });
            let mut summary = experiment::run(&sc, &opts, top_up)?;
            // What the protocol cost: the tuning's and the calibration's runs beside the sweep's.
            if tuning.is_some() || calibration.is_some() {
                let out = opts.results_root.join(&sc.name);
                let mut sweep = experiment::RunsWork::default();
                sweep.add(&experiment::Metrics::read(&out.join("eval.csv"))?);
                sweep.add_timing(&experiment::Metrics::read(&out.join("timing.csv"))?);
                let mut total = sweep;
                let mut all_seeds = sc.seeds.clone();
                if let Some(t) = &tuning {
                    let configs = alignlab::report::distinct(
                        t.records
                            .iter()
                            .filter(|r| r.method == t.records[0].method)
                            .map(|r| r.config.clone()),
                    )
                    .len();
                    let tune_seeds = alignlab::report::distinct(t.records.iter().map(|r| r.seed));
                    summary.add(
                        "protocol",
                        "tuning",
                        format!(
                            "{configs} configurations on tuning seed(s) {tune_seeds:?}, {}",
                            t.work.line()
                        ),
                    );
                    summary.add("invocation", "tuning runs", tune_done.get().line());
                    total.absorb(&t.work);
                    all_seeds.extend(tune_seeds);
                }
                if let Some(cal) = &calibration {
                    summary.add(
                        "protocol",
                        "calibration",
                        format!("{}, {}", pilot_words(&sc.pilot_seeds), cal.work.line()),
                    );
                    summary.add(
                        "protocol",
                        "calibration rule",
                        format!(
                            "{}: settled within {} of a budget, one run per budget",
                            experiment::calibrate::RULE,
                            sc.calibration_aim
                        ),
                    );
                    summary.add("invocation", "calibration runs", cal_done.get().line());
                    total.absorb(&cal.work);
                    all_seeds.extend(&sc.pilot_seeds);
                }
                summary.add(
                    "protocol",
                    "sweep",
                    format!("{} reported seed(s), {}", sc.seeds.len(), sweep.line()),
                );
                summary.add("protocol", "ledger", total.wall_line());
                summary.add(
                    "protocol",
                    "shared ledger",
                    experiment::Ledger::of_seeds(&sc, &opts, &all_seeds).line("stages"),
                );
                summary.add("protocol", "total", format!("{}, each run charged as in the compute table (its own work and the shared stages it stands on): {:.2} times the sweep's model FLOPs; SFT, preference data and reward model trained on {} seeds instead of {}", total.line(), total.work[0] / sweep.work[0], all_seeds.len(), sc.seeds.len()));
            }
            summary.add(
                "invocation",
                "wall time",
                format!("{:.1} s", t_start.elapsed().as_secs_f64()),
            );
            experiment::write_atomic(
                &opts.results_root.join(&sc.name).join("summary.csv"),
                summary.to_csv().as_bytes(),
            )?;
            if let Some(cal) = &calibration {
                let path = opts.results_root.join(&sc.name).join("calibration.csv");
                experiment::write_atomic(&path, alignlab::log::csv_text(&cal.records).as_bytes())?;
            }
            if let Some(t) = &tuning {
                let path = opts.results_root.join(&sc.name).join("tuning.csv");
                experiment::write_atomic(&path, alignlab::log::csv_text(&t.records).as_bytes())?;
            }
            summary.print();
            let out = opts.results_root.join(&sc.name);
            let plot = alignlab::report::report(&out)?;
            println!("\nfrontier plot: {}", plot.display());
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
