//! `docs/keys.md`, the reference of every scenario key, is generated from the config types: each
//! table's fields with the `///` comment written beside them and the default from the type's
//! `Default`. The test fails when the file differs from what the types say now; rerun it with
//! `ALIGNLAB_WRITE_DOCS=1` to rewrite the file (then read the diff).

use std::collections::BTreeMap;

use alignlab::algo::best_of_n::BestOfNConfig;
use alignlab::algo::dpo::TrainConfig;
use alignlab::algo::pg::PgConfig;
use alignlab::algo::ppo::PpoConfig;
use alignlab::algo::reward::RewardConfig;
use alignlab::algo::sft::SftConfig;
use alignlab::data::PrefsConfig;
use alignlab::eval::EvalConfig;
use alignlab::model::{ModelConfig, SampleConfig};
use alignlab::world::{DatasetConfig, DialogueConfig, SentimentConfig, SummarizeConfig};

/// A field of a config struct as its source declares it.
struct Field {
    name: String,
    ty: String,
    doc: String,
}

/// The fields of `pub struct name` in `file` that a scenario can set (`#[serde(skip...)]` ones
/// are left out), each with its `///` comment.
fn fields(file: &str, name: &str) -> Vec<Field> {
    let text = std::fs::read_to_string(file).unwrap();
    let start = text
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("{file} has no `pub struct {name}`"));
    let body = &text[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    let (mut out, mut doc, mut skip) = (Vec::new(), Vec::<String>::new(), false);
    for line in body.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if line.starts_with("#[") {
            skip |= line.contains("skip)")
                || line.contains("skip_deserializing")
                || line.contains("skip,");
        } else if let Some(rest) = line.strip_prefix("pub ") {
            if let Some((field, ty)) = rest.split_once(": ") {
                if !skip {
                    let ty = ty.trim_end_matches(',').to_string();
                    out.push(Field { name: field.to_string(), ty, doc: doc.join(" ") });
                }
            }
            doc.clear();
            skip = false;
        } else if line.is_empty() || line.starts_with("//") {
            continue;
        } else {
            doc.clear();
        }
    }
    out
}

/// A default as a scenario would write it (`-` where the type has none, or the key is a table).
fn shown(v: Option<&toml::Value>) -> String {
    match v {
        None => "-".into(),
        Some(toml::Value::Table(_)) => "(table)".into(),
        Some(v) => format!("`{v}`"),
    }
}

