//! Win-rate aggregation and the generated write-up: numbers and verdicts come from results/.

use alignlab::experiment::Metrics;
use alignlab::report::winrate;

fn push_point(
    m: &mut Metrics,
    method: &str,
    setting: &str,
    seed: u64,
    step: usize,
    kl: f64,
    gold: f64,
) {
    m.push(method, setting, seed, step, "eval/gold", gold);
    m.push(method, setting, seed, step, "eval/gold_ci", 0.01);
    m.push(method, setting, seed, step, "eval/kl", kl);
}

#[test]
fn win_rates_aggregate_over_seeds_at_the_last_step() {
    let mut m = Metrics::default();
    // sft: one seed, its Wilson interval is kept.
    m.push("sft", "", 0, 0, "eval_t0/winrate", 0.55);
    m.push("sft", "", 0, 0, "eval_t0/winrate_lo", 0.50);
    m.push("sft", "", 0, 0, "eval_t0/winrate_hi", 0.60);
    // dpo: two seeds; an earlier step must be ignored.
    for (seed, w) in [(0, 0.6), (1, 0.7)] {
        m.push("dpo", "beta=0.5", seed, 10, "eval_t0/winrate", 0.1);
        m.push("dpo", "beta=0.5", seed, 20, "eval_t0/winrate", w);
        m.push("dpo", "beta=0.5", seed, 20, "eval_t0.5/winrate", w - 0.1);
        m.push("dpo", "beta=0.5", seed, 20, "eval/winrate", w);
    }
    let rows = winrate::by_temperature(&m);
    let sft = rows.iter().find(|r| r.method == "sft").unwrap();
    assert_eq!((sft.x, sft.mean, sft.lo, sft.hi, sft.seeds), (0.0, 0.55, 0.50, 0.60, 1));
    let dpo: Vec<_> = rows.iter().filter(|r| r.method == "dpo").collect();
    assert_eq!(dpo.len(), 2);
    assert_eq!(dpo[0].x, 0.0);
    assert!((dpo[0].mean - 0.65).abs() < 1e-12 && dpo[0].seeds == 2);
    // t(0.975, 1) = 12.706; sd of (0.6, 0.7) = 0.0707; half-width 12.706 * 0.0707 / sqrt 2.
    assert!((dpo[0].hi - dpo[0].mean - 12.7062 * 0.05).abs() < 1e-3, "{:?}", dpo[0]);
    assert!((dpo[1].x - 0.5).abs() < 1e-12 && (dpo[1].mean - 0.55).abs() < 1e-12);
    let steps = winrate::by_step(&m);
    // At the evaluation temperature: step 20. At T = 0, logged at two steps (a curve
    // temperature): steps 10 and 20, labelled with it. T = 0.5 only at the last step: no curve.
    let plain: Vec<_> = steps.iter().filter(|r| r.setting == "beta=0.5").collect();
    assert_eq!(plain.len(), 1);
    assert_eq!((plain[0].x, plain[0].seeds), (20.0, 2));
    let t0: Vec<_> = steps.iter().filter(|r| r.setting == "beta=0.5 T=0").collect();
    assert_eq!(t0.iter().map(|r| (r.x, r.seeds)).collect::<Vec<_>>(), vec![(10.0, 2), (20.0, 2)]);
    assert!((t0[0].mean - 0.1).abs() < 1e-12 && (t0[1].mean - 0.65).abs() < 1e-12);
    assert!(
        !steps.iter().any(|r| r.setting.ends_with("T=0.5")),
        "a final-only temperature made a curve"
    );
    assert_eq!(steps.len(), 3);
}

