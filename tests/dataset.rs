//! The dataset world: rows read in each format, a run on committed fixtures (tiny random GPT-2,
//! tiny random RoBERTa judge, 200 JSON lines), the sentiment world's pairs exported and trained
//! on again with the same DPO losses, and each bad input a one-line error before any work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alignlab::world::dataset_read::{read, split_dialogues, Columns, Format};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alignlab-dataset-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn alignlab(args: &[&str], out: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(args).args(["--quiet", "--threads", "1"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    c.output().unwrap()
}

/// The run folder under `root` whose name starts with `prefix` (e.g. `dpo-`).
fn run_dir(root: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* under {}", root.display()))
}

fn write(path: &Path, lines: &[&str]) {
    std::fs::write(path, lines.join("\n")).unwrap();
}

#[test]
fn rows_are_read_in_each_format() {
    let d = tmp("formats");
    let cols = Columns::default();
    let f = d.join("hh.jsonl");
    write(
        &f,
        &[
            r#"{"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: well", "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: go away"}"#,
        ],
    );
    let rows = read(&f, Format::Hh, &cols, false).unwrap().0;
    // The prompt ends at the last Assistant turn, both replies after it.
    assert_eq!(rows[0].prompt, "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:");
    assert_eq!(rows[0].chosen, " well");
    assert_eq!(rows[0].rejected.as_deref(), Some(" go away"));
    assert!(
        split_dialogues("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: c\n\nAssistant: d").is_err()
    );
    let f = d.join("tldr.jsonl");
    write(
        &f,
        &[
            r#"{"info": {"post": "my post"}, "summaries": [{"text": " first"}, {"text": " second"}], "choice": 1}"#,
        ],
    );
    let rows = read(&f, Format::Tldr, &cols, false).unwrap().0;
    assert_eq!((rows[0].prompt.as_str(), rows[0].chosen.as_str()), ("my post", " second"));
    assert_eq!(rows[0].rejected.as_deref(), Some(" first"));
    let f = d.join("pc.jsonl");
    write(&f, &[r#"{"q": {"text": "a question"}, "completion": " an answer"}"#, ""]);
    let renamed = Columns { prompt: "q.text".into(), ..Columns::default() };
    let rows = read(&f, Format::PromptCompletion, &renamed, false).unwrap().0;
    assert_eq!((rows[0].prompt.as_str(), rows[0].rejected.is_none()), ("a question", true));
    // Parquet (snappy, a nested column) reads as the same rows as the JSON lines it was made of.
    let json = read(Path::new("tests/fixtures/data/prefs.jsonl"), Format::Preference, &cols, false)
        .unwrap()
        .0;
    let nested = Columns { chosen: "meta.chosen".into(), ..Columns::default() };
    let parquet =
        read(Path::new("tests/fixtures/data/prefs.parquet"), Format::Preference, &nested, false)
            .unwrap()
            .0;
    assert_eq!(json.len(), 200);
    for (a, b) in json.iter().zip(&parquet) {
        assert_eq!((&a.prompt, &a.chosen, &a.rejected), (&b.prompt, &b.chosen, &b.rejected));
    }
    // Gzipped JSON lines (as Anthropic HH ships them) read as the plain file.
    let hh = read(Path::new("tests/fixtures/data/hh.jsonl"), Format::Hh, &cols, false).unwrap().0;
    let gz =
        read(Path::new("tests/fixtures/data/hh.jsonl.gz"), Format::Hh, &cols, false).unwrap().0;
    assert_eq!(hh.len(), 200);
    for (a, b) in hh.iter().zip(&gz) {
        assert_eq!((&a.prompt, &a.chosen, &a.rejected), (&b.prompt, &b.chosen, &b.rejected));
    }
    let wrong = Columns { prompt: "score".into(), ..nested };
    let e = read(Path::new("tests/fixtures/data/prefs.parquet"), Format::Preference, &wrong, false)
        .unwrap_err();
    assert!(
        e.problem
            .ends_with("prefs.parquet row 1, column `score`: is a number where text is expected"),
        "{}",
        e.problem
    );
}

/// A dataset scenario under `d` with `world` as its `[world]` lines (before `[world.gold]`).
fn scenario(d: &Path, world: &str, rest: &str) -> PathBuf {
    let f = d.join("s.toml");
    let text = format!(
        "name = \"ds\"\n[world]\nkind = \"dataset\"\ntokenizer = \"tests/fixtures/tokenizers/bytelevel\"\n{world}\n[world.gold]\ninit = \"tests/fixtures/roberta-classifier\"\nlabel = \"POSITIVE\"\n[model]\ninit = \"tests/fixtures/gpt2\"\nblock_size = 32\n[sft]\nsteps = 4\n[sample]\nmax_new_tokens = 8\n[prefs]\nsource = \"dataset\"\nlabels = \"world\"\n[train]\nsteps = 2\nbatch_size = 8\n[dpo]\nbeta = [0.1]\n{rest}"
    );
    std::fs::write(&f, text).unwrap();
    f
}

fn fails_before_work(d: &Path, world: &str, rest: &str, needles: &[&str]) {
    let f = scenario(d, world, rest);
    let o = alignlab(&["run", f.to_str().unwrap()], d);
    let t = text(&o);
    assert!(!o.status.success(), "{world}: succeeded:\n{t}");
    assert_eq!(t.trim().lines().count(), 1, "{world}: not one line:\n{t}");
    for n in needles {
        assert!(t.contains(n), "{world}: {t:?} lacks {n:?}");
    }
    assert!(!d.join("runs").exists() && !d.join("results").exists(), "{world}: work was done");
}

#[test]
fn bad_data_fails_in_one_line_before_any_work() {
    let d = tmp("bad");
    let f = d.join("rows.jsonl");
    let path = f.display().to_string();
    let world = format!("train = \"{path}\"");
    let good = r#"{"prompt": "the movie", "chosen": " was great", "rejected": " was bad"}"#;
    let cases: Vec<(Vec<u8>, &str, Vec<&str>)> = vec![
        (
            format!("{good}\n{{\"prompt\": \"a\", \"chosen\": \" b\"}}").into_bytes(),
            "",
            vec!["line 2, column `rejected`: is missing", "world.columns.rejected"],
        ),
        (
            format!("{good}\n{{\"prompt\": \"a\", \"chosen\": \"  \", \"rejected\": \" c\"}}")
                .into_bytes(),
            "",
            vec!["line 2, column `chosen`: is empty"],
        ),
        ([good.as_bytes(), b"\n{\"prompt\": \"\xff\"}"].concat(), "", vec!["line 2: is not UTF-8"]),
        (format!("{good}\nnot json").into_bytes(), "", vec!["line 2: is not JSON"]),
        (
            format!("{good}\n{{\"prompt\": 3, \"chosen\": \" b\", \"rejected\": \" c\"}}")
                .into_bytes(),
            "",
            vec!["line 2, column `prompt`: is a number where text is expected"],
        ),
        (
            format!("{good}\n{good}").into_bytes(),
            "overlong = \"refuse\"\nmax_response_tokens = 1",
            vec!["the response has", "more than 1", "overlong = \"truncate\""],
        ),
        (
            format!("{good}\n{good}").into_bytes(),
            "template = \"Q:\"",
            vec!["world.template", "has no {prompt}"],
        ),
        (
            (0..40)
                .map(|i| good.replace("the movie", &format!("the movie {i}")))
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
            "format = \"prompt_completion\"\ncolumns.completion = \"chosen\"",
            vec!["prefs.source", "has no preference pairs of its own"],
        ),
    ];
    for (bytes, extra, needles) in cases {
        std::fs::write(&f, bytes).unwrap();
        fails_before_work(&d, &format!("{world}\n{extra}"), "", &needles);
    }
    std::fs::write(&f, format!("{good}\n{good}")).unwrap();
    fails_before_work(&d, &world, "", &["world.train", "0 SFT training", "give more rows"]);
    let rows: Vec<String> =
        (0..40).map(|i| good.replace("the movie", &format!("the movie {i}"))).collect();
    std::fs::write(&f, rows.join("\n")).unwrap();
    fails_before_work(
        &d,
        "train = \"${ALIGNLAB_NO_SUCH_VAR}/x.jsonl\"",
        "",
        &["world.train", "${ALIGNLAB_NO_SUCH_VAR}", "is not set", "export ALIGNLAB_NO_SUCH_VAR="],
    );
    fails_before_work(
        &d,
        &format!("{world}\nfingerprint = \"0123\""),
        "",
        &["world.fingerprint", "not 0123"],
    );
    // A proxy classifier's label that it does not have.
    fails_before_work(
        &d,
        &world,
        "[reward.classifier]\ninit = \"tests/fixtures/roberta-classifier\"\nlabel = \"HAPPY\"\n",
        &["reward.classifier.init", "HAPPY"],
    );
    // Without a judge: no PPO-GT, no labels from gold.
    let s = scenario(&d, &world, "[ppo_gt]\ntarget_kl = [1.0]\niterations = 1\n");
    let no_gold = std::fs::read_to_string(&s).unwrap().replace(
        "[world.gold]\ninit = \"tests/fixtures/roberta-classifier\"\nlabel = \"POSITIVE\"\n",
        "",
    );
    std::fs::write(&s, &no_gold).unwrap();
    let o = alignlab(&["run", s.to_str().unwrap()], &d);
    assert!(!o.status.success() && text(&o).contains("`ppo_gt`: PPO-GT trains on the gold reward, and this dataset world has no gold reward"), "{}", text(&o));
    std::fs::write(
        &s,
        no_gold
            .replace("[ppo_gt]\ntarget_kl = [1.0]\niterations = 1\n", "")
            .replace("labels = \"world\"", "labels = \"deterministic\""),
    )
    .unwrap();
    let o = alignlab(&["run", s.to_str().unwrap()], &d);
    assert!(
        !o.status.success()
            && text(&o).contains("`prefs.labels`")
            && text(&o).contains("no gold reward"),
        "{}",
        text(&o)
    );
    // A judge whose tokenizer reads nothing of the policy's text: a vocabulary of unknowns.
    let judge = d.join("judge");
    std::fs::create_dir_all(&judge).unwrap();
    let src = Path::new("tests/fixtures/roberta-classifier");
    for f in ["config.json", "model.safetensors", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), judge.join(f)).unwrap();
    }
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    tok["model"]["vocab"] = serde_json::json!({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3});
    tok["model"]["merges"] = serde_json::json!([]);
    tok["model"]["unk_token"] = serde_json::json!("<unk>");
    tok["pre_tokenizer"] = serde_json::Value::Null;
    std::fs::write(judge.join("tokenizer.json"), tok.to_string()).unwrap();
    let s = scenario(&d, &world, "").display().to_string();
    let patched = std::fs::read_to_string(&s)
        .unwrap()
        .replace("tests/fixtures/roberta-classifier", &judge.display().to_string());
    std::fs::write(&s, patched).unwrap();
    let o = alignlab(&["run", &s], &d);
    assert!(
        !o.status.success()
            && text(&o).contains("world.gold.init")
            && text(&o).contains("unknown tokens"),
        "{}",
        text(&o)
    );
}

