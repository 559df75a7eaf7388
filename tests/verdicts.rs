//! Verdicts a reviewer would accept: no value past the KL a seed reached, paired t-intervals and
//! detectable differences computed by hand, checkpoints chosen on the selection half and reported
//! on the test half, and verdict words that flip when their inputs are swapped.

use alignlab::eval::{selection_prompts, split_metrics};
use alignlab::experiment::Metrics;
use alignlab::report::frontier::{same_sample_at_budget, selected_at_budget, SplitPoint};
use alignlab::report::{self, budget_table, paired, points, Frontier};
use alignlab::stats::{Paired, Verdict};

/// An evaluation with the same values on both halves unless given.
fn point(m: &mut Metrics, method: &str, setting: &str, seed: u64, step: usize, kl: f64, gold: f64) {
    split_point(m, method, setting, seed, step, (kl, gold), (kl, gold));
}

fn split_point(
    m: &mut Metrics,
    method: &str,
    setting: &str,
    seed: u64,
    step: usize,
    sel: (f64, f64),
    test: (f64, f64),
) {
    m.push(method, setting, seed, step, "eval/gold", 0.5 * (sel.1 + test.1));
    m.push(method, setting, seed, step, "eval/kl", 0.5 * (sel.0 + test.0));
    m.push(method, setting, seed, step, "eval/kl_sel", sel.0);
    m.push(method, setting, seed, step, "eval/gold_sel", sel.1);
    m.push(method, setting, seed, step, "eval/kl_test", test.0);
    m.push(method, setting, seed, step, "eval/gold_test", test.1);
}

#[test]
fn paired_interval_and_detectable_difference_by_hand() {
    // Differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1; t(0.975, 2) = 4.302653, t(0.8, 2) = 1.060660.
    let p = Paired::new(&[0.1, 0.2, 0.3]);
    assert!((p.mean - 0.2).abs() < 1e-12);
    assert!((p.ci95 - 4.302653 * 0.1 / 3f64.sqrt()).abs() < 1e-5, "{}", p.ci95);
    assert!((p.mdd80 - (4.302653 + 1.060660) * 0.1 / 3f64.sqrt()).abs() < 1e-5, "{}", p.mdd80);
    assert_eq!(p.verdict(), Verdict::Inconclusive);
    assert_eq!(p.verdict_text(), "inconclusive, detectable difference 0.310");
    // Tight differences: the interval excludes 0, and the word flips with the sign.
    assert_eq!(Paired::new(&[0.10, 0.11, 0.12]).verdict_text(), "above");
    assert_eq!(Paired::new(&[-0.10, -0.11, -0.12]).verdict_text(), "below");
    // One seed has no interval: never a verdict.
    assert_eq!(Paired::new(&[0.5]).verdict(), Verdict::Inconclusive);
}

#[test]
fn selection_and_test_halves_are_disjoint_and_scored_apart() {
    assert_eq!(selection_prompts(256, 0.5), 128);
    assert_eq!(selection_prompts(2, 0.99), 1, "at least one test prompt");
    assert_eq!(selection_prompts(2, 0.01), 1, "at least one selection prompt");
    // Rows 0..2 are the selection half, 2..6 the test half (each row counted once).
    let gold = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let kl = [0.1, 0.3, 1.0, 1.0, 1.0, 1.0];
    let refs = [0.0, 9.0, 0.0, 0.0, 9.0, 9.0];
    let m = split_metrics(2, &gold, Some(&kl), Some(&refs));
    let get = |k: &str| m.iter().find(|(n, _)| n == k).unwrap().1;
    assert_eq!((get("eval/gold_sel"), get("eval/gold_test")), (1.5, 4.5));
    assert!((get("eval/kl_sel") - 0.2).abs() < 1e-12 && get("eval/kl_test") == 1.0);
    assert_eq!((get("eval/winrate_sel"), get("eval/winrate_test")), (0.5, 0.5));
}