/// A results tree where `first` is ahead of `second` by 0.3 (0.29, 0.30, 0.31 over three seeds)
/// in gold at KL 1 and by 0.22 in win rate at T = 0; `first = "ppo"` swaps the inputs.
fn results_tree(root: &std::path::Path, first: &str, second: &str) -> std::path::PathBuf {
    let _ = std::fs::remove_dir_all(root);
    let results = root.join("results");
    let mut e = Metrics::default();
    for seed in 0..3u64 {
        let d = 0.01 * seed as f64 - 0.01;
        push_point(&mut e, "sft", "", seed, 0, 0.0, 0.5);
        push_point(
            &mut e,
            first,
            if first == "dpo" { "beta=0.1" } else { "target_kl=1" },
            seed,
            100,
            1.0,
            0.9 + d,
        );
        push_point(
            &mut e,
            second,
            if second == "dpo" { "beta=0.1" } else { "target_kl=1" },
            seed,
            50,
            1.0,
            0.6,
        );
    }
    let dir = results.join("paper-sentiment");
    std::fs::create_dir_all(&dir).unwrap();
    // Every results folder holds its resolved scenario, which names its world.
    std::fs::write(dir.join("scenario.resolved.toml"), "[world]\nkind = \"sentiment\"\n").unwrap();
    std::fs::write(dir.join("eval.csv"), e.to_csv()).unwrap();
    let mut e = Metrics::default();
    for seed in 0..3u64 {
        push_point(&mut e, "sft", "", seed, 0, 0.0, 0.1);
        for (method, w) in [(first, 0.62 + 0.01 * seed as f64), (second, 0.40)] {
            let setting = if method == "dpo" { "beta=0.5" } else { "target_kl=1" };
            push_point(&mut e, method, setting, seed, 100, 0.5, 0.3);
            for t in [0.0, 1.0] {
                e.push(method, setting, seed, 100, &format!("eval_t{t}/winrate"), w - 0.1 * t);
                e.push(
                    method,
                    setting,
                    seed,
                    100,
                    &format!("eval_t{t}/winrate_lo"),
                    w - 0.1 * t - 0.04,
                );
                e.push(
                    method,
                    setting,
                    seed,
                    100,
                    &format!("eval_t{t}/winrate_hi"),
                    w - 0.1 * t + 0.04,
                );
            }
        }
    }
    // Shifted documents: `first` ahead by 0.10 (0.09, 0.10, 0.11) at T = 0.
    for seed in 0..3u64 {
        for (method, w) in [(first, 0.45 + 0.01 * seed as f64), (second, 0.36)] {
            let setting = if method == "dpo" { "beta=0.5" } else { "target_kl=1" };
            e.push(method, setting, seed, 100, "shift_t0/winrate", w);
        }
    }
    let dir = results.join("paper-summarize");
    std::fs::create_dir_all(&dir).unwrap();
    // Every results folder holds its resolved scenario, which names its world.
    std::fs::write(dir.join("scenario.resolved.toml"), "[world]\nkind = \"summarize\"\n").unwrap();
    std::fs::write(dir.join("eval.csv"), e.to_csv()).unwrap();
    // The dialogue folder: the same win rates; politeness 0.5 words per reply for pi_SFT and
    // 2 for PPO (which hacks the labeller's taste), 0.5 for DPO; proxy rising with KL.
    for seed in 0..3u64 {
        e.push("sft", "", seed, 0, "eval/spurious", 0.5);
        e.push("sft", "", seed, 0, "eval/proxy", 0.0);
        for method in [first, second] {
            let setting = if method == "dpo" { "beta=0.5" } else { "target_kl=1" };
            e.push(
                method,
                setting,
                seed,
                100,
                "eval/spurious",
                if method == "ppo" { 2.0 } else { 0.5 },
            );
            e.push(method, setting, seed, 100, "eval/proxy", 1.0);
        }
    }
    let dlg = results.join("paper-dialogue");
    std::fs::create_dir_all(&dlg).unwrap();
    // Every results folder holds its resolved scenario, which names its world.
    std::fs::write(dlg.join("scenario.resolved.toml"), "[world]\nkind = \"dialogue\"\n").unwrap();
    std::fs::write(dlg.join("eval.csv"), e.to_csv()).unwrap();
    std::fs::write(dlg.join("summary.csv"), "stage,metric,value\nreward,val accuracy (best epoch),0.8000 (epoch 2)\nreward,val accuracy (best epoch),0.7500 (cached)\n").unwrap();
    // The overoptimisation folder: PPO's gold along Gao's RL form with b 0.30, 0.25, 0.35 per
    // seed; the proxy linear in d; the labeller's word rising with d.
    let mut e = Metrics::default();
    for (seed, b) in [(0u64, 0.30), (1, 0.25), (2, 0.35)] {
        push_point(&mut e, "sft", "", seed, 0, 0.0, 0.5);
        e.push("sft", "", seed, 0, "eval/proxy", 0.0);
        e.push("sft", "", seed, 0, "eval/spurious", 0.2);
        for (i, kl) in [0.25f64, 1.0, 2.0, 4.0, 9.0, 16.0].into_iter().enumerate() {
            let d = kl.sqrt();
            push_point(
                &mut e,
                "ppo",
                "target_kl=16",
                seed,
                10 * (i + 1),
                kl,
                0.5 + d * (0.4 - b * d.ln()),
            );
            e.push("ppo", "target_kl=16", seed, 10 * (i + 1), "eval/proxy", 0.4 * d);
            e.push("ppo", "target_kl=16", seed, 10 * (i + 1), "eval/spurious", 0.2 + d);
        }
    }
    let over = results.join("overoptimisation");
    std::fs::create_dir_all(&over).unwrap();
    std::fs::write(over.join("eval.csv"), e.to_csv()).unwrap();
    std::fs::write(over.join("scenario.resolved.toml"), "name = \"overoptimisation\"\n\n[world]\nkind = \"sentiment\"\n\n[world.labeller]\nword = \"very\"\nbonus = 0.6\npolarity = -0.5\n").unwrap();
    // The fair rerun of the sentiment experiment: PPO ahead of DPO by 0.1 at KL 1 (0.09, 0.10,
    // 0.11), with its tuning table.
    let mut e = Metrics::default();
    for seed in 0..3u64 {
        push_point(&mut e, "sft", "", seed, 0, 0.0, 0.5);
        push_point(&mut e, "dpo", "beta=0.2", seed, 100, 1.0, 0.8);
        push_point(&mut e, "ppo", "target_kl=1", seed, 60, 1.0, 0.89 + 0.01 * seed as f64);
        // Win rates at T = 0: PPO ahead by 0.1 (0.09, 0.10, 0.11).
        e.push("dpo", "beta=0.2", seed, 100, "eval_t0/winrate", 0.6);
        e.push("ppo", "target_kl=1", seed, 60, "eval_t0/winrate", 0.69 + 0.01 * seed as f64);
        // At T = 1: DPO 0.55, PPO 0.50 + 0.02 seed; DPO's change from T = 0 minus PPO's is
        // -0.05 - (-0.19 + 0.01 seed) = 0.14, 0.13, 0.12.
        e.push("dpo", "beta=0.2", seed, 100, "eval_t1/winrate", 0.55);
        e.push("ppo", "target_kl=1", seed, 60, "eval_t1/winrate", 0.50 + 0.02 * seed as f64);
        // Compute: DPO 100 GFLOP, PPO 2, 3 and 4 times that by seed.
        e.push("dpo", "beta=0.2", seed, 100, "compute/gflop", 100.0);
        e.push("ppo", "target_kl=1", seed, 60, "compute/gflop", 100.0 * (2 + seed) as f64);
    }
    let fair = results.join("fair-sentiment");
    std::fs::create_dir_all(&fair).unwrap();
    std::fs::write(fair.join("eval.csv"), e.to_csv()).unwrap();
    std::fs::write(fair.join("tuning.csv"), "method,config,seed,gold_sel,budget,reached,picked\ndpo,lr=0.0001,2000,0.7,1,true,false\ndpo,lr=0.0003,2000,0.8,1,true,true\nppo,lr=0.0001,2000,0.9,1,true,true\nppo,lr=0.0003,2000,0.6,1,true,false\ndpo,lr=0.0001,2001,0.7,1,true,false\ndpo,lr=0.0003,2001,0.8,1,true,true\nppo,lr=0.0001,2001,0.9,1,true,true\nppo,lr=0.0003,2001,0.6,1,true,false\n").unwrap();
    // Tuned on two seeds, and one seed topped up.
    std::fs::write(fair.join("scenario.resolved.toml"), "[world]\nkind = \"sentiment\"\n\n[sweep]\nseeds = [0, 1, 2]\nseed_runs = [{ seed = 1, table = \"ppo\", value = 0.8, budget = 1.0 }]\n").unwrap();
    // Its invocation found some runs cached from an earlier one: its wall time is a lower bound.
    std::fs::write(fair.join("summary.csv"), "stage,metric,value\nrun,wall time,14400.0 s\nrun,profile,\"work 2 s: train 100%; CPU 2 s; 110.0 TFLOP, FLOP utilisation 50.0% of 200 GFLOP/s\"\ncompute,ppo,\"per run (5 runs): 1.000 TFLOP; found cached, no wall time in this invocation\"\n").unwrap();
    // One folder records its code, the other predates the record.
    std::fs::write(
        dir.join("summary.csv"),
        "stage,metric,value\nrun,code,\"alignlab 0.1.0 (commit abc), numerics 2\"\n",
    )
    .unwrap();
    std::fs::write(
        results.join("paper-sentiment/summary.csv"),
        "stage,metric,value\nrun,wall time,1.0 s\n",
    )
    .unwrap();
    // Two calibrated folders that count their runs per stage: one under the current calibration
    // rule whose tuning was partly cached, one under rule 1 (no rule row) that ran everything.
    for (name, rows) in [
        ("calibrated-new", "run,wall time,100.0 s\ninvocation,wall time,150.0 s\nrun,ledger,1800.0 s over 10 of 10 runs\nprotocol,ledger,3600.0 s over 15 of 15 runs\nprotocol,shared ledger,720.0 s over 12 of 12 stages\nrun,shared ledger,300.0 s over 4 of 4 stages\nprotocol,calibration rule,\"2: settled within 0.1 of a budget, one run per budget\"\ninvocation,sweep runs,\"10 run, 0 found cached\"\ninvocation,tuning runs,\"3 run, 2 found cached\"\n"),
        ("calibrated-old", "run,wall time,10.0 s\nrun,ledger,20.0 s over 3 of 4 runs\nrun,shared ledger,30.0 s over 2 of 4 stages\ninvocation,sweep runs,\"4 run, 0 found cached\"\n"),
    ] {
        let d = results.join(name);
        std::fs::create_dir_all(&d).unwrap();
        // Made with this code's numerics.
        let numerics = alignlab::experiment::folders::NUMERICS;
        std::fs::write(d.join("summary.csv"), format!("stage,metric,value\nrun,code,\"alignlab 0.1.0 (commit def), numerics {numerics}\"\n{rows}")).unwrap();
        std::fs::write(d.join("calibration.csv"), "table,key,budget,value,pilot_kl,within_tolerance,pilot_runs\n").unwrap();
    }
    results
}

