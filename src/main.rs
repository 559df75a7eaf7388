//! The alignlab binary: parse the command line (`cli`) and call.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

mod cli;
use cli::{Cli, Cmd, RunArgs};

use alignlab::experiment::{self, ProgressMode, RunOptions};
use alignlab::scenario::Scenario;

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { file, settings } => {
            let sc = Scenario::load(&file, &settings.sets())?;
            print!("{}", sc.resolved_toml);
        }
        Cmd::World { file, show, settings } => {
            let sc = Scenario::load(&file, &settings.sets())?;
            print!("{}", experiment::show_world(&sc, show));
        }
        Cmd::Run(args) => run_command(args)?,
        Cmd::Cell { file, common, seed, index, runs } => {
            let sc = Scenario::load(&file, &common.sets())?.with_seed(seed);
            // Before any stage runs: a wrong seed or index must not cost an SFT.
            experiment::cells::check_cell(&sc, seed, index, &file)?;
            let opts = RunOptions::local(runs, common.setup()?, ProgressMode::Quiet);
            experiment::run_cell(&sc, &opts, index)?;
        }
        Cmd::Prepare { file, common, seed, runs, quiet, json_progress } => {
            let sc = Scenario::load(&file, &common.sets())?;
            let progress = ProgressMode::choose(quiet, json_progress);
            let opts = RunOptions::local(runs, common.setup()?, progress);
            for s in sc.seeds.iter().filter(|s| seed.is_none_or(|x| x == **s)) {
                experiment::prepare(&sc.with_seed(*s), &opts)?;
                println!("seed {s}: shared stages ready");
            }
        }
        Cmd::Eval { file, common, policy, seed, runs, out, frontier } => {
            let sc = Scenario::load(&file, &common.sets())?;
            let opts = RunOptions::local(runs, common.setup()?, ProgressMode::Quiet);
            experiment::eval_policy::command(&sc, seed, &opts, &policy, (&out, &frontier))?;
            frontier.map(|d| alignlab::report::report(&d)).transpose()?;
        }
        Cmd::Cells { file, settings, runs } => {
            let sc = Scenario::load(&file, &settings.sets())?;
            let opts = RunOptions::local(runs, tch::Device::Cpu, ProgressMode::Quiet);
            print!("{}", experiment::cells::listing(&sc, &opts));
        }
        Cmd::Report { dir, paper: true, paper_dir } => {
            let results = dir.unwrap_or_else(|| PathBuf::from("results"));
            let path = alignlab::report::paper::write(&results, &paper_dir)?;
            println!("paper: {}", path.display());
        }
        Cmd::Report { dir: Some(dir), .. } => {
            let plot = alignlab::report::report(&dir)?;
            println!("tables: {}/frontier.csv, fits.csv, report.md", dir.display());
            println!("frontier plot: {}", plot.display());
        }
        Cmd::Report { dir: None, .. } => unreachable!("clap requires DIR without --paper"),
        Cmd::Equivalence { a, b, gold_margin: g, winrate_margin: w } => {
            print!("{}", alignlab::report::equivalence::run(&a, &b, (g, w))?)
        }
        Cmd::Export { run_dir, hf } => {
            experiment::export::hf(&run_dir, &hf)?;
            println!("written: {} (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json, alignlab_check.safetensors)", hf.display());
        }
        Cmd::ExportPrefs { prefs_dir, out } => {
            let n = experiment::export::prefs(&prefs_dir, &out)?;
            println!("written: {} ({n} pairs)", out.display());
        }
        Cmd::Tabular { common, out, seed } => {
            common.setup()?;
            print!("{}", alignlab::report::plot::tabular_command(&out, seed)?);
        }
        Cmd::Tensorboard { dir, out } => {
            println!("{}", alignlab::report::tensorboard::command(&dir, out)?)
        }
        Cmd::Bench { common, quick, real } => alignlab::bench::run(common.setup()?, quick, real)?,
    }
    Ok(())
}

/// `alignlab run`: the scenario's protocol, its summary printed, its report and plots.
fn run_command(args: RunArgs) -> Result<()> {
    let RunArgs { file, common, results, runs, jobs, quiet, json_progress, tensorboard } = args;
    // The whole invocation's wall time: tuning and calibration included.
    let t_start = std::time::Instant::now();
    let sc = Scenario::load(&file, &common.sets())?;
    anyhow::ensure!(
        jobs >= 1,
        "--jobs must be at least 1; fix: pass --jobs 1 (in process) or more"
    );
    let device = common.setup()?;
    let threads = tch::get_num_threads();
    let progress = ProgressMode::choose(quiet, json_progress);
    progress.header(&sc.name, &sc.seeds, (&format!("{device:?}"), threads, jobs));
    // What makes `alignlab cell` see the same scenario: file, --runs, --device, the --sets.
    let mut cell_args =
        vec![file.display().to_string(), "--runs".into(), runs.display().to_string()];
    cell_args.extend(common.cell_flags());
    cell_args.extend(common.sets().into_iter().flat_map(|s| ["--set".to_string(), s]));
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
    let summary = experiment::run_scenario(&file, &common.sets(), opts, t_start)?;
    summary.print();
    println!("\nfrontier plot: {}", alignlab::report::report(&out)?.display());
    tensorboard
        .map(|tb| alignlab::report::tensorboard::write(&out, &tb.join(&sc.name)))
        .transpose()?;
    if !summary.failed.is_empty() {
        anyhow::bail!("{} method run(s) failed (the others finished and are in the results):\n  {}\nfix: see each error above; rerunning the same command retries only these", summary.failed.len(), summary.failed.join("\n  "));
    }
    Ok(())
}

fn main() -> ExitCode {
    // SAFETY: signal dispositions set before any thread starts. Output piped into `head` ends
    // quietly (SIGPIPE's default, not a panic on a broken pipe); a file-size limit makes writes
    // fail with an error, like a full disk (SIGXFSZ ignored), instead of killing the process.
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
