//! Budget-calibrated grids: the search's steps by hand, Best-of-N's analytic N, and the
//! scenario checks of `[sweep] budgets`.

use alignlab::experiment::calibrate::{
    best_of_n_for, best_of_n_kl, pick, propose, round3, setting_value, settles,
};
use alignlab::scenario::Override;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn a_bracketed_budget_is_interpolated_in_log_log() {
    // beta 0.1 lands at 4 nats, beta 1 at 1: KL 2 lies halfway in log KL, so halfway in log beta.
    let v = propose(&[(0.1, 4.0), (1.0, 1.0)], 2.0, -1.0);
    assert!(close(v, 0.1 * 10f64.sqrt()), "{v}");
    // The order the runs come in does not matter, nor a third run outside the bracket.
    assert!(close(propose(&[(5.0, 0.2), (1.0, 1.0), (0.1, 4.0)], 2.0, -1.0), v));
}

#[test]
fn an_unbracketed_budget_is_extrapolated_at_most_a_factor_four() {
    // KL proportional to the setting: budget 3 from runs at 1 and 2 is the setting 3.
    assert!(close(propose(&[(1.0, 1.0), (2.0, 2.0)], 3.0, 1.0), 3.0));
    // Budget 100 would be the setting 100: clamped to 4 x the nearest run (2).
    assert!(close(propose(&[(1.0, 1.0), (2.0, 2.0)], 100.0, 1.0), 8.0));
    // Decreasing KL (a beta): a smaller budget needs a larger beta, clamped likewise.
    assert!(close(propose(&[(0.1, 4.0), (1.0, 1.0)], 0.001, -1.0), 4.0));
    // One run: a factor 2 towards the budget in the knob's direction.
    assert!(close(propose(&[(1.0, 1.0)], 4.0, 1.0), 2.0));
    assert!(close(propose(&[(1.0, 1.0)], 4.0, -1.0), 0.5));
    assert!(close(propose(&[(1.0, 1.0)], 0.25, -1.0), 2.0));
}

#[test]
fn best_of_n_takes_the_n_nearest_each_budget() {
    // log N - (N-1)/N: N = 3 gives 0.432, 4 gives 0.636; nearest 0.5 in log KL is 3.
    assert!(close(best_of_n_kl(3), 3f64.ln() - 2.0 / 3.0));
    assert_eq!([0.5, 1.0, 2.0, 4.0].map(best_of_n_for), [3, 6, 19, 147]);
    // Past the largest N a grid may ask for (KL 4.55 at N = 256), the largest.
    assert_eq!([5.0, 8.0].map(best_of_n_for), [256, 256]);
}

#[test]
fn settings_are_rounded_to_three_digits() {
    assert_eq!(round3(0.0123456), 0.0123);
    assert_eq!(round3(123456.0), 123000.0);
    assert_eq!(round3(2.0), 2.0);
}

/// A run settles only the budget it is nearest, and only within the aim; each budget picks among
/// its own runs. Rule 1 let beta 0.014 at KL 2.00 serve both 2 and 2.5 (2.00 is within 25% of
/// 2.5), so the search never looked for 2.5.
#[test]
fn one_run_settles_one_budget_within_the_aim() {
    let budgets = [0.5, 1.0, 2.0, 2.5];
    assert!(settles(2.0, 2.0, &budgets, 0.1));
    assert!(!settles(2.0, 2.5, &budgets, 0.25), "2.00 is nearer 2 than 2.5");
    assert!(settles(2.4, 2.5, &budgets, 0.1));
    // 0.81 is within 25% of 1 but not within 10%.
    assert!(settles(0.81, 1.0, &budgets, 0.25) && !settles(0.81, 1.0, &budgets, 0.1));
    assert!(!settles(f64::NAN, 1.0, &budgets, 0.1) && !settles(0.0, 0.5, &budgets, 0.1));
    // 2.5 takes the run nearest it among those nearer it than 2; with none, the nearest of all.
    let runs = [(0.014, 2.0), (0.01, 3.2), (0.05, 1.0)];
    assert_eq!(
        pick(&runs, 2.5, &budgets),
        Some((0.01, 3.2)),
        "3.2 is farther from 2.5 than 2.0 is, but 2.0 is 2's"
    );
    assert_eq!(pick(&runs, 2.0, &budgets), Some((0.014, 2.0)));
    assert_eq!(pick(&runs[..1], 2.5, &budgets), Some((0.014, 2.0)));
    assert_eq!(pick(&[(0.1, f64::NAN)], 2.5, &budgets), None);
}

