//! Overoptimisation: Gao et al. (2022)'s fits of reward gain against d = sqrt(KL), pooled over
//! seeds and per seed, and whether a method's gold reward peaks and then falls with its KL.
//!
//! - The fits: gold (or proxy) gain over pi_SFT of every evaluation of Best-of-N
//!   (R = d(a - b d)), PPO and PPO-GT (R = d(a - b log d)), by least squares. b > 0 is the
//!   overoptimisation shape: gain that turns over as d grows.
//! - Over seeds: each seed's own fit gives a b; their mean with a 95% t-interval, and the
//!   verdict "b > 0" or "b < 0" only where the interval excludes 0, else "inconclusive".
//! - Peak and decline, per seed: the evaluation with the highest gold on the *selection* half of
//!   the prompts is the peak; the decline is the *test* half's gold at the peak minus its gold at
//!   the evaluation of largest KL. Choosing the peak on one half and measuring on the other keeps
//!   the maximum of noisy points from reading as a decline. A decline whose interval over seeds
//!   lies above 0 is a measured fall of gold with KL.
//! - Within each run, the same test over training: the run's peak (chosen on the selection
//!   half, step 0 left out) against its end, with the KL and proxy at both: gold that falls at a
//!   steady KL while the proxy rises is the reward model being hacked as training goes on.

use std::fmt::Write as _;

use super::frontier::{fit_gao, FitForm};
use super::{sft_point, Point};
use crate::stats::Paired;

/// The methods fitted, with their forms.
const FITTED: &[(&str, FitForm)] =
    &[("best_of_n", FitForm::BestOfN), ("ppo", FitForm::Rl), ("ppo_gt", FitForm::Rl)];

/// One fit: a method's gold or proxy gain against KL, over every seed (`seed` None) or one.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub method: String,
    pub reward: &'static str,
    pub form: FitForm,
    pub seed: Option<u64>,
    pub a: f64,
    pub b: f64,
    pub r2: f64,
    pub points: usize,
}

/// One row of `fits.csv`: Gao et al.'s fit of gold (or proxy) against KL for a method, over
/// every seed (`seed` = `all`) or one seed.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FitRecord {
    pub method: String,
    pub reward: String,
    pub form: String,
    pub seed: String,
    #[serde(with = "crate::log::float_text")]
    pub a: f64,
    #[serde(with = "crate::log::float_text")]
    pub b: f64,
    #[serde(with = "crate::log::float_text")]
    pub r2: f64,
    pub points: usize,
}

fn form_name(form: FitForm) -> &'static str {
    match form {
        FitForm::BestOfN => "d(a-b*d)",
        FitForm::Rl => "d(a-b*log(d))",
    }
}

