//! `alignlab report --paper`: regenerate every results folder's report, then write
//! `paper/README.md` from them. Every number in the write-up is read from `results/`; the
//! verdicts ("above", "within the intervals", ...) are computed from those numbers.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::paired::PairedRecord;
use super::{distinct, plot, FrontierRecord};
use crate::experiment::tabular::{TabularRecord, UnseenRecord};
use crate::experiment::{write_atomic, Row, SummaryRecord};
use crate::log::Record;
use crate::report::estimators::EstimatorRecord;
use crate::report::numbers::Numbers;
use crate::report::overopt::FitRecord;
use crate::report::provenance::summary_dirs;
use crate::report::winrate::WinrateRecord;

/// A results file's records, if it is there and reads (a report skips what a folder lacks).
fn read<R: Record>(path: &Path) -> Option<Vec<R>> {
    crate::log::read_csv(path).ok()
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
fn at_budget(f: &[FrontierRecord], method: &str, budget: f64) -> Option<(f64, f64)> {
    f.iter()
        .find(|r| {
            r.method == method
                && r.kl_budget == budget
                && matches!(r.frontier.as_str(), "" | "selected")
        })
        .filter(|r| r.seeds_reaching == r.seeds)
        .map(|r| (r.gold_mean, r.gold_ci95))
        .filter(|v| v.0.is_finite())
}

/// One line of a paired comparison from a `paired.csv` row.
fn paired_line(r: &PairedRecord) -> String {
    let (a, b) = (&r.a, &r.b);
    let mean = r.mean_diff;
    if !mean.is_finite() {
        return format!("{a} against {b}: {}", r.verdict);
    }
    let diffs: Vec<String> = r
        .diffs
        .split(';')
        .filter_map(|d| d.parse::<f64>().ok())
        .map(|d| format!("{d:+.3}"))
        .collect();
    let ci = if r.ci95.is_finite() { format!(" ± {:.3}", r.ci95) } else { String::new() };
    let adjusted = if r.verdict_adjusted.is_empty() || r.verdict_adjusted == r.verdict {
        String::new()
    } else {
        format!("; after Holm's adjustment within the claim: {}", r.verdict_adjusted)
    };
    format!(
        "{a} - {b} = {mean:+.3}{ci} (per seed {}): {a} is {}{adjusted}",
        diffs.join(", "),
        r.verdict
    )
}

/// The rows of a `paired.csv` on one axis, for A against B.
fn paired_rows<'a>(p: &'a [PairedRecord], a: &str, b: &str, axis: &str) -> Vec<&'a PairedRecord> {
    p.iter().filter(|r| r.a == a && r.b == b && r.axis == axis).collect()
}

/// A folder's wall time: the whole invocation's where the summary has it, else the sweep's.
fn wall_time(dir: &Path) -> Option<String> {
    let n = Numbers::of(dir)?;
    n.wall_s("invocation").or_else(|| n.wall_s("run")).map(|w| format!("{w:.1} s"))
}

/// The whole invocation's wall time (tuning, calibration and sweep), where the summary has it.
fn invocation_wall_time(dir: &Path) -> Option<String> {
    Numbers::of(dir)?.wall_s("invocation").map(|w| format!("{w:.1} s"))
}

/// The command that wrote the folder's results and the invocation's wall time, where known.
fn ran_by(s: &mut String, dir: &Path, scenario: &str) {
    if let Some(t) = wall_time(dir) {
        let _ = writeln!(s, "`alignlab run scenarios/{scenario}.toml --jobs 2`; wall time of the invocation that wrote these results: {t}.\n");
    }
}

/// "Settings as run" and the `[section]`s of the folder's resolved scenario.
fn settings(s: &mut String, dir: &Path, sections: &[&str]) {
    let _ = writeln!(s, "Settings as run:\n\n```toml\n{}```\n", resolved(dir, sections));
}

/// The `[section]`s of a resolved scenario, as they were run.
fn resolved(dir: &Path, sections: &[&str]) -> String {
    let Ok(text) = std::fs::read_to_string(dir.join("scenario.resolved.toml")) else {
        return String::new();
    };
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
fn online_section(s: &mut String, dir: &Path, f: &[FrontierRecord], p: &[PairedRecord]) {
    let _ = writeln!(s, "## Online against offline (sentiment)\n");
    let _ = writeln!(s, "Tang et al. (2024) found online preference optimisation a Pareto improvement over offline at matched KL, and offline training on the *shuffled* pairs of an online run (the same data without the on-policy order) gaining little, so that coverage does not explain the gap; Guo et al. (2024) found online DPO ahead of offline DPO; Ahmadian et al. (2024) found RLOO ahead of PPO. Here, at the paper's sentiment settings (`scenarios/online-vs-offline.toml`): offline DPO on pi_SFT's pairs; online DPO, labelled by the reward model (`online_dpo`) or the gold reward (`online_dpo_gt`); semi-online, the sampler synced every 10 or 50 steps (`online_dpo_s10`, `online_dpo_s50`); Tang et al.'s control (`online_dpo_shuffled`); PPO, RLOO and GRPO with 64 rollouts per iteration. Every preference method takes the same number of steps on batches of the same size.\n");
    ran_by(s, dir, "online-vs-offline");
    figure(s, "../results/online-vs-offline/frontier.png", "Gold reward against KL(pi || pi_ref) for offline and online methods: each method's frontier chosen on the selection half of the prompts and shown on the test half (mean over seeds, 95% t-band).");
    let budgets = budgets_of(f);
    let _ = writeln!(
        s,
        "Gold reward at fixed KL budgets (selection and test halves apart, as above):\n"
    );
    s.push_str(&budget_table(f, &budgets, "selected", gold, false));
    let _ = writeln!(s, "\nPaired by seed, A - B with a 95% t-interval over seeds:\n");
    budget_lines(s, p, |_| true);
    let verdict = |a: &str, b: &str, kl: f64| {
        p.iter()
            .find(|r| r.a == a && r.b == b && r.axis == "kl_budget" && r.x == kl)
            .map(|r| r.verdict.clone())
    };
    // Tang et al.'s finding, read from the verdicts at KL 1 and 2.
    let mut lines = Vec::new();
    for kl in [1.0, 2.0, 4.0, 8.0] {
        let (on_off, on_shuf, shuf_off) = (
            verdict("online_dpo", "dpo", kl),
            verdict("online_dpo", "online_dpo_shuffled", kl),
            verdict("online_dpo_shuffled", "dpo", kl),
        );
        let text = match (on_off.as_deref(), on_shuf.as_deref()) {
            (Some("above"), Some("above")) => "online DPO is above offline DPO and above the shuffled control: Tang et al.'s finding holds (the on-policy order, not the coverage of the data, makes the gain)".to_string(),
            (Some("above"), Some(v)) => format!("online DPO is above offline DPO, but against the shuffled control it is {v}: the gain is not shown to come from the on-policy order rather than the data"),
            (Some(v), _) if !v.starts_with("not compared") => format!("online DPO against offline DPO is {v}: Tang et al.'s Pareto improvement is not reproduced at this budget"),
            _ => "not every seed of both methods reached it".to_string(),
        };
        let control = shuf_off
            .filter(|v| !v.starts_with("not compared"))
            .map(|v| format!(" (the control against offline DPO: {v})"))
            .unwrap_or_default();
        lines.push(format!("at KL {kl}, {text}{control}"));
    }
    let joined = lines.join("; ");
    let _ =
        writeln!(s, "\n**What the runs show.** {}{}.\n", joined[..1].to_uppercase(), &joined[1..]);
    grid_caveat(s, dir);
    online_cost(s, dir);
    settings(
        s,
        dir,
        &[
            "sweep", "train", "dpo", "online_dpo", "online_dpo_gt", "online_dpo_shuffled", "ppo",
            "rloo", "grpo", "report",
        ],
    );
}

/// What an online iteration costs beside an offline step, from the same sweep's timing.
fn online_cost(s: &mut String, dir: &Path) {
    // Cost per iteration, from the same sweep's timing.
    if let Some(t) = read::<Row>(&dir.join("timing.csv")) {
        let mean = |method: &str, keys: &[&str]| {
            let per: Vec<f64> = keys
                .iter()
                .map(|k| {
                    let v: Vec<f64> = t
                        .iter()
                        .filter(|r| r.method == method && r.metric == format!("{method}/time/{k}"))
                        .map(|r| r.value)
                        .collect();
                    v.iter().sum::<f64>() / v.len().max(1) as f64
                })
                .collect();
            (!per.is_empty() && per.iter().all(|v| *v > 0.0)).then(|| per.iter().sum::<f64>())
        };
        let rl = ["rollout_s", "update_s"];
        let online = ["sample_s", "update_s"];
        let costs: Vec<(&str, &str, Option<f64>)> = vec![
            ("ppo", "64 rollouts, 4 epochs of 2 minibatches, a critic", mean("ppo", &rl)),
            ("rloo", "16 prompts x 4 samples, 4 epochs of 2 minibatches", mean("rloo", &rl)),
            ("grpo", "16 prompts x 4 samples, 4 epochs of 2 minibatches", mean("grpo", &rl)),
            (
                "online_dpo",
                "64 prompts x 2 samples, one step on the pairs",
                mean("online_dpo", &online),
            ),
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
}

/// "The preference-loss zoo": the frontier, each loss paired against DPO, likelihood
/// displacement (both log-ratios falling at the end of training) and the KL estimators.
fn loss_zoo_section(s: &mut String, dir: &Path, f: &[FrontierRecord], p: &[PairedRecord]) {
    let _ = writeln!(s, "## The preference-loss zoo (sentiment)\n");
    let _ = writeln!(s, "Every loss of `algo::dpo::PrefLoss` on the same pairs, from the same pi_SFT, with the same optimisation (`scenarios/loss-zoo.toml`): DPO (TRL `sigmoid`), IPO on summed log-ratios (the DPO reference code's convention; TRL's divides by the length, `length_normalize = true` here), conservative DPO and robust DPO (Chowdhury et al. 2024, TRL `robust`) at the same flip rate 0.1, SLiC's hinge, KTO on the pairs as unpaired examples, EXO (`exo_pair`), NCA (`nca_pair`), and the reference-free SimPO and ORPO; each with a grid of its strength.\n");
    ran_by(s, dir, "loss-zoo");
    figure(s, "../results/loss-zoo/frontier.png", "Gold reward against KL(pi || pi_ref) for every preference loss: each loss's frontier chosen on the selection half of the prompts and shown on the test half (mean over seeds, 95% t-band).");
    let budgets = budgets_of(f);
    let _ = writeln!(s, "Gold reward at fixed KL budgets:\n");
    s.push_str(&budget_table(f, &budgets, "selected", gold, false));
    let _ = writeln!(
        s,
        "\nEach loss against DPO, paired by seed (A - B with a 95% t-interval over seeds):\n"
    );
    budget_lines(s, p, |kl| kl == 1.0 || kl == 2.0);
    displacement_table(s, dir);
    grid_caveat(s, dir);
    kl_estimator_table(s, dir);
    settings(
        s,
        dir,
        &[
            "sweep", "train", "dpo", "ipo", "cdpo", "robust", "hinge", "kto", "exo_pair",
            "nca_pair", "simpo", "orpo", "report",
        ],
    );
}

/// The loss zoo's likelihood displacement: each loss's last logged log-ratios of chosen and rejected, mean over seeds.
fn displacement_table(s: &mut String, dir: &Path) {
    // Likelihood displacement: the last logged log-ratios of chosen and rejected, mean over seeds.
    if let Some(m) = read::<Row>(&dir.join("metrics.csv")) {
        let mut last: BTreeMap<(String, String, u64), (usize, f64)> = BTreeMap::new(); // (method, setting, seed) per metric
        let mut table: BTreeMap<(String, String), [Vec<f64>; 2]> = BTreeMap::new();
        for which in 0..2 {
            last.clear();
            let key = ["dynamics/logratio_chosen", "dynamics/logratio_rejected"][which];
            for r in &m {
                if r.metric != format!("{}/{key}", r.method) {
                    continue;
                }
                let e = last
                    .entry((r.method.clone(), r.setting.clone(), r.seed))
                    .or_insert((0, f64::NAN));
                if r.step >= e.0 {
                    *e = (r.step, r.value);
                }
            }
            for ((method, setting, _), (_, v)) in &last {
                table.entry((method.clone(), setting.clone())).or_default()[which].push(*v);
            }
        }
        // Squeezing: the final evaluation's log-mass on the greedy response, mean over seeds.
        let mut greedy: BTreeMap<(String, String), Vec<SeedStepValue>> = BTreeMap::new();
        if let Some(e) = read::<Row>(&dir.join("eval.csv")) {
            for r in e.iter().filter(|r| r.metric == "eval/greedy_logp") {
                greedy
                    .entry((r.method.clone(), r.setting.clone()))
                    .or_default()
                    .push((r.seed, r.step, r.value));
            }
        }
        let final_greedy = |method: &str, setting: &str| -> Option<f64> {
            let v = greedy.get(&(method.to_string(), setting.to_string()))?;
            let seeds = distinct(v.iter().map(|x| x.0));
            let last: Vec<f64> = seeds
                .iter()
                .filter_map(|sd| v.iter().filter(|x| x.0 == *sd).max_by_key(|x| x.1).map(|x| x.2))
                .collect();
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
                let g = final_greedy(method, setting)
                    .map(|g| format!("{g:.2}"))
                    .unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    s,
                    "| {method} | {setting} | {:+.2} | {:+.2} | {} | {g} |",
                    mean(c),
                    mean(r),
                    if both { "both" } else { "" }
                );
            }
            let _ = writeln!(
                s,
                "\n{}\n",
                if displaced.is_empty() {
                    "No loss and strength shows both log-probabilities falling in every seed."
                        .to_string()
                } else {
                    format!("Both fall, in every seed, under: {}.", displaced.join("; "))
                }
            );
        }
    }
}

/// "Dialogue" (the paper's Fig. 3): win rate against the chosen reply by temperature and over
/// training, the paired verdicts, the reward model's accuracy, and whether PPO hacks the
/// labeller's taste (politeness words, gold against proxy over the KL grid).
fn dialogue_section(s: &mut String, dir: &Path) {
    let _ = writeln!(s, "## Dialogue: win rate against the chosen reply (paper Fig. 3)\n");
    let _ = writeln!(s, "The paper's single-turn dialogue experiment (Anthropic HH) in the dialogue world (`scenarios/paper-dialogue.toml`): benign and harmful requests; the gold judge rewards serving a benign request and refusing a harmful one and penalises the opposite; the pairs are written off-policy and labelled by a labeller that agrees with the judge on 80% of the pairs of distinct gold and errs towards politeness, a taste the judge does not share. As in the paper, the base policy is Preferred-FT on the chosen replies, and the metric is the win rate against the chosen reply of a held-out pair under the gold judge (ties one half). The paper reports DPO as the only computationally efficient method above 50% win rate against the chosen response, Best of 128 close behind, Preferred-FT below, and DPO passing 50% within a few hundred steps (PPO is not in the paper's dialogue figure; it is here).\n");
    ran_by(s, dir, "paper-dialogue");
    figure(s, "../results/paper-dialogue/winrate_temperature.png", "Win rate against the chosen reply under the gold judge, by sampling temperature (mean over seeds with 95% t-interval; Best-of-N at its largest N).");
    if let Ok(md) = std::fs::read_to_string(dir.join("report.md")) {
        if let Some(i) = md.find("## Win rate against") {
            let _ = writeln!(s, "{}", md[i..].replacen("## ", "### ", 1));
        }
    }
    if let Some(p) = read::<PairedRecord>(&dir.join("paired.csv")) {
        let _ = writeln!(s, "**What the runs show.** Paired by seed on the test half of the requests (a method with several settings contributes, per seed and temperature, the one with the best win rate on the selection half; Best-of-N its largest N, as the paper's Best of 128), A - B with a 95% t-interval over seeds:\n");
        for b in distinct(p.iter().filter(|r| r.a == "dpo").map(|r| r.b.clone())) {
            for r in paired_rows(&p, "dpo", &b, "temperature")
                .into_iter()
                .filter(|r| r.x == 0.25 || r.x == 1.0)
            {
                let _ = writeln!(s, "- T = {}: win rate {}.", r.x, paired_line(r));
            }
        }
        s.push('\n');
    }
    figure(s, "../results/paper-dialogue/winrate_steps.png", "DPO's win rate against the chosen reply over training (paper Fig. 3 right) at T = 0.25, 0.5, 0.75 and 1 (`eval.curve_temperatures`), for its beta with the best final win rate at the evaluation temperature, mean over seeds with 95% t-band; every run's curves are in `winrate.csv`.");
    // The reward model, and whether PPO hacks the labeller's taste.
    if let Some(n) = Numbers::of(dir) {
        let acc: Vec<String> = n.reward_accuracies().into_iter().map(f3).collect();
        if !acc.is_empty() {
            let _ = writeln!(s, "The reward model, learned from the labeller's pairs, ranks held-out pairs as the labeller did with accuracy {} (per seed).\n", acc.join(", "));
        }
    }
    hack_table(
        s,
        dir,
        "politeness words per reply, which the labeller likes and the judge does not",
        ("politeness words", "reply"),
        "PPO exploits the labeller's taste",
        "PPO does not measurably exploit the labeller's taste here",
    );
    figure(s, "../results/paper-dialogue/overoptimization.png", "Overoptimisation: gold and proxy reward gain over SFT against d = sqrt(KL) for Best-of-N and PPO, with Gao et al.'s fitted forms.");
    settings(
        s,
        dir,
        &[
            "world", "sweep", "prefs", "train", "eval", "dpo", "preferred_ft", "ppo", "ppo_gt",
            "best_of_n", "report",
        ],
    );
}

/// Does PPO hack the labeller's taste? Each run's last evaluation (mean over seeds) of the
/// world's spurious feature (`eval/spurious`) beside KL, gold and proxy, and what PPO's grid does
/// to it, from a folder's `eval.csv`.
/// The last training evaluation (at the evaluation temperature) of each run, per seed: the
/// last step with `eval/spurious`.
struct LastEvals<'a> {
    e: &'a [Row],
    last: BTreeMap<(String, String, u64), usize>,
}

