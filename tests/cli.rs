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
    "best_of_n.n=[1,4]",
];

fn run(file: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = bin();
    c.arg("run").arg(file).arg("--threads").arg("1").arg("--device").arg("cpu");
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    for s in TINY.iter().chain(extra) {
        c.arg("--set").arg(s);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn every_scenario_runs_tiny_and_writes_results() {
    for entry in std::fs::read_dir("scenarios").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let out = tmp(&format!("smoke-{}", path.file_stem().unwrap().to_string_lossy()));
        let o = run(&path, &out, &[]);
        assert!(o.status.success(), "{} failed:\n{}", path.display(), text(&o));
        let name = alignlab::scenario::Scenario::load(&path, &[]).unwrap().name;
        let res = out.join("results").join(&name);
        for f in ["scenario.resolved.toml", "metrics.csv", "summary.csv"] {
            assert!(res.join(f).exists(), "{} did not write {f}", path.display());
        }
        let metrics = std::fs::read_to_string(res.join("metrics.csv")).unwrap();
        assert!(metrics.contains("sft/nll/val"));
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
    // A second run in the same folder reuses the SFT checkpoint and gives the same metrics.
    let oc = run(file, &a, &[]);
    assert!(oc.status.success());
    assert!(text(&oc).contains("cached checkpoint"), "SFT was not reused:\n{}", text(&oc));
    assert_eq!(read(&a), read(&b));
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
    assert_clean_failure(&run(Path::new("scenarios/nope.toml"), &out, &[]), &["error:", "nope.toml", "fix:"]);
    assert_clean_failure(&run(Path::new("scenarios/sentiment.toml"), &out, &["sft.lr=-1"]), &["error:", "sft.lr", "fix:"]);
    // An unreadable checkpoint in the run folder: a clear error naming it.
    let o = run(Path::new("scenarios/sentiment.toml"), &out, &[]);
    assert!(o.status.success());
    let sft = std::fs::read_dir(out.join("runs/sentiment"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("sft-"))
        .expect("no sft run folder");
    let ckpt = sft.join("model.safetensors");
    std::fs::write(&ckpt, b"garbage").unwrap();
    assert_clean_failure(&run(Path::new("scenarios/sentiment.toml"), &out, &[]), &["cannot read checkpoint", "model.safetensors", "fix:"]);
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
    let o = bin().args(["check", "scenarios/sentiment.toml", "--set", "sft.steps=7"]).output().unwrap();
    assert!(o.status.success());
    let t = text(&o);
    assert!(t.contains("steps = 7") && t.contains("kind = \"sentiment\"") && t.contains("n_neutral = 24"), "{t}");
    let o = bin().args(["world", "scenarios/sentiment.toml", "--show", "3", "--set", "world.n_train=10"]).output().unwrap();
    assert!(o.status.success());
    let t = text(&o);
    assert_eq!(t.matches("gold ").count(), 6, "{t}");
    assert!(t.contains("true-process NLL"));
}

#[test]
fn bench_runs() {
    let o = bin().args(["bench", "--quick", "--threads", "1", "--device", "cpu"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("MFU") && t.contains("KV-cache speed-up"), "{t}");
}
