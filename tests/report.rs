//! Frontier arithmetic: the concave envelope, budgets, t-intervals, Gao fits, SNIS frontier.

use alignlab::report::frontier::{
    at_budget, envelope, fit_gao, gao_curve, mean_ci_t, optimal_frontier, FitForm,
};

#[test]
fn envelope_is_the_upper_concave_hull_up_to_the_best_reward() {
    // (1, 0.5) lies under the chord from (0, 0.2) to (2, 0.9); (3, 0.8) is past the best reward.
    let pts = [(0.0, 0.2), (1.0, 0.5), (2.0, 0.9), (3.0, 0.8), (2.0, 0.1), (0.5, 0.45)];
    let env = envelope(&pts);
    assert_eq!(env, vec![(0.0, 0.2), (0.5, 0.45), (2.0, 0.9)]);
    assert!((at_budget(&env, 0.25) - 0.325).abs() < 1e-12);
    assert!((at_budget(&env, 1.25) - 0.675).abs() < 1e-12);
    assert_eq!(at_budget(&env, 10.0), 0.9, "flat past the last point");
    assert!(
        at_budget(&envelope(&[(1.0, 0.5)]), 0.5).is_nan(),
        "a budget below every point is not reached"
    );
}

#[test]
fn t_interval_matches_the_table() {
    // Three values: t(0.975, 2) = 4.302653; sd of (1, 2, 3) is 1.
    let (m, ci) = mean_ci_t(&[1.0, 2.0, 3.0]);
    assert_eq!(m, 2.0);
    assert!((ci - 4.302653 / 3f64.sqrt()).abs() < 1e-5, "{ci}");
    assert_eq!(mean_ci_t(&[0.7]), (0.7, 0.0));
}

#[test]
fn gao_fits_recover_their_parameters() {
    for (form, a, b) in [(FitForm::BestOfN, 0.4, 0.05), (FitForm::Rl, 0.3, 0.1)] {
        let pts: Vec<(f64, f64)> = [0.1, 0.5, 1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|&kl| (kl, gao_curve(a, b, form, kl)))
            .collect();
        let (fa, fb, r2) = fit_gao(&pts, form).unwrap();
        assert!(
            (fa - a).abs() < 1e-9 && (fb - b).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9,
            "{form:?}: {fa} {fb} {r2}"
        );
    }
    // One cluster of d cannot pin two parameters.
    assert!(fit_gao(&[(2.6, 0.4), (2.8, 0.45), (2.9, 0.46)], FitForm::Rl).is_none());
}

#[test]
fn snis_frontier_spans_pi_ref_to_the_best_sample() {
    let rows = vec![vec![0.1, 0.5, 0.9, 0.3], vec![0.2, 0.2, 0.8, 0.0]];
    let f = optimal_frontier(&rows, &[1e6, 1e-4]);
    let (kl_wide, r_wide, ess_wide) = (f[0].kl, f[0].gold, f[0].ess_mean);
    assert!(
        kl_wide.abs() < 1e-9 && (r_wide - 0.375).abs() < 1e-6 && (ess_wide - 4.0).abs() < 1e-6,
        "beta -> inf is pi_ref"
    );
    let (kl_sharp, r_sharp, ess_sharp) = (f[1].kl, f[1].gold, f[1].ess_mean);
    assert!(
        (f[1].ess_min - 1.0).abs() < 1e-6 && (f[0].ess_min - 4.0).abs() < 1e-6,
        "the smallest ESS over prompts"
    );
    assert!(
        (kl_sharp - 4f64.ln()).abs() < 1e-6
            && (r_sharp - 0.85).abs() < 1e-6
            && (ess_sharp - 1.0).abs() < 1e-6,
        "beta -> 0 picks the best sample"
    );
}