impl<'a> LastEvals<'a> {
    fn new(e: &'a [Row]) -> LastEvals<'a> {
        let mut last: BTreeMap<(String, String, u64), usize> = BTreeMap::new();
        for r in e.iter().filter(|r| r.metric == "eval/spurious") {
            let k = last.entry((r.method.clone(), r.setting.clone(), r.seed)).or_insert(0);
            *k = (*k).max(r.step);
        }
        LastEvals { e, last }
    }

    /// `metric` of method `m` at setting `st` at its last evaluation, mean over seeds.
    fn value(&self, m: &str, st: &str, metric: &str) -> Option<f64> {
        let v: Vec<f64> = self
            .last
            .iter()
            .filter(|((mm, ss, _), _)| mm == m && ss == st)
            .filter_map(|((mm, ss, seed), step)| {
                self.e
                    .iter()
                    .find(|r| {
                        &r.method == mm
                            && &r.setting == ss
                            && r.seed == *seed
                            && r.step == *step
                            && r.metric == metric
                    })
                    .map(|r| r.value)
            })
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

fn hack_table(
    s: &mut String,
    dir: &Path,
    what: &str,
    (column, unit): (&str, &str),
    hacked_text: &str,
    not_hacked_text: &str,
) {
    if let Some(e) = read::<Row>(&dir.join("eval.csv")) {
        let lastev = LastEvals::new(&e);
        let value = |m: &str, st: &str, metric: &str| lastev.value(m, st, metric);
        let runs = distinct(lastev.last.keys().map(|k| (k.0.clone(), k.1.clone())));
        let _ = writeln!(s, "Does PPO hack the labeller's taste? Each run's last evaluation (T = 1, mean over seeds): {what}, beside gold, the reward model's score (proxy) and the KL:\n\n| method | setting | KL | gold | proxy | {column} |\n|---|---|---|---|---|---|");
        for (m, st) in &runs {
            let g = |metric: &str| value(m, st, metric).map(f3).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {m} | {} | {} | {} | {} | {} |",
                if st.is_empty() { "-" } else { st },
                g("eval/kl"),
                g("eval/gold"),
                g("eval/proxy"),
                g("eval/spurious")
            );
        }
        let sft = value("sft", "", "eval/spurious");
        let mut ppo: Vec<(f64, f64, f64, f64)> = runs
            .iter()
            .filter(|(m, _)| m == "ppo")
            .filter_map(|(m, st)| {
                Some((
                    value(m, st, "eval/kl")?,
                    value(m, st, "eval/gold")?,
                    value(m, st, "eval/proxy")?,
                    value(m, st, "eval/spurious")?,
                ))
            })
            .collect();
        ppo.sort_by(|a, b| a.0.total_cmp(&b.0));
        let gt: Vec<f64> = runs
            .iter()
            .filter(|(m, _)| m == "ppo_gt")
            .filter_map(|(m, st)| value(m, st, "eval/spurious"))
            .collect();
        if let (Some(sft), Some(lo), Some(hi)) = (sft, ppo.first(), ppo.last()) {
            let hacked = hi.3 > sft + 0.25;
            let over = hi.1 < lo.1 && hi.2 > lo.2;
            let gt = gt
                .first()
                .map(|g| format!(" (PPO-GT, on the gold judge: {})", f3(*g)))
                .unwrap_or_default();
            // DPO learns from the same labels, so it can take on the taste without any reward model.
            let dpo: Vec<f64> = runs
                .iter()
                .filter(|(m, _)| m == "dpo")
                .filter_map(|(m, st)| value(m, st, "eval/spurious"))
                .collect();
            let dpo = if dpo.is_empty() {
                String::new()
            } else {
                format!(" DPO, trained on the same labels without a reward model, ends at {} to {} over its betas.", f3(dpo.iter().copied().fold(f64::INFINITY, f64::min)), f3(dpo.iter().copied().fold(f64::NEG_INFINITY, f64::max)))
            };
            let _ = writeln!(s, "\nFrom pi_SFT's {} {column} per {unit}, PPO ends at {} at its smallest KL ({:.2}) and {} at its largest ({:.2}){gt}: {}.{dpo} Across PPO's KL grid the proxy goes from {} to {} and gold from {} to {}: {}.\n", f3(sft), f3(lo.3), lo.0, f3(hi.3), hi.0, if hacked { hacked_text } else { not_hacked_text }, f3(lo.2), f3(hi.2), f3(lo.1), f3(hi.1), if over { "gold falls while the proxy rises, overoptimisation" } else { "gold does not fall while the proxy rises within this grid" });
        }
    }
}

/// A section of a folder's `report.md`, from its heading to the next, one level down.
fn report_section(dir: &Path, heading: &str) -> Option<String> {
    let md = std::fs::read_to_string(dir.join("report.md")).ok()?;
    let i = md.find(heading)?;
    let end = md[i + 3..].find("\n## ").map_or(md.len(), |j| i + 3 + j);
    Some(md[i..end].replacen("## ", "### ", 1))
}

/// The fair protocol's rerun of a paper experiment (`after`, e.g. results/fair-sentiment)
/// beside the first wave's (`before`): DPO against PPO at each KL budget before and after, then
/// the calibration (landed KL per seed), the tuning with the robustness claim, and the compute
/// tables with the cost claim, from the folders' own tables.
fn fair_section(
    s: &mut String,
    title: &str,
    scenario: &str,
    before: &Path,
    after: &Path,
    claims: &[Claim],
) {
    let _ = writeln!(
        s,
        "## {title}: the fair protocol
"
    );
    let tune_seeds = read::<crate::experiment::tune::TuningRecord>(&after.join("tuning.csv"))
        .map_or(0, |t| distinct(t.iter().map(|r| r.seed)).len());
    let tuned_on = match tune_seeds {
        0 | 1 => "on a tuning seed that is never reported, the best".to_string(),
        n => format!("on {n} tuning seeds that are never reported, the best mean"),
    };
    let topped = if super::calibration::seed_runs(after).is_ok_and(|t| !t.is_empty()) {
        ", and where a reported seed's calibrated run still landed more than 25% from a budget, runs of that seed alone at settings chosen from its own final KLs (top-ups)"
    } else {
        ""
    };
    let _ = writeln!(s, "`alignlab run scenarios/{scenario}.toml --jobs 2`: the same world and methods as the first wave's run, with equal tuning (the same number of configurations of every trained method's optimisation, {tuned_on} at the reference budget on the selection half frozen), grids calibrated to the KL budgets on pilot seeds that are never reported{topped}, rollouts on the training prompts only, and the preference methods keeping their checkpoint by held-out implicit accuracy (the reward model's rule).\n");
    if let Some(t) = invocation_wall_time(after) {
        let _ = writeln!(s, "Wall time of the invocation that wrote these results (tuning, calibration and sweep): {t}; runs it found cached from an earlier invocation are not in it, their work is.\n");
    } else if let Some(t) = wall_time(after) {
        let _ = writeln!(s, "Wall time of the sweep that wrote these results: {t}; the folder predates the invocation's own wall time, so its tuning and calibration are not in it, nor runs found cached from an earlier invocation (their work is).\n");
    }
    let protocol: Vec<SummaryRecord> = read::<SummaryRecord>(&after.join("summary.csv"))
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.stage == "protocol")
        .collect();
    if !protocol.is_empty() {
        let _ = writeln!(s, "**What the protocol cost** (model work of the method runs):\n");
        for r in &protocol {
            let _ = writeln!(s, "- {}: {}.", r.metric, r.value);
        }
        s.push('\n');
    }
    let (pb, pa) = (
        read::<PairedRecord>(&before.join("paired.csv")),
        read::<PairedRecord>(&after.join("paired.csv")),
    );
    if let Some(pa) = &pa {
        before_after(s, (pa, pb.as_deref()), "kl_budget", "**DPO against PPO at the KL budgets, before (first wave: untuned, grids as written) and after (fair protocol).** Paired by seed, envelope chosen on the selection half and read on the test half:", "KL");
        // Where the world has references (summarize, dialogue), the paper's own metric too.
        before_after(s, (pa, pb.as_deref()), "temperature", "**DPO against PPO in win rate against the reference, by sampling temperature, before and after.** Paired by seed:", "T =");
        others_after(s, pa);
    }
    if !claims.is_empty() {
        let lines: Vec<&str> = claims.iter().map(|c| c.line.as_str()).collect();
        let _ = writeln!(s, "**The DPO paper's claims after the fair protocol**, each against PPO, paired by seed:\n\n{}\n", lines.join("\n"));
    }
    figure(s, &format!("../results/{scenario}/frontier.png"), "Reward against KL under the fair protocol: every evaluation a point, each method's selected frontier.");
    for heading in [
        "## Calibrated grids",
        "## Equal tuning",
        "## Robustness to hyperparameters",
        "## Compute per run",
        "## Gold reward at equal compute",
        "## Compute at equal gold",
    ] {
        if let Some(sec) = report_section(after, heading) {
            let _ = writeln!(s, "{sec}");
        }
    }
}

/// DPO against PPO on one `axis` after the fair protocol (`pa`), each point a line beside its
/// value before it (`pb`, the first wave), under `heading`.
fn before_after(
    s: &mut String,
    (pa, pb): (&[PairedRecord], Option<&[PairedRecord]>),
    axis: &str,
    heading: &str,
    at: &str,
) {
    let rows = paired_rows(pa, "dpo", "ppo", axis);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "{heading}\n");
    for r in rows {
        let old = pb.and_then(|pb| {
            paired_rows(pb, "dpo", "ppo", axis).into_iter().find(|o| o.x == r.x).map(paired_line)
        });
        let _ = writeln!(
            s,
            "- {at} {}: after: {}; before: {}.",
            r.x,
            paired_line(r),
            old.unwrap_or_else(|| "-".into())
        );
    }
    s.push('\n');
}

