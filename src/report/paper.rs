//! `alignlab report --paper`: regenerate every results folder's report, then write
//! `paper/README.md` from them. Every number in the write-up is read from `results/`; the
//! verdicts ("above", "within the intervals", ...) are computed from those numbers.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{distinct, plot};
use crate::experiment::write_atomic;

/// A CSV with a header, as rows of named fields.
struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(path: &Path) -> Option<Csv> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        let header = lines.next()?.split(',').map(|s| s.to_string()).collect();
        let rows = lines.filter(|l| !l.is_empty()).map(split_csv).collect();
        Some(Csv { header, rows })
    }

    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap_or(usize::MAX)
    }

    fn get<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        row.get(self.col(name)).map(|s| s.as_str()).unwrap_or("")
    }

    fn num(&self, row: &[String], name: &str) -> f64 {
        self.get(row, name).parse().unwrap_or(f64::NAN)
    }
}

/// Split a CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

/// (mean, ci) of a method at a KL budget on its selected frontier in a `frontier.csv`, where
/// every seed reached the budget.
fn at_budget(f: &Csv, method: &str, budget: f64) -> Option<(f64, f64)> {
    f.rows
        .iter()
        .find(|r| f.get(r, "method") == method && f.num(r, "kl_budget") == budget && matches!(f.get(r, "frontier"), "" | "selected"))
        .filter(|r| f.get(r, "seeds_reaching") == f.get(r, "seeds"))
        .map(|r| (f.num(r, "gold_mean"), f.num(r, "gold_ci95")))
        .filter(|v| v.0.is_finite())
}

/// One line of a paired comparison from a `paired.csv` row.
fn paired_line(p: &Csv, r: &[String]) -> String {
    let (a, b) = (p.get(r, "a"), p.get(r, "b"));
    let mean = p.num(r, "mean_diff");
    if !mean.is_finite() {
        return format!("{a} against {b}: {}", p.get(r, "verdict"));
    }
    let diffs: Vec<String> = p.get(r, "diffs").split(';').filter_map(|d| d.parse::<f64>().ok()).map(|d| format!("{d:+.3}")).collect();
    let ci = p.num(r, "ci95");
    let ci = if ci.is_finite() { format!(" ± {ci:.3}") } else { String::new() };
    format!("{a} - {b} = {mean:+.3}{ci} (per seed {}): {a} is {}", diffs.join(", "), p.get(r, "verdict"))
}

/// The rows of a `paired.csv` on one axis, for A against B.
fn paired_rows<'a>(p: &'a Csv, a: &str, b: &str, axis: &str) -> Vec<&'a Vec<String>> {
    p.rows.iter().filter(|r| p.get(r, "a") == a && p.get(r, "b") == b && p.get(r, "axis") == axis).collect()
}

fn wall_time(dir: &Path) -> Option<String> {
    let s = Csv::read(&dir.join("summary.csv"))?;
    s.rows.iter().find(|r| s.get(r, "metric") == "wall time").map(|r| s.get(r, "value").to_string())
}

/// The `[section]`s of a resolved scenario, as they were run.
fn settings(dir: &Path, sections: &[&str]) -> String {
    let Ok(text) = std::fs::read_to_string(dir.join("scenario.resolved.toml")) else { return String::new() };
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']');
            keep = sections.iter().any(|s| name == *s || name.starts_with(&format!("{s}.")));
        }
        if keep && !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// "Online against offline": the frontier, the paired differences at each budget, what they say