#[test]
fn a_policy_that_wins_on_selection_is_reported_with_its_test_value() {
    // Two policies at KL 1: A looks best on the selection half, B on the test half.
    let sft = SplitPoint { kl_sel: 0.0, gold_sel: 0.2, kl_test: 0.0, gold_test: 0.2 };
    let a = SplitPoint { kl_sel: 1.0, gold_sel: 0.9, kl_test: 1.1, gold_test: 0.5 };
    let b = SplitPoint { kl_sel: 1.0, gold_sel: 0.6, kl_test: 1.0, gold_test: 0.8 };
    let pts = [sft, a, b];
    assert_eq!(
        selected_at_budget(&pts, 1.0),
        Some((0.5, 1.1)),
        "A is chosen, and reported on the test half"
    );
    assert_eq!(
        same_sample_at_budget(&pts, 1.0),
        Some(0.8),
        "choosing on the test half itself picks B"
    );
    // Halfway to A on the selection envelope: the mixture of SFT and A, read on the test half.
    let (g, k) = selected_at_budget(&pts, 0.5).unwrap();
    assert!((g - 0.35).abs() < 1e-12 && (k - 0.55).abs() < 1e-12, "{g} {k}");
    // Past the largest selection KL nothing is read.
    assert_eq!(selected_at_budget(&pts, 1.01), None);
}

#[test]
fn no_value_past_a_seeds_largest_kl() {
    let mut e = Metrics::default();
    for seed in [0, 1] {
        point(&mut e, "sft", "", seed, 0, 0.0, 0.5);
    }
    // Seed 0 reaches KL 2, seed 1 KL 4; the envelope would be flat past either.
    point(&mut e, "ppo", "target_kl=1", 0, 10, 2.0, 0.8);
    point(&mut e, "ppo", "target_kl=1", 1, 10, 4.0, 0.9);
    let pts = points(&e);
    let rows = budget_table(&pts, &[2.0, 4.0, 8.0]);
    let row = |b: f64| {
        rows.iter()
            .find(|r| r.method == "ppo" && r.frontier == Frontier::Selected && r.budget == b)
            .unwrap()
    };
    assert_eq!(row(2.0).reached(), 2);
    assert_eq!(row(4.0).reached(), 1, "seed 0 stops at KL 2");
    assert_eq!(row(4.0).values[0].1, None);
    assert_eq!(row(8.0).reached(), 0, "no seed reached KL 8");
    assert_eq!(report::budget_cell(row(4.0), 3), "- (1/2 seeds)");
    assert_eq!(report::budget_cell(row(8.0), 3), "-");
    // Seed 0 at its point (0.8), seed 1 on its chord from SFT (0.5) to (4, 0.9): 0.7.
    assert_eq!(report::budget_cell(row(2.0), 3).split(" ± ").next(), Some("0.750"));
}

/// DPO and PPO over three seeds: DPO ahead at KL 1 by 0.10 +- 0.01, level at KL 2 within noise;
/// the method names swapped must flip "above" to "below" and leave "inconclusive" alone.
fn two_methods(first: &str, second: &str) -> Metrics {
    let mut e = Metrics::default();
    for (seed, noise) in [(0u64, 0.0), (1, 0.01), (2, -0.01)] {
        point(&mut e, "sft", "", seed, 0, 0.0, 0.3 + noise);
        point(&mut e, first, "beta=0.1", seed, 100, 1.0, 0.70 + noise + 0.01 * seed as f64);
        point(&mut e, first, "beta=0.1", seed, 200, 2.0, 0.80 + 0.05 * seed as f64);
        point(&mut e, second, "target_kl=1", seed, 50, 1.0, 0.60 + noise);
        point(&mut e, second, "target_kl=1", seed, 60, 2.0, 0.85 - 0.05 * seed as f64);
        for (m, base) in [(first, 0.62), (second, 0.45)] {
            for t in [0.0, 1.0] {
                let setting = if m == first { "beta=0.1" } else { "target_kl=1" };
                let step = if m == first { 200 } else { 60 };
                let w = base - 0.1 * t + 0.01 * seed as f64
                    - if m == second { 0.02 * t * seed as f64 } else { 0.0 };
                e.push(m, setting, seed, step, &format!("eval_t{t}/winrate"), w);
                e.push(m, setting, seed, step, &format!("eval_t{t}/winrate_sel"), w);
                e.push(m, setting, seed, step, &format!("eval_t{t}/winrate_test"), w);
            }
        }
    }
    e
}