#[test]
fn paper_numbers_and_verdicts_come_from_the_results() {
    let root = std::env::temp_dir().join(format!("alignlab-paper-{}", std::process::id()));
    let results = results_tree(&root, "dpo", "ppo");
    let path = alignlab::report::paper::write(&results, &root.join("paper")).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    assert!(
        md.contains(
            "- KL 1: dpo - ppo = +0.300 ± 0.025 (per seed +0.290, +0.300, +0.310): dpo is above."
        ),
        "{md}"
    );
    assert!(
        md.contains("- KL 2: dpo against ppo: not compared: not reached by every seed"),
        "no value past KL 1: {md}"
    );
    assert!(md.contains("| dpo | 0.700 ± 0.012 | 0.900 ± 0.025 | - | - | - |"), "{md}");
    assert!(md.contains("This agrees with the paper's claim."), "{md}");
    assert!(md.contains("- T = 0: win rate dpo - ppo = +0.230 ± 0.025 (per seed +0.220, +0.230, +0.240): dpo is above."), "{md}");
    assert!(md.contains("- Temperature robustness, the change in win rate from the lowest temperature to T = 1: dpo - ppo = +0.000"), "{md}");
    assert!(md.contains("dpo beta=0.5: from T = 0 to T = 1 the win rate (mean over seeds, all documents) changes by -0.100"), "{md}");
    // Provenance: a folder made with older numerics than this code's is marked stale.
    let cur = alignlab::experiment::folders::NUMERICS;
    assert!(md.contains(&format!("| paper-summarize | alignlab 0.1.0 (commit abc), numerics 2; stale: numerics 2, this code's are {cur}: rerun its scenario |")), "{md}");
    assert!(md.contains("| paper-sentiment | not recorded: numerics 1"), "{md}");
    assert!(root.join("results/paper-summarize/winrate_temperature.png").exists());
    assert!(md.contains("- T = 0: shifted documents: dpo - ppo = +0.100 ± 0.025 (per seed +0.090, +0.100, +0.110): dpo is above; in distribution: dpo - ppo = +0.230"), "{md}");
    // The dialogue section: its verdicts, the reward model's accuracy per seed, the taste.
    assert!(md.contains("## Dialogue: win rate against the chosen reply (paper Fig. 3)"), "{md}");
    let dialogue = &md[md.find("## Dialogue").unwrap()..];
    assert!(dialogue.contains("- T = 1: win rate dpo - ppo = +0.230 ± 0.025"), "{dialogue}");
    assert!(dialogue.contains("accuracy 0.800, 0.750 (per seed)"), "{dialogue}");
    assert!(
        dialogue.contains("| ppo | target_kl=1 | 0.500 | 0.300 | 1.000 | 2.000 |"),
        "{dialogue}"
    );
    assert!(dialogue.contains("PPO ends at 2.000 at its smallest KL (0.50) and 2.000 at its largest (0.50): PPO exploits the labeller's taste"), "{dialogue}");
    assert!(root.join("results/paper-sentiment/frontier.png").exists());
    assert!(root.join("results/paper-sentiment/paired.csv").exists());
    // The fair protocol's section: after and before side by side, and its tuning table.
    let fair = &md[md.find("## Sentiment: the fair protocol").unwrap()..];
    assert!(fair.contains("- KL 1: after: dpo - ppo = -0.100 ± 0.025 (per seed -0.090, -0.100, -0.110): dpo is below; before: dpo - ppo = +0.300 ± 0.025"), "{fair}");
    assert!(fair.contains("- T = 0: after: dpo - ppo = -0.100 ± 0.025 (per seed -0.090, -0.100, -0.110): dpo is below; before: -."), "{fair}");
    assert!(
        fair.contains("### Equal tuning")
            && fair.contains("| ppo | lr=0.0001 * | 2000: 0.9000, 2001: 0.9000 | 0.9000 |"),
        "{fair}"
    );
    assert!(
        fair.contains(
            "on 2 tuning seeds that are never reported, the best mean at the reference budget"
        ) && fair.contains("settings chosen from its own final KLs (top-ups)"),
        "{fair}"
    );
    // The paper's claims after the protocol, against PPO: below at both budgets and at T = 0;
    // spreads 0.1 (DPO) and 0.3 (PPO) on both tuning seeds; compute at DPO's gold 0.8, PPO over
    // DPO 2, 3, 4: geometric mean 24^(1/3) = 2.88, log interval 1.059 +- 4.303 x 0.2011, that is
    // 1.21 to 6.85.
    let claims =
        &fair[fair.find("**The DPO paper's claims after the fair protocol**").expect("claims")..];
    assert!(claims.contains("- Gold at the KL budgets: DPO - PPO, Holm-adjusted over the 2 budgets, above at none; below at KL 0.5, KL 1; inconclusive at none: this contradicts the paper's claim that DPO's reward-KL frontier dominates PPO's."), "{claims}");
    assert!(claims.contains("- Win rate against the reference: DPO - PPO, Holm-adjusted over the 2 temperatures, above at none; below at T = 0; inconclusive at T = 1: this contradicts"), "{claims}");
    // 0.13 ± t(0.975, 2) x 0.01 / sqrt(3) = 0.025: DPO degrades less.
    assert!(claims.contains("- Robustness to the sampling temperature (win rate at the highest temperature minus at the lowest, DPO's change minus PPO's, up to T = 1): +0.130 ± 0.025 over 3 seeds, above: this agrees with the paper's claim that DPO's win rate degrades less with the sampling temperature than PPO's (made for TL;DR, carried to this world)."), "{claims}");
    assert!(claims.contains("- Robustness (spread of gold across the tuning grid): DPO - PPO spread -0.200 ± 0.000 over 2 tuning seed(s): this agrees with the paper's claim that DPO is more robust to its hyperparameters than PPO."), "{claims}");
    assert!(claims.contains("- Cost (compute at equal gold): PPO needed 2.88 (1.21 to 6.85) times DPO's compute to reach selection-half gold 0.8000, over 3 seeds: this agrees with the paper's claim that DPO is cheaper than PPO."), "{claims}");
    // The answers as one table, a row per claim, a column per world.
    assert!(md.contains("| claim | Sentiment |\n|---|---|\n| Frontier: gold at the KL budgets | contradicts: KL 0.5"), "{md}");
    assert!(md.contains("| Win rate against the reference | contradicts: T = 0 -0.100 ± 0.025; T = 1 +0.030 ± 0.050 |"), "{md}");
    assert!(
        md.contains("| Robustness to the sampling temperature | agrees: +0.130 ± 0.025 |"),
        "{md}"
    );
    assert!(
        md.contains("| Cost: compute at equal gold | agrees: PPO / DPO 2.88 (1.21 to 6.85) |"),
        "{md}"
    );
    // The same lines head the paper, before the worlds.
    let short = &md[md.find("## The answers in short").expect("short answers")
        ..md.find("## The worlds").unwrap()];
    assert!(
        short.contains("**Sentiment** (`results/fair-sentiment`, its section below):")
            && short.contains("DPO - PPO spread -0.200 ± 0.000 over 2 tuning seed(s): this agrees"),
        "{short}"
    );
    assert!(short.contains("is above PPO's (made for TL;DR, carried to this world)"), "{short}");
    // Its summary has the sweep's wall time only: the section says so, not "the invocation".
    assert!(
        fair.contains(
            "Wall time of the sweep that wrote these results: 14400.0 s; the folder predates"
        ) && !fair[..fair.find("###").unwrap()].contains("Wall time of the invocation"),
        "{fair}"
    );
    // The overoptimisation section: Gao's b per seed and its interval (hand values as in
    // tests/verdicts.rs), and the labeller's word under PPO.
    let over = &md[md.find("## Overoptimisation: a reward model").unwrap()..];
    assert!(over.contains("- PPO, gold: b = 0.300 ± 0.124 over 3 seeds (the interval excludes 0: b > 0, the fitted gain curves down (a turn-over only where KL* lies inside the evaluated KL: the table below); per seed 0.300, 0.250, 0.350)."), "{over}");
    assert!(
        over.contains("From pi_SFT's 0.200 \"very\" per completion, PPO ends at 4.200"),
        "{over}"
    );
    assert!(
        over.contains("gold + 0.6 x the number of times they say \"very\"")
            && over.contains("the polarity -0.5"),
        "{over}"
    );
    // What the paper costs: each folder's invocation, a lower bound where runs were cached, and
    // 4.0447 h in all, past an afternoon of 4 h.
    let cost = &md[md.find("## What the paper costs").unwrap()..];
    assert!(cost.contains("| paper-sentiment | 1 s (0.00 h) | every reported run (tuning and calibration not recorded) | - | - | - |") && cost.contains("| fair-sentiment | 14400 s (4.00 h) (the sweep's alone: tuning and calibration not timed) | some reported runs found cached: a lower bound | - | - | 110.0 |"), "{cost}");
    // Counted per stage: cached tuning runs make a lower bound although the sweep ran every run;
    // the whole invocation's wall time (150 s) before the sweep's (100 s).
    assert!(cost.contains("| calibrated-new | 150 s (0.04 h) | sweep 10 run, 0 found cached; tuning 3 run, 2 found cached: a lower bound | 3600 s (1.00 h) | 720 s (12 stages) | - |"), "{cost}");
    assert!(cost.contains("| calibrated-old | 10 s (0.00 h) (the sweep's alone: tuning and calibration not timed) | every run (sweep 4 run, 0 found cached) | 20 s, 3 of 4 runs timed | 30 s, 2 of 4 stages timed | - |"), "{cost}");
    assert!(cost.contains("Every folder together: 4.0 h at least (the wall times of calibrated-new, calibrated-old, fair-sentiment miss runs found cached from earlier invocations, or their tuning and calibration); it does not fit an afternoon (4 h) on two cores."), "{cost}");
    // The ledger: the protocol's (tuning, calibration, sweep) before the sweep's; a folder whose
    // runs were not all timed is shown, not summed.
    assert!(cost.contains("The folders with a complete ledger (calibrated-new): 1.0 h of runs' own wall time, about 0.5 h at two cells at a time, shared stages not counted."), "{cost}");
    // The shared stages' ledger the same way: the protocol's (every seed's) before the sweep's.
    assert!(cost.contains("The folders with a complete shared ledger (calibrated-new): 0.20 h of shared stages' own wall time."), "{cost}");
    // A lower bound under the afternoon decides nothing.
    use alignlab::report::paper::afternoon_verdict;
    assert_eq!(afternoon_verdict(3.9, false, 4.0), "it fits an afternoon (4 h) on two cores");
    assert_eq!(
        afternoon_verdict(4.1, true, 4.0),
        "it does not fit an afternoon (4 h) on two cores"
    );
    assert!(afternoon_verdict(3.9, true, 4.0).contains("do not say whether"));
    // Provenance: the calibration rule, and a folder under an older one marked stale.
    let cur = alignlab::experiment::folders::NUMERICS;
    assert!(
        md.contains(&format!(
            "| calibrated-new | alignlab 0.1.0 (commit def), numerics {cur}, calibration rule 2; stale: its scenario is not recorded (made before the `scenario` row): rerun its scenario |"
        )),
        "{md}"
    );
    assert!(md.contains(&format!("| calibrated-old | alignlab 0.1.0 (commit def), numerics {cur}, calibration rule 1; stale: calibration rule 1, this code's is 2: rerun its scenario |")), "{md}");
    // The same numbers with the methods swapped: every verdict word flips.
    let results = results_tree(&root, "ppo", "dpo");
    let md = std::fs::read_to_string(
        alignlab::report::paper::write(&results, &root.join("paper")).unwrap(),
    )
    .unwrap();
    assert!(
        md.contains(
            "- KL 1: dpo - ppo = -0.300 ± 0.025 (per seed -0.290, -0.300, -0.310): dpo is below."
        ),
        "{md}"
    );
    assert!(md.contains("- T = 0: win rate dpo - ppo = -0.230 ± 0.025 (per seed -0.220, -0.230, -0.240): dpo is below."), "{md}");
    assert!(
        md.contains("The paper's claim that DPO dominates PPO is not reproduced in this world."),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Best-of-N's win rate in the paired comparisons is its largest N's (the paper's Best of 128),
/// even where a smaller N did better on the selection half; other methods take their setting
/// chosen on the selection half.
#[test]
fn best_of_n_compares_at_its_largest_n() {
    let mut m = Metrics::default();
    for (setting, sel, test) in [("n=4", 0.9, 0.8), ("n=128", 0.6, 0.55)] {
        m.push("best_of_n", setting, 0, 0, "eval_t1/winrate", test);
        m.push("best_of_n", setting, 0, 0, "eval_t1/winrate_sel", sel);
        m.push("best_of_n", setting, 0, 0, "eval_t1/winrate_test", test);
    }
    for (setting, sel, test) in [("beta=0.1", 0.5, 0.4), ("beta=1", 0.7, 0.65)] {
        m.push("dpo", setting, 0, 10, "eval_t1/winrate", test);
        m.push("dpo", setting, 0, 10, "eval_t1/winrate_sel", sel);
        m.push("dpo", setting, 0, 10, "eval_t1/winrate_test", test);
    }
    let w = alignlab::report::paired::winrates(&m);
    assert_eq!(w[&("best_of_n".to_string(), 0, 1f64.to_bits())], 0.55);
    assert_eq!(w[&("dpo".to_string(), 0, 1f64.to_bits())], 0.65);
}