/// Every fit: per method and reward, the pooled fit, then one per seed (where it can be fitted).
pub fn fits(points: &[Point]) -> Vec<Fit> {
    let mut seeds: Vec<u64> = points.iter().map(|p| p.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut out = Vec::new();
    for &(method, form) in FITTED {
        for (reward, get) in
            [("gold", (|p: &Point| p.gold) as fn(&Point) -> f64), ("proxy", |p: &Point| p.proxy)]
        {
            let gains = |seed: Option<u64>| -> Vec<(f64, f64)> {
                points
                    .iter()
                    .filter(|p| p.method == method && seed.is_none_or(|s| p.seed == s))
                    .filter_map(|p| sft_point(points, p.seed).map(|s| (p.kl, get(p) - get(s))))
                    .collect()
            };
            for seed in std::iter::once(None).chain(seeds.iter().map(|&s| Some(s))) {
                let pts = gains(seed);
                if let Some((a, b, r2)) = fit_gao(&pts, form) {
                    out.push(Fit {
                        method: method.to_string(),
                        reward,
                        form,
                        seed,
                        a,
                        b,
                        r2,
                        points: pts.len(),
                    });
                }
            }
        }
    }
    out
}

pub fn records(fits: &[Fit]) -> Vec<FitRecord> {
    fits.iter()
        .map(|f| FitRecord {
            method: f.method.clone(),
            reward: f.reward.into(),
            form: form_name(f.form).into(),
            seed: f.seed.map_or("all".into(), |s| s.to_string()),
            a: f.a,
            b: f.b,
            r2: f.r2,
            points: f.points,
        })
        .collect()
}

/// Per seed, b of each seed's own fit of `method`'s `reward`, over the seeds that have one.
pub fn b_over_seeds(fits: &[Fit], method: &str, reward: &str) -> Option<Paired> {
    let bs: Vec<f64> = fits
        .iter()
        .filter(|f| f.method == method && f.reward == reward && f.seed.is_some())
        .map(|f| f.b)
        .collect();
    (!bs.is_empty()).then(|| Paired::new(&bs))
}

/// The KL where a fit's gain turns over (its maximum in d = sqrt(KL)), where b > 0: Best-of-N's
/// d(a - b d) peaks at d* = a / (2b), the RL form d(a - b log d) at d* = exp(a / b - 1); KL* =
/// d*^2. None where b <= 0 (the fitted gain never turns over).
pub fn turnover_kl(f: &Fit) -> Option<f64> {
    if f.b <= 0.0 || !f.b.is_finite() {
        return None;
    }
    let d = match f.form {
        FitForm::BestOfN => f.a / (2.0 * f.b),
        FitForm::Rl => (f.a / f.b - 1.0).exp(),
    };
    (d > 0.0).then_some(d * d)
}

/// A 95% percentile interval of the pooled fit's b over `n` bootstrap resamples of the seeds
/// (seeds drawn with replacement, each bringing all its evaluations; a fixed generator, so the
/// interval is reproducible), where at least half the resamples can be fitted.
pub fn b_bootstrap(points: &[Point], method: &str, reward: &str, n: usize) -> Option<(f64, f64)> {
    let form = FITTED.iter().find(|f| f.0 == method)?.1;
    let get = |p: &Point| if reward == "gold" { p.gold } else { p.proxy };
    let seeds = super::distinct(points.iter().filter(|p| p.method == method).map(|p| p.seed));
    let per_seed: Vec<Vec<(f64, f64)>> = seeds
        .iter()
        .map(|&sd| {
            points
                .iter()
                .filter(|p| p.method == method && p.seed == sd)
                .filter_map(|p| sft_point(points, sd).map(|s| (p.kl, get(p) - get(s))))
                .collect()
        })
        .collect();
    if per_seed.len() < 2 {
        return None;
    }
    let mut rng = crate::draw::Rng::new(crate::draw::derive_seed(0, "report/b_bootstrap"));
    let mut bs: Vec<f64> = (0..n)
        .filter_map(|_| {
            let pts: Vec<(f64, f64)> = (0..per_seed.len())
                .flat_map(|_| per_seed[rng.below(per_seed.len())].iter().copied())
                .collect();
            fit_gao(&pts, form).map(|f| f.1)
        })
        .collect();
    if bs.len() * 2 < n {
        return None;
    }
    bs.sort_by(f64::total_cmp);
    let q = |p: f64| bs[((p * (bs.len() - 1) as f64).round() as usize).min(bs.len() - 1)];
    Some((q(0.025), q(0.975)))
}

/// One seed's peak and decline of a method's gold: (KL at the peak, test gold at the peak, KL
/// at the last point, test gold there). The peak is chosen on the selection half.
pub fn peak_and_decline(points: &[Point], method: &str, seed: u64) -> Option<(f64, f64, f64, f64)> {
    let pts: Vec<&Point> = points
        .iter()
        .filter(|p| {
            p.method == method
                && p.seed == seed
                && p.gold_sel.is_finite()
                && p.gold_test.is_finite()
                && p.kl.is_finite()
        })
        .collect();
    let peak = pts.iter().max_by(|a, b| a.gold_sel.total_cmp(&b.gold_sel))?;
    let last = pts.iter().max_by(|a, b| a.kl.total_cmp(&b.kl))?;
    Some((peak.kl, peak.gold_test, last.kl, last.gold_test))
}

/// Within one run (a method's setting on a seed): its peak, the evaluation after step 0 with
/// the best selection-half gold, and its final evaluation, each as (step, KL, test-half gold,
/// proxy). A run whose gold falls from its peak at a steady KL is hacking its reward over
/// training, not spending more KL.
pub fn run_peak(
    points: &[Point],
    method: &str,
    setting: &str,
    seed: u64,
) -> Option<[(usize, f64, f64, f64); 2]> {
    let pts: Vec<&Point> = points
        .iter()
        .filter(|p| {
            p.method == method
                && p.setting == setting
                && p.seed == seed
                && p.step > 0
                && p.gold_sel.is_finite()
                && p.gold_test.is_finite()
        })
        .collect();
    let peak =
        pts.iter().max_by(|a, b| a.gold_sel.total_cmp(&b.gold_sel).then(b.step.cmp(&a.step)))?;
    let last = pts.iter().max_by_key(|p| p.step)?;
    let row = |p: &Point| (p.step, p.kl, p.gold_test, p.proxy);
    Some([row(peak), row(last)])
}

/// The table of b over seeds: per method and reward, b's mean and interval, the pooled b with
/// its bootstrap interval, each seed's turn-over and how many lie inside the evaluated KL.
fn b_table(points: &[Point], fits: &[Fit], rows: &[(&str, &str, Paired)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Overoptimisation: Gao et al.'s b per seed (b > 0: the fitted gain turns over with KL; mean ± 95% t-interval over seeds; the pooled fit's b with a 95% bootstrap interval over seeds; where each seed's fit turns over, KL*, against the largest KL it evaluated)\n");
    let _ = writeln!(s, "| method | reward | b | per seed | pooled b (bootstrap 95%) | KL* per seed | turn-over inside the evaluated KL | verdict |\n|---|---|---|---|---|---|---|---|");
    for (m, r, p) in rows {
        let per: Vec<String> = p.diffs.iter().map(|b| format!("{b:.3}")).collect();
        let pooled = fits.iter().find(|f| f.method == *m && f.reward == *r && f.seed.is_none());
        let boot = match (pooled, b_bootstrap(points, m, r, 2000)) {
            (Some(f), Some((lo, hi))) => format!("{:.4} ({lo:.4} to {hi:.4})", f.b),
            (Some(f), None) => format!("{:.4}", f.b),
            _ => "-".into(),
        };
        let seed_fits: Vec<&Fit> =
            fits.iter().filter(|f| f.method == *m && f.reward == *r && f.seed.is_some()).collect();
        let largest = |sd: u64| {
            points
                .iter()
                .filter(|q| q.method == *m && q.seed == sd)
                .map(|q| q.kl)
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let stars: Vec<String> = seed_fits
            .iter()
            .map(|f| {
                turnover_kl(f).map_or("none".into(), |k| {
                    if k < 1e4 {
                        format!("{k:.2}")
                    } else {
                        format!("{k:.1e}")
                    }
                })
            })
            .collect();
        let inside = seed_fits
            .iter()
            .filter(|f| turnover_kl(f).is_some_and(|k| k <= largest(f.seed.unwrap())))
            .count();
        // For the proxy a turn-over is the fit's curvature, not overoptimisation (which is gold
        // falling while the proxy rises).
        // Gold's b > 0 is overoptimisation only where the fitted curve turns over inside the
        // KL evaluated, in most seeds; else the fit's curvature, extrapolated.
        let words = if *r == "gold" && 2 * inside > seed_fits.len() {
            (
                "b > 0 (overoptimised: the turn-over inside the evaluated KL in most seeds)",
                "b < 0 (no turn-over)",
            )
        } else if *r == "gold" {
            ("b > 0 (the fitted gain curves down, but its turn-over lies past the evaluated KL in most seeds: not located)", "b < 0 (no turn-over)")
        } else {
            ("b > 0 (the proxy's gain curves down)", "b < 0 (the proxy's gain curves up)")
        };
        let _ = writeln!(
            s,
            "| {m} | {r} | {:.4} ± {:.4} | {} | {boot} | {} | {inside} of {} | {} |",
            p.mean,
            p.ci95,
            per.join(", "),
            stars.join(", "),
            seed_fits.len(),
            p.verdict_words(words.0, words.1)
        );
    }
    s
}

/// The report's overoptimisation section: b over seeds, and the peak and decline of gold.
pub fn markdown(points: &[Point], fits: &[Fit]) -> String {
    let mut s = String::new();
    let rows: Vec<(&str, &str, Paired)> = FITTED
        .iter()
        .flat_map(|&(m, _)| ["gold", "proxy"].map(|r| (m, r)))
        .filter_map(|(m, r)| b_over_seeds(fits, m, r).map(|p| (m, r, p)))
        .collect();
    if rows.is_empty() {
        return s;
    }
    s.push_str(&b_table(points, fits, &rows));
    let mut seeds: Vec<u64> = points.iter().map(|p| p.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut decl = Vec::new();
    for &(m, _) in &FITTED[1..] {
        let per: Vec<(u64, (f64, f64, f64, f64))> = seeds
            .iter()
            .filter_map(|&sd| peak_and_decline(points, m, sd).map(|v| (sd, v)))
            .collect();
        if !per.is_empty() {
            decl.push((m, per));
        }
    }
    if !decl.is_empty() {
        let _ = writeln!(s, "\n## Peak and decline of gold with KL (peak chosen on the selection half; test-half gold at the peak minus at the largest KL evaluated)\n");
        let _ = writeln!(s, "| method | seed | KL at peak | gold at peak | largest KL | gold there | decline |\n|---|---|---|---|---|---|---|");
        for (m, per) in &decl {
            for (sd, (kp, gp, kl, gl)) in per {
                let _ = writeln!(
                    s,
                    "| {m} | {sd} | {kp:.3} | {gp:.4} | {kl:.3} | {gl:.4} | {:.4} |",
                    gp - gl
                );
            }
            let d = Paired::new(&per.iter().map(|(_, v)| v.1 - v.3).collect::<Vec<_>>());
            let v = d.verdict_words("gold falls past its peak", "gold rises to the largest KL");
            // A peak inside the evaluated range: at a KL below the largest the seed reached.
            let inside = per.iter().filter(|(_, v)| v.0 < v.2).count();
            let _ = writeln!(s, "| {m} | mean | | | | | {:.4} ± {:.4}: {v}; the peak inside the evaluated KL (below the largest) in {inside} of {} seeds |", d.mean, d.ci95, per.len());
        }
    }
    // Within each PPO run: gold from its peak to its end, at the KL its controller holds.
    let mut rows = Vec::new();
    for &(m, _) in &FITTED[1..] {
        for setting in
            super::distinct(points.iter().filter(|p| p.method == m).map(|p| p.setting.clone()))
        {
            let per: Vec<[(usize, f64, f64, f64); 2]> =
                seeds.iter().filter_map(|&sd| run_peak(points, m, &setting, sd)).collect();
            if per.len() >= 2 {
                rows.push((m, setting, per));
            }
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(s, "\n## Gold over training within each run (peak: the evaluation after step 0 best on the selection half; decline: test-half gold at the peak minus at the run's end; means over seeds, the decline with a 95% t-interval)\n");
        let _ = writeln!(s, "| method | setting | KL at peak -> end | proxy at peak -> end | gold at peak -> end | decline |\n|---|---|---|---|---|---|");
        for (m, setting, per) in &rows {
            let mean =
                |f: &dyn Fn(&PeakEnd) -> f64| per.iter().map(f).sum::<f64>() / per.len() as f64;
            let d = Paired::new(&per.iter().map(|r| r[0].2 - r[1].2).collect::<Vec<_>>());
            let v = d.verdict_words("gold falls over training", "gold rises to the end");
            let _ = writeln!(s, "| {m} | {setting} | {:.2} -> {:.2} | {:.3} -> {:.3} | {:.4} -> {:.4} | {:.4} ± {:.4}: {v} |", mean(&|r| r[0].1), mean(&|r| r[1].1), mean(&|r| r[0].3), mean(&|r| r[1].3), mean(&|r| r[0].2), mean(&|r| r[1].2), d.mean, d.ci95);
        }
    }
    s
}

/// A run at its peak and at its end: (step, KL, proxy, gold) each.
type PeakEnd = [(usize, f64, f64, f64); 2];