/// DPO against PPO at KL 1 and 2 and at every temperature.
fn dpo_against_ppo(e: &Metrics) -> Vec<paired::PairedRow> {
    let pts = points(e);
    paired::compare(&pts, e, &[("dpo".into(), "ppo".into())], &budget_table(&pts, &[1.0, 2.0]))
}

#[test]
fn verdict_words_flip_when_their_inputs_are_swapped() {
    let verdicts = |e: &Metrics| {
        let rows = dpo_against_ppo(e);
        rows.iter()
            .map(|r| (r.axis.to_string(), r.x, r.verdict(), r.paired.as_ref().map(|p| p.mean)))
            .collect::<Vec<_>>()
    };
    let straight = verdicts(&two_methods("dpo", "ppo"));
    let swapped = verdicts(&two_methods("ppo", "dpo"));
    type Row = (String, f64, String, Option<f64>);
    let find = |v: &[Row], axis: &str, x: f64| -> Row {
        v.iter().find(|r| r.0 == axis && r.1 == x).cloned().unwrap()
    };
    let kl1 = find(&straight, "kl_budget", 1.0);
    assert_eq!(kl1.2, "above", "{straight:?}");
    assert!((kl1.3.unwrap() - 0.11).abs() < 1e-9, "per seed 0.10, 0.11, 0.12: {kl1:?}");
    assert_eq!(find(&swapped, "kl_budget", 1.0).2, "below");
    assert!(find(&straight, "kl_budget", 2.0).2.starts_with("inconclusive, detectable difference"));
    assert!(find(&swapped, "kl_budget", 2.0).2.starts_with("inconclusive, detectable difference"));
    assert_eq!(find(&straight, "temperature", 0.0).2, "above");
    assert_eq!(find(&swapped, "temperature", 0.0).2, "below");
    // DPO loses 0.1 from T = 0 to T = 1, PPO 0.10, 0.12, 0.14: DPO's change is ahead by
    // 0, 0.02, 0.04, too spread over three seeds for a verdict.
    let change = find(&straight, "winrate_change", 1.0);
    assert!(
        (change.3.unwrap() - 0.02).abs() < 1e-9 && change.2.starts_with("inconclusive"),
        "{change:?}"
    );
}

/// PPO's gold along d = sqrt(KL) from Gao's RL form with a per-seed b, plus SFT at KL 0.
fn gao_seed(e: &mut Metrics, seed: u64, a: f64, b: f64) {
    point(e, "sft", "", seed, 0, 0.0, 0.5);
    e.push("sft", "", seed, 0, "eval/proxy", 0.0);
    for (i, kl) in [0.25f64, 1.0, 2.0, 4.0, 9.0, 16.0].into_iter().enumerate() {
        let d = kl.sqrt();
        point(e, "ppo", "target_kl=1", seed, 10 * (i + 1), kl, 0.5 + d * (a - b * d.ln()));
        e.push("ppo", "target_kl=1", seed, 10 * (i + 1), "eval/proxy", d * a);
    }
}

/// Three seeds of Gao's RL form, a = 0.4 and b = 0.30, 0.25, 0.35: their points and fits.
fn three_gao_seeds() -> (Vec<report::Point>, Vec<report::overopt::Fit>) {
    let mut e = Metrics::default();
    for (seed, b) in [(0, 0.30), (1, 0.25), (2, 0.35)] {
        gao_seed(&mut e, seed, 0.4, b);
    }
    let pts = points(&e);
    let fits = report::overopt::fits(&pts);
    (pts, fits)
}