/// SFT, the file's pairs, reward model, DPO, PPO (critic), PPO-GT and Best-of-N on the committed
/// fixture, each evaluated with a finite gold reward (the judge) and KL, and the report written.
#[test]
fn a_dataset_scenario_runs_end_to_end() {
    let d = tmp("run");
    let o = alignlab(&["run", "tests/fixtures/data/dataset.toml"], &d);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(d.join("results/dataset/eval.csv")).unwrap();
    for m in ["sft", "dpo", "ppo", "ppo_gt", "best_of_n"] {
        let rows: Vec<&str> = csv.lines().filter(|l| l.starts_with(&format!("{m},"))).collect();
        let gold: Vec<f64> = rows
            .iter()
            .filter(|l| l.split(',').nth(4) == Some("eval/gold"))
            .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
            .collect();
        assert!(!gold.is_empty() && gold.iter().all(|g| (0.0..=1.0).contains(g)), "{m}: {gold:?}");
    }
    assert!(d.join("results/dataset/report.md").exists());
    let summary = std::fs::read_to_string(d.join("results/dataset/summary.csv")).unwrap();
    assert!(summary.contains("world/dataset/fingerprint"), "{summary}");
    // The resolved scenario pins the files' fingerprint, and runs again as written.
    let resolved = d.join("results/dataset/scenario.resolved.toml");
    let r = std::fs::read_to_string(&resolved).unwrap();
    assert!(r.lines().any(|l| l.starts_with("fingerprint = \"") && l.len() > 20), "{r}");
    let o =
        Command::new(env!("CARGO_BIN_EXE_alignlab")).arg("check").arg(&resolved).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // A policy trained elsewhere, in the tokenizer's own layout (the unshifted fixture GPT-2),
    // evaluated on the world's judge and exact KL, and placed on the frontier plot.
    let res = d.join("results/dataset");
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args([
        "eval",
        "tests/fixtures/data/dataset.toml",
        "--threads",
        "1",
        "--policy",
        "tests/fixtures/real/gpt2-large",
    ]);
    let o = c.arg("--runs").arg(d.join("runs")).arg("--frontier").arg(&res).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ext = alignlab::report::external(&res).unwrap();
    assert_eq!(ext.len(), 1, "{ext:?}");
    // The DPO policy exported to Hugging Face's layout (the tokenizer's own ids, the three
    // specials added after them) and read back: the run's own last KL, to the last digit.
    let dpo = run_dir(&d.join("runs/dataset"), "dpo-");
    let hf = d.join("dpo-hf");
    let o = Command::new(env!("CARGO_BIN_EXE_alignlab"))
        .arg("export")
        .arg(&dpo)
        .arg("--hf")
        .arg(&hf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(config.contains("alignlab_special_rows"), "{config}");
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(["eval", "tests/fixtures/data/dataset.toml", "--threads", "1", "--policy"]).arg(&hf);
    let o = c.arg("--runs").arg(d.join("runs")).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let kl_back = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("eval/kl,").map(|r| r.split(',').next().unwrap().to_string()))
        .unwrap();
    let last = csv.lines().rfind(|l| l.starts_with("dpo,") && l.contains(",eval/kl,")).unwrap();
    assert_eq!(
        last.rsplit(',').next().unwrap(),
        kl_back,
        "the export read back is not the run's policy"
    );
    assert!(
        ext[0].policy == "gpt2-large" && ext[0].kl > 0.0 && (0.0..=1.0).contains(&ext[0].gold),
        "{ext:?}"
    );
}

