//! Bad input never panics or hangs: a generator mutates valid scenarios (keys, types,
//! magnitudes, unicode, grids, the TOML text itself) and `--set` strings, and every case must
//! either be accepted or give one line naming the file, a key and a fix. Beside it, a checked-in
//! corpus of malformed inputs with the first words of their expected errors.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use alignlab::scenario::Scenario;

const BASE: &str = r#"
name = "fuzz"
seed = 1

[world]
kind = "sentiment"
n_train = 200
n_val = 50
n_train_prompts = 20
n_eval_prompts = 16

[model]
n_layer = 1
n_head = 2
d_model = 32
block_size = 32

[sft]   # shared trunk
steps = 10
lr = 1e-3

[train]
steps = 5

[eval]
every = 5
samples_per_prompt = 1
temperatures = [0.0, 1.0]

[dpo]
beta = [0.1, 1.0]

[ppo]
target_kl = [1.0]
iterations = 2

[best_of_n]
n = [1, 4]
"#;

const SUMMARIZE: &str = r#"
[world]
kind = "summarize"
n_train = 200
n_val = 50
n_train_prompts = 20
n_eval_prompts = 16

[prefs]
source = "labeller"

[dpo]
beta = [0.5]
"#;

/// Keys a user might touch, valid or not.
const KEYS: &[&str] = &[
    "name",
    "seed",
    "world.kind",
    "world.n_train",
    "world.n_val",
    "world.n_positive",
    "world.n_negative",
    "world.n_neutral",
    "world.tilt",
    "world.sharpness",
    "world.min_len",
    "world.max_len",
    "world.stop_prob",
    "world.prompt_min_len",
    "world.prompt_max_len",
    "world.n_train_prompts",
    "world.n_eval_prompts",
    "world.n_facts",
    "world.doc_max_len",
    "world.ref_drop",
    "model.n_layer",
    "model.n_head",
    "model.d_model",
    "model.block_size",
    "sft.steps",
    "sft.batch_size",
    "sft.lr",
    "sft.warmup_steps",
    "sft.min_lr_ratio",
    "sft.grad_clip",
    "sft.eval_every",
    "sample.max_new_tokens",
    "sample.temperature",
    "sample.top_k",
    "prefs.k",
    "prefs.source",
    "prefs.labels",
    "prefs.bt_temperature",
    "prefs.val_fraction",
    "prefs.temperature",
    "reward.epochs",
    "reward.batch_size",
    "reward.lr",
    "reward.margin",
    "reward.center_coef",
    "reward.grad_clip",
    "reward.d_model",
    "train.steps",
    "train.batch_size",
    "train.lr",
    "train.grad_clip",
    "eval.every",
    "eval.samples_per_prompt",
    "eval.temperatures",
    "eval.selection_fraction",
    "eval.optimal_samples",
    "eval.optimal_min_ess",
    "dpo.beta",
    "dpo.lr",
    "dpo.steps",
    "ipo.beta",
    "cdpo.beta",
    "cdpo.label_smoothing",
    "unlikelihood.alpha",
    "ppo.target_kl",
    "ppo.kl_coef",
    "ppo.iterations",
    "ppo.rollout_batch",
    "ppo.minibatch_size",
    "ppo.clip_coef",
    "ppo.gamma",
    "ppo.kl_estimator",
    "ppo.grad_clip",
    "ppo_gt.target_kl",
    "best_of_n.n",
    "sweep.seeds",
    "sweep.dpo.beta",
    "sweep.sft.lr",
    "report.compare",
    "bogus.key",
    "world.bogus",
    "dpo",
    "sft",
];

/// Values of every type and magnitude, with unicode and control characters.
const VALUES: &[&str] = &[
    "0", "1", "-1", "2", "3", "7", "64", "1000", "99999999999", "9223372036854775807",
    "18446744073709551615", "-9223372036854775808", "0.5", "1e-300", "1e300", "-1e-9", "1e-250",
    "inf", "-inf", "nan", "0.0", "1.0", "4.0", "4.5", "true", "false", "\"\"", "\"x\"",
    "\"sentiment\"", "\"summarize\"", "\"tabular\"", "\"k3\"", "\"labeller\"", "\"a\\nb\"",
    "\"\\u001b[31mred\"", "\"é漢字🙂\"", "[]", "[0.1, 0.1]", "[1, 2, 3]", "[-1]", "[1e-300]",
    "[\"a\"]", "[[\"dpo\", \"ppo\"]]", "[[\"dpo\", \"dpo\"]]", "[[\"dpo\"]]", "{ a = 1 }",
    "[0.0, 0.25, 0.25]", "[true]", "1970-01-01",
];

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// The scenario text with one mutation of the text itself (or none).
fn mutate_text(g: &mut Gen, base: &str) -> String {
    let mut lines: Vec<String> = base.lines().map(String::from).collect();
    let i = (g.next() % lines.len() as u64) as usize;
    match g.next() % 8 {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            lines[i] = format!("{} = {}", g.pick(KEYS).rsplit('.').next().unwrap(), g.pick(VALUES))
        }
        3 => lines[i].push_str(" # comment"),
        4 => lines[i] = lines[i].replace('=', ""),
        5 => lines
            .insert(i, format!("[{}]", g.pick(&["world", "dpo", "sweep", "x y", "", "ppo.extra"]))),
        _ => {}
    }
    lines.join("\n")
}