#[test]
fn gao_b_is_fitted_per_seed_and_tested_over_seeds() {
    let (pts, fits) = three_gao_seeds();
    // Each seed's own fit recovers its b exactly (noise-free points of the fitted form).
    for (seed, b) in [(0u64, 0.30), (1, 0.25), (2, 0.35)] {
        let f = fits
            .iter()
            .find(|f| f.method == "ppo" && f.reward == "gold" && f.seed == Some(seed))
            .unwrap();
        assert!((f.b - b).abs() < 1e-9 && (f.a - 0.4).abs() < 1e-9, "seed {seed}: {f:?}");
        // Where it turns over: the RL form d(a - b log d) peaks at d* = exp(a / b - 1).
        let want = ((0.4 / b - 1.0) * 2.0).exp();
        let got = report::overopt::turnover_kl(f).unwrap();
        assert!((got - want).abs() < 1e-6 * want, "seed {seed}: {got} against {want}");
    }
    // Over seeds: mean 0.30, sd 0.05, t(0.975, 2) = 4.302653: 0.30 ± 0.1242, above 0.
    let p = report::overopt::b_over_seeds(&fits, "ppo", "gold").unwrap();
    assert!(
        (p.mean - 0.30).abs() < 1e-9 && (p.ci95 - 4.302653 * 0.05 / 3f64.sqrt()).abs() < 1e-5,
        "{p:?}"
    );
    assert_eq!(p.verdict(), Verdict::Above);
    // The proxy is linear in d: b = 0 on every seed.
    assert!(report::overopt::b_over_seeds(&fits, "ppo", "proxy").unwrap().mean.abs() < 1e-9);
    let md = report::overopt::markdown(&pts, &fits);
    assert!(
        md.contains(
            "| ppo | gold | 0.3000 ± 0.1242 | 0.300, 0.250, 0.350 | 0.3000 (0.2500 to 0.3500) | 1.95, 3.32, 1.33 | 3 of 3 | b > 0 (overoptimised: the turn-over inside the evaluated KL in most seeds) |"
        ),
        "{md}"
    );
    // The same fits, evaluated only to KL 1: every turn-over lies past the KL reached, so b > 0
    // is curvature, not a located overoptimisation.
    let low: Vec<_> = pts.iter().filter(|p| p.kl <= 1.0).cloned().collect();
    let md = report::overopt::markdown(&low, &fits);
    assert!(md.contains("| 0 of 3 | b > 0 (the fitted gain curves down, but its turn-over lies past the evaluated KL in most seeds: not located) |"), "{md}");
    // A seed whose gold keeps rising (b < 0) pulls the verdict to inconclusive.
    let mut e2 = Metrics::default();
    for (seed, b) in [(0, 0.30), (1, 0.25), (2, 0.35), (3, -0.9)] {
        gao_seed(&mut e2, seed, 0.4, b);
    }
    let p =
        report::overopt::b_over_seeds(&report::overopt::fits(&points(&e2)), "ppo", "gold").unwrap();
    assert_eq!(p.verdict(), Verdict::Inconclusive, "{p:?}");
}

#[test]
fn the_peak_of_gold_is_chosen_on_the_selection_half() {
    let mut e = Metrics::default();
    point(&mut e, "sft", "", 0, 0, 0.0, 0.5);
    // The selection half peaks at KL 2 (0.9); the test half's own maximum is at KL 4 (0.85).
    split_point(&mut e, "ppo", "target_kl=8", 0, 10, (2.0, 0.9), (2.0, 0.8));
    split_point(&mut e, "ppo", "target_kl=8", 0, 20, (4.0, 0.7), (4.0, 0.85));
    split_point(&mut e, "ppo", "target_kl=8", 0, 30, (8.0, 0.6), (8.0, 0.6));
    let (kp, gp, kl, gl) = report::overopt::peak_and_decline(&points(&e), "ppo", 0).unwrap();
    assert_eq!(
        (kp, gp, kl, gl),
        (2.0, 0.8, 8.0, 0.6),
        "peak at KL 2 on selection, its test value 0.8"
    );
}

#[test]
fn the_final_frontier_takes_the_checkpoint_a_run_kept() {
    let mut e = Metrics::default();
    point(&mut e, "sft", "", 0, 0, 0.0, 0.5);
    point(&mut e, "dpo", "beta=0.1", 0, 50, 1.0, 0.9);
    point(&mut e, "dpo", "beta=0.1", 0, 100, 2.0, 0.7);
    let last = report::seed_points(&points(&e), "dpo", 0, Frontier::Final);
    assert!(
        last.iter().any(|p| p.gold_test == 0.7) && !last.iter().any(|p| p.gold_test == 0.9),
        "without a kept mark: the last evaluation"
    );
    e.push("dpo", "beta=0.1", 0, 50, "eval/kept", 1.0);
    let kept = report::seed_points(&points(&e), "dpo", 0, Frontier::Final);
    assert!(
        kept.iter().any(|p| p.gold_test == 0.9) && !kept.iter().any(|p| p.gold_test == 0.7),
        "the kept checkpoint, not the last"
    );
    // The selected frontier still sees every evaluation.
    assert_eq!(report::seed_points(&points(&e), "dpo", 0, Frontier::Selected).len(), 3);
}