/// The sentiment world's pairs, exported with `export-prefs` and read back by the dataset world
/// with the exported SFT policy's tokenizer, give alignlab's own token ids, and DPO from the
/// exported SFT policy on them logs the same loss at every logged step.
#[test]
fn exported_pairs_train_dpo_to_the_same_losses() {
    let d = tmp("roundtrip");
    let tiny = [
        "sft.steps=20",
        "world.n_train=200",
        "world.n_val=40",
        "world.n_train_prompts=16",
        "world.n_eval_prompts=8",
        "train.steps=30",
        "train.batch_size=16",
        "reward.epochs=1",
        "eval.every=30",
        "eval.samples_per_prompt=1",
        "ppo.iterations=1",
        "ppo_gt.iterations=1",
        "best_of_n.n=[1]",
        "sweep.seeds=[0]",
        "dpo.beta=[0.1]",
    ];
    let mut args = vec!["run", "scenarios/sentiment.toml"];
    for s in &tiny {
        args.extend(["--set", s]);
    }
    let o = alignlab(&args, &d);
    assert!(o.status.success(), "{}", text(&o));
    let dirs = |prefix: &str| -> PathBuf { run_dir(&d.join("runs/sentiment"), prefix) };
    let jsonl = d.join("prefs.jsonl");
    let exe = env!("CARGO_BIN_EXE_alignlab");
    let o = Command::new(exe).arg("export-prefs").arg(dirs("prefs-")).arg(&jsonl).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let hf = d.join("sft-hf");
    let o =
        Command::new(exe).arg("export").arg(dirs("sft-")).arg("--hf").arg(&hf).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = d.join("ds.toml");
    let (j, h) = (jsonl.display(), hf.display());
    std::fs::write(
        &s,
        format!(
            r#"name = "roundtrip"
[world]
kind = "dataset"
tokenizer = "{h}"
train = "{j}"
test = "{j}"
columns.split = "split"
empty_responses = true
max_prompt_tokens = 16
max_response_tokens = 16
[world.gold]
init = "tests/fixtures/roberta-classifier"
[model]
init = "{h}"
block_size = 32
[sft]
steps = 0
[sample]
max_new_tokens = 16
[prefs]
source = "dataset"
labels = "world"
[train]
steps = 30
batch_size = 16
lr = 3e-4
warmup_steps = 50
grad_clip = 10.0
[eval]
every = 30
samples_per_prompt = 1
[dpo]
beta = [0.1]
"#
        ),
    )
    .unwrap();
    let o = alignlab(&["run", s.to_str().unwrap()], &d);
    assert!(o.status.success(), "{}", text(&o));
    // The pairs: identical ids, in the same order.
    let ours = alignlab::data::PrefData::load(&dirs("prefs-").join("pairs.txt")).unwrap();
    let back_dir = run_dir(&d.join("runs/roundtrip"), "prefs-");
    let back = alignlab::data::PrefData::load(&back_dir.join("pairs.txt")).unwrap();
    assert!(!ours.train.is_empty() && !ours.val.is_empty());
    for (a, b) in ours.train.iter().chain(&ours.val).zip(back.train.iter().chain(&back.val)) {
        assert_eq!((&a.prompt, &a.chosen, &a.rejected), (&b.prompt, &b.chosen, &b.rejected));
    }
    assert_eq!((ours.train.len(), ours.val.len()), (back.train.len(), back.val.len()));
    // The DPO losses at every logged step.
    let losses = |dir: &Path| -> Vec<(String, f64)> {
        let run = run_dir(dir, "dpo-");
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .filter(|l| l.contains(",dpo/loss,"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[3].to_string(), f[5].parse().unwrap())
            })
            .collect()
    };
    let (a, b) = (losses(&d.join("runs/sentiment")), losses(&d.join("runs/roundtrip")));
    assert_eq!(a.len(), 3, "{a:?}");
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            assert_eq!(x.0, y.0);
            (x.1 - y.1).abs()
        })
        .fold(0.0, f64::max);
    eprintln!(
        "DPO loss at steps {:?}: largest difference {worst:e}",
        a.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    assert_eq!(a.len(), b.len());
    assert!(worst == 0.0, "{a:?} vs {b:?}");
    // Every step, not only the logged ones: the final weights are the same bytes.
    let weights = |dir: &Path| {
        let run = run_dir(dir, "dpo-");
        std::fs::read(run.join("model.safetensors")).unwrap()
    };
    assert!(
        weights(&d.join("runs/sentiment")) == weights(&d.join("runs/roundtrip")),
        "the DPO policies differ"
    );
}