/// of Tang et al.'s finding, and each online method's cost per iteration against PPO's.
fn online_section(s: &mut String, dir: &Path, f: &Csv, p: &Csv) {
    let _ = writeln!(s, "## Online against offline (sentiment)\n");
    let _ = writeln!(s, "Tang et al. (2024) found online preference optimisation a Pareto improvement over offline at matched KL, and offline training on the *shuffled* pairs of an online run (the same data without the on-policy order) gaining little, so that coverage does not explain the gap; Guo et al. (2024) found online DPO ahead of offline DPO; Ahmadian et al. (2024) found RLOO ahead of PPO. Here, at the paper's sentiment settings (`scenarios/online-vs-offline.toml`): offline DPO on pi_SFT's pairs; online DPO, labelled by the reward model (`online_dpo`) or the gold reward (`online_dpo_gt`); semi-online, the sampler synced every 10 or 50 steps (`online_dpo_s10`, `online_dpo_s50`); Tang et al.'s control (`online_dpo_shuffled`); PPO, RLOO and GRPO with 64 rollouts per iteration. Every preference method takes the same number of steps on batches of the same size.\n");
    if let Some(t) = wall_time(dir) {
        let _ = writeln!(s, "`alignlab run scenarios/online-vs-offline.toml --jobs 2`; wall time of the invocation that wrote these results: {t}.\n");
    }
    figure(s, "../results/online-vs-offline/frontier.png", "Gold reward against KL(pi || pi_ref) for offline and online methods: each method's frontier chosen on the selection half of the prompts and shown on the test half (mean over seeds, 95% t-band).");
    let budgets = budgets_of(f);
    let _ = writeln!(s, "Gold reward at fixed KL budgets (selection and test halves apart, as above):\n");
    s.push_str(&budget_table(f, &budgets, "selected", "gold_mean", "gold_ci95", false));
    let _ = writeln!(s, "\nPaired by seed, A - B with a 95% t-interval over seeds:\n");
    budget_lines(s, p, |_| true);
    let verdict = |a: &str, b: &str, kl: f64| p.rows.iter().find(|r| p.get(r, "a") == a && p.get(r, "b") == b && p.get(r, "axis") == "kl_budget" && p.num(r, "x") == kl).map(|r| p.get(r, "verdict").to_string());
    // Tang et al.'s finding, read from the verdicts at KL 1 and 2.
    let mut lines = Vec::new();
    for kl in [1.0, 2.0, 4.0, 8.0] {
        let (on_off, on_shuf, shuf_off) = (verdict("online_dpo", "dpo", kl), verdict("online_dpo", "online_dpo_shuffled", kl), verdict("online_dpo_shuffled", "dpo", kl));
        let text = match (on_off.as_deref(), on_shuf.as_deref()) {
            (Some("above"), Some("above")) => "online DPO is above offline DPO and above the shuffled control: Tang et al.'s finding holds (the on-policy order, not the coverage of the data, makes the gain)".to_string(),
            (Some("above"), Some(v)) => format!("online DPO is above offline DPO, but against the shuffled control it is {v}: the gain is not shown to come from the on-policy order rather than the data"),
            (Some(v), _) if !v.starts_with("not compared") => format!("online DPO against offline DPO is {v}: Tang et al.'s Pareto improvement is not reproduced at this budget"),
            _ => "not every seed of both methods reached it".to_string(),
        };
        let control = shuf_off.filter(|v| !v.starts_with("not compared")).map(|v| format!(" (the control against offline DPO: {v})")).unwrap_or_default();
        lines.push(format!("at KL {kl}, {text}{control}"));
    }
    let joined = lines.join("; ");
    let _ = writeln!(s, "\n**What the runs show.** {}{}.\n", joined[..1].to_uppercase(), &joined[1..]);
    grid_caveat(s, dir);
    // Cost per iteration, from the same sweep's timing.
    if let Some(t) = Csv::read(&dir.join("timing.csv")) {
        let mean = |method: &str, keys: &[&str]| {
            let per: Vec<f64> = keys.iter().map(|k| {
                let v: Vec<f64> = t.rows.iter().filter(|r| t.get(r, "method") == method && t.get(r, "metric") == format!("{method}/time/{k}")).map(|r| t.num(r, "value")).collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            }).collect();
            (!per.is_empty() && per.iter().all(|v| *v > 0.0)).then(|| per.iter().sum::<f64>())
        };
        let rl = ["rollout_s", "update_s"];
        let online = ["sample_s", "update_s"];
        let costs: Vec<(&str, &str, Option<f64>)> = vec![
            ("ppo", "64 rollouts, 4 epochs of 2 minibatches, a critic", mean("ppo", &rl)),
            ("rloo", "16 prompts x 4 samples, 4 epochs of 2 minibatches", mean("rloo", &rl)),
            ("grpo", "16 prompts x 4 samples, 4 epochs of 2 minibatches", mean("grpo", &rl)),
            ("online_dpo", "64 prompts x 2 samples, one step on the pairs", mean("online_dpo", &online)),
        ];
        if let Some(ppo) = costs[0].2 {
            let _ = writeln!(s, "Cost of an iteration (online DPO: a step), sampling and update, mean wall seconds over every iteration of the sweep, cells running two at a time on this machine:\n\n| method | iteration | seconds | / PPO |\n|---|---|---|---|");
            for (m, what, c) in &costs {
                if let Some(c) = c {
                    let _ = writeln!(s, "| {m} | {what} | {c:.3} | {:.2} |", c / ppo);
                }
            }
            s.push('\n');
        }
    }
    let _ = writeln!(s, "Settings as run:\n\n```toml\n{}```\n", settings(dir, &["sweep", "train", "dpo", "online_dpo", "online_dpo_gt", "online_dpo_shuffled", "ppo", "rloo", "grpo", "report"]));
}