#[test]
fn budgets_are_checked_before_any_work() {
    let load = |sets: &[&str]| {
        alignlab::scenario::Scenario::load(
            std::path::Path::new("scenarios/sentiment.toml"),
            &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    let ok = load(&["sweep.budgets=[0.5, 1.0]"]).unwrap();
    assert_eq!(
        (ok.budgets.clone(), ok.pilot_seeds.clone(), ok.calibration_rounds, ok.calibration_aim),
        (vec![0.5, 1.0], vec![1000], 3, 0.1)
    );
    for bad in ["0.0", "0.3", "nan"] {
        let e = load(&["sweep.budgets=[1.0]", &format!("sweep.calibration_aim={bad}")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sweep.calibration_aim") && e.contains("fix"), "{e}");
    }
    let e = load(&["sweep.budgets=[1.0, 0.5]"]).unwrap_err().to_string();
    assert!(e.contains("sweep.budgets") && e.contains("increasing"), "{e}");
    let e = load(&["sweep.budgets=[1.0]", "sweep.seeds=[0, 7]", "sweep.pilot_seed=7"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("sweep.pilot_seed") && e.contains("reported seed"), "{e}");
    // Without budgets the resolved scenario does not mention them.
    assert!(!load(&[]).unwrap().resolved_toml.contains("budgets"));
}

#[test]
fn a_tuning_configuration_is_scored_on_its_selection_envelope_at_the_budget() {
    use alignlab::experiment::tune::score;
    // Envelope through (0, 0.5), (1, 0.7), (2, 0.8); (1.5, 0.6) lies under it.
    let pts = [(0.0, 0.5), (1.0, 0.7), (1.5, 0.6), (2.0, 0.8)];
    let (v, reached) = score(&pts, 1.5);
    assert!((v - 0.75).abs() < 1e-12 && reached, "{v}");
    // Runs that stay under the budget are read at their best, and say so.
    assert_eq!(score(&pts, 3.0), (0.8, false));
}

#[test]
fn tuning_is_checked_before_any_work() {
    let load = |sets: &[&str]| {
        alignlab::scenario::Scenario::load(
            std::path::Path::new("scenarios/sentiment.toml"),
            &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    let t = load(&[
        "tune.seeds=[2000]",
        "tune.budget=1.0",
        "tune.dpo.lr=[1e-4, 3e-4]",
        "tune.dpo.batch_size=[32, 64]",
        "tune.ppo.lr=[1e-5, 1e-4]",
        "tune.ppo.ppo_epochs=[2, 4]",
    ])
    .unwrap();
    let tune = t.tune.unwrap();
    // The product of a table's lists: 4 configurations each.
    assert_eq!(tune.tables.iter().map(|x| x.1.len()).collect::<Vec<_>>(), vec![4, 4]);
    let args = |c: &[Override]| c.iter().map(Override::to_arg).collect::<Vec<_>>();
    assert_eq!(args(&tune.tables[0].1[1]), ["dpo.batch_size=32", "dpo.lr=0.0003"]);
    let err = |sets: &[&str]| load(sets).unwrap_err().to_string();
    let e = err(&[
        "tune.seeds=[2000]",
        "tune.budget=1.0",
        "tune.dpo.lr=[1e-4, 3e-4]",
        "tune.ppo.lr=[1e-5]",
    ]);
    assert!(
        e.contains("different numbers of configurations")
            && e.contains("dpo 2")
            && e.contains("ppo 1"),
        "{e}"
    );
    // As many configurations, but one table varies one setting at 4 points and the other two
    // settings at 2: their spreads would not compare.
    let e = err(&[
        "tune.seeds=[2000]",
        "tune.budget=1.0",
        "tune.dpo.lr=[1e-4, 3e-4]",
        "tune.dpo.batch_size=[32, 64]",
        "tune.ppo.lr=[1e-5, 3e-5, 1e-4, 3e-4]",
    ]);
    assert!(e.contains("different numbers of settings") && e.contains("dpo 2 x 2, ppo 4"), "{e}");
    // A length is nested: the shorter run is the first part of the longer.
    let e = err(&["tune.seeds=[2000]", "tune.budget=1.0", "tune.dpo.steps=[100, 200]"]);
    assert!(e.contains("tune.dpo.steps") && e.contains("nests"), "{e}");
    let e = err(&["tune.seeds=[2000]", "tune.budget=1.0", "tune.dpo.beta=[0.1, 1.0]"]);
    assert!(e.contains("tune.dpo.beta") && e.contains("grid"), "{e}");
    let e = err(&["tune.seeds=[0]", "tune.budget=1.0", "tune.dpo.lr=[1e-4]"]);
    assert!(e.contains("tune.seeds") && e.contains("reported"), "{e}");
    let e = err(&["tune.seeds=[2000]", "tune.budget=1.0", "tune.rloo.lr=[1e-4]"]);
    assert!(e.contains("tune.rloo") && e.contains("not a trained method"), "{e}");
    // Configurations listed one by one count as the grid they span: the full 2 x 2 product
    // is DPO's shape; four settings varied in four configurations are not.
    let listed = "tune.ppo.configs=[{lr = 1e-4, ppo_epochs = 2}, {lr = 3e-4, ppo_epochs = 2}, {lr = 1e-4, ppo_epochs = 4}, {lr = 3e-4, ppo_epochs = 4}]";
    let t = load(&[
        "tune.seeds=[2000]",
        "tune.budget=1.0",
        "tune.dpo.lr=[1e-4, 3e-4]",
        "tune.dpo.batch_size=[32, 64]",
        listed,
    ])
    .unwrap();
    let ppo = &t.tune.unwrap().tables[1];
    assert_eq!(ppo.1.len(), 4);
    assert_eq!(args(&ppo.1[2]), ["ppo.lr=0.0001", "ppo.ppo_epochs=4"].to_vec());
    let e = err(&["tune.seeds=[2000]", "tune.budget=1.0", "tune.dpo.lr=[1e-4, 3e-4]", "tune.dpo.batch_size=[32, 64]", "tune.ppo.configs=[{lr = 1e-4, init_kl_coef = 0.1}, {lr = 3e-4, init_kl_coef = 0.1}, {lr = 1e-4, init_kl_coef = 0.3, horizon = 512}, {lr = 3e-4, init_kl_coef = 0.3, horizon = 128}]"]);
    assert!(e.contains("different numbers of settings"), "{e}");
    let e = err(&["tune.seeds=[2000]", "tune.budget=1.0", "tune.dpo.lr=[1e-4, 3e-4]", "tune.dpo.batch_size=[32, 64]", "tune.ppo.configs=[{lr = 1e-4, ppo_epochs = 2}, {lr = 3e-4, ppo_epochs = 4}, {lr = 1e-4, ppo_epochs = 4}, {lr = 1e-4, ppo_epochs = 4}]"]);
    assert!(
        e.contains("different numbers of settings")
            && e.contains("ppo 2 x 2, not each combination once"),
        "{e}"
    );
    let e = err(&["tune.seeds=[2000]", "tune.budget=1.0", "tune.ppo.configs=[{target_kl = 1.0}]"]);
    assert!(e.contains("tune.ppo.target_kl") && e.contains("grid"), "{e}");
    let e = err(&[
        "tune.seeds=[2000]",
        "tune.budget=1.0",
        "tune.ppo.configs=[{lr = 1e-4}]",
        "tune.ppo.ppo_epochs=[2]",
    ]);
    assert!(e.contains("tune.ppo.configs") && e.contains("alone"), "{e}");
    // An empty list of tuning seeds turns tuning off.
    assert!(load(&["tune.seeds=[]", "tune.budget=1.0", "tune.dpo.lr=[1e-4]"])
        .unwrap()
        .tune
        .is_none());
}

#[test]
fn the_spread_across_configurations_is_best_minus_worst_per_tuning_seed() {
    use alignlab::experiment::tune::TuningRecord;
    use alignlab::report::tuning::spreads;
    let r = |method: &str, config: &str, seed: u64, gold_sel: f64| TuningRecord {
        method: method.into(),
        config: config.into(),
        seed,
        gold_sel,
        budget: 1.0,
        reached: true,
        picked: false,
    };
    let records = vec![
        r("dpo", "a", 1, 0.7),
        r("dpo", "a", 2, 0.6),
        r("dpo", "b", 1, 0.9),
        r("dpo", "b", 2, 0.5),
        r("ppo", "a", 1, 0.2),
        r("ppo", "a", 2, 0.8),
        r("ppo", "b", 1, 0.9),
        r("ppo", "b", 2, 0.8),
    ];
    let s = spreads(&records);
    let get = |m: &str| {
        s.iter()
            .find(|x| x.0 == m)
            .unwrap()
            .1
            .iter()
            .map(|(sd, v)| (*sd, (v.unwrap() * 1e9).round() / 1e9))
            .collect::<Vec<_>>()
    };
    assert_eq!(get("dpo"), vec![(1, 0.2), (2, 0.1)]);
    assert_eq!(get("ppo"), vec![(1, 0.7), (2, 0.0)]);
    // DPO - PPO spreads per seed: -0.5 and +0.1; the report's sentence.
    let md = alignlab::report::tuning::markdown(&records);
    assert!(md.contains("DPO - ppo spread: -0.2000 ± "), "{md}");
    // One tuning seed has no interval: the table and the sentence say so instead of "± 0" or "± NaN".
    let one: Vec<TuningRecord> = records.iter().filter(|r| r.seed == 1).cloned().collect();
    let md = alignlab::report::tuning::markdown(&one);
    assert!(
        md.contains("| dpo | 1: 0.2000 | 0.2000 ± - (one seed) |")
            && md.contains("DPO - ppo spread: -0.5000 over 1 tuning seed: inconclusive"),
        "{md}"
    );
    assert!(!md.contains("NaN") && !md.contains("± 0.0000"), "{md}");
    // A method none of whose configurations reached the budget on a seed has no spread there
    // (its values are read below the budget: one that never moves would look perfectly
    // robust); paired on the seeds where both have one, and not compared where none is left.
    let below = |method: &str, config: &str, seed: u64, gold_sel: f64| TuningRecord {
        reached: false,
        ..r(method, config, seed, gold_sel)
    };
    let mut mixed = records.clone();
    mixed.extend([
        below("pft", "a", 1, 0.3),
        below("pft", "b", 1, 0.3),
        below("pft", "a", 2, 0.3),
        below("pft", "b", 2, 0.3),
    ]);
    mixed.extend([
        r("ul", "a", 1, 0.5),
        r("ul", "b", 1, 0.6),
        below("ul", "a", 2, 0.3),
        below("ul", "b", 2, 0.3),
    ]);
    let s = spreads(&mixed);
    assert_eq!(s.iter().find(|x| x.0 == "pft").unwrap().1, vec![(1, None), (2, None)]);
    let md = alignlab::report::tuning::markdown(&mixed);
    assert!(md.contains("| pft | 1: - (none reached KL 1), 2: - (none reached KL 1) | - (no configuration reached KL 1) |"), "{md}");
    assert!(md.contains("DPO - pft spread: not compared: no tuning seed on which a configuration of both reached KL 1."), "{md}");
    // ul: seed 1 only (spread 0.1 against DPO's 0.2).
    assert!(
        md.contains(
            "DPO - ul spread: 0.1000 over 1 tuning seed: inconclusive, one seed (no interval)."
        ),
        "{md}"
    );
}

#[test]
fn a_protocols_work_counts_each_run_once_at_its_last_evaluation() {
    use alignlab::experiment::{Metrics, RunsWork};
    let mut m = Metrics::default();
    let mut push = |method: &str,
                    setting: &str,
                    seed: u64,
                    step: usize,
                    gflop: f64,
                    steps: f64,
                    samples: f64| {
        for (k, v) in
            alignlab::profile::WORK.iter().zip([gflop, 0.0, 0.0, steps, samples, 0.0, 0.0])
        {
            m.push(method, setting, seed, step, &format!("compute/{k}"), v);
        }
    };
    // DPO at steps 0 and 200 (the last counts), on two seeds; Best-of-N's points are charged
    // N/N_max of their seed's candidates, so only the largest N counts.
    for seed in [0, 1] {
        for (step, g) in [(0, 1.0), (200, 10.0 + seed as f64)] {
            push("dpo", "beta=0.1", seed, step, g, step as f64, 0.0);
        }
        for (n, g) in [(1, 2.0), (4, 5.0)] {
            push("best_of_n", &format!("n={n}"), seed, 0, g, 0.0, 4.0 * n as f64);
        }
    }
    let mut w = RunsWork::default();
    w.add(&m);
    assert_eq!(w.runs, 4);
    assert_eq!((w.work[0], w.work[3], w.work[4]), (10.0 + 11.0 + 5.0 + 5.0, 400.0, 32.0));
    assert_eq!(
        w.line(),
        "4 runs: 0.031 TFLOP, 400 optimiser steps, 32 samples, 0 reward-model and 0 gold queries"
    );
}

/// The calibration of `sets` over sentiment.toml with a fake pilot that writes each run's
/// eval.csv without training: PPO's final KL is its target times `factor(seed)` (the other
/// tables land far off). Also returns the seeds the pilot ran.
fn fake_calibration(
    tag: &str,
    sets: &[&str],
    factor: fn(u64) -> f64,
) -> (alignlab::experiment::calibrate::Calibration, Vec<u64>) {
    use alignlab::experiment::{calibrate::calibrate, folders, Metrics, ProgressMode, RunOptions};
    use alignlab::scenario::Scenario;
    let root = std::env::temp_dir().join(format!("alignlab-pilots-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let opts = RunOptions {
        results_root: root.join("results"),
        runs_root: root.join("runs"),
        device: tch::Device::Cpu,
        progress: ProgressMode::Quiet,
        jobs: 1,
        threads: 1,
        cell_args: vec![],
    };
    let load = |extra: &[Override]| {
        let mut all: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        all.extend(extra.iter().map(Override::to_arg));
        Scenario::load(std::path::Path::new("scenarios/sentiment.toml"), &all)
            .map_err(anyhow::Error::from)
    };
    let sc = load(&[]).unwrap();
    let seen = std::cell::RefCell::new(Vec::new());
    let run_pilot = |pilot: &Scenario, tables: &[String], _: &[Override]| -> anyhow::Result<()> {
        for m in pilot.methods.iter().filter(|m| tables.contains(&m.name())) {
            for &seed in &pilot.seeds {
                let kl = match setting_value(&m.setting(), "target_kl") {
                    Some(v) if m.name() == "ppo" => v * factor(seed),
                    _ => 40.0,
                };
                let mut e = Metrics::default();
                e.push(&m.name(), &m.setting(), seed, 40, "eval/kl_sel", kl);
                e.push(&m.name(), &m.setting(), seed, 40, "eval/kl", 2.0 * kl);
                let dir = folders::method_dir(&pilot.with_seed(seed), m, &opts);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("eval.csv"), e.to_csv())?;
                seen.borrow_mut().push(seed);
            }
        }
        Ok(())
    };
    let cal = calibrate(&sc, &opts, &load, &run_pilot).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    (cal, seen.into_inner())
}

/// With two pilot seeds a setting lands at the mean of its final KLs over them, and the grid is
/// chosen from that mean: PPO lands at its target times 1.0 on seed 1000 and 0.6 on seed 1001,
/// so target 1 lands at 0.8 (one seed would read 1.0 or 0.6). 0.8 is within a 25% aim of
/// budget 1 and kept; the default 10% aim goes on to the interpolated target 1.25 (from
/// targets 1 and 3 landing at 0.8 and 2.4), which lands at 1.0.
#[test]
fn several_pilot_seeds_land_at_their_mean_kl() {
    use alignlab::scenario::Scenario;
    let base =
        ["sweep.budgets=[1.0]", "sweep.pilot_seeds=[1000, 1001]", "ppo.target_kl=[1.0, 3.0]"];
    let factor = |seed: u64| if seed == 1000 { 1.0 } else { 0.6 };
    let (cal, seen) =
        fake_calibration("wide", &[&base[..], &["sweep.calibration_aim=0.25"]].concat(), factor);
    let ppo = cal.records.iter().find(|r| r.table == "ppo").unwrap();
    assert_eq!((ppo.value, ppo.within_tolerance), (1.0, true));
    assert!(
        close(ppo.pilot_kl, 0.8),
        "PPO's target 1 lands at {} (the mean of 1.0 and 0.6 is 0.8)",
        ppo.pilot_kl
    );
    assert!(seen.contains(&1000) && seen.contains(&1001));
    let (cal, _) = fake_calibration("aim", &base, factor);
    let ppo = cal.records.iter().find(|r| r.table == "ppo").unwrap();
    assert_eq!(ppo.value, 1.25);
    assert!(close(ppo.pilot_kl, 1.0), "{}", ppo.pilot_kl);
    assert!(
        cal.overrides.iter().any(|o| o.to_arg() == "ppo.target_kl=[1.25]"),
        "{:?}",
        cal.overrides
    );
    // One list or one seed, not both; a pilot seed that is reported is refused.
    let e = Scenario::load(
        std::path::Path::new("scenarios/sentiment.toml"),
        &[
            "sweep.budgets=[1.0]".into(),
            "sweep.pilot_seed=5".into(),
            "sweep.pilot_seeds=[6]".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sweep.pilot_seeds") && e.contains("pilot_seed"), "{e}");
    let e = Scenario::load(
        std::path::Path::new("scenarios/sentiment.toml"),
        &[
            "sweep.budgets=[1.0]".into(),
            "sweep.seeds=[0, 7]".into(),
            "sweep.pilot_seeds=[1000, 7]".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sweep.pilot_seeds") && e.contains("reported seed"), "{e}");
    // The error names the key the file wrote, even when the list is the default's one seed.
    let e = Scenario::load(
        std::path::Path::new("scenarios/sentiment.toml"),
        &[
            "sweep.budgets=[1.0]".into(),
            "sweep.seeds=[1000]".into(),
            "sweep.pilot_seeds=[1000]".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sweep.pilot_seeds") && e.contains("reported seed"), "{e}");
    let e = Scenario::load(
        std::path::Path::new("scenarios/sentiment.toml"),
        &["sweep.budgets=[1.0]".into(), "sweep.pilot_seeds=[1000, 1000]".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sweep.pilot_seeds") && e.contains("distinct"), "{e}");
}

/// One run serves one budget: PPO landing exactly at its target, grid {2, 4}, budgets 2 and 2.5.
/// Target 2 settles 2 but not 2.5 although 2.00 is within 25% of it; the search interpolates
/// target 2.5 between 2 and 4, and the grid becomes {2, 2.5}. Rule 1 stopped at {2}.
#[test]
fn a_run_within_reach_of_two_budgets_settles_one() {
    let (cal, _) =
        fake_calibration("two", &["sweep.budgets=[2.0, 2.5]", "ppo.target_kl=[2.0, 4.0]"], |_| 1.0);
    assert!(
        cal.overrides.iter().any(|o| o.to_arg() == "ppo.target_kl=[2.0, 2.5]"),
        "{:?}",
        cal.overrides
    );
    let ppo: Vec<_> =
        cal.records.iter().filter(|r| r.table == "ppo").map(|r| (r.budget, r.value)).collect();
    assert_eq!(ppo, vec![(2.0, 2.0), (2.5, 2.5)]);
}

/// The landed-KL table counts, per (budget, seed), whether the calibrated run's final KL is
/// within 25% of the budget, over every budget and over those the pilot reached: PPO at budget
/// 1 lands 0.8 (in) and 0.7 (out); PPO-GT at budget 5, which its pilot missed, 3.0 (out) and
/// 4.0 (in: 3.75 is 25% short).
#[test]
fn the_landed_kl_table_counts_runs_within_the_tolerance() {
    use alignlab::experiment::{calibrate::CalibrationRecord, Metrics};
    let rec = |table: &str, budget: f64, value: f64, pilot_kl: f64, within_tolerance: bool| {
        CalibrationRecord {
            table: table.into(),
            key: "target_kl".into(),
            budget,
            value,
            pilot_kl,
            within_tolerance,
            pilot_runs: 3,
        }
    };
    let mut e = Metrics::default();
    for (m, v, seed, kl) in [
        ("ppo", 1.0, 0, 0.8),
        ("ppo", 1.0, 1, 0.7),
        ("ppo_gt", 6.0, 0, 3.0),
        ("ppo_gt", 6.0, 1, 4.0),
    ] {
        e.push(m, &format!("target_kl={v}"), seed, 10, "eval/kl", 9.0);
        e.push(m, &format!("target_kl={v}"), seed, 60, "eval/kl", kl);
    }
    let md = alignlab::report::calibration::markdown(
        &[rec("ppo", 1.0, 1.0, 0.9, true), rec("ppo_gt", 5.0, 6.0, 3.6, false)],
        &e,
        &[],
    );
    assert!(md.contains("| ppo | target_kl | 1 | 1 | 0.900 | 0: 0.800, 1: 0.700 | 1/2 |"), "{md}");
    assert!(
        md.contains(
            "| ppo_gt | target_kl | 5 | 6 | 3.600 (not reached) | 0: 3.000, 1: 4.000 | 1/2 |"
        ),
        "{md}"
    );
    assert!(md.contains("Landed within 25%: 2 of 4 (budget, seed) runs; 1 of 2 on the budgets the pilot reached."), "{md}");
}

/// A top-up is proposed only where the calibrated run and the seed's top-ups so far all missed
/// the budget by more than 25%, from the seed's own runs (in log-log, as the pilot's search).
#[test]
fn a_top_up_is_proposed_only_for_a_miss_from_the_seeds_own_runs() {
    use alignlab::experiment::calibrate::top_up_value;
    let runs = [(1.0, 1.5), (2.0, 3.0)];
    // Landed 1.2 for budget 1: within 25%, nothing to add.
    assert_eq!(top_up_value(1.2, &[], &runs, 1.0, 1.0), None);
    // Landed 1.5: a miss. KL proportional to the target on this seed, so budget 1 wants 2/3.
    assert_eq!(top_up_value(1.5, &[], &runs, 1.0, 1.0), Some(0.667));
    // A top-up that landed within 25% ends it; one that missed does not.
    assert_eq!(top_up_value(1.5, &[0.9], &[(1.0, 1.5), (2.0, 3.0), (0.667, 0.9)], 1.0, 1.0), None);
    // 0.667 at 0.7 and 1 at 1.5 bracket budget 1: ln 0.667 + ln(1/0.7) x ln(1/0.667) / ln(1.5/0.7)
    // = -0.405 + 0.357 x 0.405 / 0.762 = -0.2155, the target 0.806.
    assert_eq!(
        top_up_value(1.5, &[0.7], &[(1.0, 1.5), (2.0, 3.0), (0.667, 0.7)], 1.0, 1.0),
        Some(0.806)
    );
    // A diverged run (alpha 0.8 at 8.9 nats for budget 4) is bracketed by the seed's alpha 0.4
    // at 2 nats: ln 4 lies at (ln 4 - ln 2) / (ln 8.9 - ln 2) of the way from ln 0.4 to ln 0.8.
    let f = (4f64.ln() - 2f64.ln()) / (8.9f64.ln() - 2f64.ln());
    let want = round3((0.4f64.ln() + f * (0.8f64.ln() - 0.4f64.ln())).exp());
    assert_eq!(top_up_value(8.9, &[], &[(0.4, 2.0), (0.8, 8.9)], 4.0, 1.0), Some(want));
    assert_eq!(want, 0.552); // ln 2 / ln 4.45 = 0.464 of the way: exp(-0.916 + 0.464 x 0.693)
                             // KL not monotone on this seed: target 2 lands 1.78, target 2.66 lands 1.59 (saturated), so
                             // extrapolating to budget 2.5 along them points down (0.85 and lower). The proposal must move
                             // from the run nearest the budget (target 2 at 1.78) towards more KL: a factor 2, target 4.
    let sat = [(1.0, 0.9), (2.0, 1.78), (2.66, 1.59)];
    assert!(propose(&sat, 2.5, 1.0) < 2.0, "{}", propose(&sat, 2.5, 1.0));
    assert_eq!(top_up_value(1.59, &[], &sat, 2.5, 1.0), Some(4.0));
    // The same for a beta (KL falls with it): beta 0.34 at 4.25 and 0.3 at 3.74 point to a larger
    // beta for budget 5; it must be smaller than 0.34, by a factor 2.
    assert_eq!(
        top_up_value(3.74, &[], &[(0.3, 3.74), (0.34, 4.25), (0.53, 2.06)], 5.0, -1.0),
        Some(0.17)
    );
    // KL flat and not monotone in beta on this seed (dialogue DPO, seed 1, budget 5): beta 0.3
    // at 3.2, 0.15 at 3.6, 0.075 at 3.3. Extrapolating along the two nearest the budget (0.15
    // and 0.075) points to a larger beta, so the rule takes a factor 2 down from 0.15: 0.075,
    // run already. It steps on from that run, whose KL is short too: 0.0375.
    let flat = [(0.3, 3.2), (0.15, 3.6), (0.075, 3.3)];
    assert_eq!(top_up_value(3.2, &[3.6, 3.3], &flat, 5.0, -1.0), Some(0.0375));
    // And past every setting already run: with 0.0375 run too (at 3.4), 0.0188.
    let flatter = [(0.3, 3.2), (0.15, 3.6), (0.075, 3.3), (0.0375, 3.4)];
    assert_eq!(top_up_value(3.2, &[3.6, 3.3, 3.4], &flatter, 5.0, -1.0), Some(0.0188));
    // An extrapolation that lands on a setting run already steps on the same way: along 0.3 at
    // 3.45 and 0.6 at 3.40 the step is the clamp, a factor 4 down: 0.075, run (at 3.30), so 0.0375.
    let flat2 = [(0.3, 3.45), (0.6, 3.40), (0.15, 3.35), (0.075, 3.30)];
    assert_eq!(top_up_value(3.45, &[3.35, 3.30], &flat2, 5.0, -1.0), Some(0.0375));
    // No finite proposal (every run diverged): nothing.
    assert_eq!(top_up_value(f64::NAN, &[], &[(0.8, f64::NAN)], 4.0, 1.0), None);
}

/// The round of top-ups reads each seed's finished runs on the selection half of the held-out
/// prompts only (their test half is three times as far): PPO target 1 lands at 0.9 on seed 0
/// (in) and at 1.5 on seed 1 (out), so seed 1 alone gets target 0.667; a budget the pilot did
/// not reach, and Best-of-N, get none. With that run listed in `[sweep] seed_runs`, seed 1 runs
/// it and seed 0 does not, and once it lands within 25% the next round adds nothing.
#[test]
fn a_seed_whose_calibrated_run_missed_gets_a_run_of_its_own() {
    use alignlab::experiment::calibrate::{seed_runs_override, top_ups, CalibrationRecord};
    use alignlab::experiment::{folders, Metrics, ProgressMode, RunOptions};
    use alignlab::scenario::Scenario;
    let root = std::env::temp_dir().join(format!("alignlab-topup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let opts = RunOptions {
        results_root: root.join("results"),
        runs_root: root.join("runs"),
        device: tch::Device::Cpu,
        progress: ProgressMode::Quiet,
        jobs: 1,
        threads: 1,
        cell_args: vec![],
    };
    let base = [
        "sweep.budgets=[1.0, 8.0]",
        "sweep.seeds=[0, 1]",
        "ppo.target_kl=[1.0, 2.0]",
        "sweep.top_up_rounds=2",
    ];
    let load = |extra: &[Override]| {
        Scenario::load(
            std::path::Path::new("scenarios/sentiment.toml"),
            &base
                .iter()
                .map(|s| s.to_string())
                .chain(extra.iter().map(Override::to_arg))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let finish = |sc: &Scenario, seed: u64, target: f64, kl: f64| {
        let s = sc.with_seed(seed);
        let m = s
            .methods
            .iter()
            .find(|m| m.name() == "ppo" && setting_value(&m.setting(), "target_kl") == Some(target))
            .unwrap();
        // The selection half at `kl`; the test half, which calibration must not read, far off.
        let mut e = Metrics::default();
        e.push("ppo", &m.setting(), seed, 60, "eval/kl_sel", kl);
        e.push("ppo", &m.setting(), seed, 60, "eval/kl_test", 3.0 * kl);
        e.push("ppo", &m.setting(), seed, 60, "eval/kl", 2.0 * kl);
        let dir = folders::method_dir(&s, m, &opts);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("eval.csv"), e.to_csv()).unwrap();
    };
    let sc = load(&[]);
    for (seed, target, kl) in [(0, 1.0, 0.9), (0, 2.0, 1.9), (1, 1.0, 1.5), (1, 2.0, 3.0)] {
        finish(&sc, seed, target, kl);
    }
    let rec = |table: &str, key: &str, budget: f64, value: f64, within_tolerance: bool| {
        CalibrationRecord {
            table: table.into(),
            key: key.into(),
            budget,
            value,
            pilot_kl: budget,
            within_tolerance,
            pilot_runs: 2,
        }
    };
    let records = [
        rec("ppo", "target_kl", 1.0, 1.0, true),
        rec("ppo", "target_kl", 8.0, 2.0, false),
        rec("best_of_n", "n", 1.0, 6.0, true),
    ];
    let new = top_ups(&sc, &opts, &records);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        (new[0].seed, new[0].table.as_str(), new[0].value, new[0].budget),
        (1, "ppo", 0.667, 1.0)
    );
    let sc = load(&[seed_runs_override(&new)]);
    let targets = |seed: u64| {
        sc.with_seed(seed)
            .methods
            .iter()
            .filter(|m| m.name() == "ppo")
            .filter_map(|m| setting_value(&m.setting(), "target_kl"))
            .collect::<Vec<_>>()
    };
    assert_eq!((targets(0), targets(1)), (vec![1.0, 2.0], vec![1.0, 2.0, 0.667]));
    assert_eq!(sc.seed_runs.len(), 1);
    // Not finished yet: no new proposal from an unfinished run; finished at 1.1, none either.
    finish(&sc, 1, 0.667, 1.1);
    assert!(top_ups(&sc, &opts, &records).is_empty());
    // Landed at 0.6 instead: a second top-up, from the three runs of seed 1.
    finish(&sc, 1, 0.667, 0.6);
    let again = top_ups(&sc, &opts, &records);
    assert_eq!(again.iter().map(|r| (r.seed, r.budget)).collect::<Vec<_>>(), vec![(1, 1.0)]);
    assert!(again[0].value > 0.667 && again[0].value < 1.0, "{again:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `[sweep] seed_runs` and `top_up_rounds` are checked before any work, each error naming its key.
#[test]
fn seed_runs_are_checked_before_any_work() {
    use alignlab::scenario::Scenario;
    let load = |sets: &[&str]| {
        Scenario::load(
            std::path::Path::new("scenarios/sentiment.toml"),
            &["sweep.budgets=[1.0]", "sweep.seeds=[0, 1]"]
                .iter()
                .chain(sets)
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
    };
    for (set, words) in [
        (
            "sweep.seed_runs=[{ seed = 5, table = \"dpo\", value = 0.2, budget = 1.0 }]",
            "not in sweep.seeds",
        ),
        (
            "sweep.seed_runs=[{ seed = 1, table = \"sft\", value = 0.2, budget = 1.0 }]",
            "not a method table",
        ),
        ("sweep.seed_runs=[{ seed = 1, table = \"dpo\", value = -1.0, budget = 1.0 }]", "positive"),
        (
            "sweep.seed_runs=[{ seed = 1, table = \"dpo\", value = 0.1, budget = 1.0 }]",
            "already a run",
        ),
        ("sweep.seed_runs=[{ seed = 1, table = \"dpo\", value = 0.2 }]", "budget"),
        ("sweep.top_up_rounds=5", "0..=4"),
    ] {
        let e = load(&[set]).unwrap_err().to_string();
        let key = if set.contains("top_up") { "sweep.top_up_rounds" } else { "sweep.seed_runs" };
        assert!(e.contains(key) && e.contains(words) && e.contains("fix:"), "{set}: {e}");
    }
    let e = Scenario::load(
        std::path::Path::new("scenarios/sentiment.toml"),
        &["sweep.top_up_rounds=1".to_string()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sweep.top_up_rounds") && e.contains("sweep.budgets"), "{e}");
    // A valid one: seed 1 runs DPO at beta 0.2 besides the grid, seed 0 does not.
    let sc = load(&["sweep.seed_runs=[{ seed = 1, table = \"dpo\", value = 0.2, budget = 1.0 }]"])
        .unwrap();
    let betas = |seed: u64| sc.with_seed(seed).methods.iter().filter(|m| m.name() == "dpo").count();
    assert_eq!(betas(1), betas(0) + 1);
    assert_eq!(sc.methods.len(), sc.n_shared, "seed 0's methods are the shared ones");
}

/// The landed-KL table shows a seed's top-up beside the calibrated run it stands in for, and
/// counts the (budget, seed) as landed when the top-up is within 25%.
#[test]
fn the_landed_kl_table_counts_a_top_up_that_landed() {
    use alignlab::experiment::{calibrate::CalibrationRecord, scenario::SeedRun, Metrics};
    let rec = CalibrationRecord {
        table: "ppo".into(),
        key: "target_kl".into(),
        budget: 1.0,
        value: 1.0,
        pilot_kl: 0.95,
        within_tolerance: true,
        pilot_runs: 3,
    };
    let mut e = Metrics::default();
    for (v, seed, kl) in [(1.0, 0, 0.8), (1.0, 1, 1.5), (0.667, 1, 1.1), (0.667, 0, 9.0)] {
        e.push("ppo", &format!("target_kl={v}"), seed, 60, "eval/kl", kl);
    }
    let tops = [SeedRun { seed: 1, table: "ppo".into(), value: 0.667, budget: 1.0 }];
    let md = alignlab::report::calibration::markdown(std::slice::from_ref(&rec), &e, &tops);
    assert!(md.contains("| 0: 0.800, 1: 1.500 → 1.100 (top-up 0.667) | 2/2 |"), "{md}");
    assert!(md.contains("Landed within 25%: 2 of 2 (budget, seed) runs; 2 of 2 on the budgets the pilot reached (1 of them through a top-up)."), "{md}");
    // Without it, seed 1 is a miss.
    let md = alignlab::report::calibration::markdown(&[rec], &e, &[]);
    assert!(md.contains("| 1/2 |") && md.contains("1 of 2 (budget, seed) runs;"), "{md}");
}