#[test]
fn tost_by_hand() {
    use alignlab::stats::{tost, Equivalence};
    // 0.01, -0.01, 0, 0.005, -0.005: mean 0, sd sqrt(6.25e-5); t(0.95, 4) = 2.131847.
    let (mean, hw, v) = tost(&[0.01, -0.01, 0.0, 0.005, -0.005], 0.02);
    assert!(mean.abs() < 1e-15);
    assert!((hw - 2.131847 * 6.25e-5f64.sqrt() / 5f64.sqrt()).abs() < 1e-7, "{hw}");
    assert_eq!(v, Equivalence::Equivalent);
    // The same spread around 0.015: the interval (0.0075, 0.0225) crosses the margin.
    let shifted: Vec<f64> = [0.01, -0.01, 0.0, 0.005, -0.005].iter().map(|d| d + 0.015).collect();
    assert_eq!(tost(&shifted, 0.02).2, Equivalence::Inconclusive);
    // Wholly past the margin: different; too wide: inconclusive; one seed: no interval.
    assert_eq!(tost(&[0.05, 0.06, 0.055], 0.02).2, Equivalence::Different);
    assert_eq!(tost(&[-0.05, -0.06, -0.055], 0.02).2, Equivalence::Different);
    assert_eq!(tost(&[0.0, 0.04, -0.04], 0.02).2, Equivalence::Inconclusive);
    assert_eq!(tost(&[0.0], 0.02).2, Equivalence::Inconclusive);
}

#[test]
fn equivalence_pairs_two_folders_by_seed_at_each_budget() {
    use alignlab::report::equivalence::compare;
    // A: dpo reaches gold 1.0 (seed 0) and 2.0 (seed 1) at KL 1; B: the same plus 0.001 and
    // 0.003, so B - A is 0.001 and 0.003: mean 0.002, 90% half-width t(0.95, 1) 0.001 = 0.0063.
    let (mut a, mut b) = (Metrics::default(), Metrics::default());
    for (seed, g) in [(0u64, 1.0), (1, 2.0)] {
        point(&mut a, "dpo", "beta=0.1", seed, 10, 1.0, g);
        point(&mut b, "dpo", "beta=0.1", seed, 10, 1.0, g + 0.001 + 0.002 * seed as f64);
        a.push("dpo", "beta=0.1", seed, 10, "eval/implicit_acc", 0.6);
        b.push("dpo", "beta=0.1", seed, 10, "eval/implicit_acc", 0.65);
    }
    let rows = compare(&a, &b, (0.02, 0.03));
    let at1 = rows.iter().find(|r| r.axis == "kl_budget" && r.x == 1.0).expect("budget 1");
    assert_eq!(at1.seeds, 2);
    assert!((at1.mean_diff - 0.002).abs() < 1e-12, "{}", at1.mean_diff);
    assert!((at1.half_width - 6.313752 * 0.001).abs() < 1e-5, "{}", at1.half_width);
    assert_eq!(at1.verdict, "equivalent");
    // A budget past the KL the runs reached has no row: nothing is read past it.
    assert!(!rows.iter().any(|r| r.axis == "kl_budget" && r.x > 1.0));
    let acc = rows.iter().find(|r| r.metric == "eval/implicit_acc").expect("drift");
    assert!((acc.mean_diff - 0.05).abs() < 1e-12);
    assert_eq!(acc.verdict, "-");
    // `alignlab equivalence` on two folders adds the reward model's validation accuracy at
    // its last epoch (metrics.csv): B - A = 0.01 and 0.03 per seed, mean 0.02.
    let root = std::env::temp_dir().join(format!("alignlab-equiv-{}", std::process::id()));
    let (da, db) = (root.join("a"), root.join("b"));
    for (dir, evals, extra) in [(&da, &a, 0.0), (&db, &b, 0.01)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("eval.csv"), evals.to_csv()).unwrap();
        let mut m = Metrics::default();
        for seed in [0u64, 1] {
            m.push("reward", "", seed, 0, "reward/val/accuracy", 0.5);
            let last = 0.8 + extra * (1.0 + 2.0 * seed as f64);
            m.push("reward", "", seed, 84, "reward/val/accuracy", last);
        }
        std::fs::write(dir.join("metrics.csv"), m.to_csv()).unwrap();
    }
    alignlab::report::equivalence::run(&da, &db, (0.02, 0.03)).unwrap();
    let md = std::fs::read_to_string(db.join("equivalence.md")).unwrap();
    assert!(md.contains("| reward | drift | - | reward/val/accuracy | 2 | +0.0200 |"), "{md}");
    std::fs::remove_dir_all(&root).ok();
}