/// "The preference-loss zoo": the frontier, each loss paired against DPO, likelihood
/// displacement (both log-ratios falling at the end of training) and the KL estimators.
fn loss_zoo_section(s: &mut String, dir: &Path, f: &Csv, p: &Csv) {
    let _ = writeln!(s, "## The preference-loss zoo (sentiment)\n");
    let _ = writeln!(s, "Every loss of `algo::dpo::PrefLoss` on the same pairs, from the same pi_SFT, with the same optimisation (`scenarios/loss-zoo.toml`): DPO (TRL `sigmoid`), IPO on summed log-ratios (the DPO reference code's convention; TRL's divides by the length, `length_normalize = true` here), conservative DPO and robust DPO (Chowdhury et al. 2024, TRL `robust`) at the same flip rate 0.1, SLiC's hinge, KTO on the pairs as unpaired examples, EXO (`exo_pair`), NCA (`nca_pair`), and the reference-free SimPO and ORPO; each with a grid of its strength.\n");
    if let Some(t) = wall_time(dir) {
        let _ = writeln!(s, "`alignlab run scenarios/loss-zoo.toml --jobs 2`; wall time of the invocation that wrote these results: {t}.\n");
    }
    figure(s, "../results/loss-zoo/frontier.png", "Gold reward against KL(pi || pi_ref) for every preference loss: each loss's frontier chosen on the selection half of the prompts and shown on the test half (mean over seeds, 95% t-band).");
    let budgets = budgets_of(f);
    let _ = writeln!(s, "Gold reward at fixed KL budgets:\n");
    s.push_str(&budget_table(f, &budgets, "selected", "gold_mean", "gold_ci95", false));
    let _ = writeln!(s, "\nEach loss against DPO, paired by seed (A - B with a 95% t-interval over seeds):\n");
    budget_lines(s, p, |kl| kl == 1.0 || kl == 2.0);
    // Likelihood displacement: the last logged log-ratios of chosen and rejected, mean over seeds.
    if let Some(m) = Csv::read(&dir.join("metrics.csv")) {
        let mut last: BTreeMap<(String, String, String), (usize, f64)> = BTreeMap::new(); // (method, setting, seed) per metric
        let mut table: BTreeMap<(String, String), [Vec<f64>; 2]> = BTreeMap::new();
        for which in 0..2 {
            last.clear();
            let key = ["dynamics/logratio_chosen", "dynamics/logratio_rejected"][which];
            for r in &m.rows {
                let method = m.get(r, "method");
                if m.get(r, "metric") != format!("{method}/{key}") {
                    continue;
                }
                let step: usize = m.get(r, "step").parse().unwrap_or(0);
                let e = last.entry((method.to_string(), m.get(r, "setting").to_string(), m.get(r, "seed").to_string())).or_insert((0, f64::NAN));
                if step >= e.0 {
                    *e = (step, m.num(r, "value"));
                }
            }
            for ((method, setting, _), (_, v)) in &last {
                table.entry((method.clone(), setting.clone())).or_default()[which].push(*v);
            }
        }
        // Squeezing: the final evaluation's log-mass on the greedy response, mean over seeds.
        let mut greedy: BTreeMap<(String, String), Vec<(String, usize, f64)>> = BTreeMap::new();
        if let Some(e) = Csv::read(&dir.join("eval.csv")) {
            for r in e.rows.iter().filter(|r| e.get(r, "metric") == "eval/greedy_logp") {
                greedy.entry((e.get(r, "method").to_string(), e.get(r, "setting").to_string())).or_default().push((e.get(r, "seed").to_string(), e.get(r, "step").parse().unwrap_or(0), e.num(r, "value")));
            }
        }
        let final_greedy = |method: &str, setting: &str| -> Option<f64> {
            let v = greedy.get(&(method.to_string(), setting.to_string()))?;
            let seeds = distinct(v.iter().map(|x| x.0.clone()));
            let last: Vec<f64> = seeds.iter().filter_map(|sd| v.iter().filter(|x| &x.0 == sd).max_by_key(|x| x.1).map(|x| x.2)).collect();
            (!last.is_empty()).then(|| last.iter().sum::<f64>() / last.len() as f64)
        };
        let sft_greedy = final_greedy("sft", "");
        if !table.is_empty() {
            let _ = writeln!(s, "\nLikelihood displacement (Razin et al. 2024): the change of the chosen and the rejected responses' log-probabilities from pi_ref on the last training batch, mean over seeds; \"both\" where both fell in every seed. Squeezing (Ren and Sutherland 2025): the log-probability of the policy's greedy response to a held-out prompt at the final evaluation, mean over prompts and seeds (pi_SFT: {}).\n\n| loss | setting | log pi(y_w) - log pi_ref(y_w) | log pi(y_l) - log pi_ref(y_l) | both fell | greedy log-mass |\n|---|---|---|---|---|---|", sft_greedy.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into()));
            let mut displaced = Vec::new();
            for ((method, setting), [c, r]) in &table {
                let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
                let both = !c.is_empty() && c.iter().zip(r).all(|(a, b)| *a < 0.0 && *b < 0.0);
                if both {
                    displaced.push(format!("{method} {setting}"));
                }
                let g = final_greedy(method, setting).map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into());
                let _ = writeln!(s, "| {method} | {setting} | {:+.2} | {:+.2} | {} | {g} |", mean(c), mean(r), if both { "both" } else { "" });
            }
            let _ = writeln!(s, "\n{}\n", if displaced.is_empty() { "No loss and strength shows both log-probabilities falling in every seed.".to_string() } else { format!("Both fall, in every seed, under: {}.", displaced.join("; ")) });
        }
    }
    grid_caveat(s, dir);
    kl_estimator_table(s, dir);
    let _ = writeln!(s, "Settings as run:\n\n```toml\n{}```\n", settings(dir, &["sweep", "train", "dpo", "ipo", "cdpo", "robust", "hinge", "kto", "exo_pair", "nca_pair", "simpo", "orpo", "report"]));
}

/// The KL estimators against the exact KL, per method, from a folder's `kl_estimators.csv`.
fn kl_estimator_table(s: &mut String, dir: &Path) {
    let Some(k) = Csv::read(&dir.join("kl_estimators.csv")) else { return };
    let rel = dir.file_name().map(|n| format!("../results/{}/kl_estimators.png", n.to_string_lossy())).unwrap_or_default();
    let _ = writeln!(s, "### KL estimators\n");
    figure(s, &rel, "Each sampled estimator minus the exact KL against the exact KL, one point per evaluation of every run.");
    let _ = writeln!(s, "Every evaluation scores its samples with the exact KL (the full-vocabulary sum along each sampled response) and with the sampled estimators k1 = sum log(pi/pi_ref), k2 = sum (log(pi/pi_ref))^2 / 2 and k3 = sum (r - 1) - log r, r = pi_ref/pi. Bias: estimator minus exact, mean over a method's evaluations (relative: over evaluations with KL > 0.05); spread: the standard deviation over an evaluation's samples, mean over evaluations.\n\n| method | evaluations | exact KL | k1 bias (rel.) | k2 bias (rel.) | k3 bias (rel.) | sd exact | sd k1 | sd k2 | sd k3 |\n|---|---|---|---|---|---|---|---|---|---|");
    for m in distinct(k.rows.iter().map(|r| k.get(r, "method").to_string())) {
        let row = |e: &str| k.rows.iter().find(|r| k.get(r, "method") == m && k.get(r, "estimator") == e);
        let (Some(x), Some(k1), Some(k2), Some(k3)) = (row("exact"), row("k1"), row("k2"), row("k3")) else { continue };
        let b = |r: &Vec<String>| {
            let rel = k.num(r, "rel_bias_mean");
            let rel = if rel.is_finite() { format!(" ({:+.1}%)", 100.0 * rel) } else { String::new() };
            format!("{:+.3}{rel}", k.num(r, "bias_mean"))
        };
        let _ = writeln!(s, "| {m} | {} | {:.3} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |", k.get(x, "evaluations"), k.num(x, "kl_mean"), b(k1), b(k2), b(k3), k.num(x, "sd_mean"), k.num(k1, "sd_mean"), k.num(k2, "sd_mean"), k.num(k3, "sd_mean"));
    }
    s.push('\n');
}

