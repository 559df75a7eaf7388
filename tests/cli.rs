//! The binary end to end: smoke runs of every shipped scenario, caching, determinism, errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alignlab"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alignlab-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Settings that make any scenario run in seconds.
const TINY: &[&str] = &[
    "sft.steps=30",
    "sft.eval_every=15",
    "world.n_train=300",
    "world.n_val=50",
    "world.n_train_prompts=20",
    "world.n_eval_prompts=16",
    "model.d_model=32",
    "model.n_layer=1",
    "train.steps=6",
    "train.warmup_steps=2",
    "reward.epochs=1",
    "eval.every=3",
    "eval.samples_per_prompt=1",
    "ppo.iterations=2",
    "ppo_gt.iterations=2",
    "ppo.eval_every=1",
    "ppo_gt.eval_every=1",
    "best_of_n.n=[1,4]",
    "rloo.iterations=2",
    "rloo.eval_every=1",
    "rloo.prompts_per_iteration=2",
    "rloo.minibatch_size=4",
    "grpo.iterations=2",
    "grpo.eval_every=1",
    "grpo.prompts_per_iteration=2",
    "grpo.minibatch_size=4",
];

/// The tiny settings that apply to a scenario file (method tables it does not have are left out,
/// since `--set ppo.x=...` would create them).
fn tiny_for(file: &Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut v: Vec<&'static str> = TINY
        .iter()
        .copied()
        .filter(|s| {
            let section = s.split('.').next().unwrap();
            !matches!(section, "ppo" | "ppo_gt" | "best_of_n" | "rloo" | "grpo")
                || text.contains(&format!("[{section}]"))
        })
        .collect();
    if text.contains("[sweep]") {
        v.push("sweep.seeds=[0]"); // one seed is enough for a smoke run
    }
    // Evenly spaced evaluations: 2 points of the tiny lengths (6 steps, 2 iterations).
    if text.contains("\ncheckpoints = ") {
        v.push("eval.checkpoints=2");
    }
    // Tuning would run its own lengths (hundreds of steps); the tuned tiny sweep is
    // `calibrated_grids_run_on_the_pilot_seed_and_replace_the_grids`. One calibration round.
    if text.contains("[tune]") {
        v.push("tune.seeds=[]");
    }
    if text.contains("budgets") {
        v.push("sweep.calibration_rounds=1");
    }
    v
}