/// Holm and Benjamini-Hochberg adjustments by hand; the paired t-test's p-value from the closed
/// form of Student's t with 2 degrees of freedom, F(t) = 1/2 + t / (2 sqrt(t^2 + 2)).
#[test]
fn p_values_and_their_adjustments_by_hand() {
    use alignlab::stats::{benjamini_hochberg, holm};
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| (x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12)
    };
    // Sorted 0.005, 0.01, 0.03, 0.04: Holm 4p, 3p, 2p, p made monotone: 0.02, 0.03, 0.06, 0.06.
    let ps = [0.01, f64::NAN, 0.04, 0.03, 0.005];
    let h = holm(&ps);
    assert!(close(&h, &[0.03, f64::NAN, 0.06, 0.06, 0.02]), "{h:?}");
    // BH: m p / rank = 0.02, 0.02, 0.04, 0.04, minimum from the top: the same.
    let q = benjamini_hochberg(&ps);
    assert!(close(&q, &[0.02, f64::NAN, 0.04, 0.04, 0.02]), "{q:?}");
    // BH's step-up: a larger p early can be pulled down by a later rank.
    let q = benjamini_hochberg(&[0.04, 0.045, 0.046]);
    assert!(close(&q, &[0.046, 0.046, 0.046]), "{q:?}");
    let p2 = |t: f64| 1.0 - t / (t * t + 2.0).sqrt();
    // Differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 2 sqrt 3.
    let p = Paired::new(&[0.1, 0.2, 0.3]);
    assert!((p.p_value() - p2(2.0 * 3f64.sqrt())).abs() < 1e-9, "{}", p.p_value());
    assert!(p.p_value() > 0.05 && p.verdict() == Verdict::Inconclusive);
    assert!(Paired::new(&[0.5]).p_value().is_nan());
    // In the comparisons, each pair's budgets are one family: DPO - PPO at KL 1 (0.10, 0.11,
    // 0.12: t = 0.11 / (0.01 / sqrt 3)) and KL 2 (-0.05, 0.05, 0.15: t = 0.05 / (0.1 / sqrt 3));
    // Holm doubles the smaller and keeps the larger.
    let e = two_methods("dpo", "ppo");
    let rows = dpo_against_ppo(&e);
    let at = |axis: &str, x: f64| rows.iter().find(|r| r.axis == axis && r.x == x).unwrap();
    let (p1, p2v) = (p2(0.11 / (0.01 / 3f64.sqrt())), p2(0.05 / (0.1 / 3f64.sqrt())));
    assert!((at("kl_budget", 1.0).p_value() - p1).abs() < 1e-9);
    assert!((at("kl_budget", 1.0).p_holm - 2.0 * p1).abs() < 1e-9);
    assert!((at("kl_budget", 2.0).p_holm - p2v).abs() < 1e-9);
    assert_eq!(at("kl_budget", 1.0).verdict_adjusted(), "above");
    assert!(at("kl_budget", 2.0).verdict_adjusted().starts_with("inconclusive"));
    // The temperature-robustness claim is a family of one: its adjusted p is its own.
    let change = at("winrate_change", 1.0);
    assert_eq!(change.p_holm, change.p_value());
    assert_eq!(change.family(), "dpo|ppo|winrate_change");
}