/// DPO against the methods other than PPO after the fair protocol, at the KL budgets.
fn others_after(s: &mut String, pa: &[PairedRecord]) {
    let others: Vec<String> = distinct(
        pa.iter()
            .filter(|r| r.a == "dpo" && r.b != "ppo" && r.axis == "kl_budget")
            .map(|r| r.b.clone()),
    );
    if !others.is_empty() {
        let _ = writeln!(s, "DPO against the other methods after:\n");
        for b in others {
            for r in paired_rows(pa, "dpo", &b, "kl_budget") {
                let _ = writeln!(s, "- KL {}: {}.", r.x, paired_line(r));
            }
        }
        s.push('\n');
    }
}

/// A `paired.csv` verdict's class: 0 above, 1 below, 2 inconclusive or not compared.
fn verdict_class(v: &str) -> usize {
    if v == "above" {
        0
    } else if v == "below" {
        1
    } else {
        2
    }
}

/// Where a verdict agrees with a claim made of A against B, from the paired comparisons: every
/// one above agrees, any below contradicts, otherwise the seeds do not establish it.
/// One claim of the paper in one world: its row of the short answers' table, the cell there
/// (the verdict word, then the effect with its interval), and its sentence.
pub struct Claim {
    pub row: &'static str,
    pub cell: String,
    pub line: String,
}

/// The word of [`claim_words`]: agrees, contradicts, mixed or not established.
fn verdict_word(above: usize, below: usize, n: usize) -> &'static str {
    match (above, below) {
        (a, 0) if a == n => "agrees",
        (0, b) if b > 0 => "contradicts",
        (_, b) if b > 0 => "mixed",
        _ => "not established",
    }
}

fn claim_words(above: usize, below: usize, n: usize, claim: &str) -> String {
    match (above, below) {
        (a, 0) if a == n => format!("this agrees with the paper's claim that {claim}"),
        (0, b) if b > 0 => format!("this contradicts the paper's claim that {claim}"),
        (_, b) if b > 0 => format!("this contradicts the paper's claim that {claim} where DPO is below, and agrees with it where DPO is above"),
        _ => format!("the paper's claim that {claim} is not established here: the adjusted test does not exclude 0"),
    }
}

/// The DPO paper's claims after the fair protocol, each against PPO and from the folder's own
/// paired comparisons: the frontier (KL budgets), the win rate (temperatures, where the world
/// has references), robustness (the tuning spreads) and cost (compute at equal gold).
/// The frontier claim was made for IMDb (sentiment) and the win-rate claim against PPO for
/// TL;DR (summarize; the paper's HH experiment has no PPO): elsewhere each says it is carried.
/// DPO - PPO along `axis` (its values written `at` x): where above, below and inconclusive, and
/// what that says of `claim`.
fn axis_claim(rows: &[&PairedRecord], (axis, at): (&str, &str), claim: &str) -> Claim {
    let list = |c: usize, raw: bool| {
        let xs: Vec<String> = rows
            .iter()
            .filter(|r| verdict_class(if raw { &r.verdict } else { &r.verdict_adjusted }) == c)
            .map(|r| format!("{at} {}", r.x))
            .collect();
        if xs.is_empty() {
            "none".to_string()
        } else {
            xs.join(", ")
        }
    };
    let count = |c: usize| rows.iter().filter(|r| verdict_class(&r.verdict_adjusted) == c).count();
    let raw = (list(0, true), list(1, true));
    // Budgets whose verdict differs on the final-checkpoint frontier (evaluation density).
    let flagged: Vec<String> =
        rows.iter().filter(|r| r.differs_on_final).map(|r| format!("{at} {}", r.x)).collect();
    let density = if flagged.is_empty() {
        String::new()
    } else {
        format!(
            "; flagged: the final-checkpoint frontier gives another verdict at {}",
            flagged.join(", ")
        )
    };
    let unadjusted = if raw != (list(0, false), list(1, false)) {
        format!(" (before the adjustment: above at {}; below at {})", raw.0, raw.1)
    } else {
        String::new()
    };
    let effects: Vec<String> =
        rows.iter().map(|r| format!("{at} {} {:+.3} ± {:.3}", r.x, r.mean_diff, r.ci95)).collect();
    let flag = if flagged.is_empty() { "" } else { " (flagged)" };
    let cell =
        format!("{}{flag}: {}", verdict_word(count(0), count(1), rows.len()), effects.join("; "));
    let line = format!(
        "- {}: DPO - PPO, Holm-adjusted over the {} {}, above at {}; below at {}; inconclusive at {}{unadjusted}{density}: {}.",
        if axis == "kl_budget" {
            "Gold at the KL budgets"
        } else {
            "Win rate against the reference"
        },
        rows.len(),
        match (axis == "kl_budget", rows.len() == 1) {
            (true, true) => "budget",
            (true, false) => "budgets",
            (false, true) => "temperature",
            (false, false) => "temperatures",
        },
        list(0, false),
        list(1, false),
        list(2, false),
        claim_words(count(0), count(1), rows.len(), claim)
    );
    let row = if axis == "kl_budget" {
        "Frontier: gold at the KL budgets"
    } else {
        "Win rate against the reference"
    };
    Claim { row, cell, line }
}

/// The paper's robustness to the sampling temperature (its TL;DR figure: PPO's win rate falls
/// at high temperature, DPO's less): DPO's change in win rate from the lowest temperature to the
/// highest minus PPO's, above 0 where DPO degrades less, a family of its own.
fn temperature_claim(p: &[PairedRecord], title: &str) -> Option<Claim> {
    let r = paired_rows(p, "dpo", "ppo", "winrate_change")
        .into_iter()
        .find(|r| r.mean_diff.is_finite())?;
    let claim = if title == "Summarize" {
        "DPO's win rate degrades less with the sampling temperature than PPO's"
    } else {
        "DPO's win rate degrades less with the sampling temperature than PPO's (made for TL;DR, carried to this world)"
    };
    let c = verdict_class(&r.verdict_adjusted);
    let ci = if r.seeds_compared < 2 {
        " (one seed, no interval)".to_string()
    } else {
        format!(" ± {:.3}", r.ci95)
    };
    let (above, below) = (usize::from(c == 0), usize::from(c == 1));
    let line = format!(
        "- Robustness to the sampling temperature (win rate at the highest temperature minus at the lowest, DPO's change minus PPO's, up to T = {}): {:+.3}{ci} over {} seeds, {}: {}.",
        r.x,
        r.mean_diff,
        r.seeds_compared,
        r.verdict_adjusted,
        claim_words(above, below, 1, claim)
    );
    let cell = format!("{}: {:+.3}{ci}", verdict_word(above, below, 1), r.mean_diff);
    Some(Claim { row: "Robustness to the sampling temperature", cell, line })
}

/// The robustness claim: the spread of gold across the tuning grid, DPO's minus PPO's, paired
/// by tuning seed (below 0 where DPO's is the smaller, which is the claim).
fn robustness_claim(after: &Path) -> Option<Claim> {
    let tuning = read::<crate::experiment::tune::TuningRecord>(&after.join("tuning.csv"))
        .unwrap_or_default();
    let (_, p) = super::tuning::robustness(&tuning).into_iter().find(|(m, _)| m == "ppo")?;
    {
        let claim = "DPO is more robust to its hyperparameters than PPO";
        let line = match &p {
            None => "not compared: no tuning seed on which a configuration of both reached the reference budget".to_string(),
            Some(p) => {
                // Below 0: DPO's spread is the smaller, which is the claim.
                let (above, below) = (p.verdict() == crate::stats::Verdict::Below, p.verdict() == crate::stats::Verdict::Above);
                let ci = if p.diffs.len() < 2 { " (one seed, no interval)".to_string() } else { format!(" ± {:.3}", p.ci95) };
                format!("DPO - PPO spread {:+.3}{ci} over {} tuning seed(s): {}", p.mean, p.diffs.len(), claim_words(usize::from(above), usize::from(below), 1, claim))
            }
        };
        let cell = match p {
            None => "not compared".to_string(),
            Some(p) => {
                let (above, below) = (
                    p.verdict() == crate::stats::Verdict::Below,
                    p.verdict() == crate::stats::Verdict::Above,
                );
                let ci =
                    if p.diffs.len() < 2 { String::new() } else { format!(" ± {:.3}", p.ci95) };
                format!(
                    "{}: spread {:+.3}{ci}",
                    verdict_word(usize::from(above), usize::from(below), 1),
                    p.mean
                )
            }
        };
        let row = "Robustness to the hyperparameters";
        Some(Claim {
            row,
            cell,
            line: format!("- Robustness (spread of gold across the tuning grid): {line}."),
        })
    }
}