/// Load a case; a panic is caught and returned as Err("panic: ...").
fn load(text: &str, sets: &[String]) -> Result<Result<Scenario, String>, String> {
    catch_unwind(AssertUnwindSafe(|| {
        Scenario::from_str(text, "f.toml", "f", sets, Path::new("f.toml"))
            .map_err(|e| e.to_string())
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// An error is one line naming the file, a key in backquotes, and a fix.
fn well_formed(msg: &str) -> bool {
    !msg.contains('\n') && msg.starts_with("f.toml") && msg.contains('`') && msg.contains("fix:")
}

#[test]
fn mutated_scenarios_never_panic_or_hang() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    // Every key with every value on its own, then random combinations on mutated texts.
    let singles: Vec<(String, Vec<String>)> = KEYS
        .iter()
        .flat_map(|k| VALUES.iter().map(move |v| (BASE.to_string(), vec![format!("{k}={v}")])))
        .collect();
    let random = 4000;
    let cases = singles.len() + random;
    let (mut accepted, mut rejected) = (0, 0);
    let start = Instant::now();
    std::panic::set_hook(Box::new(|_| {})); // panics are counted, not printed
    let (mut panics, mut malformed) = (Vec::new(), Vec::new());
    let mut slowest = Duration::ZERO;
    for case in 0..cases {
        let (text, sets) = match singles.get(case) {
            Some(single) => single.clone(),
            None => {
                let base = if g.next().is_multiple_of(4) {
                    format!("{BASE}\n{SUMMARIZE}").replacen("[world]\nkind = \"sentiment\"\nn_train = 200\nn_val = 50\nn_train_prompts = 20\nn_eval_prompts = 16\n", "", 1)
                } else {
                    BASE.to_string()
                };
                let text = mutate_text(&mut g, &base);
                let sets: Vec<String> = (0..g.next() % 3)
                    .map(|_| format!("{}={}", g.pick(KEYS), g.pick(VALUES)))
                    .collect();
                (text, sets)
            }
        };
        let t = Instant::now();
        let out = load(&text, &sets);
        slowest = slowest.max(t.elapsed());
        match out {
            Err(p) => panics.push(format!("case {case}: {sets:?}: {p}")),
            Ok(Ok(_)) => accepted += 1,
            Ok(Err(msg)) => {
                if !well_formed(&msg) {
                    malformed.push(format!("case {case} {sets:?}: {msg}"));
                }
                rejected += 1;
            }
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("{cases} cases in {:.2} s: {accepted} accepted, {rejected} rejected ({} not one line naming a key), {} panics; slowest {:.1} ms", start.elapsed().as_secs_f64(), malformed.len(), panics.len(), slowest.as_secs_f64() * 1e3);
    assert!(panics.is_empty(), "{} panics, e.g. {}", panics.len(), panics[0]);
    assert!(
        malformed.is_empty(),
        "{} errors are not one line naming a key and a fix, e.g. {}",
        malformed.len(),
        malformed[0]
    );
    assert!(slowest < Duration::from_secs(2), "a case took {slowest:?}: a check loops");
    assert!(
        accepted > 50 && rejected > 1000,
        "the generator must reach both outcomes: {accepted} accepted, {rejected} rejected"
    );
}

/// `tests/fuzz_corpus.txt`: one `--set` string per line (`;` separates several), a tab, and the
/// first words of the expected error (`ok` where the input is valid).
#[test]
fn malformed_corpus_gives_its_expected_errors() {
    let corpus = std::fs::read_to_string("tests/fuzz_corpus.txt").unwrap();
    let mut n = 0;
    for (i, line) in
        corpus.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (input, expected) =
            line.split_once('\t').unwrap_or_else(|| panic!("line {}: no tab", i + 1));
        let sets: Vec<String> = input.split(';').map(String::from).collect();
        let got =
            load(BASE, &sets).unwrap_or_else(|p| panic!("line {}: {input} panics: {p}", i + 1));
        match got {
            Ok(_) => assert_eq!(expected, "ok", "line {}: {input} was accepted", i + 1),
            Err(msg) => {
                assert!(well_formed(&msg), "line {}: {msg}", i + 1);
                assert!(
                    msg.starts_with(expected),
                    "line {}: {input}\n  expected: {expected}\n  got:      {msg}",
                    i + 1
                );
            }
        }
        n += 1;
    }
    assert!(n >= 100, "the corpus has {n} inputs; it should hold at least 100");
}
