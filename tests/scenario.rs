//! Scenario files: every kind of error is one line naming the file, the key and the fix.

use alignlab::scenario::{MethodKind, Scenario, WorldConfig};
use std::path::Path;

const GOOD: &str = r#"
name = "t"
seed = 3

[world]
kind = "sentiment"
n_train = 100

[sft]
steps = 10
lr = 1e-3
"#;

fn load(text: &str, sets: &[&str]) -> Result<Scenario, String> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Scenario::from_str(text, "scen.toml", "scen", &sets, Path::new("scen.toml"))
        .map_err(|e| e.to_string())
}

fn expect_err(text: &str, sets: &[&str], needles: &[&str]) {
    let msg = load(text, sets).expect_err("expected an error");
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
    assert!(msg.starts_with("scen.toml"), "error does not name the file: {msg}");
    assert!(msg.contains("fix:"), "error has no fix: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` lacks `{n}`");
    }
}

#[test]
fn a_valid_scenario_resolves_with_defaults() {
    let sc = load(GOOD, &[]).unwrap();
    assert_eq!(sc.name, "t");
    assert_eq!(sc.seed, 3);
    assert_eq!(sc.sft.steps, 10);
    let WorldConfig::Sentiment(w) = &sc.world else { panic!("not the sentiment world") };
    assert_eq!(w.n_train, 100);
    assert_eq!(w.n_positive, 12, "default filled in");
    assert_eq!(sc.model.vocab_size, 3 + 12 + 12 + 24);
    // The resolved TOML lists every default and round-trips to the same scenario.
    assert!(sc.resolved_toml.contains("n_neutral = 24"));
    let again = load(&sc.resolved_toml, &[]).unwrap();
    assert_eq!(again.world, sc.world);
    assert_eq!(again.sft, sc.sft);
    assert_eq!(again.model, sc.model);
}

#[test]
fn unknown_key() {
    expect_err(
        &GOOD.replace("lr = 1e-3", "lrr = 1e-3"),
        &[],
        &["scen.toml:", "sft.lrr", "unknown field", "spelling"],
    );
    expect_err(&GOOD.replace("n_train = 100", "n_trian = 100"), &[], &["n_trian", "unknown field"]);
    expect_err(&format!("{GOOD}\n[sftt]\nsteps = 3\n"), &[], &["sftt", "unknown field"]);
}

#[test]
fn wrong_type() {
    expect_err(
        &GOOD.replace("steps = 10", "steps = \"ten\""),
        &[],
        &["sft.steps", "invalid type", "expected type"],
    );
    expect_err(&GOOD.replace("lr = 1e-3", "lr = [1]"), &[], &["sft.lr", "invalid type"]);
}

#[test]
fn out_of_range() {
    expect_err(&GOOD.replace("lr = 1e-3", "lr = -0.5"), &[], &["scen.toml:11", "sft.lr", "-0.5"]);
    expect_err(
        &GOOD.replace("n_train = 100", "n_train = 100\nstop_prob = 1.5"),
        &[],
        &["world.stop_prob", "(0, 1]"],
    );
}

#[test]
fn inconsistent_combination() {
    expect_err(
        &format!("{GOOD}\n[model]\nd_model = 30\nn_head = 4\n"),
        &[],
        &["model.d_model", "multiple of n_head"],
    );
    expect_err(
        &format!("{GOOD}\n[model]\nblock_size = 16\n"),
        &[],
        &["model.block_size", "block_size >= 21"],
    );
    expect_err(
        &format!("{GOOD}\n[sample]\nmax_new_tokens = 30\n"),
        &[],
        &["sample.max_new_tokens", "lower max_new_tokens to 23"],
    );
    expect_err(
        &GOOD.replace("n_train = 100", "n_train = 100\nmin_len = 12\nmax_len = 10"),
        &[],
        &["world.max_len", "below min_len"],
    );
}

#[test]
fn unknown_world_kind_and_missing_world() {
    expect_err(
        &GOOD.replace("kind = \"sentiment\"", "kind = \"imdb\""),
        &[],
        &["unknown variant", "imdb"],
    );
    expect_err("seed = 1\n", &[], &["world", "missing field"]);
}