/// A folder is reported at the default budgets and its scenario's calibrated ones; greedy
/// Best-of-N (SFT's greedy response) is not compared at T = 0, where it would repeat the
/// comparison with SFT; PPO-GT is among dialogue's default comparisons.
#[test]
fn budgets_comparisons_and_no_duplicated_test() {
    let d = std::env::temp_dir().join(format!("alignlab-budgets-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("scenario.resolved.toml"), "[sweep]\nbudgets = [0.25, 2.5, 8.0]\n")
        .unwrap();
    assert_eq!(report::folder_budgets(&d), vec![0.25, 0.5, 1.0, 2.0, 2.5, 4.0, 8.0]);
    let _ = std::fs::remove_dir_all(&d);
    let mut e = two_methods("dpo", "best_of_n");
    for r in e.rows.iter_mut().filter(|r| r.method == "best_of_n") {
        r.setting = "n=4".into();
    }
    let pts = points(&e);
    let rows = paired::compare(
        &pts,
        &e,
        &[("dpo".into(), "best_of_n".into())],
        &budget_table(&pts, &[1.0]),
    );
    let temps: Vec<f64> = rows.iter().filter(|r| r.axis == "temperature").map(|r| r.x).collect();
    assert_eq!(temps, vec![1.0], "{rows:?}");
    let sc = alignlab::scenario::Scenario::load(
        std::path::Path::new("scenarios/paper-dialogue.toml"),
        &[],
    )
    .unwrap();
    let compare = &sc.resolved_toml;
    assert!(compare.contains("[\"dpo\", \"ppo_gt\"]"), "{compare}");
}

/// The pooled b's seed-bootstrap interval: reproducible, and inside the seeds' own b for
/// noise-free seeds of one a; a seed whose gain keeps rising has no turn-over.
#[test]
fn the_bootstrap_interval_of_b_and_no_turnover() {
    let (pts, _) = three_gao_seeds();
    let (lo, hi) = report::overopt::b_bootstrap(&pts, "ppo", "gold", 500).unwrap();
    assert!(lo >= 0.25 - 1e-6 && hi <= 0.35 + 1e-6 && lo < hi, "{lo} {hi}");
    assert_eq!(report::overopt::b_bootstrap(&pts, "ppo", "gold", 500), Some((lo, hi)));
    // A seed whose gain keeps rising (b < 0) has no turn-over.
    let mut e = Metrics::default();
    gao_seed(&mut e, 0, 0.4, -0.1);
    let fits = report::overopt::fits(&points(&e));
    let f = fits.iter().find(|f| f.reward == "gold" && f.seed == Some(0)).unwrap();
    assert_eq!(report::overopt::turnover_kl(f), None);
}

/// The final-checkpoint frontier beside the selected one: DPO's final checkpoint is at KL 2
/// (0.80 + 0.05 s), PPO's too (0.85 - 0.05 s), so at KL 1 each is on its chord from SFT and
/// DPO - PPO = (-0.05 + 0.1 s) / 2 per seed: -0.025, 0.025, 0.075, inconclusive, where the
/// selected frontier (DPO's step-100 checkpoint at KL 1) says above: KL 1 is flagged, KL 2 (the
/// same checkpoints on both frontiers) is not.
#[test]
fn a_verdict_that_rests_on_checkpoint_density_is_flagged() {
    let e = two_methods("dpo", "ppo");
    let rows = dpo_against_ppo(&e);
    let fin = rows.iter().find(|r| r.axis == "kl_budget_final" && r.x == 1.0).unwrap();
    let p = fin.paired.as_ref().unwrap();
    for (d, want) in p.diffs.iter().zip([-0.025, 0.025, 0.075]) {
        assert!((d - want).abs() < 1e-9, "{:?}", p.diffs);
    }
    assert!(fin.verdict_adjusted().starts_with("inconclusive"));
    assert_eq!(paired::density_flags(&rows), vec![("dpo".to_string(), "ppo".to_string(), 1.0)]);
    let csv = paired::csv(&rows);
    let flagged: Vec<&str> = csv.lines().filter(|l| l.ends_with(",true")).collect();
    assert_eq!(flagged.len(), 1, "{csv}");
    assert!(flagged[0].starts_with("dpo,ppo,kl_budget,1,"), "{}", flagged[0]);
}

/// Cost as a curve, by hand: DPO's shared stages cost 10 GFLOP, PPO's 60 (1 + 0.1 s) on seed s;
/// both reach gold 0.74 at their first step (DPO 20, PPO 80 (1 + 0.1 s)) and 0.95 at the second
/// (30 against 120 (1 + 0.1 s)); pi_SFT's gold is 0.5. At every level from 25% to 100% of the
/// way, PPO over DPO is 4 (1 + 0.1 s) in all compute, a ratio the Holm-adjusted test puts
/// above 1, and 2 then 3 (1 + 0.1 s) in own work; Best-of-N, without a step-0 row, has no
/// own-work curve.
#[test]
fn cost_as_a_curve_by_hand() {
    use alignlab::report::compute::{cost_curve, curve_tests, CostPoint};
    let mut pts = Vec::new();
    let mut add = |method: &str, seed: u64, step: usize, gflop: f64, shared: f64, gold: f64| {
        pts.push(CostPoint {
            method: method.into(),
            seed,
            step,
            gflop,
            own_gflop: gflop - shared,
            gold_sel: gold,
            gold_test: gold,
        });
    };
    for s in 0..3u64 {
        let k = 1.0 + 0.1 * s as f64;
        for (step, g, gold) in [(0, 10.0, 0.5), (1, 20.0, 0.74), (2, 30.0, 0.95)] {
            add("dpo", s, step, g, 10.0, gold);
        }
        for (step, g, gold) in [(0, 60.0, 0.5), (1, 80.0, 0.74), (2, 120.0, 0.95)] {
            add("ppo", s, step, g * k, 60.0 * k, gold);
        }
        add("best_of_n", s, 4, 50.0, f64::NAN, 0.95);
    }
    let curve = cost_curve(&pts, "ppo");
    assert_eq!(
        curve.iter().map(|c| c.fraction).collect::<Vec<_>>(),
        vec![0.25, 0.5, 0.75, 0.9, 1.0]
    );
    assert!((curve[0].level - 0.6125).abs() < 1e-12 && (curve[4].level - 0.95).abs() < 1e-12);
    for c in &curve {
        // Own work: 20 (1 + 0.1 s) against 10 at the first step, 60 (1 + 0.1 s) against 20 at
        // the second.
        let own = if c.level < 0.74 { 2.0 } else { 3.0 };
        for (side, per, r) in [("all", &c.total, 4.0), ("own", &c.own, own)] {
            let got: Vec<f64> = per.iter().map(|x| x.1).collect();
            assert_eq!(got.len(), 3, "{side} at {}: {per:?}", c.fraction);
            for (g, s) in got.iter().zip(0..3) {
                assert!((g - r * (1.0 + 0.1 * s as f64)).abs() < 1e-9, "{side}: {got:?}");
            }
        }
    }
    for t in curve_tests(&curve) {
        let (p, adj) = &t[0];
        assert!(p.as_ref().unwrap().mean > 0.0 && *adj < 0.05, "{adj}");
    }
    let bon = cost_curve(&pts, "best_of_n");
    assert!(!bon.is_empty() && bon.iter().all(|c| c.own.is_empty() && c.total.len() == 3));
}

#[test]
fn a_perturbed_rerun_counts_the_adjusted_verdicts_that_moved() {
    use alignlab::report::paired::{moved_verdicts, PairedRecord};
    let row = |x: f64, seeds: usize, verdict: &str, mean: f64| PairedRecord {
        a: "dpo".into(),
        b: "ppo".into(),
        axis: "kl_budget".into(),
        x,
        metric: "gold".into(),
        seeds,
        seeds_compared: seeds,
        mean_diff: mean,
        ci95: 0.02,
        verdict_adjusted: verdict.into(),
        ..Default::default()
    };
    let a = [
        row(0.5, 5, "above", 0.030),
        row(1.0, 5, "inconclusive (adjusted p 0.100)", 0.010),
        row(2.0, 5, "below", -0.027),
        row(4.0, 1, "above", 0.050),
    ];
    let b = [
        row(0.5, 5, "above", 0.031),
        // Another p, the same verdict: not moved.
        row(1.0, 5, "inconclusive (adjusted p 0.200)", 0.008),
        row(2.0, 5, "inconclusive (adjusted p 0.070)", -0.024),
        // One seed in either: not compared.
        row(4.0, 1, "below", -0.050),
    ];
    let (n, moved) = moved_verdicts(&a, &b);
    assert_eq!(n, 3);
    assert_eq!(
        moved,
        ["dpo - ppo at kl_budget 2: below (-0.027 ± 0.020) -> inconclusive (adjusted p 0.070) (-0.024 ± 0.020)"]
    );
}