fn fair_claims(title: &str, after: &Path) -> Vec<Claim> {
    let pa = read::<PairedRecord>(&after.join("paired.csv"));
    let pa = pa.as_deref();
    let mut lines = Vec::new();
    let frontier = if title == "Sentiment" {
        "DPO's reward-KL frontier dominates PPO's"
    } else {
        "DPO's reward-KL frontier dominates PPO's (made for IMDb, carried to this world)"
    };
    let winrate = match title {
        "Summarize" => "DPO's win rate is above PPO's",
        "Dialogue" => "DPO's win rate is above PPO's (made for TL;DR, carried to this world: the paper's HH experiment has no PPO)",
        _ => "DPO's win rate is above PPO's (made for TL;DR, carried to this world)",
    };
    for (axis, at, claim) in [("kl_budget", "KL", frontier), ("temperature", "T =", winrate)] {
        let rows: Vec<&PairedRecord> = pa
            .map(|p| paired_rows(p, "dpo", "ppo", axis))
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.mean_diff.is_finite())
            .collect();
        if rows.is_empty() {
            continue;
        }
        lines.push(axis_claim(&rows, (axis, at), claim));
    }
    if let Some(line) = pa.and_then(|p| temperature_claim(p, title)) {
        lines.push(line);
    }
    lines.extend(robustness_claim(after));
    let evals = crate::experiment::Metrics::read(&after.join("eval.csv")).ok();
    if let Some((level, _, p)) = evals.and_then(|e| {
        super::compute::equal_gold(&super::compute::cost_points(&e, &super::points(&e)), "ppo")
    }) {
        // Above 0: PPO needed more compute than DPO, which is the claim.
        let (above, below) = (
            p.verdict() == crate::stats::Verdict::Above,
            p.verdict() == crate::stats::Verdict::Below,
        );
        let range = if p.diffs.len() < 2 {
            " (one seed, no interval)".to_string()
        } else {
            format!(" ({:.2} to {:.2})", p.lo().exp(), p.hi().exp())
        };
        let line = format!("- Cost (compute at equal gold): PPO needed {:.2}{range} times DPO's compute to reach selection-half gold {level:.4}, over {} seeds: {}.", p.mean.exp(), p.diffs.len(), claim_words(usize::from(above), usize::from(below), 1, "DPO is cheaper than PPO"));
        let cell = format!(
            "{}: PPO / DPO {:.2}{range}",
            verdict_word(usize::from(above), usize::from(below), 1),
            p.mean.exp()
        );
        lines.push(Claim { row: "Cost: compute at equal gold", cell, line });
    }
    lines
}

/// Gao et al.'s b of `method`'s gold over seeds, from a folder's `fits.csv`: the sentence.
fn b_line(fits: &[FitRecord], method: &str, reward: &str) -> Option<String> {
    let bs: Vec<f64> = fits
        .iter()
        .filter(|f| f.method == method && f.reward == reward && f.seed != "all")
        .map(|f| f.b)
        .collect();
    if bs.is_empty() {
        return None;
    }
    let p = crate::stats::Paired::new(&bs);
    // The proxy's b is the curvature of its gain, not overoptimisation.
    let v = if reward == "gold" {
        p.verdict_words(
            "the interval excludes 0: b > 0, the fitted gain curves down (a turn-over only where KL* lies inside the evaluated KL: the table below)",
            "the interval excludes 0: b < 0, no turn-over",
        )
    } else {
        p.verdict_words(
            "the interval excludes 0: b > 0, the proxy's gain curves down",
            "the interval excludes 0: b < 0, the proxy's gain curves up",
        )
    };
    Some(format!(
        "b = {} ± {} over {} seeds ({}; per seed {})",
        f3(p.mean),
        f3(p.ci95),
        bs.len(),
        v,
        bs.iter().map(|b| f3(*b)).collect::<Vec<_>>().join(", ")
    ))
}

/// The overoptimisation world (`results/overoptimisation`): whether PPO and Best-of-N hack a
/// reward model learned from a labeller with a spurious taste, and how DPO fares on those pairs.
fn overopt_section(s: &mut String, dir: &Path) {
    let _ = writeln!(
        s,
        "## Overoptimisation: a reward model that is hacked (sentiment, beyond the paper)
"
    );
    // The labeller's settings as run.
    let resolved: Option<toml::Table> = std::fs::read_to_string(dir.join("scenario.resolved.toml"))
        .ok()
        .and_then(|t| toml::from_str(&t).ok());
    let lab = resolved
        .as_ref()
        .and_then(|t| t.get("world")?.get("labeller")?.as_table().cloned())
        .unwrap_or_default();
    let word = lab.get("word").and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let (bonus, polarity) = (
        lab.get("bonus").map_or("?".into(), |v| v.to_string()),
        lab.get("polarity").map_or("0".into(), |v| v.to_string()),
    );
    let before = dir
        .parent()
        .map(|r| r.join("paper-sentiment"))
        .and_then(|d| read::<FitRecord>(&d.join("fits.csv")))
        .and_then(|f| b_line(&f, "ppo", "gold"));
    let before = before
        .map(|b| format!(" In the paper's sentiment world above, PPO's gold gain gives {b}."))
        .unwrap_or_default();
    let _ = writeln!(s, "RLHF's main failure mode, and the reason DPO's authors expected it to lose, is that the policy exploits the learned reward model (Gao et al., 2022).{before} Here (`scenarios/overoptimisation.toml`) the same world is labelled by a labeller with a spurious taste: it ranks two completions by gold + {bonus} x the number of times they say \"{word}\", which it reads as emphasis, while the true process gives \"{word}\" the polarity {polarity} (a negative word's is -1), so every \"{word}\" is evidence against a positive review. DPO learns from these pairs directly; PPO and Best-of-N optimise the reward model learned from them; PPO-GT the gold reward.\n");
    ran_by(s, dir, "overoptimisation");
    labeller_accuracy(s, dir);
    figure(s, "../results/overoptimisation/overoptimization.png", "Gold and proxy reward gain over SFT against d = sqrt(KL) for Best-of-N and PPO, every evaluation of every seed, with Gao et al.'s fitted forms (pooled over seeds).");
    if let Some(fits) = read::<FitRecord>(&dir.join("fits.csv")) {
        let _ = writeln!(s, "**Gao et al.'s fits, per seed** (gold gain R = d(a - b log d) for PPO, d(a - b d) for Best-of-N; mean with a 95% t-interval over seeds):\n");
        for (m, label) in [("ppo", "PPO"), ("best_of_n", "Best-of-N"), ("ppo_gt", "PPO-GT")] {
            if let Some(l) = b_line(&fits, m, "gold") {
                let _ = writeln!(s, "- {label}, gold: {l}.");
            }
            if let Some(l) = b_line(&fits, m, "proxy") {
                let _ = writeln!(s, "- {label}, proxy: {l}.");
            }
        }
        s.push('\n');
    }
    for heading in [
        "## Overoptimisation: Gao et al.'s b per seed",
        "## Peak and decline",
        "## Gold over training within each run",
    ] {
        if let Some(sec) = report_section(dir, heading) {
            let _ = writeln!(s, "{sec}");
        }
    }
    hack_table(s, dir, &format!("how often a completion says \"{word}\", which the labeller likes and the true process reads as negative"), (&format!("\"{word}\""), "completion"), "PPO exploits the labeller's taste", "PPO does not measurably exploit the labeller's taste here");
    figure(s, "../results/overoptimisation/frontier.png", "Reward against KL in the overoptimisation world: every evaluation a point, each method's selected frontier.");
    if let Some(p) = read::<PairedRecord>(&dir.join("paired.csv")) {
        let _ = writeln!(s, "**What the runs show at the KL budgets.** Paired by seed (envelope chosen on the selection half, read on the test half), A - B with a 95% t-interval over seeds:\n");
        budget_lines(s, &p, |x| x <= 8.0);
        s.push('\n');
    }
    settings(
        s,
        dir,
        &[
            "world", "sweep", "prefs", "train", "eval", "dpo", "preferred_ft", "ppo", "ppo_gt",
            "best_of_n",
        ],
    );
}

/// The overoptimisation world's reward model: its validation accuracy on the labeller's pairs
/// and how often the labeller agrees with gold, per seed, from the summary.
fn labeller_accuracy(s: &mut String, dir: &Path) {
    if let Some(n) = Numbers::of(dir) {
        let acc: Vec<String> = n.reward_accuracies().into_iter().map(f3).collect();
        let agree = n.label_agreements();
        if !acc.is_empty() {
            let _ = writeln!(s, "The labels agree with gold on {} of the pairs of distinct gold, and the reward model ranks held-out pairs as the labeller did with accuracy {} (per seed).\n", agree.join(", "), acc.join(", "));
        }
    }
}

/// The KL estimators against the exact KL, per method, from a folder's `kl_estimators.csv`.
fn kl_estimator_table(s: &mut String, dir: &Path) {
    let Some(k) = read::<EstimatorRecord>(&dir.join("kl_estimators.csv")) else {
        return;
    };
    let rel = dir
        .file_name()
        .map(|n| format!("../results/{}/kl_estimators.png", n.to_string_lossy()))
        .unwrap_or_default();
    let _ = writeln!(s, "### KL estimators\n");
    figure(s, &rel, "Each sampled estimator minus the exact KL against the exact KL, one point per evaluation of every run.");
    let _ = writeln!(s, "Every evaluation scores its samples with the exact KL (the full-vocabulary sum along each sampled response) and with the sampled estimators k1 = sum log(pi/pi_ref), k2 = sum (log(pi/pi_ref))^2 / 2 and k3 = sum (r - 1) - log r, r = pi_ref/pi. Bias: estimator minus exact, mean over a method's evaluations (relative: over evaluations with KL > 0.05); spread: the standard deviation over an evaluation's samples, mean over evaluations.\n\n| method | evaluations | exact KL | k1 bias (rel.) | k2 bias (rel.) | k3 bias (rel.) | sd exact | sd k1 | sd k2 | sd k3 |\n|---|---|---|---|---|---|---|---|---|---|");
    for m in distinct(k.iter().map(|r| r.method.clone())) {
        let row = |e: &str| k.iter().find(|r| r.method == m && r.estimator == e);
        let (Some(x), Some(k1), Some(k2), Some(k3)) =
            (row("exact"), row("k1"), row("k2"), row("k3"))
        else {
            continue;
        };
        let b = |r: &EstimatorRecord| {
            let rel = if r.rel_bias_mean.is_finite() {
                format!(" ({:+.1}%)", 100.0 * r.rel_bias_mean)
            } else {
                String::new()
            };
            format!("{:+.3}{rel}", r.bias_mean)
        };
        let _ = writeln!(
            s,
            "| {m} | {} | {:.3} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            x.evaluations,
            x.kl_mean,
            b(k1),
            b(k2),
            b(k3),
            x.sd_mean,
            k1.sd_mean,
            k2.sd_mean,
            k3.sd_mean
        );
    }
    s.push('\n');
}

/// One line per pair of a `paired.csv` and KL budget that `keep` admits, pair by pair.
fn budget_lines(s: &mut String, p: &[PairedRecord], keep: impl Fn(f64) -> bool) {
    let pairs =
        distinct(p.iter().filter(|r| r.axis == "kl_budget").map(|r| (r.a.clone(), r.b.clone())));
    for (a, b) in &pairs {
        for r in paired_rows(p, a, b, "kl_budget").into_iter().filter(|r| keep(r.x)) {
            let _ = writeln!(s, "- KL {}: {}.", r.x, paired_line(r));
        }
    }
}