#[test]
fn syntax_error_names_the_line() {
    expect_err(
        &GOOD.replace("steps = 10", "steps = = 10"),
        &[],
        &["scen.toml:10", "not valid TOML"],
    );
}

#[test]
fn overrides_apply_and_are_checked() {
    let sc = load(GOOD, &["sft.lr=0.01", "world.tilt=2", "model.d_model=64"]).unwrap();
    assert_eq!(sc.sft.lr, 0.01);
    assert_eq!(sc.model.d_model, 64);
    let WorldConfig::Sentiment(w) = &sc.world else { panic!("not the sentiment world") };
    assert_eq!(w.tilt, 2.0);
    expect_err(GOOD, &["sft.lrr=0.01"], &["sft.lrr", "unknown field", "(--set)"]);
    expect_err(GOOD, &["sft.steps=many"], &["sft.steps", "invalid type"]);
    expect_err(GOOD, &["sft.lr=-1"], &["sft.lr", "must be in [0, 1)"]);
    expect_err(GOOD, &["sft.lr"], &["--set sft.lr", "no `=`"]);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let e =
        Scenario::load(Path::new("scenarios/does-not-exist.toml"), &[]).unwrap_err().to_string();
    assert!(
        e.contains("does-not-exist.toml") && e.contains("cannot read") && e.contains("fix:"),
        "{e}"
    );
}