/// One table's section: its heading, what it is, and a row per key.
fn section(
    heading: &str,
    about: &str,
    file: &str,
    name: &str,
    defaults: Option<toml::Value>,
) -> String {
    let defaults: BTreeMap<String, toml::Value> = match defaults {
        Some(toml::Value::Table(t)) => t.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    let mut s = format!("## {heading}\n\n{about} (`{file}`, `{name}`)\n\n| key | type | default | meaning |\n|---|---|---|---|\n");
    for f in fields(file, name) {
        let ty = f.ty.replace('|', "\\|");
        let doc = if f.doc.is_empty() { "-".to_string() } else { f.doc.replace('|', "\\|") };
        s += &format!("| `{}` | `{ty}` | {} | {doc} |\n", f.name, shown(defaults.get(&f.name)));
    }
    s + "\n"
}

fn value<T: serde::Serialize>(x: &T) -> Option<toml::Value> {
    toml::Value::try_from(x).ok()
}

/// The whole reference.
fn keys_md() -> String {
    let parse = "src/experiment/scenario/parse.rs";
    let mut s = String::from("# Scenario keys\n\nEvery key of a scenario file, table by table: its type, its default and its meaning, generated from the config types (`tests/keys.rs` keeps this file current). A key without a default must be given; `alignlab check FILE` prints a scenario with every default filled in. Methods are tables of their own (below); in `[sweep]`, `table.key = [...]` sweeps a method's grid.\n\n");
    s +=
        &section("Top level", "The scenario's name and seed, then its tables", parse, "File", None);
    s += &section(
        "`[world]` kind = \"sentiment\"",
        "Reviews with a latent sentiment; gold is the Bayes-optimal p(positive | text)",
        "src/world/sentiment.rs",
        "SentimentConfig",
        value(&SentimentConfig::default()),
    );
    s += &section(
        "`[world.labeller]` (sentiment)",
        "A labeller with a spurious taste, for `prefs.labels = \"world\"`",
        "src/world/sentiment.rs",
        "LabellerConfig",
        None,
    );
    s += &section(
        "`[world]` kind = \"summarize\"",
        "Documents with salient facts; gold is a judge of the facts a summary covers",
        "src/world/summarize.rs",
        "SummarizeConfig",
        value(&SummarizeConfig::default()),
    );
    s += &section(
        "`[world.shift]` (summarize)",
        "A shifted document distribution, for `eval.shift_temperatures`",
        "src/world/summarize.rs",
        "ShiftConfig",
        None,
    );
    s += &section(
        "`[world]` kind = \"dialogue\"",
        "Benign and harmful requests; gold serves the benign and refuses the harmful",
        "src/world/dialogue.rs",
        "DialogueConfig",
        value(&DialogueConfig::default()),
    );
    s += &section(
        "`[world]` kind = \"dataset\"",
        "Prompts, demonstrations and pairs from files, a real tokenizer, a judge model as gold (docs/datasets.md)",
        "src/world/dataset.rs",
        "DatasetConfig",
        value(&DatasetConfig::default()),
    );
    s += &section(
        "`[world.columns]` (dataset)",
        "Where each field is found in a row (dotted paths); empty: the format's default",
        "src/world/dataset_read.rs",
        "Columns",
        None,
    );
    s += &section(
        "`[world.gold]` (dataset)",
        "The gold judge: an encoder classifier or a decoder reward model folder",
        "src/model/judge.rs",
        "JudgeConfig",
        None,
    );
    s += &section(
        "`[model]`",
        "The policy's network (and, unless `[reward]` overrides it, the reward model's)",
        "src/model/config.rs",
        "ModelConfig",
        value(&ModelConfig::default()),
    );
    s += &section(
        "`[sft]`",
        "Supervised fine-tuning of pi_SFT, which is pi_ref for every method",
        "src/algo/sft.rs",
        "SftConfig",
        value(&SftConfig::default()),
    );
    s += &section(
        "`[sample]`",
        "How policies sample their responses",
        "src/model/sample.rs",
        "SampleConfig",
        value(&SampleConfig::default()),
    );
    s += &section(
        "`[prefs]`",
        "The preference pairs: who writes the completions and how they are labelled",
        "src/data/mod.rs",
        "PrefsConfig",
        value(&PrefsConfig::default()),
    );
    s += &section(
        "`[reward]`",
        "The Bradley-Terry reward model (and PPO's critic, which starts from it)",
        "src/algo/reward.rs",
        "RewardConfig",
        value(&RewardConfig::default()),
    );
    s += &section(
        "`[reward.classifier]`",
        "A frozen judge as the proxy reward instead of a trained reward model (same keys as `[world.gold]`)",
        "src/model/judge.rs",
        "JudgeConfig",
        None,
    );
    s += &section("`[train]`", "The optimisation every offline and online preference method shares (a method's table may override `lr`, `steps` and `batch_size`)", "src/algo/dpo.rs", "TrainConfig", value(&TrainConfig::default()));
    s += &section(
        "`[eval]`",
        "The evaluation every policy gets",
        "src/eval/mod.rs",
        "EvalConfig",
        value(&EvalConfig::default()),
    );
    s += &section(
        "`[best_of_n]`",
        "Best-of-N from pi_SFT under the reward model",
        "src/algo/best_of_n.rs",
        "BestOfNConfig",
        None::<&BestOfNConfig>.and_then(value),
    );
    s += &section("`[ppo]`, `[ppo_gt]`", "PPO with a critic against the reward model (`[ppo]`) or the gold reward (`[ppo_gt]`); grids `target_kl`, `kl_coef`, `rollout_batch`", "src/algo/ppo.rs", "PpoConfig", value(&PpoConfig::default()));
    s += &section(
        "`[rloo]`, `[reinforce_pp]`, `[grpo]`",
        "The critic-free methods; grid `kl_coef`",
        "src/algo/pg_config.rs",
        "PgConfig",
        value(&PgConfig::default()),
    );
    s += "## Preference losses: `[dpo]`, `[ipo]`, `[cdpo]`, ...\n\nOne table per loss, named after it, holding the loss's parameters (a list is a grid: one run per value; several lists give their product) and optionally `lr`, `steps` and `batch_size` overriding `[train]`. The online tables (`[online_dpo]`, `[online_dpo_gt]`, `[online_dpo_shuffled]`) hold a loss's parameters plus `loss` (default `\"dpo\"`) and `sync_every` (default 1). The losses and their parameters, from `PrefLoss` in `src/algo/dpo.rs`:\n\n| table | parameters | meaning |\n|---|---|---|\n";
    s += &losses();
    s += "\n";
    s += &section(
        "`[sweep]`",
        "The seeds, and the fair protocol's budgets, pilots and top-ups",
        parse,
        "Sweep",
        None,
    );
    s += &section("`[report]`", "What the report compares", parse, "ReportConfig", None);
    s += &section(
        "`[tune]`",
        "Equal tuning before the sweep; `[tune.<table>]` holds a grid of that method's settings",
        parse,
        "TuneFile",
        None,
    );
    s += &section(
        "`[faults]`",
        "Failures injected on purpose, for tests only; part of no cache key",
        "src/algo/trainer.rs",
        "Faults",
        None,
    );
    s.trim_end().to_string() + "\n"
}

/// A row per variant of `PrefLoss`: its table (the snake-case variant), parameters and comment.
fn losses() -> String {
    let text = std::fs::read_to_string("src/algo/dpo.rs").unwrap();
    let start = text.find("pub enum PrefLoss {").unwrap();
    let body = &text[start + "pub enum PrefLoss {".len()..];
    let body = &body[..body.find("\n}").unwrap()];
    let (mut out, mut doc) = (String::new(), Vec::<String>::new());
    let mut lines = body.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        let Some((variant, rest)) = line.split_once(" {") else { continue };
        // The variant's fields: on this line, or on the lines up to its closing brace.
        let mut fields_text = rest.to_string();
        while !fields_text.contains('}') {
            // A field's attributes (`#[serde(...)]`, whose commas are not fields) are skipped.
            let next = lines.next().unwrap_or("}");
            if !next.starts_with("#[") {
                fields_text += next;
            }
        }
        let params: Vec<String> = fields_text
            .split(',')
            .filter_map(|f| f.trim().trim_end_matches('}').trim().split_once(':').map(|(k, _)| k))
            .filter(|k| !k.starts_with("#["))
            .map(|k| format!("`{}`", k.trim().rsplit(']').next().unwrap().trim()))
            .collect();
        let table: String = variant.chars().enumerate().fold(String::new(), |mut t, (i, c)| {
            if c.is_uppercase() && i > 0 {
                t.push('_');
            }
            t.push(c.to_ascii_lowercase());
            t
        });
        let params = if params.is_empty() { "-".to_string() } else { params.join(", ") };
        out += &format!("| `[{table}]` | {params} | {} |\n", doc.join(" ").replace('|', "\\|"));
        doc.clear();
    }
    out
}

#[test]
fn keys_md_matches_the_config_types() {
    let want = keys_md();
    if std::env::var_os("ALIGNLAB_WRITE_DOCS").is_some() {
        std::fs::write("docs/keys.md", &want).unwrap();
    }
    let have = std::fs::read_to_string("docs/keys.md").unwrap_or_default();
    assert!(have == want, "docs/keys.md is not what the config types say; fix: ALIGNLAB_WRITE_DOCS=1 cargo test --release --test keys, then read the diff");
}

#[test]
fn every_loss_table_is_listed_and_fields_keep_their_comments() {
    let md = keys_md();
    for name in alignlab::algo::dpo::PrefLoss::names() {
        assert!(
            md.contains(&format!("| `[{name}]` |")),
            "loss table {name} missing from the reference"
        );
    }
    let sft = fields("src/algo/sft.rs", "SftConfig");
    assert!(sft.iter().any(|f| f.name == "steps"), "SftConfig's steps not found");
    // Skipped fields are not keys: PgConfig's kl_coef comes from the table's grid.
    let pg = fields("src/algo/pg_config.rs", "PgConfig");
    assert!(!pg.iter().any(|f| f.name == "temperature"), "a #[serde(skip)] field listed as a key");
}