/// One line per pair of a `paired.csv` and KL budget that `keep` admits, pair by pair.
fn budget_lines(s: &mut String, p: &Csv, keep: impl Fn(f64) -> bool) {
    let pairs = distinct(p.rows.iter().filter(|r| p.get(r, "axis") == "kl_budget").map(|r| format!("{}|{}", p.get(r, "a"), p.get(r, "b"))));
    for pair in &pairs {
        let (a, b) = pair.split_once('|').unwrap();
        for r in paired_rows(p, a, b, "kl_budget").into_iter().filter(|r| keep(p.num(r, "x"))) {
            let _ = writeln!(s, "- KL {}: {}.", p.get(r, "x"), paired_line(p, r));
        }
    }
}

/// Where a method's grid has no evaluation below a budget, its value there is a mixture of
/// pi_SFT and an evaluation past the budget: a statement about the grid, not the method. Names
/// the methods whose smallest evaluated KL (selection half, worst seed) lies past KL 1.
fn grid_caveat(s: &mut String, dir: &Path) {
    if let Some(e) = Csv::read(&dir.join("eval.csv")) {
        let mut first: BTreeMap<(String, String), f64> = BTreeMap::new(); // (method, seed) -> smallest evaluated KL
        for r in e.rows.iter().filter(|r| e.get(r, "metric") == "eval/kl_sel" && e.get(r, "step") != "0") {
            let k = first.entry((e.get(r, "method").to_string(), e.get(r, "seed").to_string())).or_insert(f64::INFINITY);
            *k = k.min(e.num(r, "value"));
        }
        let mut coarse: Vec<String> = Vec::new();
        for m in distinct(first.keys().map(|k| k.0.clone())) {
            let worst = first.iter().filter(|(k, _)| k.0 == m).map(|(_, v)| *v).fold(0.0, f64::max);
            if worst > 1.0 {
                coarse.push(format!("{m} ({worst:.1})"));
            }
        }
        if !coarse.is_empty() {
            let _ = writeln!(s, "Read these verdicts with the grids: in some seed, the smallest KL any evaluation of these methods reached (selection half) lies past KL 1: {}. Their values at the budgets below it are mixtures of pi_SFT and an evaluation past the budget, so they bound what the method reaches there from below; finer evaluation (`eval.every`, `eval_every`) or stronger KL settings are needed before they say anything about the method (the fair protocol's calibration).\n", coarse.join(", "));
        }
    }
}

/// The KL budgets of a `frontier.csv`, ascending.
fn budgets_of(f: &Csv) -> Vec<f64> {
    let mut b: Vec<f64> = f.rows.iter().map(|r| f.num(r, "kl_budget")).collect();
    b.sort_by(|a, b| a.total_cmp(b));
    b.dedup();
    b
}

/// A markdown table of `col` ± `ci_col` per method (rows) and KL budget (columns) of the
/// `which` frontier; `- (k/n seeds)` where not every seed reached a budget.
fn budget_table(f: &Csv, budgets: &[f64], which: &str, col: &str, ci_col: &str, signed: bool) -> String {
    let mut t = String::new();
    let _ = write!(t, "| method |");
    for b in budgets {
        let _ = write!(t, " KL {b} |");
    }
    let _ = writeln!(t, "\n|---|{}", "---|".repeat(budgets.len()));
    let methods = distinct(f.rows.iter().filter(|r| f.get(r, "frontier") == which).map(|r| f.get(r, "method").to_string()));
    for m in &methods {
        let _ = write!(t, "| {} |", if m == "optimal" { "optimal (inner bound)" } else { m });
        for b in budgets {
            match f.rows.iter().find(|r| f.get(r, "method") == m && f.num(r, "kl_budget") == *b && f.get(r, "frontier") == which) {
                Some(r) if f.num(r, col).is_finite() && f.get(r, "seeds_reaching") == f.get(r, "seeds") => {
                    let v = f.num(r, col);
                    let v = if signed { format!("{v:+.3}") } else { f3(v) };
                    let _ = write!(t, " {v} ± {} |", f3(f.num(r, ci_col)));
                }
                Some(r) if f.num(r, "seeds_reaching") > 0.0 => {
                    let _ = write!(t, " - ({}/{} seeds) |", f.get(r, "seeds_reaching"), f.get(r, "seeds"));
                }
                _ => t.push_str(" - |"),
            }
        }
        t.push('\n');
    }
    t
}

fn figure(s: &mut String, rel: &str, caption: &str) {
    let _ = writeln!(s, "![{caption}]({rel})\n\n*{caption}*\n");
}