#[test]
fn every_shipped_scenario_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir("scenarios").unwrap() {
        let path = entry.unwrap().path();
        // The real-data scenarios need ${ALIGNLAB_DATA}: tests/dataset.rs runs them on fixtures.
        let real = std::fs::read_to_string(&path).unwrap().contains("kind = \"dataset\"");
        if path.extension().and_then(|e| e.to_str()) == Some("toml") && !real {
            Scenario::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn method_tables_expand_and_are_checked() {
    use alignlab::algo::ppo::KlControl;
    use alignlab::scenario::MethodKind;
    let text = format!("{GOOD}\n[dpo]\nbeta = [0.1, 1.0]\n\n[ppo]\ntarget_kl = [2.0]\nkl_coef = [0.05]\n\n[ppo_gt]\nkl_coef = [0.1]\n\n[best_of_n]\nn = [1, 4]\n");
    let sc = load(&text, &[]).unwrap();
    let names: Vec<String> =
        sc.methods.iter().map(|m| format!("{} {}", m.name(), m.setting())).collect();
    assert_eq!(
        names,
        ["dpo beta=0.1", "dpo beta=1", "ppo target_kl=2", "ppo kl_coef=0.05", "ppo_gt kl_coef=0.1"]
    );
    let MethodKind::Ppo { gold, cfg, .. } = sc.methods[2].kind else { panic!() };
    assert!(!gold);
    assert_eq!(cfg.kl, KlControl::Adaptive { init: 0.1, target: 2.0, horizon: 10000.0 });
    assert_eq!(
        (cfg.clip_coef, cfg.gae_lambda, cfg.ppo_epochs),
        (0.2, 0.95, 4),
        "defaults of the recipe"
    );
    assert_eq!(sc.best_of_n, Some(vec![1, 4]));
    // The resolved TOML round-trips the method tables.
    assert_eq!(load(&sc.resolved_toml, &[]).unwrap().methods, sc.methods);
    expect_err(&format!("{GOOD}\n[dpo]\nlr = 1e-4\n"), &[], &["dpo", "missing field `beta`"]);
    expect_err(&format!("{GOOD}\n[dpo]\nbeta = []\n"), &[], &["dpo.beta", "empty list"]);
    expect_err(
        &format!("{GOOD}\n[orpo]\nlambda = [0.1]\nnll = \"tokens\"\n"),
        &[],
        &["orpo.nll", "unknown variant `tokens`", "`response` or `sequence`"],
    );
    let orpo = load(&format!("{GOOD}\n[orpo]\nlambda = [0.1]\nnll = \"sequence\"\n"), &[]).unwrap();
    assert_eq!(orpo.methods[0].setting(), "lambda=0.1;nll=sequence");
    expect_err(&format!("{GOOD}\n[ipo]\nbeta = [0.1, -1]\n"), &[], &["ipo.beta", "[1e-4, 1e4]"]);
    expect_err(
        &format!("{GOOD}\n[cdpo]\nbeta = [0.1]\nlabel_smoothing = 0.7\n"),
        &[],
        &["cdpo.label_smoothing", "(0, 0.5)"],
    );
    expect_err(
        &format!("{GOOD}\n[ppo]\niterations = 5\n"),
        &[],
        &["ppo.target_kl", "neither target_kl nor kl_coef"],
    );
    expect_err(
        &format!("{GOOD}\n[ppo]\ntarget_kl = [1.0]\nminibatch_size = 500\n"),
        &[],
        &["ppo.minibatch_size", "rollout_batch"],
    );
    expect_err(
        &format!("{GOOD}\n[ppo_gt]\nkl_coef = [0.1]\nkl_estimator = \"k2\"\n"),
        &[],
        &["kl_estimator", "unknown variant"],
    );
    expect_err(&format!("{GOOD}\n[best_of_n]\nn = [0]\n"), &[], &["best_of_n.n", "1..=256"]);
    expect_err(
        &format!("{GOOD}\n[prefs]\nlabels = \"noisy\"\n"),
        &[],
        &["prefs.labels", "unknown variant"],
    );
}

#[test]
fn summarize_world_settings_are_checked() {
    let sum = GOOD.replace("kind = \"sentiment\"", "kind = \"summarize\"");
    let sc =
        load(&sum, &["prefs.source=\"labeller\"", "eval.temperatures=[0.0, 0.5, 1.0]"]).unwrap();
    let WorldConfig::Summarize(w) = &sc.world else { panic!("not the summarize world") };
    assert_eq!((w.n_facts, w.max_facts), (32, 5));
    assert_eq!(sc.eval.temperatures, vec![0.0, 0.5, 1.0]);
    expect_err(&sum, &["prefs.source=\"true_process\""], &["prefs.source", "labeller"]);
    expect_err(GOOD, &["prefs.source=\"labeller\""], &["prefs.source", "true_process"]);
    expect_err(&sum, &["world.ref_drop=1.5"], &["world.ref_drop", "probability"]);
    expect_err(&sum, &["world.max_facts=40"], &["world.max_facts"]);
    expect_err(&sum, &["world.doc_min_len=3"], &["world.doc_min_len"]);
    expect_err(&sum, &["model.block_size=16"], &["model.block_size"]);
    expect_err(&sum, &["world.n_fact=3"], &["n_fact"]);
    expect_err(GOOD, &["eval.temperatures=[-1.0]"], &["eval.temperatures"]);
    expect_err(GOOD, &["eval.selection_fraction=1.0"], &["eval.selection_fraction", "(0, 1)"]);
    expect_err(GOOD, &["eval.selection_fraction=0"], &["eval.selection_fraction"]);
    expect_err(GOOD, &["world.n_eval_prompts=1"], &["world.n_eval_prompts", "selection"]);
    expect_err(GOOD, &["eval.optimal_min_ess=0.5"], &["eval.optimal_min_ess"]);
    expect_err(GOOD, &["eval.optimal_samples=5"], &["eval.optimal_samples", "best_of_n"]);
    expect_err(GOOD, &["report.compare=[[\"sft\", \"ipo\"]]"], &["report.compare", "ipo"]);
    expect_err(GOOD, &["report.compare=[[\"sft\", \"sft\"]]"], &["report.compare", "itself"]);
}

#[test]
fn run_folder_keys_follow_the_evaluation_settings() {
    // The selection split and the importance-sampling settings change what an evaluation
    // writes, so they are part of a method's key; `optimal_samples` is filled in resolved.
    use alignlab::experiment::keys::key_of;
    let sc = load(GOOD, &["eval.every=50", "eval.samples_per_prompt=2"]).unwrap();
    assert_eq!(key_of(&sc.eval), "[v]\nevery = 50\nsamples_per_prompt = 2\ntemperatures = []\nselection_fraction = 0.5\noptimal_samples = 0\noptimal_min_ess = 8.0\n");
    let other =
        load(GOOD, &["eval.every=50", "eval.samples_per_prompt=2", "eval.selection_fraction=0.25"])
            .unwrap();
    assert_ne!(key_of(&sc.eval), key_of(&other.eval));
    let sc = load(GOOD, &["eval.temperatures=[0.5]"]).unwrap();
    assert!(key_of(&sc.eval).contains("temperatures = [0.5]"));
}

/// Run-folder keys come from the settings serialized as TOML (names and values), so each
/// setting a stage depends on changes its key, and nothing else does.
#[test]
fn cache_keys_follow_the_settings_they_depend_on() {
    use alignlab::experiment::folders::{prefs_key, sft_key};
    let with_dpo = format!("{GOOD}\n[dpo]\nbeta = [0.1]\n");
    let base = load(&with_dpo, &[]).unwrap();
    assert!(
        sft_key(&base).contains("tilt = 1.0") && sft_key(&base).contains("lr = 0.001"),
        "{}",
        sft_key(&base)
    );
    for set in [
        "world.tilt=1.5", "world.n_train=101", "model.d_model=64", "sft.lr=1e-2", "sft.steps=11",
        "seed=4",
    ] {
        let other = load(&with_dpo, &[set]).unwrap();
        assert_ne!(sft_key(&base), sft_key(&other), "{set} must change the SFT key");
    }
    for set in ["train.lr=1e-3", "dpo.beta=[0.2]", "eval.every=7", "reward.lr=1e-3"] {
        let other = load(&with_dpo, &[set]).unwrap();
        assert_eq!(sft_key(&base), sft_key(&other), "{set} must not change the SFT key");
        assert_eq!(
            prefs_key(&base),
            prefs_key(&other),
            "{set} must not change the preference-data key"
        );
    }
    let other = load(&with_dpo, &["prefs.k=3"]).unwrap();
    assert_ne!(prefs_key(&base), prefs_key(&other));
    let key = |sc: &Scenario| sc.methods[0].cache_key(&sc.train, false);
    assert!(key(&base).contains("beta = 0.1"), "{}", key(&base));
    for set in ["train.lr=1e-3", "dpo.beta=[0.2]", "dpo.steps=3"] {
        assert_ne!(
            key(&base),
            key(&load(&with_dpo, &[set]).unwrap()),
            "{set} must change the method's key"
        );
    }
    assert_eq!(key(&base), key(&load(&with_dpo, &["reward.lr=1e-3"]).unwrap()));
}

/// The preference losses are their enum: its variant names are the scenario tables, in order; a
/// table's parameters are the variant's fields, each a value or a grid (several grids: their
/// product); the setting label and the grids `[sweep]` may set follow from them.
#[test]
fn preference_methods_come_from_the_loss_enum() {
    use alignlab::algo::dpo::PrefLoss;
    assert_eq!(
        PrefLoss::names(),
        [
            "dpo", "ipo", "cdpo", "preferred_ft", "unlikelihood", "hinge", "robust", "simpo",
            "kto", "orpo", "exo_pair", "nca_pair"
        ]
    );
    let text = format!("{GOOD}\n[hinge]\nbeta = [0.5, 2.0]\nlr = 1e-3\n[cdpo]\nbeta = [0.1, 0.2]\nlabel_smoothing = [0.1, 0.3]\n[dpo]\nbeta = 0.3\n[preferred_ft]\n");
    let sc = load(&text, &[]).unwrap();
    let runs: Vec<String> =
        sc.methods.iter().map(|m| format!("{} {}", m.name(), m.setting())).collect();
    assert_eq!(
        runs,
        [
            "dpo beta=0.3",
            "cdpo beta=0.1;label_smoothing=0.1",
            "cdpo beta=0.1;label_smoothing=0.3",
            "cdpo beta=0.2;label_smoothing=0.1",
            "cdpo beta=0.2;label_smoothing=0.3",
            "preferred_ft ",
            "hinge beta=0.5",
            "hinge beta=2"
        ]
    );
    assert_eq!(sc.methods[0].kind, MethodKind::Pref(PrefLoss::Dpo { beta: 0.3 }));
    assert_eq!(sc.methods[6].train_config(&sc.train).lr, 1e-3);
    assert_eq!(sc.methods[0].train_config(&sc.train).lr, sc.train.lr);
    // The resolved scenario runs the same methods.
    let again = load(&sc.resolved_toml, &[]).unwrap();
    assert_eq!(again.methods, sc.methods);
    // Any parameter of a loss is a grid `[sweep]` may set; the overrides are not.
    let swept = load(
        &format!("{GOOD}\n[hinge]\nbeta = [1.0]\n[sweep]\nhinge.beta = [0.1, 0.2, 0.4]\n"),
        &[],
    )
    .unwrap();
    assert_eq!(swept.methods.len(), 3);
    expect_err(&text, &["sweep.hinge.lr=[0.1]"], &["sweep.hinge.lr", "not a sweepable grid"]);
    expect_err(&text, &["hinge.margin=1.0"], &["hinge.margin", "unknown field"]);
    expect_err(&text, &["hinge.loss=\"dpo\""], &["hinge.loss"]);
    expect_err(&text, &["hinge.beta=[]"], &["hinge.beta", "empty"]);
    expect_err(&text, &["hinge.beta=[0.5, 0.5]"], &["hinge.beta", "twice"]);
    expect_err(&text, &["hinge.beta=[0.0]"], &["hinge.beta", "[1e-4, 1e4]"]);
    expect_err(&text, &["hinge.beta=[\"a\"]"], &["hinge.beta", "must be a number"]);
    expect_err(&text, &["cdpo.label_smoothing=0.5"], &["cdpo.label_smoothing", "(0, 0.5)"]);
    expect_err(&format!("{GOOD}\n[hingee]\nbeta = [1.0]\n"), &[], &["hingee", "or a method: dpo, ipo, cdpo, preferred_ft, unlikelihood, hinge, robust, simpo, kto, orpo, exo_pair, nca_pair, ppo, ppo_gt, rloo, reinforce_pp, grpo, online_dpo, online_dpo_gt, online_dpo_shuffled"]);
    expect_err(&format!("{GOOD}\n[dpo]\n"), &[], &["dpo.beta", "no safe default"]);
}

/// The online tables: their names follow loss, annotator, sync and control; PPO's rollout batch
/// is a grid the setting label shows; a knob of another critic-free method is refused.
#[test]
fn online_methods_come_from_their_tables() {
    let text = format!("{GOOD}\n[online_dpo]\nbeta = [0.1]\nsync_every = [1, 10]\n[online_dpo_gt]\nloss = \"ipo\"\nbeta = 0.5\n[online_dpo_shuffled]\nbeta = 0.1\n[rloo]\nkl_coef = [0.05]\n[grpo]\nkl_coef = [0.0, 0.1]\nscale_std = false\n[ppo]\ntarget_kl = [1.0]\nrollout_batch = [32, 64]\nminibatch_size = 16\nref_ema = 0.9\n");
    let sc = load(&text, &[]).unwrap();
    let runs: Vec<String> =
        sc.methods.iter().map(|m| format!("{} {}", m.name(), m.setting())).collect();
    assert_eq!(
        runs,
        [
            "ppo target_kl=1;rollout_batch=32",
            "ppo target_kl=1;rollout_batch=64",
            "rloo kl_coef=0.05",
            "grpo kl_coef=0",
            "grpo kl_coef=0.1",
            "online_dpo beta=0.1",
            "online_dpo_s10 beta=0.1",
            "online_ipo_gt beta=0.5",
            "online_dpo_shuffled beta=0.1"
        ]
    );
    assert_eq!(load(&sc.resolved_toml, &[]).unwrap().methods, sc.methods);
    // The resolved scenario fills in what the tables left to defaults.
    let kto =
        load(&format!("{GOOD}\n[kto]\nbeta = [0.1]\n[online_dpo]\nbeta = 0.1\n"), &[]).unwrap();
    for line in ["lambda_d = 1.0", "lambda_u = 1.0", "loss = \"dpo\"", "sync_every = 1"] {
        assert!(
            kto.resolved_toml.contains(line),
            "the resolved scenario lacks `{line}`:\n{}",
            kto.resolved_toml
        );
    }
    assert_eq!(load(&kto.resolved_toml, &[]).unwrap().methods, kto.methods);
    expect_err(&text, &["rloo.scale_std=true"], &["rloo.scale_std", "applies to [grpo] only"]);
    expect_err(&text, &["rloo.kl_coef=[]"], &["rloo.kl_coef"]);
    expect_err(&text, &["online_dpo.loss=\"x\""], &["online_dpo.loss", "not a preference loss"]);
    expect_err(&text, &["online_dpo_shuffled.sync_every=5"], &["online_dpo_shuffled.sync_every"]);
    expect_err(&text, &["ppo.ref_ema=1.0"], &["ppo.ref_ema"]);
    expect_err(&text, &["online_dpo.sync_every=[0]"], &["online_dpo.sync_every"]);
    let swept =
        load(&format!("{text}\n[sweep]\nonline_dpo.sync_every = [5]\ngrpo.kl_coef = [0.2]\n"), &[])
            .unwrap();
    assert!(swept.methods.iter().any(|m| m.name() == "online_dpo_s5"));
}

#[test]
fn a_world_declares_its_capabilities_and_the_scenario_checks_them_once() {
    use alignlab::world::WorldConfig;
    // What each world declares.
    let caps = |text: &str| load(text, &[]).unwrap().world.capabilities();
    let sentiment = caps(GOOD);
    assert!(sentiment.true_process && !sentiment.labeller_policy && !sentiment.references);
    assert!(!sentiment.labeller, "the sentiment world has a labeller only with [world.labeller]");
    let dialogue = GOOD.replace("kind = \"sentiment\"", "kind = \"dialogue\"");
    let dialogue_text = dialogue.split("\n[world]").next().unwrap().to_string()
        + "\n[world]\nkind = \"dialogue\"\n[prefs]\nsource = \"labeller\"\n";
    let d = caps(&dialogue_text);
    assert!(d.labeller_policy && d.labeller && d.references && d.gold_reads_padding);
    assert_eq!(WorldConfig::KINDS, ["sentiment", "summarize", "dialogue", "dataset"]);
    // A setting that needs a capability the world lacks: refused, naming the key.
    expect_err(
        GOOD,
        &["prefs.source=\"labeller\""],
        &["prefs.source", "sentiment world has no labeller policy", "\"true_process\""],
    );
    expect_err(GOOD, &["prefs.labels=\"world\""], &["prefs.labels", "has none"]);
    expect_err(
        GOOD,
        &["eval.shift_temperatures=[0.0]"],
        &["eval.shift_temperatures", "sentiment world has none"],
    );
    // The registry reads a world's table on its own: a wrong key names `world.<key>`, for the
    // dialogue world too (it had no such read before the registry).
    let e = load(&dialogue_text, &["world.n_benig=3"]).unwrap_err();
    assert!(e.contains("world.n_benig") && e.contains("unknown field"), "{e}");
}

#[test]
fn overrides_are_typed_and_written_back_as_the_same_set() {
    use alignlab::scenario::Override;
    let o = Override::parse("ppo.target_kl=[1.0, 2.5]").unwrap();
    assert_eq!(o.key, "ppo.target_kl");
    assert_eq!(o.value, toml::Value::Array(vec![1.0.into(), 2.5.into()]));
    assert_eq!(Override::parse(&o.to_arg()).unwrap(), o, "to_arg does not read back");
    assert_eq!(Override::floats("dpo.beta", &[1.0, 0.25]).to_arg(), "dpo.beta=[1.0, 0.25]");
    assert_eq!(
        Override::parse("name=plain words").unwrap().value,
        toml::Value::String("plain words".into())
    );
    assert!(Override::parse("no_equals").is_err() && Override::parse("a..b=1").is_err());
    // Typed and string overrides give the same scenario.
    let path = std::path::Path::new("scenarios/sentiment.toml");
    let typed = Scenario::load_with(path, &[Override::floats("dpo.beta", &[0.3])]).unwrap();
    let text = Scenario::load(path, &["dpo.beta=[0.3]".to_string()]).unwrap();
    assert_eq!(typed.resolved_toml, text.resolved_toml);
}