/// Where a method's grid has no evaluation below a budget, its value there is a mixture of
/// pi_SFT and an evaluation past the budget: a statement about the grid, not the method. Names
/// the methods whose smallest evaluated KL (selection half, worst seed) lies past KL 1.
fn grid_caveat(s: &mut String, dir: &Path) {
    if let Some(e) = read::<Row>(&dir.join("eval.csv")) {
        let mut first: BTreeMap<(String, u64), f64> = BTreeMap::new(); // (method, seed) -> smallest evaluated KL
        for r in e.iter().filter(|r| r.metric == "eval/kl_sel" && r.step != 0) {
            let k = first.entry((r.method.clone(), r.seed)).or_insert(f64::INFINITY);
            *k = k.min(r.value);
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
fn budgets_of(f: &[FrontierRecord]) -> Vec<f64> {
    let mut b: Vec<f64> = f.iter().map(|r| r.kl_budget).collect();
    b.sort_by(|a, b| a.total_cmp(b));
    b.dedup();
    b
}

/// A row's gold reward and its interval.
fn gold(r: &FrontierRecord) -> (f64, f64) {
    (r.gold_mean, r.gold_ci95)
}

/// A markdown table of `value` ± its interval per method (rows) and KL budget (columns) of the
/// `which` frontier; `- (k/n seeds)` where not every seed reached a budget.
fn budget_table(
    f: &[FrontierRecord],
    budgets: &[f64],
    which: &str,
    value: fn(&FrontierRecord) -> (f64, f64),
    signed: bool,
) -> String {
    let mut t = String::new();
    let _ = write!(t, "| method |");
    for b in budgets {
        let _ = write!(t, " KL {b} |");
    }
    let _ = writeln!(t, "\n|---|{}", "---|".repeat(budgets.len()));
    let methods = distinct(f.iter().filter(|r| r.frontier == which).map(|r| r.method.clone()));
    for m in &methods {
        let _ = write!(t, "| {} |", if m == "optimal" { "optimal (inner bound)" } else { m });
        for b in budgets {
            match f.iter().find(|r| &r.method == m && r.kl_budget == *b && r.frontier == which) {
                Some(r) if value(r).0.is_finite() && r.seeds_reaching == r.seeds => {
                    let (v, ci) = value(r);
                    let v = if signed { format!("{v:+.3}") } else { f3(v) };
                    let _ = write!(t, " {v} ± {} |", f3(ci));
                }
                Some(r) if r.seeds_reaching > 0 => {
                    let _ = write!(t, " - ({}/{} seeds) |", r.seeds_reaching, r.seeds);
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
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .with_context(|| {
            format!("cannot read {}; fix: run from the repository root", results.display())
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("eval.csv").exists())
        .collect();
    dirs.sort();
    // Each folder's report on its own: in parallel (each writes only its folder).
    use rayon::prelude::*;
    dirs.par_iter()
        .map(|d| super::report(d).with_context(|| format!("report of {}", d.display())))
        .collect::<Result<Vec<_>>>()?;
    let ablations = ablation_figure(results)?;
    let mut s = String::new();
    let _ = writeln!(s, "# RLHF (PPO) against DPO in worlds with a known reward\n");
    let _ = writeln!(s, "*Generated by `alignlab report --paper` from the CSVs in `results/`; do not edit by hand.*\n");
    let _ = writeln!(s, "## The question\n\nDoes Direct Preference Optimization (Rafailov et al., 2023) reach a better reward-KL trade-off than RLHF with a Bradley-Terry reward model and PPO, and a higher win rate in summarization, as the paper reports? Here the true reward is known exactly, so the gold reward, the KL and the optimal policy need no learned judge.\n");
    let fair = fair_reruns(results);
    let short: Vec<String> = fair
        .iter()
        .filter(|f| !f.3.is_empty())
        .map(|(title, scenario, _, claims)| {
            let lines: Vec<&str> = claims.iter().map(|c| c.line.as_str()).collect();
            format!(
                "**{title}** (`results/{scenario}`, its section below):\n\n{}\n",
                lines.join("\n")
            )
        })
        .collect();
    if !short.is_empty() {
        let _ = writeln!(s, "## The answers in short\n\nAfter the fair protocol (equal tuning, calibrated grids, checkpoints chosen apart from the samples reported), the DPO paper's claims against PPO, each paired by seed and stated by its verdict: \"agrees\" or \"contradicts\" where the test excludes 0 after Holm's adjustment within the claim (the budgets of one world are one claim, its temperatures another), \"not established\" where it does not; the unadjusted verdicts are given where they differ. The table: each claim (row) in each world (column), DPO - PPO with its 95% interval (KL budgets and temperatures each; the hyperparameter spread DPO's minus PPO's, below 0 for the claim; cost PPO's compute over DPO's, above 1 for the claim); \"flagged\": a budget whose verdict differs on the final-checkpoint frontier; \"mixed\": above somewhere, below elsewhere.\n\n{}\n{}", answers_table(&fair), short.join("\n"));
    }
    let _ = writeln!(s, "## The worlds\n\n- **sentiment** (IMDb analogue): reviews from a bigram language tilted by a latent sentiment; the gold reward is the exact Bayes posterior p(positive | text); prompts are 2 to 8 word prefixes.\n- **summarize** (TL;DR analogue): documents hold 2 to 5 fact words among filler; each fact has a salience. The gold judge scores the salience of the document's facts a summary mentions minus penalties for length, repetition and facts not in the document. SFT learns from noisy near-optimal reference summaries; preference pairs come off-policy from a separate labeller with Bradley-Terry label noise. The metric is the win rate against the reference summary (ties count one half).\n- **dialogue** (Anthropic HH analogue): benign and harmful requests; the gold judge rewards serving a benign request and refusing a harmful one; pairs written off-policy and labelled by a labeller that agrees with the judge on most pairs and errs towards politeness, a taste the judge does not share; the metric is the win rate against the chosen reply of a held-out pair.\n- **shifted inputs** (the paper's CNN/DailyMail test of TL;DR policies): summarize's policies evaluated on documents of another length, fact density, filler register and layout (`[world.shift]`), judged by the same gold.\n- **tabular**: every response enumerable, so pi* proportional to pi_ref exp(r / beta), KL and TV are exact.\n- **overoptimisation**: sentiment with a labeller whose taste the gold does not share, so the reward model can be hacked.\n");

    sentiment_section(results, &mut s)?;
    // Online against offline.
    if let Some((ovo, f, p)) = frontier_folder(results, "online-vs-offline") {
        online_section(&mut s, &ovo, &f, &p);
    }
    // The loss zoo and the KL estimators.
    if let Some((zoo, f, p)) = frontier_folder(results, "loss-zoo") {
        loss_zoo_section(&mut s, &zoo, &f, &p);
    }
    summarize_section(results, &mut s)?;
    // Dialogue.
    let dlg = results.join("paper-dialogue");
    if dlg.join("winrate.csv").exists() {
        dialogue_section(&mut s, &dlg);
    }
    // The fair protocol's reruns, beside the first wave's.
    for (title, scenario, first, claims) in &fair {
        let (before, after) = (results.join(first), results.join(scenario));
        fair_section(&mut s, title, scenario, &before, &after, claims);
    }
    // Overoptimisation.
    let over = results.join("overoptimisation");
    if over.join("fits.csv").exists() {
        overopt_section(&mut s, &over);
    }
    tabular_section(results, &mut s)?;
    // Ablations.
    if let Some((table, seeds)) = ablations {
        ablations_section(&mut s, &table, seeds);
    }
    s.push_str(&precision_section(results));
    s.push_str(&multiplicity_section(results));
    s.push_str(&stability_section(results).unwrap_or_default());
    s.push_str(&cost_section(results));
    let _ = writeln!(s, "## Methods and definitions\n\n- KL(pi || pi_ref): the sum over a sampled response's positions of the exact full-vocabulary KL between the two next-token distributions, at the sampling temperature; Best-of-N reports the analytic bound log N - (N-1)/N.\n- Optimal frontier, an inner bound: pi* proportional to pi_ref exp(r / beta) restricted to N samples of pi_SFT per prompt (the Best-of-N candidates of the prompt, `eval.optimal_samples`), by self-normalised importance sampling; the reweighted sample is a policy, so its point is attainable, but its KL cannot pass log N and pi* proper lies above it. A beta is kept only while every prompt's effective sample size is at least `eval.optimal_min_ess`.\n- Selection and report apart: the held-out prompts are split (`eval.selection_fraction`, half by default); per seed, a method's upper concave envelope (SFT's point included) is built on the selection half, and at a budget the two evaluations (or one) it interpolates and their mixture weight are taken to the test half, whose value is reported. A seed has a value at a budget only if it evaluated a point at or past it (selection-half KL).\n- Paired comparisons: per seed, A - B; mean with a 95% t-interval over seeds and the smallest difference a two-sided 5% test detects with 80% power, (t_0.975 + t_0.8) s / sqrt(n). \"above\" or \"below\" when the interval excludes 0, else \"inconclusive\" with that difference. Never from the overlap of unpaired intervals. Each also has the paired t-test's two-sided p-value and its Holm adjustment within its claim (one pair of methods on one axis of one folder: all its budgets, or all its temperatures), from which its adjusted verdict comes; claims are judged on adjusted verdicts only, and the Multiplicity section adjusts every test once more across the paper (Benjamini-Hochberg).\n- Win rate: P(gold(y) > gold(y_ref)) with ties one half; in the figure and its table, one seed: 95% Wilson interval over the samples; several seeds: 95% t-interval over seeds.\n- Every run's exact settings are in `results/<scenario>/scenario.resolved.toml`.");
    s.push_str(&provenance(results));
    let s = with_contents(&s);
    let path = out.join("README.md");
    std::fs::create_dir_all(out)?;
    write_atomic(&path, s.as_bytes())?;
    write_atomic(&out.join("tables.tex"), super::latex::tables(&s, "paper").as_bytes())?;
    Ok(path)
}

/// The precision study: each bf16 rerun against its fp32 folder (`equivalence.csv`, written
/// by `alignlab equivalence`), counted by verdict, with the rule that decides the default.
fn precision_section(results: &Path) -> String {
    use super::equivalence::EquivalenceRecord;
    let (mut rows, mut all_equivalent) = (Vec::new(), true);
    for d in summary_dirs(results) {
        let Some(recs) = read::<EquivalenceRecord>(&d.join("equivalence.csv")) else { continue };
        let tested: Vec<&EquivalenceRecord> = recs.iter().filter(|r| r.axis != "drift").collect();
        let count = |v: &str| tested.iter().filter(|r| r.verdict == v).count();
        all_equivalent &= count("equivalent") == tested.len();
        let largest = tested.iter().map(|r| r.mean_diff.abs()).fold(0.0f64, f64::max);
        let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        rows.push(format!(
            "| [{name}](../results/{name}/equivalence.md) | {} | {} | {} | {} | {largest:.4} |",
            tested.len(),
            count("equivalent"),
            count("inconclusive"),
            count("different")
        ));
    }
    if rows.is_empty() {
        return String::new();
    }
    format!("## Precision: bf16 against fp32\n\nExperiments of the paper rerun with `--precision bf16` (the matrix products in bf16, master weights, optimiser state, softmax, log-probabilities, losses and the exact KL in fp32), against the fp32 folders, paired by seed: the gold at each KL budget (margin 0.02) and the win rate at each temperature (margin 0.03), each by two one-sided tests at 5%; each folder's `equivalence.md` has every row and the drifts of exact KL, implicit accuracy and the reward model's validation accuracy. bf16 becomes the default only if every verdict says equivalent: {}\n\n| bf16 folder | tests | equivalent | inconclusive | different | largest mean difference |\n|---|---|---|---|---|---|\n{}\n\n", if all_equivalent { "every one does, so bf16 qualifies as the default where the hardware has bf16 units." } else { "not every one does (an inconclusive verdict is one whose interval the seeds cannot bound inside the margin), so fp32 stays the default." }, rows.join("\n"))
}

/// Every paired test the paper reports (each folder's `paired.csv`), counted raw, after Holm
/// within each claim, and after Benjamini and Hochberg across the paper.
fn multiplicity_section(results: &Path) -> String {
    let mut tests: Vec<(String, PairedRecord)> = Vec::new();
    // A folder compared with another for precision (`equivalence.csv`) or rerun under float
    // noise (`-perturbed`) repeats that one's claims: it is not another test of them.
    let repeat = |d: &Path| {
        d.join("equivalence.csv").exists()
            || d.file_name().is_some_and(|n| n.to_string_lossy().ends_with("-perturbed"))
    };
    for d in summary_dirs(results).into_iter().filter(|d| !repeat(d)) {
        let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        for r in read::<PairedRecord>(&d.join("paired.csv")).unwrap_or_default() {
            // The final-checkpoint frontier re-tests a budget claim (a sensitivity check on
            // evaluation density), not a claim of its own.
            if r.p.is_finite() && r.axis != "kl_budget_final" {
                tests.push((name.clone(), r));
            }
        }
    }
    if tests.is_empty() {
        return String::new();
    }
    let ps: Vec<f64> = tests.iter().map(|t| t.1.p).collect();
    let bh = crate::stats::benjamini_hochberg(&ps);
    let alpha = crate::stats::ALPHA;
    let raw = ps.iter().filter(|&&p| p < alpha).count();
    let holm = tests.iter().filter(|t| t.1.p_holm < alpha).count();
    let fdr = bh.iter().filter(|&&q| q < alpha).count();
    let families = crate::stats::distinct(tests.iter().map(|t| (t.0.clone(), t.1.family.clone())));
    let mut s = format!("## Multiplicity\n\nThe paper reports {} paired tests (every `paired.csv` row with at least two seeds, in {} claims: a pair of methods on one axis of one folder; the bf16 reruns of the precision study left out, as repeats, and so are the final-checkpoint frontier's re-tests of the budgets). At the 5% level, {raw} are significant unadjusted, {holm} after Holm's adjustment within their claim (what every verdict on a claim above rests on) and {fdr} after Benjamini and Hochberg's adjustment across the whole paper (false discovery rate 5%). Per folder:\n\n| folder | tests | claims | unadjusted | Holm within claim | BH across the paper |\n|---|---|---|---|---|---|\n", tests.len(), families.len());
    for name in crate::stats::distinct(tests.iter().map(|t| t.0.clone())) {
        let idx: Vec<usize> = (0..tests.len()).filter(|&i| tests[i].0 == name).collect();
        let count = |f: &dyn Fn(usize) -> bool| idx.iter().filter(|&&i| f(i)).count();
        let claims = crate::stats::distinct(idx.iter().map(|&i| tests[i].1.family.clone())).len();
        let _ = writeln!(
            s,
            "| {name} | {} | {claims} | {} | {} | {} |",
            idx.len(),
            count(&|i| ps[i] < alpha),
            count(&|i| tests[i].1.p_holm < alpha),
            count(&|i| bh[i] < alpha)
        );
    }
    s.push('\n');
    s
}

/// The paper with a contents list (every `## ` section, linked by GitHub's anchors) before
/// its first section.
fn with_contents(paper: &str) -> String {
    let anchor = |h: &str| -> String {
        h.to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect()
    };
    let heads: Vec<&str> = paper.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    let Some(first) = paper.find("\n## ") else { return paper.to_string() };
    let mut list = String::from("\n## Contents\n\n");
    for h in heads {
        let _ = writeln!(list, "- [{h}](#{})", anchor(h));
    }
    format!("{}{list}{}", &paper[..first], &paper[first..])
}

/// Each folder beside its rerun under float noise (`results/<name>-perturbed`: the same
/// scenario with another thread count per run): how many adjusted verdicts moved.
fn stability_section(results: &Path) -> Option<String> {
    let mut rows = Vec::new();
    for d in summary_dirs(results) {
        let name = d.file_name()?.to_string_lossy().to_string();
        let Some(base) = name.strip_suffix("-perturbed") else { continue };
        let (Some(a), Some(b)) = (
            read::<PairedRecord>(&results.join(base).join("paired.csv")),
            read::<PairedRecord>(&d.join("paired.csv")),
        ) else {
            continue;
        };
        let threads = |dir: &Path| {
            read::<SummaryRecord>(&dir.join("summary.csv"))
                .unwrap_or_default()
                .into_iter()
                .find(|r| r.stage == "run" && r.metric == "threads")
                .map_or("not recorded".to_string(), |r| r.value)
        };
        let (n, moved) = super::paired::moved_verdicts(&a, &b);
        let which = if moved.is_empty() { "none".to_string() } else { moved.join("; ") };
        rows.push(format!(
            "| {base} | {} | {} | {n} | {} | {which} |",
            threads(&results.join(base)),
            threads(&d),
            moved.len()
        ));
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!("## Stability under float noise\n\nA byte-identical rerun needs the same scenario, seeds, thread count, CPU type and libtorch build; elsewhere the same scenario gives the same distribution of results, not the same numbers. Each folder below was rerun with another thread count per run (other reduction orders in the matrix products: float noise and nothing else), and its adjusted verdicts (above, below or inconclusive, every comparison with at least two seeds) compared:\n\n| folder | threads | rerun's threads | adjusted verdicts | moved | which |\n|---|---|---|---|---|---|\n{}\n", rows.join("\n")))
}

/// The short answers as one table: a row per claim, a column per world with a fair rerun.
fn answers_table(fair: &[FairRerun]) -> String {
    let worlds: Vec<&FairRerun> = fair.iter().filter(|f| !f.3.is_empty()).collect();
    let mut rows: Vec<&'static str> = Vec::new();
    for c in worlds.iter().flat_map(|f| &f.3) {
        if !rows.contains(&c.row) {
            rows.push(c.row);
        }
    }
    let mut t = format!(
        "| claim | {} |\n|---|{}\n",
        worlds.iter().map(|f| f.0).collect::<Vec<_>>().join(" | "),
        "---|".repeat(worlds.len())
    );
    for row in rows {
        let cells: Vec<String> = worlds
            .iter()
            .map(|f| f.3.iter().find(|c| c.row == row).map_or("-".to_string(), |c| c.cell.clone()))
            .collect();
        let _ = writeln!(t, "| {row} | {} |", cells.join(" | "));
    }
    t
}

/// A fair rerun: its title, results folder, the first wave's folder and its claims lines.
type FairRerun = (&'static str, &'static str, &'static str, Vec<Claim>);

/// The fair reruns with results, read once: their claims head the paper in short and close
/// each one's comparison in its section.
fn fair_reruns(results: &Path) -> Vec<FairRerun> {
    [
        ("Sentiment", "fair-sentiment", "paper-sentiment"),
        ("Summarize", "fair-summarize", "paper-summarize"),
        ("Dialogue", "fair-dialogue", "paper-dialogue"),
    ]
    .into_iter()
    .filter(|f| results.join(f.1).join("paired.csv").exists())
    .map(|(title, scenario, first)| {
        (title, scenario, first, fair_claims(title, &results.join(scenario)))
    })
    .collect()
}

/// The sentiment experiment (the paper's Fig. 2 left): the frontier, its table and verdicts.
fn sentiment_section(results: &Path, s: &mut String) -> Result<()> {
    // Sentiment.
    let sent = results.join("paper-sentiment");
    if let Some(f) = read::<FrontierRecord>(&sent.join("frontier.csv")) {
        let _ = writeln!(s, "## Sentiment: reward against KL (paper Fig. 2 left)\n");
        if let Some(t) = wall_time(&sent) {
            let _ = writeln!(s, "`alignlab run scenarios/paper-sentiment.toml --jobs 2`; wall time of the invocation that wrote these results: {t} (a rerun that finds every cell cached only merges, in seconds).\n");
        }
        figure(s, "../results/paper-sentiment/frontier.png", "Gold reward against KL(pi || pi_ref): every evaluation a point (all held-out prompts); each method's frontier, chosen on the selection half of the prompts and shown on the test half (mean over seeds, drawn up to the KL every seed reached; the 95% t-bands here, or in frontier_panels.png where more than four would overlap); thin dotted: final checkpoints only; black dashed: the importance-sampling inner bound of the optimal frontier. Best-of-N's KL is the analytic upper bound.");
        let budgets = budgets_of(&f);
        let table = |which: &str, value: fn(&FrontierRecord) -> (f64, f64), signed: bool| {
            budget_table(&f, &budgets, which, value, signed)
        };
        let _ = writeln!(s, "Gold reward at fixed KL budgets on each method's upper concave envelope. Which evaluation of which setting a method contributes at a budget is chosen on the selection half of the held-out prompts; the value is the test half's (mean ± 95% t-interval over seeds). A seed has a value only if it evaluated a point at or past the budget: `-` (k/n seeds) where not every seed did; nothing is extrapolated. The optimal row is an inner bound (see Methods).\n");
        s.push_str(&table("selected", gold, false));
        let _ = writeln!(s, "\nThe same with each setting's final checkpoint only:\n");
        s.push_str(&table("final", gold, false));
        let _ = writeln!(s, "\nSelection bias the split removed: the test half's own envelope (checkpoints chosen and read on the same samples, as before) minus the reported value, mean ± 95% paired t-interval over seeds:\n");
        s.push_str(&table("selected", |r| (r.selection_bias_mean, r.selection_bias_ci95), true));
        if let Some(p) = read::<PairedRecord>(&sent.join("paired.csv")) {
            let _ = writeln!(s, "\n**What the runs show.** The paper reports that DPO's frontier dominates PPO's. Here, paired by seed (each seed shares the world, SFT, data, reward model and evaluation samples across methods), A - B with a 95% t-interval over seeds; \"inconclusive\" states the difference the seeds could detect at 80% power:\n");
            let mut count = [0usize; 3]; // above, below, inconclusive against PPO
            for b in distinct(p.iter().filter(|r| r.a == "dpo").map(|r| r.b.clone())) {
                for r in paired_rows(&p, "dpo", &b, "kl_budget") {
                    let _ = writeln!(s, "- KL {}: {}.", r.x, paired_line(r));
                    if b == "ppo" && r.mean_diff.is_finite() {
                        let v = r.verdict_adjusted.as_str();
                        count[verdict_class(v)] += 1;
                    }
                }
            }
            let compared: usize = count.iter().sum();
            let _ = writeln!(s, "\nAgainst PPO, of the {compared} budgets every seed of both reached, after Holm's adjustment over them, DPO is above at {}, below at {} and inconclusive at {}. {}\n", count[0], count[1], count[2], if count[0] == compared && compared > 0 { "This agrees with the paper's claim that DPO dominates PPO." } else { "The paper's claim that DPO dominates PPO is not reproduced in this world." });
        }
        if let Some(reach) = optimal_reach(&sent) {
            let first = budgets.first().copied().unwrap_or(f64::NAN);
            let tail = if reach.0 < first {
                format!("short of the first budget (KL {first}): past it, N samples per prompt cannot say where pi* lies, and the table has no optimal value to measure shortfalls against")
            } else {
                "past it, N samples per prompt cannot say where pi* lies, and its row stops there"
                    .to_string()
            };
            let _ = writeln!(s, "The importance-sampling inner bound of the optimal frontier (N = {:.0} samples of pi_SFT per prompt, every prompt's effective sample size at least {:.0}) reaches KL {:.2} in every seed, {tail}.\n", reach.1, reach.2, reach.0);
        }
        figure(s, "../results/paper-sentiment/overoptimization.png", "Overoptimisation: gold and proxy reward gain over SFT against d = sqrt(KL) for Best-of-N and PPO, with Gao et al.'s fitted forms.");
        figure(
            s,
            "../results/paper-sentiment/curves.png",
            "Training curves: per method, gold reward and KL against its own training axis, one line per setting, mean over seeds with 95% t-bands.",
        );
        settings(
            s,
            &sent,
            &[
                "sweep", "train", "eval", "dpo", "unlikelihood", "preferred_ft", "ppo", "ppo_gt",
                "best_of_n", "report",
            ],
        );
    }

    Ok(())
}

/// The summarization experiment (the paper's Fig. 2 right): win rates by temperature and their verdicts, generalisation to shifted inputs.
fn summarize_section(results: &Path, s: &mut String) -> Result<()> {
    // Summarize.
    let summ = results.join("paper-summarize");
    if let Some(w) = read::<WinrateRecord>(&summ.join("winrate.csv")) {
        let _ = writeln!(
            s,
            "## Summarize: win rate against the reference by temperature (paper Fig. 2 right)\n"
        );
        if let Some(t) = wall_time(&summ) {
            let _ = writeln!(s, "`alignlab run scenarios/paper-summarize.toml --jobs 2`; wall time of the invocation that wrote these results: {t}.\n");
        }
        figure(s, "../results/paper-summarize/winrate_temperature.png", "Win rate against the reference summary under the gold judge, by sampling temperature (mean over seeds with 95% t-interval; Best-of-N at its largest N).");
        if let Ok(md) = std::fs::read_to_string(summ.join("report.md")) {
            if let Some(i) = md.find("## Win rate against") {
                let _ = writeln!(s, "{}", md[i..].replacen("## ", "### ", 1));
            }
        }
        let label = winrate_label;
        let temp = |l: &str, t: f64| {
            w.iter()
                .find(|r| r.axis == "temperature" && label(r) == l && r.x == t)
                .map(|r| (r.winrate, r.lo95, r.hi95))
        };
        let labels = distinct(w.iter().filter(|r| r.axis == "temperature").map(label));
        let dpo: Vec<&String> = labels.iter().filter(|l| l.starts_with("dpo")).collect();
        let ppo: Vec<&String> = labels.iter().filter(|l| l.starts_with("ppo")).collect();
        let _ = writeln!(s, "**What the runs show.** The paper reports DPO at about 61% at temperature 0 against PPO's 57% at its best, and PPO degrading at high temperature while DPO is more robust. Here, paired by seed on the test half of the documents (a method with several settings contributes, per seed and temperature, the one with the best win rate on the selection half), A - B with a 95% t-interval over seeds:\n");
        if let Some(p) = read::<PairedRecord>(&summ.join("paired.csv")) {
            summarize_verdicts(&p, s);
        }
        let drop = |l: &str| Some(temp(l, 1.0)?.0 - temp(l, 0.0)?.0);
        for l in dpo.iter().chain(ppo.iter()) {
            if let Some(d) = drop(l) {
                let _ = writeln!(s, "- {l}: from T = 0 to T = 1 the win rate (mean over seeds, all documents) changes by {d:+.3}.");
            }
        }
        best_temperatures(&w, (&labels, &dpo, &ppo), s);
        s.push('\n');
        figure(s, "../results/paper-summarize/winrate_steps.png", "Win rate against the reference over training (paper Fig. 3 right analogue), at the evaluation temperature (1.0), mean over seeds with 95% t-band.");
        settings(
            s,
            &summ,
            &[
                "world", "sweep", "prefs", "train", "eval", "dpo", "preferred_ft", "ppo",
                "best_of_n", "report",
            ],
        );
    }

    Ok(())
}

/// Each policy's best temperature, descriptive (Best-of-N at its largest N, as in the paper's
/// Best of 128): SFT, the DPO and PPO settings of `labels`.
fn best_temperatures(
    w: &[WinrateRecord],
    (labels, dpo, ppo): (&[String], &[&String], &[&String]),
    s: &mut String,
) {
    let label = winrate_label;
    // Each policy's best temperature (Best-of-N at its largest N, as in the paper's Best of 128).
    let bon = labels
        .iter()
        .filter(|l| l.starts_with("best_of_n n="))
        .max_by_key(|l| l.trim_start_matches("best_of_n n=").parse::<usize>().unwrap_or(0));
    for l in
        ["sft".to_string()].iter().chain(dpo.iter().copied()).chain(ppo.iter().copied()).chain(bon)
    {
        let best = w
            .iter()
            .filter(|r| r.axis == "temperature" && label(r) == *l)
            .max_by(|a, b| a.winrate.total_cmp(&b.winrate));
        if let Some(r) = best {
            let _ = writeln!(
                s,
                "- {l} peaks at T = {} (all documents, descriptive): {} [{}, {}].",
                r.x,
                f3(r.winrate),
                f3(r.lo95),
                f3(r.hi95)
            );
        }
    }
}

/// The summarization verdicts: DPO against each method by temperature and the change in win
/// rate across temperatures, a tally against PPO, and generalisation to the shifted inputs.
fn summarize_verdicts(p: &[PairedRecord], s: &mut String) {
    for b in distinct(p.iter().filter(|r| r.a == "dpo").map(|r| r.b.clone())) {
        for r in paired_rows(p, "dpo", &b, "temperature") {
            let t = r.x;
            if t == 0.0 || t == 1.0 {
                let _ = writeln!(s, "- T = {t}: win rate {}.", paired_line(r));
            }
        }
        for r in paired_rows(p, "dpo", &b, "winrate_change") {
            let _ = writeln!(s, "- Temperature robustness, the change in win rate from the lowest temperature to T = {}: {}.", r.x, paired_line(r));
        }
    }
    let against_ppo: Vec<&str> = paired_rows(p, "dpo", "ppo", "temperature")
        .iter()
        .map(|r| r.verdict_adjusted.as_str())
        .collect();
    if !against_ppo.is_empty() {
        let above = against_ppo.iter().filter(|v| verdict_class(v) == 0).count();
        let below = against_ppo.iter().filter(|v| verdict_class(v) == 1).count();
        let _ = writeln!(s, "- Against PPO over all {} temperatures, Holm-adjusted over them: above at {above}, below at {below}, inconclusive at {}. {}", against_ppo.len(), against_ppo.len() - above - below, if above == against_ppo.len() { "This agrees with the paper's claim." } else if below > 0 { "The paper's claim is contradicted where DPO is below." } else { "The paper's claim that DPO wins is not established here: the seeds cannot tell the two apart at the differences stated." });
    }
    // Generalisation: the same policies on the shifted documents.
    let shifted = paired_rows(p, "dpo", "ppo", "shifted_temperature");
    if !shifted.is_empty() {
        let _ = writeln!(s, "\n**Generalisation to a shifted input distribution** (the paper's CNN/DailyMail test of TL;DR policies: DPO 0.36 against PPO 0.26 at T = 0, 0.31 against 0.23 at T = 0.25). The policies trained on the training documents, evaluated on shifted documents (`[world.shift]`: another length, fact density, filler register and layout; the same judge) against their references, paired by seed on the test half, beside the same comparison in distribution:\n");
        for r in &shifted {
            let inside = paired_rows(p, "dpo", "ppo", "temperature")
                .into_iter()
                .find(|q| q.x == r.x)
                .map(paired_line)
                .unwrap_or_else(|| "not evaluated".into());
            let _ = writeln!(
                s,
                "- T = {}: shifted documents: {}; in distribution: {}.",
                r.x,
                paired_line(r),
                inside
            );
        }
    }
}

/// The tabular world: convergence to pi*, exact.
fn tabular_section(results: &Path, s: &mut String) -> Result<()> {
    // Tabular.
    let tab = results.join("tabular");
    if let Some(t) = read::<TabularRecord>(&tab.join("tabular.csv")) {
        let _ = writeln!(s, "## Tabular world: convergence to pi*\n\n`alignlab tabular` (3 prompts, 3 words, length 2: 9 responses per prompt; 2M Bradley-Terry pairs per prompt from pi_ref, 200k deterministic pairs).\n");
        figure(s, "../results/tabular/tabular.png", "Left: TV(pi, pi*) over training, Bradley-Terry labels. Right: the largest mass on a prompt's worst response under deterministic labels.");
        let _ = writeln!(s, "| series | final step | metric | value |\n|---|---|---|---|");
        for k in distinct(t.iter().map(|r| r.series.as_str())) {
            let last = t.iter().filter(|r| r.series == k).max_by_key(|r| r.step).unwrap();
            let _ = writeln!(s, "| {k} | {} | {} | {:.3e} |", last.step, last.metric, last.value);
        }
        let last = |series: &str| {
            t.iter().filter(|r| r.series == series).max_by_key(|r| r.step).map(|r| r.value)
        };
        let _ = writeln!(s, "\nDPO and PPO-GT both target pi*; IPO optimises another regularised objective, so its distance to pi* under Bradley-Terry labels need not vanish.\n");
        for beta in ["0.1", "1"] {
            if let (Some(d), Some(i), Some(r)) = (
                last(&format!("DPO beta={beta}")),
                last(&format!("IPO beta={beta}")),
                last(&format!("pi_ref beta={beta}")),
            ) {
                let p = last(&format!("PPO-GT beta={beta}"))
                    .map(|p| format!(", PPO-GT {p:.3e}"))
                    .unwrap_or_default();
                let _ = writeln!(s, "- beta {beta}, Bradley-Terry labels: TV to pi* falls from {r:.3} (pi_ref) to DPO {d:.3e}{p}; IPO {i:.3e}.");
            }
            if let (Some(d), Some(i)) = (
                last(&format!("DPO beta={beta} (deterministic labels)")),
                last(&format!("IPO beta={beta} (deterministic labels)")),
            ) {
                let v = if d < i * 1e-3 {
                    "DPO drives it towards zero while IPO keeps it"
                } else {
                    "DPO does not drive it far below IPO's"
                };
                let _ = writeln!(s, "- beta {beta}, deterministic labels: the worst response keeps {d:.3e} under DPO and {i:.3e} under IPO: {v}.");
            }
        }
        if let Some(u) = read::<UnseenRecord>(&results.join("tabular").join("tabular_unseen.csv")) {
            if let Some(first) = u.first() {
                let _ = writeln!(s, "\nLikelihood displacement, exactly: each loss trained from pi_ref (2000 full-batch steps) on {} deterministic pairs per prompt drawn from pi_ref, which leave {:.2} of a prompt's 9 responses in no pair. The mass on those unseen responses (mean over prompts), at pi_ref and at the end:\n\n| loss | setting | pi_ref | trained |\n|---|---|---|---|", first.pairs, first.unseen_responses);
                for r in &u {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.3} | {:.2e} |",
                        r.loss, r.setting, r.mass_ref, r.mass
                    );
                }
                let rising: Vec<&str> =
                    u.iter().filter(|r| r.mass > r.mass_ref).map(|r| r.loss.as_str()).collect();
                let _ = writeln!(
                    s,
                    "\n{}",
                    if rising.is_empty() {
                        "No loss moves mass onto the unseen responses in this world: every one takes mass off them.".to_string()
                    } else {
                        format!("Mass moves onto unseen responses under: {}.", rising.join(", "))
                    }
                );
            }
        }
        s.push('\n');
    }

    Ok(())
}

/// What the paper costs: per results folder, the wall time of the invocation that wrote it and
/// whether that invocation ran every run (else some were found cached from an earlier one, and
/// the folder cost more than its wall time); the total against an afternoon on two cores.
fn cost_section(results: &Path) -> String {
    const AFTERNOON_H: f64 = 4.0;
    let dirs = summary_dirs(results);
    let mut rows = String::new();
    let (mut total, mut partial, mut ledgers, mut shared_ledgers) =
        (0.0, Vec::new(), Vec::new(), Vec::new());
    for d in &dirs {
        let Some(n) = Numbers::of(d) else {
            continue;
        };
        // The whole invocation's wall time where recorded, else the sweep's (older folders,
        // whose tuning and calibration then come on top).
        let whole = n.wall_s("invocation");
        let Some(wall) = whole.or_else(|| n.wall_s("run")) else {
            continue;
        };
        let calibrated = d.join("calibration.csv").exists() || d.join("tuning.csv").exists();
        let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let (cached, what) = invocation_runs(&n);
        let flop = n.tflop().unwrap_or_else(|| "-".into());
        let (ledger_cell, shared_cell) =
            ledger_cells(&n, &name, (&mut ledgers, &mut shared_ledgers));
        total += wall;
        let sweep_only = if whole.is_none() && calibrated {
            " (the sweep's alone: tuning and calibration not timed)"
        } else {
            ""
        };
        if cached || !sweep_only.is_empty() {
            partial.push(name.clone());
        }
        let _ = writeln!(rows, "| {name} | {wall:.0} s ({:.2} h){sweep_only} | {what} | {ledger_cell} | {shared_cell} | {flop} |", wall / 3600.0);
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## What the paper costs\n\nThe wall time of the invocation that wrote each results folder (`invocation,wall time` in its `summary.csv`: tuning, calibration and sweep; folders from before that row give their sweep's alone, `run,wall time`), cells two at a time (`--jobs 2`) on this machine's two cores; the tabular world (seconds) is not in it. Which runs the invocation ran and which it found cached from an earlier one: `alignlab run` counts them per stage (tuning, calibration, sweep); folders written before it did are read from their compute rows, which cover the reported seeds' runs only, so such a fair-protocol folder whose tuning or calibration came from an earlier invocation cost more than its wall time even where this column says every reported run. The ledger (`protocol,ledger`, else `run,ledger`) is what the runs cost whenever they ran: each run keeps its own wall time in its folder (`{method}/time/run_s` in `timing.csv`), and the ledger sums it over every run the folder stands on (tuning, calibration, sweep and top-ups), those found cached included (the shared stages are not: they have a column of their own); with cells two at a time each run shared the two cores with another, so a folder's runs take about half their ledger in wall time. The shared stages (SFT, preference data, reward model, reference log-probs) keep their own wall time the same way, and their ledger (`protocol,shared ledger`, else `run,shared ledger`) sums it over every seed the folder stands on (tuning, pilot and reported seeds); start-up is in neither. Folders written before runs or stages kept their wall time have none (-).\n\n| results | wall time | runs in the invocation | ledger: runs' own wall time | shared stages' own wall time | model TFLOP of the sweep |\n|---|---|---|---|---|---|\n");
    s.push_str(&rows);
    let bound = if partial.is_empty() {
        String::new()
    } else {
        format!(" at least (the wall times of {} miss runs found cached from earlier invocations, or their tuning and calibration)", partial.join(", "))
    };
    let _ = writeln!(
        s,
        "\nEvery folder together: {:.1} h{bound}; {}.\n",
        total / 3600.0,
        afternoon_verdict(total / 3600.0, !partial.is_empty(), AFTERNOON_H)
    );
    if !ledgers.is_empty() {
        let sum: f64 = ledgers.iter().map(|l| l.1).sum();
        let names: Vec<&str> = ledgers.iter().map(|l| l.0.as_str()).collect();
        let _ = writeln!(s, "The folders with a complete ledger ({}): {:.1} h of runs' own wall time, about {:.1} h at two cells at a time, shared stages not counted.\n", names.join(", "), sum / 3600.0, sum / 7200.0);
    }
    if !shared_ledgers.is_empty() {
        let sum: f64 = shared_ledgers.iter().map(|l| l.1).sum();
        let names: Vec<&str> = shared_ledgers.iter().map(|l| l.0.as_str()).collect();
        let _ = writeln!(s, "The folders with a complete shared ledger ({}): {:.2} h of shared stages' own wall time.\n", names.join(", "), sum / 3600.0);
    }
    s
}

/// Whether some of a folder's runs were found cached from an earlier invocation, and which runs
/// its invocation ran: the invocation's own count where `alignlab run` wrote it (every stage:
/// tuning, calibration, sweep); older folders only say it in their compute rows.
fn invocation_runs(n: &Numbers) -> (bool, String) {
    let counted = n.runs_done();
    if counted.is_empty() {
        let c = n.compute_rows_mention_cached();
        (
            c,
            if c {
                "some reported runs found cached: a lower bound".to_string()
            } else {
                "every reported run (tuning and calibration not recorded)".to_string()
            },
        )
    } else {
        let mut all = crate::experiment::RunsDone::default();
        counted.iter().for_each(|(_, d)| all.absorb(*d));
        let parts = counted
            .iter()
            .map(|(st, d)| format!("{st} {}", d.line()))
            .collect::<Vec<_>>()
            .join("; ");
        (
            all.cached > 0,
            if all.cached > 0 {
                format!("{parts}: a lower bound")
            } else {
                format!("every run ({parts})")
            },
        )
    }
}

/// Complete ledgers: (folder, seconds).
type Ledgers = Vec<(String, f64)>;

/// A folder's ledger cell and shared stages' cell; a complete one is added to `ledgers` or
/// `shared_ledgers` as (folder, seconds).
fn ledger_cells(
    n: &Numbers,
    name: &str,
    (ledgers, shared_ledgers): (&mut Ledgers, &mut Ledgers),
) -> (String, String) {
    // The ledger: every run's own wall time, the protocol's where it has one (tuning,
    // calibration and sweep), else the sweep's.
    let ledger = n.ledger("ledger");
    let ledger_cell = match ledger {
        Some((secs, timed, runs)) if timed == runs => {
            ledgers.push((name.to_string(), secs));
            format!("{secs:.0} s ({:.2} h)", secs / 3600.0)
        }
        Some((secs, timed, runs)) => format!("{secs:.0} s, {timed} of {runs} runs timed"),
        None => "-".into(),
    };
    // The shared stages' part, where every stage folder kept its time.
    let shared_cell = match n.ledger("shared") {
        Some((secs, timed, n)) if timed == n => {
            shared_ledgers.push((name.to_string(), secs));
            format!("{secs:.0} s ({n} stages)")
        }
        Some((secs, timed, n)) if timed > 0 => {
            format!("{secs:.0} s, {timed} of {n} stages timed")
        }
        _ => "-".into(),
    };
    (ledger_cell, shared_cell)
}

/// Whether `hours` of wall time fit an afternoon of `afternoon` hours, when the figure is a lower
/// bound or exact: a lower bound under the afternoon says nothing.
pub fn afternoon_verdict(hours: f64, lower_bound: bool, afternoon: f64) -> String {
    match (hours <= afternoon, lower_bound) {
        (false, _) => format!("it does not fit an afternoon ({afternoon} h) on two cores"),
        (true, false) => format!("it fits an afternoon ({afternoon} h) on two cores"),
        (true, true) => format!("a lower bound under an afternoon ({afternoon} h), so these folders do not say whether the paper fits one on two cores (time `make paper` from an empty runs/ to know)"),
    }
}

/// The importance-sampling frontier's reach in a results folder: (the smallest over seeds of the
/// largest KL kept, N, the ESS threshold), from its `eval.csv` and resolved scenario.
fn optimal_reach(dir: &Path) -> Option<(f64, f64, f64)> {
    let e: Vec<Row> = read(&dir.join("eval.csv"))?;
    let rows: Vec<&Row> = e.iter().filter(|r| r.method == "optimal").collect();
    let seeds = distinct(rows.iter().map(|r| r.seed));
    let reach = seeds
        .iter()
        .map(|sd| {
            rows.iter()
                .filter(|r| r.seed == *sd && r.metric == "eval/kl")
                .map(|r| r.value)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .fold(f64::INFINITY, f64::min);
    let n = rows.iter().find(|r| r.metric == "eval/is_samples").map(|r| r.value)?;
    let text = std::fs::read_to_string(dir.join("scenario.resolved.toml")).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    let ess = v.get("eval")?.get("optimal_min_ess")?.as_float()?;
    reach.is_finite().then_some((reach, n, ess))
}

/// Which code produced each results folder (the `code` row of its summary.csv), and whether
/// today's code and scenario files would make it again ([`super::provenance::stale`]). Folders
/// from before that row existed were made with numerics 1 (see `experiment::folders::NUMERICS`).
fn provenance(results: &Path) -> String {
    let mut s = String::from("\n\n## Provenance\n\nThe code behind each results folder (rerunning a folder's scenario with other code gives other bytes; with the same code, seed and thread count, the same bytes), and whether this code and the scenario files would make it again (stale: its numerics, calibration rule or resolved scenario differ from today's):\n\n| results | code |\n|---|---|\n");
    for (name, stale) in super::provenance::check(results) {
        let d = results.join(&name);
        let sm = read::<SummaryRecord>(&d.join("summary.csv")).unwrap_or_default();
        let code = sm.iter().find(|r| r.metric == "code").map(|r| r.value.clone());
        // A calibrated folder names its calibration's search.
        let rule = if d.join("calibration.csv").exists() {
            let r = Numbers::of(&d).as_ref().map_or(1, |n| n.calibration_rule());
            format!(", calibration rule {r}")
        } else {
            String::new()
        };
        let stale =
            stale.map(|why| format!("; stale: {why}: rerun its scenario")).unwrap_or_default();
        let _ = writeln!(
            s,
            "| {name} | {}{rule}{stale} |",
            code.unwrap_or_else(|| "not recorded: numerics 1, before commit 44184c1".to_string())
        );
    }
    s
}

/// The ablations' section: their table and figure, over `seeds` seeds each.
fn ablations_section(s: &mut String, table: &str, seeds: usize) {
    let each = if seeds == 1 { "one seed each".to_string() } else { format!("{seeds} seeds each") };
    let _ = writeln!(s, "## Ablations (sentiment, {each})\n\n`make ablations`. Gold reward at KL budgets on each method's envelope, mean ± 95% interval over seeds (chosen on the selection half of the prompts, reported on the test half; `-`: some seed's runs did not reach the budget):\n");
    figure(s, "../results/ablations.png", "Gold reward at KL 2 against the ablated setting: label noise (Bradley-Terry temperature), preference-data size (training prompts, 6 pairs each), reward-model size (d_model).");
    s.push_str(table);
    s.push('\n');
}

/// A mean with its 95% half-width where it has one (one seed: the mean alone).
fn pm(g: f64, ci: f64) -> String {
    if ci.is_finite() && ci > 0.0 {
        format!("{} ± {}", f3(g), f3(ci))
    } else {
        f3(g)
    }
}

/// The ablation folders `results/ablation-<family>-<level>`: a Markdown table of gold at KL
/// budgets with 95% intervals over seeds, the most seeds behind a level, and
/// `results/ablations.{png,svg}` (gold at KL 2 against the level, with the intervals).
fn ablation_figure(results: &Path) -> Result<Option<(String, usize)>> {
    let families = [
        ("label-noise", "T", "Bradley-Terry label temperature"),
        ("data-size", "", "training prompts (6 pairs each)"),
        ("rm-size", "d", "reward-model d_model"),
    ];
    let mut panels: Vec<plot::AblationPanel> = Vec::new();
    let mut seeds = 0;
    let mut table = String::from(
        "| ablation | level | method | KL 1 | KL 2 | KL 4 |\n|---|---|---|---|---|---|\n",
    );
    for (family, prefix, xdesc) in families {
        let mut levels: Vec<(f64, PathBuf)> = Vec::new();
        let Ok(rd) = std::fs::read_dir(results) else {
            continue;
        };
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
        let mut series: Vec<(String, Vec<super::plot::LevelPoint>)> = Vec::new();
        for (level, dir) in &levels {
            let Some(f) = read::<FrontierRecord>(&dir.join("frontier.csv")) else {
                continue;
            };
            seeds = seeds.max(f.iter().map(|r| r.seeds).max().unwrap_or(0));
            for m in distinct(f.iter().map(|r| r.method.clone()).filter(|m| m != "optimal")) {
                let cells: Vec<String> = [1.0, 2.0, 4.0]
                    .iter()
                    .map(|b| at_budget(&f, &m, *b).map(|(g, ci)| pm(g, ci)).unwrap_or("-".into()))
                    .collect();
                let _ = writeln!(table, "| {family} | {level} | {m} | {} |", cells.join(" | "));
                if let Some((g, ci)) = at_budget(&f, &m, 2.0) {
                    match series.iter_mut().find(|s| s.0 == m) {
                        Some(s) => s.1.push((*level, g, ci)),
                        None => series.push((m, vec![(*level, g, ci)])),
                    }
                }
            }
        }
        // One seed per level has no interval: the title says so.
        let one_seed = series.iter().flat_map(|s| &s.1).all(|q| q.2.is_nan() || q.2 <= 0.0);
        let mark = if one_seed { " (one seed each, no interval)" } else { "" };
        panels.push(plot::AblationPanel {
            title: format!("ablation: {family}{mark}"),
            xdesc: xdesc.to_string(),
            log_x: true,
            series,
        });
    }
    if panels.is_empty() {
        return Ok(None);
    }
    plot::ablations(results, &panels)?;
    Ok(Some((table, seeds)))
}

/// (seed, step, value).
type SeedStepValue = (u64, usize, f64);

/// A win-rate row's run as the paper names it: `dpo beta=0.5`, `sft`.
fn winrate_label(r: &WinrateRecord) -> String {
    format!("{} {}", r.method, r.setting).trim().to_string()
}

/// A results folder with its frontier and paired tables, where it has both.
fn frontier_folder(
    results: &Path,
    name: &str,
) -> Option<(PathBuf, Vec<FrontierRecord>, Vec<PairedRecord>)> {
    let dir = results.join(name);
    let f = read::<FrontierRecord>(&dir.join("frontier.csv"))?;
    let p = read::<PairedRecord>(&dir.join("paired.csv"))?;
    Some((dir, f, p))
}