/// Every results folder with an `eval.csv`, regenerated; then the write-up.
pub fn write(results: &Path, out: &Path) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results).with_context(|| format!("cannot read {}; fix: run from the repository root", results.display()))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("eval.csv").exists()).collect();
    dirs.sort();
    for d in &dirs {
        super::report(d).with_context(|| format!("report of {}", d.display()))?;
    }
    let ablations = ablation_figure(results)?;
    let mut s = String::new();
    let _ = writeln!(s, "# RLHF (PPO) against DPO in worlds with a known reward\n");
    let _ = writeln!(s, "*Generated by `alignlab report --paper` from the CSVs in `results/`; do not edit by hand.*\n");
    let _ = writeln!(s, "## The question\n\nDoes Direct Preference Optimization (Rafailov et al., 2023) reach a better reward-KL trade-off than RLHF with a Bradley-Terry reward model and PPO, and a higher win rate in summarization, as the paper reports? Here the true reward is known exactly, so the gold reward, the KL and the optimal policy need no learned judge.\n");
    let _ = writeln!(s, "## The worlds\n\n- **sentiment** (IMDb analogue): reviews from a bigram language tilted by a latent sentiment; the gold reward is the exact Bayes posterior p(positive | text); prompts are 2 to 8 word prefixes.\n- **summarize** (TL;DR analogue): documents hold 2 to 5 fact words among filler; each fact has a salience. The gold judge scores the salience of the document's facts a summary mentions minus penalties for length, repetition and facts not in the document. SFT learns from noisy near-optimal reference summaries; preference pairs come off-policy from a separate labeller with Bradley-Terry label noise. The metric is the win rate against the reference summary (ties count one half).\n- **tabular**: every response enumerable, so pi* proportional to pi_ref exp(r / beta), KL and TV are exact.\n");

    // Sentiment.
    let sent = results.join("paper-sentiment");
    if let Some(f) = Csv::read(&sent.join("frontier.csv")) {
        let _ = writeln!(s, "## Sentiment: reward against KL (paper Fig. 2 left)\n");
        if let Some(t) = wall_time(&sent) {
            let _ = writeln!(s, "`alignlab run scenarios/paper-sentiment.toml --jobs 2`; wall time of the invocation that wrote these results: {t} (a rerun that finds every cell cached only merges, in seconds).\n");
        }
        figure(&mut s, "../results/paper-sentiment/frontier.png", "Gold reward against KL(pi || pi_ref): every evaluation a point (all held-out prompts); each method's frontier, chosen on the selection half of the prompts and shown on the test half (mean over seeds, 95% t-band, drawn up to the KL every seed reached); thin dashed: final checkpoints only; black dashed: the importance-sampling inner bound of the optimal frontier. Best-of-N's KL is the analytic upper bound.");
        let budgets = budgets_of(&f);
        let table = |which: &str, col: &str, ci_col: &str, signed: bool| budget_table(&f, &budgets, which, col, ci_col, signed);
        let _ = writeln!(s, "Gold reward at fixed KL budgets on each method's upper concave envelope. Which evaluation of which setting a method contributes at a budget is chosen on the selection half of the held-out prompts; the value is the test half's (mean ± 95% t-interval over seeds). A seed has a value only if it evaluated a point at or past the budget: `-` (k/n seeds) where not every seed did; nothing is extrapolated. The optimal row is an inner bound (see Methods).\n");
        s.push_str(&table("selected", "gold_mean", "gold_ci95", false));
        let _ = writeln!(s, "\nThe same with each setting's final checkpoint only:\n");
        s.push_str(&table("final", "gold_mean", "gold_ci95", false));
        let _ = writeln!(s, "\nSelection bias the split removed: the test half's own envelope (checkpoints chosen and read on the same samples, as before) minus the reported value, mean ± 95% paired t-interval over seeds:\n");
        s.push_str(&table("selected", "selection_bias_mean", "selection_bias_ci95", true));
        if let Some(p) = Csv::read(&sent.join("paired.csv")) {
            let _ = writeln!(s, "\n**What the runs show.** The paper reports that DPO's frontier dominates PPO's. Here, paired by seed (each seed shares the world, SFT, data, reward model and evaluation samples across methods), A - B with a 95% t-interval over seeds; \"inconclusive\" states the difference the seeds could detect at 80% power:\n");
            let mut count = [0usize; 3]; // above, below, inconclusive against PPO
            for b in distinct(p.rows.iter().filter(|r| p.get(r, "a") == "dpo").map(|r| p.get(r, "b").to_string())) {
                for r in paired_rows(&p, "dpo", &b, "kl_budget") {
                    let _ = writeln!(s, "- KL {}: {}.", p.get(r, "x"), paired_line(&p, r));
                    if b == "ppo" && p.num(r, "mean_diff").is_finite() {
                        let v = p.get(r, "verdict");
                        count[if v == "above" { 0 } else if v == "below" { 1 } else { 2 }] += 1;
                    }
                }
            }
            let compared: usize = count.iter().sum();
            let _ = writeln!(s, "\nAgainst PPO, of the {compared} budgets every seed of both reached, DPO is above at {}, below at {} and inconclusive at {}. {}\n", count[0], count[1], count[2], if count[0] == compared && compared > 0 { "This agrees with the paper's claim that DPO dominates PPO." } else { "The paper's claim that DPO dominates PPO is not reproduced in this world." });
        }
        if let Some(reach) = optimal_reach(&sent) {
            let first = budgets.first().copied().unwrap_or(f64::NAN);
            let tail = if reach.0 < first { format!("short of the first budget (KL {first}): past it, N samples per prompt cannot say where pi* lies, and the table has no optimal value to measure shortfalls against") } else { "past it, N samples per prompt cannot say where pi* lies, and its row stops there".to_string() };
            let _ = writeln!(s, "The importance-sampling inner bound of the optimal frontier (N = {:.0} samples of pi_SFT per prompt, every prompt's effective sample size at least {:.0}) reaches KL {:.2} in every seed, {tail}.\n", reach.1, reach.2, reach.0);
        }
        figure(&mut s, "../results/paper-sentiment/overoptimization.png", "Overoptimisation: gold and proxy reward gain over SFT against d = sqrt(KL) for Best-of-N and PPO, with Gao et al.'s fitted forms.");
        figure(&mut s, "../results/paper-sentiment/curves.png", "Training curves (seed 0): gold reward and KL per run.");
        let _ = writeln!(s, "Settings as run:\n\n```toml\n{}```\n", settings(&sent, &["sweep", "train", "eval", "dpo", "unlikelihood", "preferred_ft", "ppo", "ppo_gt", "best_of_n", "report"]));
    }

    // Online against offline.
    let ovo = results.join("online-vs-offline");
    if let (Some(f), Some(p)) = (Csv::read(&ovo.join("frontier.csv")), Csv::read(&ovo.join("paired.csv"))) {
        online_section(&mut s, &ovo, &f, &p);
    }

    // The loss zoo and the KL estimators.
    let zoo = results.join("loss-zoo");
    if let (Some(f), Some(p)) = (Csv::read(&zoo.join("frontier.csv")), Csv::read(&zoo.join("paired.csv"))) {
        loss_zoo_section(&mut s, &zoo, &f, &p);
    }

    // Summarize.
    let summ = results.join("paper-summarize");
    if let Some(w) = Csv::read(&summ.join("winrate.csv")) {
        let _ = writeln!(s, "## Summarize: win rate against the reference by temperature (paper Fig. 2 right)\n");
        if let Some(t) = wall_time(&summ) {
            let _ = writeln!(s, "`alignlab run scenarios/paper-summarize.toml --jobs 2`; wall time of the invocation that wrote these results: {t}.\n");
        }
        figure(&mut s, "../results/paper-summarize/winrate_temperature.png", "Win rate against the reference summary under the gold judge, by sampling temperature (mean over seeds with 95% t-interval; Best-of-N at its largest N).");
        if let Ok(md) = std::fs::read_to_string(summ.join("report.md")) {
            if let Some(i) = md.find("## Win rate against") {
                let _ = writeln!(s, "{}", md[i..].replacen("## ", "### ", 1));
            }
        }
        let temp = |label: &str, t: f64| {
            w.rows.iter().find(|r| w.get(r, "axis") == "temperature" && format!("{} {}", w.get(r, "method"), w.get(r, "setting")).trim() == label && w.num(r, "x") == t).map(|r| (w.num(r, "winrate"), w.num(r, "lo95"), w.num(r, "hi95")))
        };
        let labels = distinct(w.rows.iter().filter(|r| w.get(r, "axis") == "temperature").map(|r| format!("{} {}", w.get(r, "method"), w.get(r, "setting")).trim().to_string()));
        let dpo: Vec<&String> = labels.iter().filter(|l| l.starts_with("dpo")).collect();
        let ppo: Vec<&String> = labels.iter().filter(|l| l.starts_with("ppo")).collect();
        let _ = writeln!(s, "**What the runs show.** The paper reports DPO at about 61% at temperature 0 against PPO's 57% at its best, and PPO degrading at high temperature while DPO is more robust. Here, paired by seed on the test half of the documents (a method with several settings contributes, per seed and temperature, the one with the best win rate on the selection half), A - B with a 95% t-interval over seeds:\n");
        if let Some(p) = Csv::read(&summ.join("paired.csv")) {
            for b in distinct(p.rows.iter().filter(|r| p.get(r, "a") == "dpo").map(|r| p.get(r, "b").to_string())) {
                for r in paired_rows(&p, "dpo", &b, "temperature") {
                    let t = p.num(r, "x");
                    if t == 0.0 || t == 1.0 {
                        let _ = writeln!(s, "- T = {t}: win rate {}.", paired_line(&p, r));
                    }
                }
                for r in paired_rows(&p, "dpo", &b, "winrate_change") {
                    let _ = writeln!(s, "- Temperature robustness, the change in win rate from the lowest temperature to T = {}: {}.", p.get(r, "x"), paired_line(&p, r));
                }
            }
            let against_ppo: Vec<&str> = paired_rows(&p, "dpo", "ppo", "temperature").iter().map(|r| p.get(r, "verdict")).collect();
            if !against_ppo.is_empty() {
                let above = against_ppo.iter().filter(|v| **v == "above").count();
                let below = against_ppo.iter().filter(|v| **v == "below").count();
                let _ = writeln!(s, "- Against PPO over all {} temperatures: above at {above}, below at {below}, inconclusive at {}. {}", against_ppo.len(), against_ppo.len() - above - below, if above == against_ppo.len() { "This agrees with the paper's claim." } else if below > 0 { "The paper's claim is contradicted where DPO is below." } else { "The paper's claim that DPO wins is not established here: the seeds cannot tell the two apart at the differences stated." });
            }
        }
        let drop = |l: &str| Some(temp(l, 1.0)?.0 - temp(l, 0.0)?.0);
        for l in dpo.iter().chain(ppo.iter()) {
            if let Some(d) = drop(l) {
                let _ = writeln!(s, "- {l}: from T = 0 to T = 1 the win rate (mean over seeds, all documents) changes by {d:+.3}.");
            }
        }
        // Each policy's best temperature (Best-of-N at its largest N, as in the paper's Best of 128).
        let bon = labels.iter().filter(|l| l.starts_with("best_of_n n=")).max_by_key(|l| l.trim_start_matches("best_of_n n=").parse::<usize>().unwrap_or(0));
        for l in ["sft".to_string()].iter().chain(dpo.iter().copied()).chain(ppo.iter().copied()).chain(bon) {
            let best = w.rows.iter().filter(|r| w.get(r, "axis") == "temperature" && format!("{} {}", w.get(r, "method"), w.get(r, "setting")).trim() == l).max_by(|a, b| w.num(a, "winrate").total_cmp(&w.num(b, "winrate")));
            if let Some(r) = best {
                let _ = writeln!(s, "- {l} peaks at T = {} (all documents, descriptive): {} [{}, {}].", w.get(r, "x"), f3(w.num(r, "winrate")), f3(w.num(r, "lo95")), f3(w.num(r, "hi95")));
            }
        }
        s.push('\n');
        figure(&mut s, "../results/paper-summarize/winrate_steps.png", "Win rate against the reference over training (paper Fig. 3 right analogue), at the evaluation temperature (1.0), mean over seeds with 95% t-band.");
        let _ = writeln!(s, "Settings as run:\n\n```toml\n{}```\n", settings(&summ, &["world", "sweep", "prefs", "train", "eval", "dpo", "preferred_ft", "ppo", "best_of_n", "report"]));
    }

    // Tabular.
    let tab = results.join("tabular");
    if let Some(t) = Csv::read(&tab.join("tabular.csv")) {
        let _ = writeln!(s, "## Tabular world: convergence to pi*\n\n`alignlab tabular` (3 prompts, 3 words, length 2: 9 responses per prompt; 2M Bradley-Terry pairs per prompt from pi_ref, 200k deterministic pairs).\n");
        figure(&mut s, "../results/tabular/tabular.png", "Left: TV(pi, pi*) over training, Bradley-Terry labels. Right: the largest mass on a prompt's worst response under deterministic labels.");
        let _ = writeln!(s, "| series | final step | metric | value |\n|---|---|---|---|");
        for k in distinct(t.rows.iter().map(|r| t.get(r, "series"))) {
            let last = t.rows.iter().filter(|r| t.get(r, "series") == k).max_by_key(|r| t.get(r, "step").parse::<usize>().unwrap_or(0)).unwrap();
            let _ = writeln!(s, "| {k} | {} | {} | {:.3e} |", t.get(last, "step"), t.get(last, "metric"), t.num(last, "value"));
        }
        let last = |series: &str| t.rows.iter().filter(|r| t.get(r, "series") == series).max_by_key(|r| t.get(r, "step").parse::<usize>().unwrap_or(0)).map(|r| t.num(r, "value"));
        let _ = writeln!(s, "\nDPO and PPO-GT both target pi*; IPO optimises another regularised objective, so its distance to pi* under Bradley-Terry labels need not vanish.\n");
        for beta in ["0.1", "1"] {
            if let (Some(d), Some(i), Some(r)) = (last(&format!("DPO beta={beta}")), last(&format!("IPO beta={beta}")), last(&format!("pi_ref beta={beta}"))) {
                let p = last(&format!("PPO-GT beta={beta}")).map(|p| format!(", PPO-GT {p:.3e}")).unwrap_or_default();
                let _ = writeln!(s, "- beta {beta}, Bradley-Terry labels: TV to pi* falls from {r:.3} (pi_ref) to DPO {d:.3e}{p}; IPO {i:.3e}.");
            }
            if let (Some(d), Some(i)) = (last(&format!("DPO beta={beta} (deterministic labels)")), last(&format!("IPO beta={beta} (deterministic labels)"))) {
                let v = if d < i * 1e-3 { "DPO drives it towards zero while IPO keeps it" } else { "DPO does not drive it far below IPO's" };
                let _ = writeln!(s, "- beta {beta}, deterministic labels: the worst response keeps {d:.3e} under DPO and {i:.3e} under IPO: {v}.");
            }
        }
        if let Some(u) = Csv::read(&results.join("tabular").join("tabular_unseen.csv")) {
            if let Some(first) = u.rows.first() {
                let _ = writeln!(s, "\nLikelihood displacement, exactly: each loss trained from pi_ref (2000 full-batch steps) on {} deterministic pairs per prompt drawn from pi_ref, which leave {:.2} of a prompt's 9 responses in no pair. The mass on those unseen responses (mean over prompts), at pi_ref and at the end:\n\n| loss | setting | pi_ref | trained |\n|---|---|---|---|", u.get(first, "pairs"), u.num(first, "unseen_responses"));
                for r in &u.rows {
                    let _ = writeln!(s, "| {} | {} | {:.3} | {:.2e} |", u.get(r, "loss"), u.get(r, "setting"), u.num(r, "mass_ref"), u.num(r, "mass"));
                }
                let rising: Vec<&str> = u.rows.iter().filter(|r| u.num(r, "mass") > u.num(r, "mass_ref")).map(|r| u.get(r, "loss")).collect();
                let _ = writeln!(s, "\n{}", if rising.is_empty() { "No loss moves mass onto the unseen responses in this world: every one takes mass off them.".to_string() } else { format!("Mass moves onto unseen responses under: {}.", rising.join(", ")) });
            }
        }
        s.push('\n');
    }

    // Ablations.
    if let Some(table) = ablations {
        let _ = writeln!(s, "## Ablations (sentiment, one seed each)\n\n`make ablations`. Gold reward at KL budgets on each method's envelope (chosen on the selection half of the prompts, reported on the test half; `-`: the run did not reach the budget):\n");
        figure(&mut s, "../results/ablations.png", "Gold reward at KL 2 against the ablated setting: label noise (Bradley-Terry temperature), preference-data size (training prompts, 6 pairs each), reward-model size (d_model).");
        s.push_str(&table);
        s.push('\n');
    }
    let _ = writeln!(s, "## Methods and definitions\n\n- KL(pi || pi_ref): the sum over a sampled response's positions of the exact full-vocabulary KL between the two next-token distributions, at the sampling temperature; Best-of-N reports the analytic bound log N - (N-1)/N.\n- Optimal frontier, an inner bound: pi* proportional to pi_ref exp(r / beta) restricted to N samples of pi_SFT per prompt (the Best-of-N candidates of the prompt, `eval.optimal_samples`), by self-normalised importance sampling; the reweighted sample is a policy, so its point is attainable, but its KL cannot pass log N and pi* proper lies above it. A beta is kept only while every prompt's effective sample size is at least `eval.optimal_min_ess`.\n- Selection and report apart: the held-out prompts are split (`eval.selection_fraction`, half by default); per seed, a method's upper concave envelope (SFT's point included) is built on the selection half, and at a budget the two evaluations (or one) it interpolates and their mixture weight are taken to the test half, whose value is reported. A seed has a value at a budget only if it evaluated a point at or past it (selection-half KL).\n- Paired comparisons: per seed, A - B; mean with a 95% t-interval over seeds and the smallest difference a two-sided 5% test detects with 80% power, (t_0.975 + t_0.8) s / sqrt(n). \"above\" or \"below\" when the interval excludes 0, else \"inconclusive\" with that difference. Never from the overlap of unpaired intervals.\n- Win rate: P(gold(y) > gold(y_ref)) with ties one half; in the figure and its table, one seed: 95% Wilson interval over the samples; several seeds: 95% t-interval over seeds.\n- Every run's exact settings are in `results/<scenario>/scenario.resolved.toml`.");
    s.push_str(&provenance(results));
    let path = out.join("README.md");
    std::fs::create_dir_all(out)?;
    write_atomic(&path, s.as_bytes())?;
    Ok(path)
}