/// The run folders of a scenario (`runs/<scenario>` under `out`) whose names start with `prefix`.
fn run_dirs(out: &Path, scenario: &str, prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(out.join("runs").join(scenario))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

fn run(file: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = bin();
    c.arg("run").arg(file).arg("--threads").arg("1").arg("--device").arg("cpu");
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    for s in tiny_for(file).iter().chain(extra) {
        c.arg("--set").arg(s);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// What the report computes with reads the same from a folder's typed `numbers.csv` as from the
/// text of its `summary.csv` (the reader of folders written before `numbers.csv`).
fn numbers_agree(res: &Path) {
    use alignlab::report::numbers::Numbers;
    let typed = Numbers::of(res).unwrap();
    assert!(matches!(typed, Numbers::Typed(_)), "{}: no numbers.csv", res.display());
    let text = Numbers::Text(alignlab::log::read_csv(&res.join("summary.csv")).unwrap());
    let one = |x: Option<f64>| x.map(|w| format!("{w:.1}"));
    for part in ["invocation", "run"] {
        assert_eq!(one(typed.wall_s(part)), one(text.wall_s(part)), "{part} wall");
        assert!(typed.wall_s(part).is_some());
    }
    assert_eq!(typed.runs_done(), text.runs_done());
    assert!(!typed.runs_done().is_empty());
    for what in ["ledger", "shared"] {
        let l = |n: &Numbers| n.ledger(what).map(|(s, t, o)| (format!("{s:.1}"), t, o));
        assert_eq!(l(&typed), l(&text), "{what}");
        assert!(l(&typed).is_some());
    }
    assert_eq!(typed.tflop(), text.tflop());
    let four = |v: Vec<f64>| v.iter().map(|a| format!("{a:.4}")).collect::<Vec<_>>();
    assert_eq!(four(typed.reward_accuracies()), four(text.reward_accuracies()));
    assert_eq!(typed.label_agreements(), text.label_agreements());
    assert_eq!(typed.numerics(), text.numerics());
    assert_eq!(typed.calibration_rule(), text.calibration_rule());
}

#[test]
fn every_scenario_runs_tiny_and_writes_results() {
    for entry in std::fs::read_dir("scenarios").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        // The real-data scenarios need ${ALIGNLAB_DATA}: tests/dataset.rs runs them on fixtures.
        if std::fs::read_to_string(&path).unwrap().contains("kind = \"dataset\"") {
            continue;
        }
        let out = tmp(&format!("smoke-{}", path.file_stem().unwrap().to_string_lossy()));
        // A loss the shipped scenarios do not use runs from its table alone (the registry).
        // And PPO under TRL's conventions (score after <eos>, unbiased whitening, active clip
        // fraction) with a moving-average reference.
        let extra: &[&str] = if path.ends_with("sentiment.toml") {
            &[
                "hinge.beta=[0.5]",
                "ppo.score_position=\"after_eos\"",
                "ppo.whiten_unbiased=true",
                "ppo.clipfrac=\"active\"",
                "ppo.ref_ema=0.5",
            ]
        } else {
            &[]
        };
        let o = run(&path, &out, extra);
        assert!(o.status.success(), "{} failed:\n{}", path.display(), text(&o));
        let name = alignlab::scenario::Scenario::load(&path, &[]).unwrap().name;
        let res = out.join("results").join(&name);
        for f in [
            "scenario.resolved.toml", "metrics.csv", "summary.csv", "eval.csv", "frontier.png",
            "frontier.csv",
        ] {
            assert!(res.join(f).exists(), "{} did not write {f}", path.display());
        }
        let metrics = std::fs::read_to_string(res.join("metrics.csv")).unwrap();
        assert!(metrics.contains("sft/nll/val"));
        if !extra.is_empty() {
            assert!(
                metrics.contains("hinge,beta=0.5,") && metrics.contains("hinge/rewards/margins"),
                "{name}: the hinge run wrote no metrics"
            );
        }
        // The results say which code made them.
        let summary = std::fs::read_to_string(res.join("summary.csv")).unwrap();
        let code = format!("numerics {}", alignlab::experiment::folders::NUMERICS);
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with("run,code,") && l.contains("(commit ") && l.contains(&code)),
            "{name}: no code row in summary.csv:\n{summary}"
        );
        numbers_agree(&res);
        if name.contains("summarize") {
            // Win rates at every step and at each final temperature, for every policy.
            let evals = std::fs::read_to_string(res.join("eval.csv")).unwrap();
            for m in ["sft,", "dpo,", "ppo,", "best_of_n,"] {
                for metric in ["eval/winrate,", "eval_t0/winrate,", "eval_t1/winrate_lo,"] {
                    assert!(
                        evals.lines().any(|l| l.starts_with(m) && l.contains(metric)),
                        "{name}: no {metric} for {m}"
                    );
                }
            }
        }
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn same_seed_same_bytes_and_cached_stages_are_reused() {
    let file = Path::new("scenarios/sentiment.toml");
    let (a, b) = (tmp("det-a"), tmp("det-b"));
    let oa = run(file, &a, &[]);
    let ob = run(file, &b, &[]);
    assert!(oa.status.success() && ob.status.success(), "{}", text(&oa));
    let read = |d: &Path| std::fs::read(d.join("results/sentiment/metrics.csv")).unwrap();
    assert_eq!(read(&a), read(&b), "two runs with the same seed differ");
    let evals = |d: &Path| std::fs::read(d.join("results/sentiment/eval.csv")).unwrap();
    assert_eq!(evals(&a), evals(&b), "eval.csv differs between two identical runs");
    assert!(String::from_utf8(evals(&a)).unwrap().contains("ppo_gt,target_kl=3,0,2,eval/gold"));
    // The ledger: every reported run kept its own wall time.
    let ledger = |d: &Path| {
        std::fs::read_to_string(d.join("results/sentiment/summary.csv"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("run,ledger,").map(String::from))
            .unwrap()
    };
    let first = ledger(&a);
    let (secs, timed, runs) = alignlab::experiment::RunsWork::parse_wall(&first).unwrap();
    assert!(secs > 0.0 && timed == runs && runs > 5, "{first}");
    // ... and every shared stage of the seed its own: SFT, preference data, reward model and
    // the reference log-probs, each at least once.
    let shared = |d: &Path| {
        std::fs::read_to_string(d.join("results/sentiment/summary.csv"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("run,shared ledger,").map(String::from))
            .unwrap()
    };
    let first_shared = shared(&a);
    let (secs, timed, stages) = alignlab::experiment::RunsWork::parse_wall(&first_shared).unwrap();
    assert!(secs > 0.0 && timed == stages && stages >= 4, "{first_shared}");
    // A second run in the same folder reuses the SFT checkpoint and gives the same metrics.
    let oc = run(file, &a, &[]);
    assert!(oc.status.success());
    assert!(text(&oc).contains("cached checkpoint"), "SFT was not reused:\n{}", text(&oc));
    assert_eq!(read(&a), read(&b));
    // Its summary says that its runs were found cached instead of giving them no wall time.
    let compute = |d: &Path| {
        std::fs::read_to_string(d.join("results/sentiment/summary.csv"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("compute,"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert!(
        compute(&a).len() == 5
            && compute(&a)
                .iter()
                .all(|l| l.ends_with("found cached, no wall time in this invocation\"")),
        "{:?}",
        compute(&a)
    );
    assert!(
        compute(&b).iter().all(|l| l.ends_with(" s wall with its evaluations\"")),
        "{:?}",
        compute(&b)
    );
    // ... and its ledger still counts what they cost when they ran.
    assert_eq!(ledger(&a), first);
    assert_eq!(shared(&a), first_shared);
    // Another seed gives other numbers.
    let od = run(file, &b, &["seed=5"]);
    assert!(od.status.success());
    assert_ne!(read(&a), read(&b));
    std::fs::remove_dir_all(&a).ok();
    std::fs::remove_dir_all(&b).ok();
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let t = text(o);
    assert!(!o.status.success(), "expected failure:\n{t}");
    assert!(!t.contains("panicked"), "panic instead of an error:\n{t}");
    for n in needles {
        assert!(t.contains(n), "`{n}` missing from:\n{t}");
    }
}

#[test]
fn bad_input_fails_cleanly() {
    let out = tmp("bad");
    assert_clean_failure(
        &run(Path::new("scenarios/nope.toml"), &out, &[]),
        &["error:", "nope.toml", "fix:"],
    );
    assert_clean_failure(
        &run(Path::new("scenarios/sentiment.toml"), &out, &["sft.lr=-1"]),
        &["error:", "sft.lr", "fix:"],
    );
    // An unreadable checkpoint in the run folder with --on-corrupt refuse: a clear error
    // naming it (by default it is moved aside and recomputed:
    // `a_corrupt_cached_stage_is_moved_aside_and_recomputed`).
    let file = Path::new("scenarios/sentiment.toml");
    let o = run(file, &out, &[]);
    assert!(o.status.success());
    let sft = run_dirs(&out, "sentiment", "sft-").pop().expect("no sft run folder");
    let ckpt = sft.join("model.safetensors");
    std::fs::write(&ckpt, b"garbage").unwrap();
    let mut c = bin();
    c.arg("run").arg(file).args(["--threads", "1", "--on-corrupt", "refuse"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    for s in tiny_for(file) {
        c.arg("--set").arg(s);
    }
    assert_clean_failure(
        &c.output().unwrap(),
        &["cannot read checkpoint", "model.safetensors", "fix:"],
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn cuda_without_cuda_is_a_clear_error() {
    let o = bin().args(["bench", "--quick", "--device", "cuda"]).output().unwrap();
    if o.status.success() {
        return; // this machine has CUDA
    }
    assert_clean_failure(&o, &["--device cuda", "fix:"]);
}

#[test]
fn check_and_world_commands() {
    let o =
        bin().args(["check", "scenarios/sentiment.toml", "--set", "sft.steps=7"]).output().unwrap();
    assert!(o.status.success());
    let t = text(&o);
    assert!(
        t.contains("steps = 7")
            && t.contains("kind = \"sentiment\"")
            && t.contains("n_neutral = 24"),
        "{t}"
    );
    let o = bin()
        .args(["world", "scenarios/sentiment.toml", "--show", "3", "--set", "world.n_train=10"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let t = text(&o);
    assert_eq!(t.matches("gold ").count(), 6, "{t}");
    assert!(t.contains("true-process NLL"));
    let o = bin()
        .args(["world", "scenarios/summarize.toml", "--show", "2", "--set", "world.n_train=10"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let t = text(&o);
    assert!(t.contains("reference-process NLL") && t.matches("optimal   ").count() == 2, "{t}");
}

#[test]
fn bench_runs() {
    let o = bin().args(["bench", "--quick", "--threads", "1", "--device", "cpu"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("MFU") && t.contains("KV-cache speed-up"), "{t}");
}

#[test]
fn killed_runs_resume_to_the_same_bytes() {
    let file = Path::new("scenarios/sentiment.toml");
    let (whole, killed) = (tmp("resume-whole"), tmp("resume-killed"));
    // The preference runs keep their best checkpoint (kept across the kill in `best/`).
    let keep = ["train.keep=\"val_accuracy\""];
    assert!(run(file, &whole, &keep).status.success());
    // Die (SIGABRT, as abrupt as kill -9) right after DPO's checkpoint at step 3, then PPO's.
    // The faults are a typed setting of the scenario (`[faults]`), in no cache key.
    let abort_at = |at: &str| format!("faults.abort_at={at}");
    let o = run(file, &killed, &[keep[0], &abort_at("{ method = \"dpo\", step = 3 }")]);
    assert!(!o.status.success(), "the abort hook did not fire:\n{}", text(&o));
    let o = run(file, &killed, &[keep[0], &abort_at("{ method = \"ppo\", step = 1 }")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("resuming from"), "DPO did not resume:\n{}", text(&o));
    assert!(text(&o).contains("reusing the cached checkpoint"), "SFT was retrained:\n{}", text(&o));
    let o = run(file, &killed, &keep);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming from"), "PPO did not resume:\n{}", text(&o));
    for f in ["eval.csv", "metrics.csv"] {
        let a = std::fs::read(whole.join("results/sentiment").join(f)).unwrap();
        let b = std::fs::read(killed.join("results/sentiment").join(f)).unwrap();
        assert!(a == b, "{f} of the resumed run differs from the uninterrupted one");
    }
    // The kept policy too.
    let model = |root: &Path| {
        std::fs::read(run_dirs(root, "sentiment", "dpo-beta=0.1")[0].join("model.safetensors"))
            .unwrap()
    };
    assert!(model(&whole) == model(&killed), "the resumed DPO run kept another checkpoint");
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&killed).ok();
}

#[test]
fn a_nan_stops_its_cell_and_the_others_go_on() {
    let file = Path::new("scenarios/sentiment.toml");
    for jobs in ["1", "2"] {
        let out = tmp(&format!("nan-{jobs}"));
        let mut c = bin();
        c.args([
            "run",
            "scenarios/sentiment.toml",
            "--threads",
            "2",
            "--device",
            "cpu",
            "--jobs",
            jobs,
        ]);
        c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
        for s in tiny_for(file) {
            c.arg("--set").arg(s);
        }
        c.arg("--set").arg("faults.nan_at={ method = \"unlikelihood\", step = 4 }");
        let o = c.output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "a NaN must fail the run:\n{t}");
        assert!(!t.contains("panicked"), "{t}");
        assert!(
            t.contains("unlikelihood: the loss is NaN at step 4")
                && t.contains("resume folder of this run, at step 3")
                && t.contains("fix:"),
            "jobs {jobs}:\n{t}"
        );
        let evals = std::fs::read_to_string(out.join("results/sentiment/eval.csv")).unwrap();
        assert!(
            evals.contains("dpo,beta=1,0,6,")
                && evals.contains("ppo_gt,")
                && evals.contains("best_of_n,"),
            "the other cells did not finish (jobs {jobs})"
        );
        assert!(
            !evals.contains("\nunlikelihood,alpha=1,0,6,"),
            "the failed cell has final results"
        );
        let _ = file;
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn seeds_sweep_with_jobs_runs_cells_as_processes() {
    // Seed 1 also runs DPO at beta 0.25, a run of its own (`[sweep] seed_runs`: a top-up).
    const SETS: [&str; 3] = [
        "sweep.seeds=[0,1]",
        "sweep.dpo.beta=[0.5]",
        "sweep.seed_runs=[{ seed = 1, table = \"dpo\", value = 0.25, budget = 1.0 }]",
    ];
    let out = tmp("sweep");
    let mut c = bin();
    c.args(["run", "scenarios/sentiment.toml", "--threads", "2", "--device", "cpu", "--jobs", "2"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    for s in tiny_for(Path::new("scenarios/sentiment.toml")).iter().chain(&SETS) {
        c.arg("--set").arg(s);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let evals = std::fs::read_to_string(out.join("results/sentiment/eval.csv")).unwrap();
    for needle in [
        "dpo,beta=0.5,0,6,eval/gold",
        "dpo,beta=0.5,1,6,eval/gold",
        "ppo,target_kl=1,1,2,eval/kl",
        "dpo,beta=0.25,1,6,eval/gold",
    ] {
        assert!(evals.contains(needle), "missing {needle}");
    }
    assert!(!evals.contains("dpo,beta=0.25,0,"), "seed 0 ran seed 1's own run");
    assert!(
        std::fs::read_to_string(out.join("results/sentiment/scenario.resolved.toml"))
            .unwrap()
            .contains("seed_runs"),
        "the results' scenario does not list the seed run"
    );
    assert!(!evals.contains("dpo,beta=0.1,"), "the sweep grid did not replace the file's grid");
    let frontier = std::fs::read_to_string(out.join("results/sentiment/frontier.csv")).unwrap();
    assert!(
        frontier.lines().any(|l| l.starts_with("dpo,") && l.ends_with(",2")),
        "two seeds per budget:\n{frontier}"
    );
    for f in [
        "frontier.png", "frontier.svg", "curves.png", "overoptimization.svg", "fits.csv",
        "report.md",
    ] {
        assert!(out.join("results/sentiment").join(f).exists(), "no {f}");
    }
    // The cells listing knows they are done.
    let o = bin()
        .args(["cells", "scenarios/sentiment.toml", "--runs"])
        .arg(out.join("runs"))
        .args(
            tiny_for(Path::new("scenarios/sentiment.toml"))
                .iter()
                .chain(&SETS)
                .flat_map(|s| ["--set", s]),
        )
        .output()
        .unwrap();
    let t = text(&o);
    assert!(t.contains("--seed 1 --index 0\tdpo beta=0.5\tdone") && !t.contains("pending"), "{t}");
    assert_eq!(t.matches("dpo beta=0.25\tdone").count(), 1, "{t}");
    assert!(t.lines().any(|l| l.contains("--seed 1 ") && l.contains("dpo beta=0.25")), "{t}");
    // The sweep's profile: every cell's phases, and the sweep's FLOP utilisation.
    let timing = std::fs::read_to_string(out.join("results/sentiment/timing.csv")).unwrap();
    let util: f64 = timing
        .lines()
        .find(|l| l.starts_with("sweep,,0,0,profile/sweep/flop_utilisation,"))
        .and_then(|l| l.rsplit(',').next()?.parse().ok())
        .expect("no FLOP utilisation row");
    assert!(util > 0.0 && util < 1.5, "FLOP utilisation {util}");
    assert!(
        timing.contains("dpo,beta=0.5,1,0,profile/train/wall_s,")
            && timing.contains(",profile/exec/wall_s,")
            && timing.contains("load,cell0,1,0,profile/startup/wall_s,"),
        "per-cell profile rows missing"
    );
    let summary = std::fs::read_to_string(out.join("results/sentiment/summary.csv")).unwrap();
    assert!(summary.contains("run,profile,") && summary.contains("FLOP utilisation"), "{summary}");
    // pi_SFT's evaluation and the reference log-probs are read from their caches by the cells:
    // a cell that computes them itself (caches and its own folder deleted) writes the same bytes.
    let dir = |prefix: &str| run_dirs(&out, "sentiment", prefix);
    let cell = dir("dpo-beta=0.5-")
        .into_iter()
        .find(|d| {
            std::fs::read_to_string(d.join("eval.csv")).unwrap().contains("\ndpo,beta=0.5,1,")
        })
        .expect("seed 1's dpo folder");
    let before = std::fs::read(cell.join("eval.csv")).unwrap();
    assert!(!dir("eval0-").is_empty() && !dir("reference-").is_empty(), "no caches written");
    for d in dir("eval0-").into_iter().chain(dir("reference-")).chain([cell.clone()]) {
        std::fs::remove_dir_all(d).unwrap();
    }
    let o = bin()
        .args([
            "cell",
            "scenarios/sentiment.toml",
            "--seed",
            "1",
            "--index",
            "0",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--runs",
        ])
        .arg(out.join("runs"))
        .args(
            tiny_for(Path::new("scenarios/sentiment.toml"))
                .iter()
                .chain(&SETS)
                .flat_map(|s| ["--set", s]),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read(cell.join("eval.csv")).unwrap() == before,
        "a cell computing pi_SFT's evaluation and the reference itself wrote other bytes"
    );
    std::fs::remove_dir_all(&out).ok();
}

/// Inputs that used to panic, hang or work before failing: each is now a one-line error before
/// any work (no run folder is created), or ends quietly.
#[test]
fn limits_are_checked_before_any_work() {
    let out = tmp("limits");
    let runs = out.join("runs");
    let o = bin()
        .args(["run", "scenarios/sentiment.toml", "--threads", "0", "--runs"])
        .arg(&runs)
        .output()
        .unwrap();
    assert_clean_failure(&o, &["--threads 0", "fix:"]);
    let o = bin()
        .args([
            "cell",
            "scenarios/sentiment.toml",
            "--seed",
            "0",
            "--index",
            "99",
            "--threads",
            "1",
            "--runs",
        ])
        .arg(&runs)
        .output()
        .unwrap();
    assert_clean_failure(&o, &["cell 99 does not exist", "alignlab cells"]);
    // A world whose reviews can never be long enough for a prompt used to loop forever.
    let o = bin()
        .args([
            "check",
            "scenarios/sentiment.toml",
            "--set",
            "world.stop_prob=1",
            "--set",
            "world.min_len=2",
            "--set",
            "world.prompt_min_len=5",
        ])
        .output()
        .unwrap();
    assert_clean_failure(&o, &["`world.prompt_min_len`", "fix:"]);
    for (set, key) in [
        ("model.d_model=16384", "GiB"),
        ("sample.temperature=1e-300", "1e-300"),
        ("dpo.beta=[1e-250]", "1e-250"),
    ] {
        let o = bin()
            .args(["run", "scenarios/sentiment.toml", "--threads", "1", "--runs"])
            .arg(&runs)
            .args(["--results"])
            .arg(out.join("results"))
            .args(["--set", set])
            .output()
            .unwrap();
        assert_clean_failure(&o, &[key, "fix:"]);
        assert_eq!(text(&o).lines().count(), 1, "{set}: {}", text(&o));
    }
    assert!(!runs.exists(), "work was done before the error");
    // Output into a closed pipe ends quietly (SIGPIPE), without a panic.
    let mut child = bin()
        .args(["world", "scenarios/sentiment.toml", "--show", "300", "--set", "world.n_train=50"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A checkpoint whose weights are not finite is refused on load, naming the file and the fix.
#[test]
fn non_finite_checkpoint_is_refused_on_load() {
    use tch::{nn, Device};
    let out = tmp("nan-ckpt");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("model.safetensors");
    let cfg = alignlab::model::GptConfig::sized(8, 8, 1, 1, 4);
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = alignlab::model::Gpt::new(&vs.root(), &cfg);
    tch::no_grad(|| {
        let mut vars: Vec<_> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = vars[0].1.fill_(f64::NAN);
    });
    alignlab::model::save_checkpoint(&vs, &path).unwrap();
    let mut fresh = nn::VarStore::new(Device::Cpu);
    let _ = alignlab::model::Gpt::new(&fresh.root(), &cfg);
    let e = alignlab::model::load_checkpoint(&mut fresh, &path).unwrap_err().to_string();
    assert!(
        e.contains("non-finite") && e.contains("model.safetensors") && e.contains("fix:"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A full disk (here a file-size limit, `ulimit -f`, which fails writes the same way) stops a
/// run with one line naming the file and the fix, and leaves the previous results as they were.
#[test]
fn a_full_disk_fails_cleanly_and_keeps_the_previous_results() {
    let out = tmp("full-disk");
    let previous = out.join("results/sentiment");
    std::fs::create_dir_all(&previous).unwrap();
    for f in ["eval.csv", "frontier.csv", "paired.csv", "summary.csv"] {
        std::fs::copy(Path::new("results/sentiment").join(f), previous.join(f)).unwrap();
    }
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&previous);
    let mut cmd = format!("ulimit -f 16; exec '{}' run scenarios/sentiment.toml --threads 1 --device cpu --results '{}' --runs '{}'", env!("CARGO_BIN_EXE_alignlab"), out.join("results").display(), out.join("runs").display());
    for s in tiny_for(Path::new("scenarios/sentiment.toml")) {
        cmd.push_str(&format!(" --set '{s}'"));
    }
    let o = Command::new("bash").arg("-c").arg(&cmd).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(last.contains("is the disk full?") && last.contains("fix:"), "{last}");
    assert_eq!(snapshot(&previous), before, "the previous results changed");
    let partial =
        std::process::Command::new("find").arg(&out).args(["-name", "*partial*"]).output().unwrap();
    assert!(
        partial.stdout.is_empty(),
        "partial files left: {}",
        String::from_utf8_lossy(&partial.stdout)
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Progress when stderr is not a terminal: lines with the seed, cell, step, rate and ETA, the
/// whole run's ETA once a cell has finished, each cell's wall time with `--jobs`; one JSON
/// object per line with `--json-progress` (scenario, seed, cell, stage on every stage line);
/// nothing with `--quiet`.
#[test]
fn progress_is_readable_off_a_terminal() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("progress");
    let run_with = |flag: &[&str]| {
        std::fs::remove_dir_all(out.join("runs")).ok();
        let mut c = bin();
        c.arg("run").arg(file).args(["--threads", "2", "--device", "cpu"]).args(flag);
        c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
        for s in tiny_for(file).iter().chain(&["sweep.seeds=[0]"]) {
            c.arg("--set").arg(s);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let lines = run_with(&[]);
    let has = |text: &str, f: &dyn Fn(&str) -> bool| text.lines().any(f);
    assert!(
        has(&lines, &|l| l.starts_with("sft seed 0: 30/30 in ")
            && l.contains("/s")
            && l.ends_with("done")),
        "no SFT progress line:\n{lines}"
    );
    assert!(
        has(&lines, &|l| l.starts_with("dpo beta=") && l.contains("seed 0: ")),
        "no DPO progress line:\n{lines}"
    );
    // After the first method run the whole run's ETA is known.
    assert!(has(&lines, &|l| l.contains("run eta ")), "no run ETA:\n{lines}");
    let jobs = run_with(&["--jobs", "2"]);
    assert!(
        has(&jobs, &|l| l.starts_with("  done: dpo beta=")
            && l.contains(" seed 0 in ")
            && l.contains(" so far, eta ")),
        "no cell line with its wall time and the run's ETA:\n{jobs}"
    );
    for flags in [&["--json-progress"][..], &["--json-progress", "--jobs", "2"]] {
        let json = run_with(flags);
        let objects: Vec<serde_json::Value> = json
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{json}"))
            })
            .collect();
        assert!(objects.iter().all(|o| o["scenario"] == "sentiment"), "{json}");
        assert!(objects[0]["seeds"] == serde_json::json!([0]), "{json}");
        let stages: Vec<&serde_json::Value> =
            objects.iter().filter(|o| o.get("step").is_some()).collect();
        assert!(
            stages
                .iter()
                .all(|o| o["seed"] == 0 && o["cell"].is_string() && o["stage"].is_string()),
            "{json}"
        );
        assert!(
            stages.iter().any(|o| o["stage"] == "sft" && o["step"] == 30 && o["done"] == true),
            "no JSON SFT line:\n{json}"
        );
        if flags.len() > 1 {
            let cells: Vec<_> = objects.iter().filter(|o| o["stage"] == "cell").collect();
            assert!(!cells.is_empty(), "no cell lines:\n{json}");
            assert!(
                cells.iter().all(|o| o["wall_s"].as_f64().is_some_and(|w| w > 0.0)
                    && o["run_eta_s"].is_number()
                    && o["seed"] == 0),
                "{json}"
            );
        }
    }
    let quiet = run_with(&["--quiet"]);
    assert!(quiet.is_empty(), "--quiet printed:\n{quiet}");
    std::fs::remove_dir_all(&out).ok();
}

/// `alignlab export --hf`: the files transformers loads (checked by `make hf-check` with
/// transformers itself), the GPT-2 layout, and a clear error for a folder that is not a run.
#[test]
fn export_writes_a_transformers_checkpoint() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("export");
    let o = run(file, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let dpo = run_dirs(&out, "sentiment", "dpo-").pop().expect("no dpo run folder");
    let hf = out.join("hf");
    let o = bin().arg("export").arg(&dpo).arg("--hf").arg(&hf).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "alignlab_check.safetensors",
    ] {
        assert!(hf.join(f).exists(), "no {f}");
    }
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(
        config.contains("\"n_embd\": 32")
            && config.contains("\"activation_function\": \"gelu_new\"")
            && config.contains("\"tie_word_embeddings\": true"),
        "{config}"
    );
    // Conv1D layout: c_attn is [in, out] = [32, 96].
    let named = tch::Tensor::read_safetensors(hf.join("model.safetensors")).unwrap();
    let c_attn = named.iter().find(|(n, _)| n == "transformer.h.0.attn.c_attn.weight").unwrap();
    assert_eq!(c_attn.1.size(), vec![32, 96]);
    let o = bin()
        .arg("export")
        .arg(out.join("runs"))
        .arg("--hf")
        .arg(out.join("hf2"))
        .output()
        .unwrap();
    assert_clean_failure(&o, &["no model.safetensors", "fix:"]);
    std::fs::remove_dir_all(&out).ok();
}

/// `alignlab export-prefs`: every pair of a preference-data folder as one JSON line, text and ids.
#[test]
fn export_prefs_writes_every_pair() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("export-prefs");
    let o = run(file, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let prefs = run_dirs(&out, "sentiment", "prefs-").pop().expect("no prefs run folder");
    let jsonl = out.join("prefs.jsonl");
    let o = bin().arg("export-prefs").arg(&prefs).arg(&jsonl).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let pairs = std::fs::read_to_string(prefs.join("pairs.txt")).unwrap();
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(lines.lines().count(), pairs.lines().count());
    // The first pair: its ids as in pairs.txt, its text as many words as ids (without <eos>).
    let first: Vec<&str> = pairs.lines().next().unwrap().split('|').collect();
    let line = lines.lines().next().unwrap();
    let row: serde_json::Value = serde_json::from_str(line).unwrap();
    let ids_of = |text: &str| -> Vec<serde_json::Value> {
        text.split(' ').map(|t| t.parse::<i64>().unwrap().into()).collect()
    };
    assert_eq!(row["prompt_ids"].as_array().unwrap()[1..], ids_of(first[1]), "{line}");
    assert_eq!(row["prompt_ids"][0], 1, "{line}");
    assert_eq!(row["chosen_ids"].as_array().unwrap()[..], ids_of(first[2]), "{line}");
    let chosen_text = row["chosen"].as_str().unwrap();
    let words = first[2].split(' ').filter(|t| *t != "2").count();
    assert_eq!(chosen_text.split_whitespace().count(), words);
    // Every row as TRL tokenises it with the exported tokenizer (the tokenizers library that
    // transformers' fast tokenizers run): tokenizer(prompt) and tokenizer(prompt + chosen +
    // "<eos>") give alignlab's prompt ids and prompt + chosen ids; no word merges at the
    // boundary.
    let sft = run_dirs(&out, "sentiment", "sft-").pop().expect("no sft run folder");
    let hf = out.join("hf");
    let o = bin().arg("export").arg(&sft).arg("--hf").arg(&hf).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tok = alignlab::model::tokenizer::Tokenizer::open(&hf).unwrap();
    for line in lines.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let ids = |k: &str| -> Vec<i64> {
            row[k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
        };
        let (prompt, chosen, rejected) = (
            row["prompt"].as_str().unwrap(),
            row["chosen"].as_str().unwrap(),
            row["rejected"].as_str().unwrap(),
        );
        assert_eq!(tok.encode_with(prompt, true), ids("prompt_ids"), "{line}");
        for (text, key) in [(chosen, "chosen"), (rejected, "rejected")] {
            let joined = tok.encode_with(&format!("{prompt}{text}<eos>"), true);
            // A response cut without <eos>: TRL's ends with the <eos> it appends.
            let cut = row[format!("{key}_truncated")].as_bool().unwrap();
            let eos = if cut { vec![2] } else { vec![] };
            assert_eq!(cut, ids(&format!("{key}_ids")).last() != Some(&2), "{line}");
            assert_eq!(
                joined,
                [ids("prompt_ids"), ids(&format!("{key}_ids")), eos].concat(),
                "{line}"
            );
        }
    }
    let o =
        bin().arg("export-prefs").arg(out.join("runs")).arg(out.join("x.jsonl")).output().unwrap();
    assert_clean_failure(&o, &["no pairs.txt", "fix:"]);
    std::fs::remove_dir_all(&out).ok();
}

/// `eval.curve_temperatures` repeats every training evaluation at each temperature: the rows
/// are there at every step, once each (also at the last step, which the final temperature sweep
/// would otherwise evaluate again), and the report draws them as win-rate curves.
#[test]
fn a_folder_is_stale_when_its_scenario_or_numerics_change() {
    use alignlab::experiment::protocol::parse_origin;
    use alignlab::report::provenance::stale;
    let out = tmp("provenance");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("quick.toml");
    std::fs::copy("scenarios/sentiment.toml", &file).unwrap();
    let o = run(&file, &out, &["sweep.dpo.beta=[0.5]", "sweep.seeds=[0, 1]"]);
    assert!(o.status.success(), "{}", text(&o));
    let res = out.join("results/sentiment");
    // The file and its --sets as given, read back whole (a value with a space included).
    let rows: Vec<alignlab::experiment::summary::SummaryRecord> =
        alignlab::log::read_csv(&res.join("summary.csv")).unwrap();
    let origin = &rows.iter().find(|r| r.metric == "scenario").unwrap().value;
    let (f, sets) = parse_origin(origin);
    assert_eq!(f, file);
    assert!(sets.contains(&"sweep.seeds=[0, 1]".to_string()), "{sets:?}");
    assert_eq!(stale(&res), None);
    // A setting changed in the file: the folder no longer is what the file makes.
    let text0 = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text0.replace("max_new_tokens = 16", "max_new_tokens = 15")).unwrap();
    let why = stale(&res).expect("stale after the file changed");
    assert!(why.contains("resolves to another scenario"), "{why}");
    // A comment changed only: the same scenario.
    std::fs::write(&file, format!("# a note\n{text0}")).unwrap();
    assert_eq!(stale(&res), None);
    // Older numerics.
    let numbers = std::fs::read_to_string(res.join("numbers.csv")).unwrap();
    let cur = alignlab::experiment::folders::NUMERICS;
    let older = numbers.replace(&format!("run,numerics,{cur}.0\n"), "run,numerics,1.0\n");
    assert_ne!(older, numbers, "{numbers}");
    std::fs::write(res.join("numbers.csv"), older).unwrap();
    assert!(stale(&res).unwrap().starts_with("numerics 1"));
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn grids_already_calibrated_run_as_written() {
    // `sweep.calibrate = false`: the budgets name the report's, and nothing runs on the pilot
    // seed (what a rerun of a folder's resolved scenario under float noise uses).
    let out = tmp("no-calibration");
    let file = Path::new("scenarios/sentiment.toml");
    let set = ["sweep.budgets=[0.01, 0.03]", "sweep.calibrate=false", "sweep.dpo.beta=[0.5]"];
    let o = run(file, &out, &set);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("calibration round"), "{}", text(&o));
    let res = out.join("results/sentiment");
    assert!(!res.join("calibration.csv").exists());
    let evals = std::fs::read_to_string(res.join("eval.csv")).unwrap();
    assert!(evals.contains("\ndpo,beta=0.5,0,"), "the grid as written");
    let paired = std::fs::read_to_string(res.join("paired.csv")).unwrap();
    assert!(paired.contains(",kl_budget,0.03,"), "the budgets are the report's:\n{paired}");
    // Top-ups need a calibration.
    let o = run(
        file,
        &out.join("bad"),
        &["sweep.budgets=[0.01]", "sweep.calibrate=false", "sweep.top_up_rounds=1"],
    );
    assert_clean_failure(&o, &["sweep.top_up_rounds", "calibrate is false"]);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn eval_checkpoints_give_every_run_as_many_evaluations() {
    let out = tmp("checkpoints");
    let file = Path::new("scenarios/sentiment.toml");
    // DPO's 6 steps and PPO's 4 iterations, each at 2 evenly spaced points after step 0.
    let set = ["eval.checkpoints=2", "ppo.iterations=4", "ppo_gt.iterations=4"];
    let o = run(file, &out, &set);
    assert!(o.status.success(), "{}", text(&o));
    let evals =
        alignlab::experiment::Metrics::read(&out.join("results/sentiment/eval.csv")).unwrap();
    let steps = |m: &str| {
        let mut s: Vec<usize> = evals
            .rows
            .iter()
            .filter(|r| r.method == m && r.metric == "eval/gold")
            .map(|r| r.step)
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    assert_eq!(steps("dpo"), [0, 3, 6]);
    assert_eq!(steps("ppo"), [0, 2, 4]);
    assert_eq!(steps("ppo_gt"), [0, 2, 4]);
    // A length it does not divide is refused before any work, naming the method.
    let o = run(file, &out.join("bad"), &["eval.checkpoints=4"]);
    assert_clean_failure(&o, &["eval.checkpoints", "does not divide", "dpo"]);
    assert!(!out.join("bad/runs").exists());
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn curve_temperatures_evaluate_every_step() {
    let out = tmp("curves");
    let file = Path::new("scenarios/dialogue.toml");
    let o = run(
        file,
        &out,
        &["eval.curve_temperatures=[0.5]", "eval.temperatures=[0.5, 1.0]", "sweep.dpo.beta=[0.5]"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let evals = std::fs::read_to_string(out.join("results/dialogue/eval.csv")).unwrap();
    for step in [0, 3, 6] {
        let n = evals
            .lines()
            .filter(|l| l.starts_with(&format!("dpo,beta=0.5,0,{step},eval_t0.5/winrate,")))
            .count();
        assert_eq!(n, 1, "step {step}: {n} rows of eval_t0.5/winrate");
    }
    // T = 1 is a final temperature only: the last step alone.
    assert!(
        evals.contains("dpo,beta=0.5,0,6,eval_t1/winrate,")
            && !evals.contains("dpo,beta=0.5,0,3,eval_t1/")
    );
    let win = std::fs::read_to_string(out.join("results/dialogue/winrate.csv")).unwrap();
    assert!(
        win.lines().any(|l| l.starts_with("dpo,beta=0.5 T=0.5,step,3,")),
        "no T = 0.5 curve:\n{win}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn compute_is_counted_by_hand() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("compute");
    let o = run(file, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let res = out.join("results/sentiment");
    let evals = alignlab::experiment::Metrics::read(&res.join("eval.csv")).unwrap();
    let get = |m: &str, s: &str, step: usize, k: &str| {
        evals
            .rows
            .iter()
            .find(|r| {
                r.method == m
                    && r.setting == s
                    && r.step == step
                    && r.metric == format!("compute/{k}")
            })
            .unwrap_or_else(|| panic!("no compute/{k} for {m} {s} at {step}"))
            .value
    };
    // The preference data: 4 completions for each of 20 prompts, each scored by gold.
    for step in [0, 3, 6] {
        assert_eq!(get("dpo", "beta=0.1", step, "samples"), 80.0);
        assert_eq!(get("dpo", "beta=0.1", step, "gold_queries"), 80.0);
        assert_eq!(get("dpo", "beta=0.1", step, "rm_queries"), 0.0);
        // DPO: one optimiser step per step, nothing before.
        assert_eq!(get("dpo", "beta=0.1", step, "grad_steps"), step as f64);
    }
    // PPO: 64 rollouts per iteration, each scored by the reward model; 4 epochs of 2 minibatches,
    // each stepping the policy and the critic: 16 optimiser steps; on top of the reward model's.
    for step in [1, 2] {
        let d =
            |k: &str| get("ppo", "target_kl=1", step, k) - get("ppo", "target_kl=1", step - 1, k);
        assert_eq!(
            (d("samples"), d("rm_queries"), d("gold_queries"), d("grad_steps")),
            (64.0, 64.0, 0.0, 16.0),
            "PPO iteration {step}"
        );
        let d = |k: &str| {
            get("ppo_gt", "target_kl=3", step, k) - get("ppo_gt", "target_kl=3", step - 1, k)
        };
        assert_eq!(
            (d("samples"), d("rm_queries"), d("gold_queries")),
            (64.0, 0.0, 64.0),
            "PPO-GT iteration {step}"
        );
    }
    assert!(
        get("ppo", "target_kl=1", 0, "grad_steps") > 0.0,
        "PPO stands on the reward model's training"
    );
    assert!(get("ppo", "target_kl=1", 2, "gflop") > get("ppo", "target_kl=1", 1, "gflop"));
    // Best-of-N at N: N samples and reward-model queries for each of the 16 evaluation prompts.
    let bon = |n: usize, k: &str| get("best_of_n", &format!("n={n}"), 0, k);
    assert_eq!((bon(1, "samples"), bon(4, "samples")), (80.0 + 16.0, 80.0 + 64.0));
    assert_eq!((bon(1, "rm_queries"), bon(4, "rm_queries")), (16.0, 64.0));
    // The report's compute tables, and the totals in the summary.
    assert!(res.join("compute.csv").exists());
    let md = std::fs::read_to_string(res.join("report.md")).unwrap();
    assert!(
        md.contains("## Gold reward at equal compute") && md.contains("## Compute per run"),
        "{md}"
    );
    let summary = std::fs::read_to_string(res.join("summary.csv")).unwrap();
    assert!(summary.lines().any(|l| l.starts_with("compute,dpo,\"per run (2 runs)")), "{summary}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn calibrated_grids_run_on_the_pilot_seed_and_replace_the_grids() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("calibrate");
    let extra = [
        "sweep.budgets=[0.01, 0.03]",
        "sweep.calibration_rounds=1",
        "tune.seeds=[2000]",
        "tune.budget=0.01",
        "tune.dpo.lr=[1e-4, 1e-3]",
        "tune.ppo.lr=[1e-5, 1e-4]",
        "sweep.top_up_rounds=1",
    ];
    let o = run(file, &out, &extra);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("calibration round 1") && text(&o).contains("tuning configuration 2/2"),
        "{}",
        text(&o)
    );
    let res = out.join("results/sentiment");
    let cal: Vec<alignlab::experiment::calibrate::CalibrationRecord> =
        alignlab::log::read_csv(&res.join("calibration.csv")).unwrap();
    // Every table with a knob, and Best-of-N, gets a setting per budget.
    for t in ["dpo", "unlikelihood", "ppo", "ppo_gt", "best_of_n"] {
        assert_eq!(cal.iter().filter(|r| r.table == t).count(), 2, "{t}: {cal:?}");
    }
    // The sweep ran exactly the calibrated settings, and nothing of the pilot seed is reported.
    let evals = alignlab::experiment::Metrics::read(&res.join("eval.csv")).unwrap();
    let dpo: Vec<String> = alignlab::report::distinct(
        evals.rows.iter().filter(|r| r.method == "dpo").map(|r| r.setting.clone()),
    );
    // ... and the top-ups: one round, so exactly the (table, budget) whose calibrated run missed
    // on seed 0 by more than 25%, among the budgets the pilot reached.
    let tops = alignlab::report::calibration::seed_runs(&res).unwrap();
    let mut want: Vec<String> = alignlab::report::distinct(
        cal.iter()
            .filter(|r| r.table == "dpo")
            .map(|r| format!("beta={}", r.value))
            .chain(tops.iter().filter(|t| t.table == "dpo").map(|t| format!("beta={}", t.value))),
    );
    let mut got = dpo.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for r in cal.iter().filter(|r| r.table != "best_of_n") {
        let kl = alignlab::report::calibration::landed(&evals, &r.table, &r.key, r.value)[0].1;
        let missed = r.within_tolerance && (kl - r.budget).abs() > 0.25 * r.budget;
        let topped = tops.iter().any(|t| t.seed == 0 && t.table == r.table && t.budget == r.budget);
        assert_eq!(
            missed, topped,
            "{} at budget {}: landed {kl}, top-ups {tops:?}",
            r.table, r.budget
        );
    }
    assert!(evals.rows.iter().all(|r| r.seed == 0), "a pilot-seed or tuning-seed row was reported");
    // Three seeds trained an SFT: the reported one, the pilot (1000) and the tuning seed (2000).
    assert_eq!(
        run_dirs(&out, "sentiment", "sft-").len(),
        3,
        "the calibration or the tuning did not run on a seed of its own"
    );
    // Tuning: two configurations per method on the tuning seed, one picked each, and the
    // picked learning rate is the one the sweep ran.
    let tuning: Vec<alignlab::experiment::tune::TuningRecord> =
        alignlab::log::read_csv(&res.join("tuning.csv")).unwrap();
    assert_eq!(tuning.len(), 4);
    assert_eq!(tuning.iter().filter(|r| r.picked).count(), 2);
    let resolved = std::fs::read_to_string(res.join("scenario.resolved.toml")).unwrap();
    let dpo_pick = tuning.iter().find(|r| r.picked && r.method == "dpo").unwrap();
    let dpo_lr = dpo_pick.config.strip_prefix("lr=").unwrap().parse::<f64>().unwrap();
    assert!(
        resolved.contains("[dpo]")
            && resolved
                .split("[dpo]")
                .nth(1)
                .unwrap()
                .split("\n[")
                .next()
                .unwrap()
                .contains(&format!("lr = {dpo_lr:?}")),
        "{resolved}"
    );
    // What the protocol cost, counted again here from the run folders of each seed: every
    // method run's work at its last evaluation (the tuning seed's, the pilot seed's, the sweep's).
    let summary: Vec<alignlab::experiment::SummaryRecord> =
        alignlab::log::read_csv(&res.join("summary.csv")).unwrap();
    let line = |m: &str| {
        summary
            .iter()
            .find(|r| r.stage == "protocol" && r.metric == m)
            .unwrap_or_else(|| panic!("no protocol,{m} in summary.csv"))
            .value
            .clone()
    };
    for (m, seed) in [("tuning", 2000u64), ("calibration", 1000), ("sweep", 0)] {
        let mut runs = 0;
        let mut gflop = 0.0;
        for d in run_dirs(&out, "sentiment", "") {
            let Ok(e) = alignlab::experiment::Metrics::read(&d.join("eval.csv")) else {
                continue;
            };
            let last = e
                .rows
                .iter()
                .filter(|r| {
                    r.seed == seed && r.method != "best_of_n" && r.metric == "compute/gflop"
                })
                .max_by_key(|r| r.step);
            if let Some(r) = last {
                runs += 1;
                gflop += r.value;
            }
        }
        if m == "sweep" {
            // Best-of-N: its largest N, the candidates drawn once.
            let bon = evals
                .rows
                .iter()
                .filter(|r| r.method == "best_of_n" && r.metric == "compute/gflop")
                .map(|r| r.value)
                .fold(0.0, f64::max);
            runs += 1;
            gflop += bon;
        }
        let want = format!("{runs} runs: {:.3} TFLOP", gflop / 1e3);
        assert!(runs > 1 && line(m).contains(&want), "protocol,{m}: {} (counted {want})", line(m));
    }
    // The ledger, summed again from the run folders' timing.csv: every run the protocol stands
    // on (tuning, pilot, sweep, top-ups) kept its own wall time, and each is counted once.
    // The shared stages (SFT, preference data, reward model, reference log-probs) keep theirs
    // too, in a ledger of their own over every seed (tuning, pilot, reported).
    let shared_stage = |d: &Path| {
        ["sft-", "prefs-", "reward-", "reference-"]
            .iter()
            .any(|p| d.file_name().unwrap().to_string_lossy().starts_with(p))
    };
    let (mut secs, mut n, mut shared_secs, mut shared_n) = (0.0, 0, 0.0, 0);
    for d in run_dirs(&out, "sentiment", "") {
        let Ok(t) = alignlab::experiment::Metrics::read(&d.join("timing.csv")) else {
            continue;
        };
        for r in t.rows.iter().filter(|r| r.metric.ends_with("/time/run_s")) {
            if shared_stage(&d) {
                shared_secs += r.value;
                shared_n += 1;
            } else {
                secs += r.value;
                n += 1;
            }
        }
    }
    let (s, timed, runs) = alignlab::experiment::RunsWork::parse_wall(&line("ledger")).unwrap();
    assert!(
        n > 10 && (timed, runs) == (n, n) && (s - secs).abs() < 0.051,
        "protocol,ledger: {} (counted {secs} s over {n} runs)",
        line("ledger")
    );
    let (s, timed, stages) =
        alignlab::experiment::RunsWork::parse_wall(&line("shared ledger")).unwrap();
    assert!(
        shared_n >= 12
            && (timed, stages) == (shared_n, shared_n)
            && (s - shared_secs).abs() < 0.051,
        "protocol,shared ledger: {} (counted {shared_secs} s over {shared_n} stages)",
        line("shared ledger")
    );
    assert!(line("total").starts_with(&format!("{n} runs:")), "{}", line("total"));
    assert!(
        line("tuning").starts_with("2 configurations on tuning seed(s) [2000]"),
        "{}",
        line("tuning")
    );
    assert!(
        line("calibration rule").starts_with("2: settled within 0.1 of a budget"),
        "{}",
        line("calibration rule")
    );
    // What this invocation ran, per stage: everything, nothing cached; the sweep one cell per
    // (setting, seed) and one for Best-of-N.
    let invocation = |summary: &[alignlab::experiment::SummaryRecord]| -> Vec<(String, alignlab::experiment::RunsDone)> {
        summary.iter().filter(|r| r.stage == "invocation" && r.metric != "wall time").map(|r| (r.metric.clone(), alignlab::experiment::RunsDone::parse(&r.value).unwrap())).collect()
    };
    // The invocation's wall time takes in the tuning and the calibration: more than the sweep's.
    let wall = |stage: &str| {
        summary
            .iter()
            .find(|r| r.stage == stage && r.metric == "wall time")
            .and_then(|r| r.value.strip_suffix(" s")?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {stage},wall time"))
    };
    assert!(
        wall("invocation") > wall("run"),
        "invocation {} s, sweep {} s",
        wall("invocation"),
        wall("run")
    );
    let first = invocation(&summary);
    assert_eq!(
        first.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        ["sweep runs", "top-up runs", "tuning runs", "calibration runs"]
    );
    assert!(
        first.iter().all(|(s, d)| (d.ran > 0 || s == "top-up runs") && d.cached == 0),
        "{first:?}"
    );
    assert_eq!(first[1].1.ran, tops.len(), "{first:?}");
    let cells =
        alignlab::report::distinct(evals.rows.iter().filter(|r| r.method != "sft").map(|r| {
            (
                r.method.clone(),
                if r.method == "best_of_n" { String::new() } else { r.setting.clone() },
            )
        }))
        .len();
    assert_eq!(first[0].1.ran + first[1].1.ran, cells, "{first:?}");
    // The pilot runs are cached: a second run calibrates from them and trains nothing new, and
    // says so stage by stage.
    let before = run_dirs(&out, "sentiment", "dpo-").len();
    let o = run(file, &out, &extra);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run_dirs(&out, "sentiment", "dpo-").len(), before);
    let again = invocation(&alignlab::log::read_csv(&res.join("summary.csv")).unwrap());
    assert_eq!(
        again,
        first
            .iter()
            .map(|(s, d)| (s.clone(), alignlab::experiment::RunsDone { ran: 0, cached: d.ran }))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(res.join("calibration.csv")).unwrap(),
        alignlab::log::csv_text(&cal).into_bytes()
    );
    let md = std::fs::read_to_string(res.join("report.md")).unwrap();
    assert!(
        md.contains("## Calibrated grids")
            && md.contains("## Equal tuning")
            && md.contains("## Robustness to hyperparameters"),
        "{md}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_run_keeps_its_best_checkpoint_by_the_keep_rule() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("keep");
    let o = run(
        file,
        &out,
        &["train.keep=\"val_accuracy\"", "eval.every=2", "eval.temperatures=[0.5]"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let evals =
        alignlab::experiment::Metrics::read(&out.join("results/sentiment/eval.csv")).unwrap();
    for (m, s) in [("dpo", "beta=0.1"), ("dpo", "beta=1"), ("unlikelihood", "alpha=1")] {
        let acc: Vec<(usize, f64)> = evals
            .rows
            .iter()
            .filter(|r| r.method == m && r.setting == s && r.metric == "eval/implicit_acc")
            .map(|r| (r.step, r.value))
            .collect();
        // The earliest step of the best held-out implicit accuracy, step 0 (pi_SFT) included.
        let best = acc.iter().fold(acc[0], |b, x| if x.1 > b.1 { *x } else { b });
        let kept: Vec<usize> = evals
            .rows
            .iter()
            .filter(|r| r.method == m && r.setting == s && r.metric == "eval/kept")
            .map(|r| r.step)
            .collect();
        assert_eq!(kept, vec![best.0], "{m} {s}: {acc:?}");
        // The final-only evaluation is the kept checkpoint's.
        assert!(
            evals.rows.iter().any(|r| r.method == m
                && r.setting == s
                && r.step == best.0
                && r.metric == "eval_t0.5/gold"),
            "{m} {s}"
        );
    }
    // PPO has no [train]: it keeps its last checkpoint.
    assert!(!evals.rows.iter().any(|r| r.method == "ppo" && r.metric == "eval/kept"));
    assert!(
        run_dirs(&out, "sentiment", "dpo-").iter().all(|d| !d.join("best").exists()),
        "the best-so-far copy is left behind"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn precision_is_a_setting_and_a_flag_and_bf16_runs_end_to_end() {
    // A precision that is not one of the two: one line naming the key and the choices.
    let o =
        bin().args(["check", "scenarios/sentiment.toml", "--precision", "fp16"]).output().unwrap();
    assert_clean_failure(&o, &["model.precision", "fp16", "fp32", "bf16", "fix:"]);
    let o = bin()
        .args(["check", "scenarios/sentiment.toml", "--set", "model.precision=\"half\""])
        .output()
        .unwrap();
    assert_clean_failure(&o, &["model.precision", "fp32", "bf16"]);
    // The flag is the setting.
    let o = bin().args(["check", "scenarios/sentiment.toml", "--precision", "bf16"]).output();
    let t = text(&o.unwrap());
    if alignlab::model::gpt::cpu_bf16_units().is_none() {
        assert!(t.contains("emulated"), "{t}");
        return; // a CPU without bf16 units refuses bf16 unless asked; nothing more to run here
    }
    assert!(t.contains("precision = \"bf16\""), "{t}");
    // A tiny bf16 run: every stage runs, and the summary says what ran on which units.
    let out = tmp("bf16");
    let o = run(Path::new("scenarios/sentiment.toml"), &out, &["model.precision=\"bf16\""]);
    assert!(o.status.success(), "{}", text(&o));
    let summary =
        std::fs::read_to_string(out.join("results/sentiment/summary.csv")).unwrap_or_default();
    assert!(summary.contains("run,precision,bf16 on the CPU's"), "{summary}");
    // Its run folders are not fp32's: the precision is part of every stage's key.
    let o32 = run(Path::new("scenarios/sentiment.toml"), &out, &[]);
    assert!(o32.status.success(), "{}", text(&o32));
    assert_eq!(run_dirs(&out, "sentiment", "sft-").len(), 2, "fp32 reused bf16's SFT folder");
    std::fs::remove_dir_all(&out).ok();
}

/// Every argument and option of every subcommand says what it is in `-h`, every subcommand
/// shows an example, and `bench -h` and docs/benchmarks.md name every benchmark.
#[test]
fn every_argument_has_help() {
    let top = text(&bin().arg("-h").output().unwrap());
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{top}");
    for c in &commands {
        let help = text(&bin().args([c.as_str(), "-h"]).output().unwrap());
        assert!(help.contains("Example:\n  alignlab "), "`alignlab {c} -h` shows no example");
        if c == "bench" {
            let docs = std::fs::read_to_string("docs/benchmarks.md").unwrap().to_lowercase();
            let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            for m in alignlab::bench::MEASURES {
                assert!(flat(&help).contains(&m.to_lowercase()), "bench -h lacks {m}");
                assert!(flat(&docs).contains(&m.to_lowercase()), "benchmarks.md lacks {m}");
            }
        }
        let mut in_args = false;
        for l in help.lines() {
            if l.starts_with("Arguments:") || l.starts_with("Options:") {
                in_args = true;
                continue;
            }
            if l.starts_with("Example:") {
                break;
            }
            if in_args && l.starts_with("  ") && !l.starts_with("   ") {
                // `  --name <V>  What it is`: the spec, two spaces, a description.
                let spec_end = l.trim_start().find("  ").map(|i| i + 2);
                let described = spec_end.is_some_and(|i| !l[i..].trim().is_empty());
                assert!(described, "`alignlab {c}`: `{}` has no help", l.trim());
            }
        }
    }
}

/// `alignlab tabular` writes the world it used: pi* recomputed from its rewards and pi_ref's
/// probabilities equals its pi* columns, and pi_ref's mean TV to that pi* equals the traced
/// `pi_ref` series of tabular.csv.
#[test]
fn tabular_writes_its_world() {
    use alignlab::experiment::tabular::{TabularRecord, WorldRecord};
    let out = tmp("tabular");
    let o = bin().arg("tabular").arg("--out").arg(&out).args(["--threads", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let world: Vec<WorldRecord> = alignlab::log::read_csv(&out.join("tabular_world.csv")).unwrap();
    let traced: Vec<TabularRecord> = alignlab::log::read_csv(&out.join("tabular.csv")).unwrap();
    let prompts = world.iter().map(|r| r.prompt).max().unwrap() + 1;
    assert!(prompts > 1 && world.len().is_multiple_of(prompts) && world.len() / prompts > 2);
    for (beta, column) in [(0.1, 0), (1.0, 1)] {
        let mut tv_sum = 0.0;
        for x in 0..prompts {
            let rows: Vec<&WorldRecord> = world.iter().filter(|r| r.prompt == x).collect();
            let given = |r: &WorldRecord| [r.pi_star_beta_0_1, r.pi_star_beta_1][column];
            let w: Vec<f64> = rows.iter().map(|r| r.ref_prob * (r.reward / beta).exp()).collect();
            let z: f64 = w.iter().sum();
            let ref_total: f64 = rows.iter().map(|r| r.ref_prob).sum();
            assert!((ref_total - 1.0).abs() < 1e-5, "pi_ref of prompt {x} sums to {ref_total}");
            for (r, wi) in rows.iter().zip(&w) {
                assert!((wi / z - given(r)).abs() < 1e-12, "pi* at beta {beta}: {r:?}");
            }
            tv_sum += rows.iter().map(|r| (r.ref_prob - given(r)).abs()).sum::<f64>() / 2.0;
        }
        let series = format!("pi_ref beta={beta}");
        let traced = traced.iter().find(|r| r.series == series).expect("the pi_ref series");
        assert!((tv_sum / prompts as f64 - traced.value).abs() < 1e-12, "{series}");
    }
    std::fs::remove_dir_all(&out).ok();
}

/// Two invocations of one scenario on one `runs/` at once: both finish, no stage or method run
/// is trained by both (each stage's progress ends in exactly one of them; the other waits on
/// its lock and reads it), and both write the results of a single run.
#[test]
fn two_invocations_on_one_runs_folder_train_each_cell_once() {
    let file = Path::new("scenarios/sentiment.toml");
    let (single, shared) = (tmp("lock-single"), tmp("lock-shared"));
    assert!(run(file, &single, &[]).status.success());
    let start = |results: &str| {
        let mut c = bin();
        c.arg("run").arg(file).args(["--threads", "1", "--device", "cpu", "--json-progress"]);
        c.arg("--results").arg(shared.join(results)).arg("--runs").arg(shared.join("runs"));
        for s in tiny_for(file) {
            c.arg("--set").arg(s);
        }
        c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (start("results-a"), start("results-b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a), text(&b));
    let mut trained = std::collections::BTreeMap::<String, usize>::new();
    for o in [&a, &b] {
        for line in String::from_utf8_lossy(&o.stderr).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["done"] == true && v.get("step").is_some() {
                *trained.entry(format!("{} seed {}", v["cell"], v["seed"])).or_default() += 1;
            }
        }
    }
    assert!(trained.len() >= 7, "{trained:?}");
    assert!(trained.values().all(|&n| n == 1), "trained twice: {trained:?}");
    let want = std::fs::read(single.join("results/sentiment/eval.csv")).unwrap();
    for r in ["results-a", "results-b"] {
        let got = std::fs::read(shared.join(r).join("sentiment/eval.csv")).unwrap();
        assert!(got == want, "{r}'s eval.csv differs from a single run's");
    }
    std::fs::remove_dir_all(&single).ok();
    std::fs::remove_dir_all(&shared).ok();
}

/// A finished stage that cannot be read (a truncated checkpoint, a garbled CSV) is moved aside
/// with a warning naming it and computed again, to the same results; `--on-corrupt refuse`
/// stops with one error line naming it instead.
#[test]
fn a_corrupt_cached_stage_is_moved_aside_and_recomputed() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("corrupt");
    assert!(run(file, &out, &[]).status.success());
    let want = std::fs::read(out.join("results/sentiment/eval.csv")).unwrap();
    let sft = run_dirs(&out, "sentiment", "sft-").pop().unwrap();
    let dpo = run_dirs(&out, "sentiment", "dpo-beta=0.1").pop().unwrap();
    let corrupt = || {
        let ckpt = sft.join("model.safetensors");
        let bytes = std::fs::read(&ckpt).unwrap();
        std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
        std::fs::write(dpo.join("eval.csv"), "method,setting\n\"unterminated\n").unwrap();
    };
    corrupt();
    let mut refuse = bin();
    refuse.arg("run").arg(file).args(["--threads", "1", "--on-corrupt", "refuse"]);
    refuse.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    for s in tiny_for(file) {
        refuse.arg("--set").arg(s);
    }
    let o = refuse.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "--on-corrupt refuse went on:\n{err}");
    let last = err.lines().rfind(|l| l.starts_with("error")).unwrap_or_default();
    assert!(last.contains(&sft.display().to_string()) && last.contains("fix:"), "{err}");
    let o = run(file, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    for dir in [&sft, &dpo] {
        let note = format!("warning: {} could not be read", dir.display());
        assert!(text(&o).contains(&note), "no warning for {}:\n{}", dir.display(), text(&o));
        let aside =
            dir.with_file_name(format!("{}.corrupt-1", dir.file_name().unwrap().to_string_lossy()));
        assert!(aside.is_dir(), "{} not kept aside", dir.display());
    }
    let got = std::fs::read(out.join("results/sentiment/eval.csv")).unwrap();
    assert!(got == want, "the recomputed stages give other results");
    std::fs::remove_dir_all(&out).ok();
}

/// `alignlab tensorboard`: one event file per method run of the folder, each record's CRCs
/// right, as many scalars as CSV rows, the same bytes when written again (`make
/// tensorboard-check` reads them back with TensorBoard itself).
#[test]
fn tensorboard_event_files_hold_every_row() {
    let file = Path::new("scenarios/sentiment.toml");
    let out = tmp("tensorboard");
    assert!(run(file, &out, &[]).status.success());
    let results = out.join("results/sentiment");
    let write = |to: &str| {
        let o = bin().arg("tensorboard").arg(&results).arg("--out").arg(out.join(to)).output();
        let o = o.unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let mut find = std::process::Command::new("find");
        find.arg(out.join(to)).args(["-type", "f"]);
        let mut files: Vec<String> = String::from_utf8(find.output().unwrap().stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        files.sort();
        files
    };
    let files = write("tb");
    let rows: Vec<alignlab::log::Row> = ["metrics.csv", "eval.csv"]
        .iter()
        .flat_map(|f| alignlab::log::Metrics::read(&results.join(f)).unwrap().rows)
        .collect();
    let runs: std::collections::BTreeSet<_> =
        rows.iter().map(|r| (r.method.clone(), r.setting.clone(), r.seed)).collect();
    assert_eq!(files.len(), runs.len(), "{files:?}");
    // Records: length, masked CRC-32C of it, data, masked CRC-32C of the data.
    let crc = |data: &[u8]| {
        let mut c = !0u32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
            }
        }
        (!c).rotate_right(15).wrapping_add(0xa282_ead8)
    };
    let mut events = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
            assert_eq!(word(at + 8), crc(&bytes[at..at + 8]), "{f}: length CRC");
            let data = &bytes[at + 12..at + 12 + len];
            assert_eq!(word(at + 12 + len), crc(data), "{f}: data CRC");
            at += len + 16;
            events += 1;
        }
    }
    // One file-version event per file, one scalar per row.
    assert_eq!(events, rows.len() + files.len());
    let again = write("tb2");
    for (a, b) in files.iter().zip(&again) {
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{a}");
    }
    std::fs::remove_dir_all(&out).ok();
}