/// A decoder reward model (the Llama-family fixture, `LlamaForSequenceClassification` with one
/// output) as the judge: its scores of fixed ids equal transformers', and it judges a dataset.
#[test]
fn a_decoder_reward_model_judges_as_transformers_scores() {
    let d = tmp("decoder-judge");
    let judge = d.join("judge");
    std::fs::create_dir_all(&judge).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new("tests/fixtures/llama-rm").join(f), judge.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(Path::new("tests/fixtures/tokenizers/bytelevel").join(f), judge.join(f))
            .unwrap();
    }
    let j = alignlab::model::judge::DecoderJudge::open(&judge, tch::Device::Cpu).unwrap();
    let expected =
        tch::Tensor::read_safetensors("tests/fixtures/llama-rm/expected.safetensors").unwrap();
    let get = |k: &str| expected.iter().find(|(n, _)| n == k).unwrap().1.shallow_clone();
    let ids: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(get("ids")).unwrap();
    let want = Vec::<f64>::try_from(get("scores").to_kind(tch::Kind::Double)).unwrap();
    // Rows of different lengths in one batch: each read at its own last token.
    let rows = vec![ids[0].clone(), ids[1][..6].to_vec(), ids[2].clone()];
    let got = j.score_ids(&rows);
    for (g, w) in [(got[0], want[0]), (got[2], want[2])] {
        assert!((g - w).abs() < 1e-5, "{g} vs transformers {w}");
    }
    let alone = j.score_ids(&rows[1..2]);
    assert!(
        (got[1] - alone[0]).abs() < 1e-5,
        "padding changed a score: {} vs {}",
        got[1],
        alone[0]
    );
    // As a dataset world's gold.
    let s = d.join("s.toml");
    let toml = std::fs::read_to_string("tests/fixtures/data/dataset.toml").unwrap();
    let toml = toml.replace(
        "init = \"tests/fixtures/roberta-classifier\"\nlabel = \"POSITIVE\"\nreward = \"prob\"",
        &format!("init = \"{}\"", judge.display()),
    );
    std::fs::write(&s, toml).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_alignlab")).arg("world").arg(&s).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reference"), "{}", text(&o));
}