/// The importance-sampling frontier's reach in a results folder: (the smallest over seeds of the
/// largest KL kept, N, the ESS threshold), from its `eval.csv` and resolved scenario.
fn optimal_reach(dir: &Path) -> Option<(f64, f64, f64)> {
    let e = Csv::read(&dir.join("eval.csv"))?;
    let rows: Vec<&Vec<String>> = e.rows.iter().filter(|r| e.get(r, "method") == "optimal").collect();
    let seeds = distinct(rows.iter().map(|r| e.get(r, "seed")));
    let reach = seeds.iter().map(|sd| rows.iter().filter(|r| e.get(r, "seed") == *sd && e.get(r, "metric") == "eval/kl").map(|r| e.num(r, "value")).fold(f64::NEG_INFINITY, f64::max)).fold(f64::INFINITY, f64::min);
    let n = rows.iter().find(|r| e.get(r, "metric") == "eval/is_samples").map(|r| e.num(r, "value"))?;
    let text = std::fs::read_to_string(dir.join("scenario.resolved.toml")).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    let ess = v.get("eval")?.get("optimal_min_ess")?.as_float()?;
    reach.is_finite().then_some((reach, n, ess))
}

/// Which code produced each results folder (the `code` row of its summary.csv). Folders from
/// before that row existed were made with numerics 1 (see `experiment::stages::NUMERICS`).
fn provenance(results: &Path) -> String {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results).map(|it| it.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("summary.csv").exists()).collect()).unwrap_or_default();
    dirs.sort();
    let mut s = String::from("\n\n## Provenance\n\nThe code behind each results folder (rerunning a folder's scenario with other code gives other bytes; with the same code, seed and thread count, the same bytes):\n\n| results | code |\n|---|---|\n");
    for d in dirs {
        let code = Csv::read(&d.join("summary.csv")).and_then(|c| c.rows.iter().find(|r| c.get(r, "metric") == "code").map(|r| c.get(r, "value").to_string()));
        let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let _ = writeln!(s, "| {name} | {} |", code.unwrap_or_else(|| "not recorded: numerics 1, before commit 44184c1".to_string()));
    }
    s
}

/// The ablation folders `results/ablation-<family>-<level>`: a Markdown table of gold at KL
/// budgets and `results/ablations.{png,svg}` (gold at KL 2 against the level).
fn ablation_figure(results: &Path) -> Result<Option<String>> {
    let families = [("label-noise", "T", "Bradley-Terry label temperature"), ("data-size", "", "training prompts (6 pairs each)"), ("rm-size", "d", "reward-model d_model")];
    let mut panels: Vec<plot::AblationPanel> = Vec::new();
    let mut table = String::from("| ablation | level | method | KL 1 | KL 2 | KL 4 |\n|---|---|---|---|---|---|\n");
    for (family, prefix, xdesc) in families {
        let mut levels: Vec<(f64, PathBuf)> = Vec::new();
        let Ok(rd) = std::fs::read_dir(results) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(level) = name.strip_prefix(&format!("ablation-{family}-{prefix}")) {
                if let Ok(v) = level.replace('p', ".").parse::<f64>() {
                    levels.push((v, e.path()));
                }
            }
        }
        if levels.is_empty() {
            continue;
        }
        levels.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut series: Vec<(String, Vec<(f64, f64, f64)>)> = Vec::new();
        for (level, dir) in &levels {
            let Some(f) = Csv::read(&dir.join("frontier.csv")) else { continue };
            for m in distinct(f.rows.iter().map(|r| f.get(r, "method").to_string()).filter(|m| m != "optimal")) {
                let cells: Vec<String> = [1.0, 2.0, 4.0].iter().map(|b| at_budget(&f, &m, *b).map(|(g, _)| f3(g)).unwrap_or("-".into())).collect();
                let _ = writeln!(table, "| {family} | {level} | {m} | {} |", cells.join(" | "));
                if let Some((g, ci)) = at_budget(&f, &m, 2.0) {
                    match series.iter_mut().find(|s| s.0 == m) {
                        Some(s) => s.1.push((*level, g, ci)),
                        None => series.push((m, vec![(*level, g, ci)])),
                    }
                }
            }
        }
        panels.push(plot::AblationPanel { title: format!("ablation: {family}"), xdesc: xdesc.to_string(), log_x: true, series });
    }
    if panels.is_empty() {
        return Ok(None);
    }
    plot::ablations(results, &panels)?;
    Ok(Some(table))
}