/// scenarios/real-{imdb,hh,tldr}.toml with `${ALIGNLAB_DATA}` at tests/fixtures/real (the
/// folder layout they name, made of the fixtures) and tiny sizes: every method of each runs.
#[test]
fn the_real_scenarios_run_on_the_fixtures() {
    for name in ["real-imdb", "real-hh", "real-tldr"] {
        let d = tmp(name);
        let f = format!("scenarios/{name}.toml");
        let toml = std::fs::read_to_string(&f).unwrap();
        let mut sets = vec![
            "model.block_size=64",
            "world.max_prompt_tokens=16",
            "world.max_response_tokens=16",
            "sample.max_new_tokens=16",
            "world.n_eval_prompts=8",
            "world.max_rows=60",
            "sft.steps=4",
            "sft.eval_every=2",
            "sft.batch_size=8",
            "train.steps=4",
            "train.warmup_steps=1",
            "train.batch_size=8",
            "reward.epochs=1",
            "reward.batch_size=8",
            "eval.every=2",
            "eval.samples_per_prompt=1",
            "ppo.iterations=2",
            "ppo.eval_every=1",
            "ppo.rollout_batch=8",
            "ppo.minibatch_size=4",
            "best_of_n.n=[1,2]",
            "sweep.seeds=[0]",
        ];
        if toml.contains("[ppo_gt]") {
            sets.extend([
                "ppo_gt.iterations=2",
                "ppo_gt.eval_every=1",
                "ppo_gt.rollout_batch=8",
                "ppo_gt.minibatch_size=4",
            ]);
        }
        if toml.contains("\nk = ") {
            sets.push("prefs.k=2");
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
        c.args(["run", &f, "--quiet", "--threads", "1"])
            .env("ALIGNLAB_DATA", "tests/fixtures/real");
        c.arg("--results").arg(d.join("results")).arg("--runs").arg(d.join("runs"));
        for s in &sets {
            c.args(["--set", s]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{name}:\n{}", text(&o));
        let csv = std::fs::read_to_string(d.join("results").join(name).join("eval.csv")).unwrap();
        for section in ["dpo", "ppo", "best_of_n", "preferred_ft"] {
            assert!(
                csv.lines()
                    .any(|l| l.starts_with(&format!("{section},")) && l.contains(",eval/gold,")),
                "{name}: no {section} evaluation"
            );
        }
        // Without the variable: one line naming it.
        let o = Command::new(env!("CARGO_BIN_EXE_alignlab"))
            .args(["check", &f])
            .env_remove("ALIGNLAB_DATA")
            .output()
            .unwrap();
        assert!(
            !o.status.success()
                && text(&o).contains("${ALIGNLAB_DATA}")
                && text(&o).contains("is not set"),
            "{}",
            text(&o)
        );
    }
}

/// The file's pairs relabelled by the judge (`labels = "deterministic"`): every pair's chosen
/// response has the higher gold and ties are dropped; with the file's own labels
/// (`labels = "world"`) the random judge disagrees with some of them.
#[test]
fn the_judge_relabels_the_files_pairs() {
    let pairs = |labels: &str| {
        let d = tmp(&format!("relabel-{labels}"));
        let set = format!("prefs.labels=\"{labels}\"");
        let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
        c.args(["prepare", "tests/fixtures/data/dataset.toml", "--set", &set, "--quiet"]);
        let o = c.args(["--threads", "1", "--runs"]).arg(d.join("runs")).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let dir = run_dir(&d.join("runs/dataset"), "prefs-");
        let data = alignlab::data::PrefData::load(&dir.join("pairs.txt")).unwrap();
        data.train.into_iter().chain(data.val).collect::<Vec<_>>()
    };
    let judged = pairs("deterministic");
    assert!(!judged.is_empty() && judged.iter().all(|p| p.gold_chosen > p.gold_rejected));
    let filed = pairs("world");
    assert_eq!(filed.len(), 180);
    let against = filed.iter().filter(|p| p.gold_chosen < p.gold_rejected).count();
    assert!(against > 0 && judged.len() <= filed.len(), "{against} of {}", filed.len());
}

/// The memory estimate counts the judge: its weights' bytes, as held (fp32).
#[test]
fn the_judge_is_counted_in_the_memory_estimate() {
    let sc = alignlab::scenario::Scenario::load(Path::new("tests/fixtures/data/dataset.toml"), &[])
        .unwrap();
    let tensors =
        tch::Tensor::read_safetensors("tests/fixtures/roberta-classifier/model.safetensors")
            .unwrap();
    let want: i64 = tensors.iter().map(|(_, t)| t.numel() as i64 * 4).sum();
    assert_eq!(sc.world.spec().resident_bytes(), want as f64);
}

/// A classifier as PPO's proxy reward (`[reward.classifier]`, TRL's sentiment example): with
/// the gold judge itself as the proxy, every evaluation's proxy equals its gold (both read the
/// same decoded text), Best-of-N's picked proxy equals the picked gold, and the proxy's logged
/// accuracy is the share of validation pairs whose chosen response the judge scores higher.
#[test]
fn a_classifier_is_the_proxy_reward() {
    let d = tmp("proxy");
    let f = d.join("proxy.toml");
    let base = std::fs::read_to_string("tests/fixtures/data/dataset.toml").unwrap();
    let proxy = "\n[reward.classifier]\ninit = \"tests/fixtures/roberta-classifier\"\nlabel = \"POSITIVE\"\nreward = \"prob\"\n";
    std::fs::write(&f, base + proxy).unwrap();
    let o = alignlab(&["run", f.to_str().unwrap()], &d);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(d.join("results/dataset/eval.csv")).unwrap();
    let value = |m: &str, step: &str, metric: &str| -> Option<f64> {
        csv.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|c| c[0] == m && c[3] == step && c[4] == metric)
            .map(|c| c[5].parse().unwrap())
    };
    let mut compared = 0;
    for l in csv.lines().filter(|l| l.contains(",eval/proxy,")) {
        let c: Vec<&str> = l.split(',').collect();
        let gold = csv
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|g| g[..4] == c[..4] && g[4] == "eval/gold")
            .map(|g| g[5].parse::<f64>().unwrap())
            .unwrap();
        let proxy: f64 = c[5].parse().unwrap();
        assert!((proxy - gold).abs() < 1e-6, "{l}: gold {gold}");
        compared += 1;
    }
    assert!(compared >= 4, "{compared} evaluations with a proxy");
    assert!(value("ppo", "1", "eval/proxy").is_some(), "PPO was not evaluated");
    // The reward stage trained nothing: its accuracy is the judge's agreement with the labels.
    let rm = run_dir(&d.join("runs/dataset"), "reward-");
    let m = std::fs::read_to_string(rm.join("metrics.csv")).unwrap();
    assert!(!m.contains("reward/loss/train"), "{m}");
    let acc: f64 = m
        .lines()
        .find(|l| l.contains(",reward/val/accuracy,"))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .unwrap();
    let prefs = run_dir(&d.join("runs/dataset"), "prefs-");
    let val = alignlab::data::PrefData::load(&prefs.join("pairs.txt")).unwrap().val;
    let agree = val.iter().filter(|p| p.gold_chosen > p.gold_rejected).count();
    assert!(!val.is_empty());
    assert!((acc - agree as f64 / val.len() as f64).abs() < 1e-9, "{acc} vs {agree}/{}", val.len());
}
