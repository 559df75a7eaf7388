//! Parity with a plain PyTorch implementation (baselines/reference): alignlab exports weights,
//! a batch and its own results; the Python side recomputes logits, log-probs, the DPO/IPO/cDPO
//! losses, the reward-model loss, GAE and the PPO losses and compares (max abs diff <= 1e-5).

use std::path::{Path, PathBuf};
use std::process::Command;

use alignlab::algo::common::{pair_logps, response_hidden, token_logprobs};
use alignlab::algo::dpo::{preference_loss, PairLogps};
use alignlab::algo::ppo::{gae, policy_loss, value_loss};
use alignlab::algo::reward::{reward_loss, RewardModel};
use alignlab::data::{Pair, PairTensors};
use alignlab::model::sample::positions_of;
use alignlab::model::{left_pad, Gpt, GptConfig};
use alignlab::scenario::PrefLoss;
use tch::{nn, Device, Kind, Tensor};

const BETA: f64 = 0.3;
const EPS: f64 = 0.1;

/// The Python that has the torch of `make setup` (the wheel's folder on PYTHONPATH).
fn python_with_torch() -> Option<(String, PathBuf)> {
    let torch_dir = std::fs::canonicalize(".libtorch")
        .ok()
        .or_else(|| std::env::var("LIBTORCH").ok().and_then(|p| std::fs::canonicalize(p).ok()))?;
    let site = torch_dir.parent()?.to_path_buf();
    let ok = Command::new("python3")
        .env("PYTHONPATH", &site)
        .args(["-c", "import torch"])
        .output()
        .ok()?
        .status
        .success();
    ok.then(|| ("python3".to_string(), site))
}

fn tensors_to_file(named: &[(&str, Tensor)], path: &Path) {
    let v: Vec<(String, Tensor)> =
        named.iter().map(|(n, t)| (n.to_string(), t.shallow_clone())).collect();
    Tensor::write_safetensors(&v, path).unwrap();
}

fn vs_to_file(vs: &nn::VarStore, path: &Path) {
    vs.save(path).unwrap();
}

fn export(dir: &Path, beta_in_config: f64) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = GptConfig::sized(17, 24, 2, 2, 16);
    tch::manual_seed(11);
    let (pvs, rvs, mvs) = (
        nn::VarStore::new(Device::Cpu),
        nn::VarStore::new(Device::Cpu),
        nn::VarStore::new(Device::Cpu),
    );
    let policy = Gpt::new(&pvs.root(), &cfg);
    let reference = Gpt::new(&rvs.root(), &cfg);
    let rm = RewardModel::new(&mvs.root(), &cfg);
    // Non-zero head bias and perturbed norms, so nothing sits at its initial value.
    tch::no_grad(|| {
        for vs in [&pvs, &rvs, &mvs] {
            for (_, mut v) in vs.variables() {
                let noise = v.randn_like() * 0.05;
                let _ = v.g_add_(&noise);
            }
        }
    });
    let p = |prompt: &[i64], c: &[i64], r: &[i64]| Pair {
        prompt: prompt.to_vec(),
        chosen: c.to_vec(),
        rejected: r.to_vec(),
        gold_chosen: 1.0,
        gold_rejected: 0.0,
    };
    let pairs = vec![
        p(&[5, 6, 7], &[8, 9, 2], &[10, 2]),
        p(&[4], &[11, 12, 13, 14, 2], &[15, 16, 2]),
        p(&[3, 3, 9, 4, 5], &[6, 2], &[7, 8, 9, 10]),
    ];
    let b = PairTensors::new(&pairs, Device::Cpu).batch(&[0, 1, 2]);
    let _g = tch::no_grad_guard();
    // A left-padded batch for the logits.
    let (tokens, valid) =
        left_pad(&[vec![4, 5, 6, 7, 8, 9], vec![10, 11], vec![12, 13, 14]], Device::Cpu);
    let logits =
        policy.logits(&policy.forward(&tokens, Some(&positions_of(&valid)), Some(&valid), None));
    // Chosen and rejected packed after their prompt, as DPO trains (the Python side runs two
    // plain passes).
    let (pc, pr) = pair_logps(&policy, &b);
    let (rc, rr) = pair_logps(&reference, &b);
    let hidden = response_hidden(&policy, &b.prompt, &b.prompt_valid, &b.chosen);
    let token_lp = token_logprobs(&policy.logits(&hidden), &b.chosen) * &b.chosen_mask;
    let sc = rm.score(&b.prompt, &b.prompt_valid, &b.chosen, &b.chosen_mask);
    let sr = rm.score(&b.prompt, &b.prompt_valid, &b.rejected, &b.rejected_mask);
    let (rml, _) = reward_loss(&sc, &sr, 0.2, 0.01);
    // PPO pieces on random tensors with ragged masks.
    tch::manual_seed(5);
    let (bb, n) = (4, 7);
    let mask = Tensor::arange(n, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&Tensor::from_slice(&[7i64, 3, 5, 1]).unsqueeze(1))
        .to_kind(Kind::Float);
    let r = || Tensor::randn([bb, n], (Kind::Float, Device::Cpu));
    let (rewards, values, old_logp, adv, old_values, returns) =
        (r(), r(), r() * 0.1 - 2.0, r(), r(), r());
    let new_logp = &old_logp + r() * 0.3;
    let new_values = &old_values + r() * 0.3;
    let advs = gae(&rewards, &values, &mask, 0.97, 0.9);
    let pg = policy_loss(&new_logp, &old_logp, &adv, &mask, 0.2).loss;
    let (vf, _) = value_loss(&new_values, &old_values, &returns, &mask, 0.2);
    vs_to_file(&pvs, &dir.join("policy.safetensors"));
    vs_to_file(&rvs, &dir.join("reference.safetensors"));
    vs_to_file(&mvs, &dir.join("rm.safetensors"));
    let fl = |t: &Tensor| t.to_kind(Kind::Float);
    tensors_to_file(
        &[
            ("tokens", tokens.shallow_clone()),
            ("valid", valid.shallow_clone()),
            ("prompt", b.prompt.shallow_clone()),
            ("prompt_valid", b.prompt_valid.shallow_clone()),
            ("chosen", b.chosen.shallow_clone()),
            ("chosen_mask", b.chosen_mask.shallow_clone()),
            ("rejected", b.rejected.shallow_clone()),
            ("rejected_mask", b.rejected_mask.shallow_clone()),
            ("rewards", rewards),
            ("values", values),
            ("mask", mask),
            ("old_logp", old_logp),
            ("new_logp", new_logp),
            ("adv", adv),
            ("old_values", old_values),
            ("new_values", new_values),
            ("returns", returns),
            ("expect.logits", logits),
            ("expect.token_logprobs", token_lp),
            ("expect.policy_chosen", pc.shallow_clone()),
            ("expect.policy_rejected", pr.shallow_clone()),
            ("expect.loss_dpo", pref(PrefLoss::Dpo { beta: BETA }, &pc, &pr, &rc, &rr).losses),
            (
                "expect.loss_ipo",
                pref(PrefLoss::Ipo { beta: BETA, length_normalize: false }, &pc, &pr, &rc, &rr)
                    .losses,
            ),
            (
                "expect.loss_cdpo",
                pref(PrefLoss::Cdpo { beta: BETA, label_smoothing: EPS }, &pc, &pr, &rc, &rr)
                    .losses,
            ),
            ("expect.rm_chosen", sc),
            ("expect.rm_loss", fl(&rml).reshape([1])),
            ("expect.gae", advs),
            ("expect.pg_loss", pg.reshape([1])),
            ("expect.vf_loss", vf.reshape([1])),
        ],
        &dir.join("data.safetensors"),
    );
    let config = format!(
        r#"{{"model": {{"vocab_size": {}, "block_size": {}, "n_layer": {}, "n_head": {}, "d_model": {}}}, "beta": {beta_in_config}, "label_smoothing": {EPS}, "margin": 0.2, "center_coef": 0.01, "gamma": 0.97, "gae_lambda": 0.9, "clip_coef": 0.2, "vf_clip": 0.2}}"#,
        cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
}

/// A preference loss on summed log-probs, each chosen response counted as one token.
fn pref(
    loss: PrefLoss,
    pc: &Tensor,
    pr: &Tensor,
    rc: &Tensor,
    rr: &Tensor,
) -> alignlab::algo::dpo::LossOut {
    let tokens = pc.ones_like();
    preference_loss(
        loss,
        &PairLogps {
            policy_chosen: pc,
            policy_rejected: pr,
            reference_chosen: rc,
            reference_rejected: rr,
            chosen_tokens: &tokens,
            rejected_tokens: &tokens,
            chosen_prompt: None,
        },
    )
}

#[test]
fn alignlab_and_the_pytorch_reference_agree() {
    let Some((py, site)) = python_with_torch() else {
        panic!("no Python with torch found next to .libtorch; fix: run `make setup` (the parity test needs the torch wheel it installs)");
    };
    let root = std::env::temp_dir().join(format!("alignlab-parity-{}", std::process::id()));
    let run = |dir: &Path| {
        Command::new(&py)
            .env("PYTHONPATH", &site)
            .args(["-W", "ignore::UserWarning", "baselines/reference/parity.py"])
            .arg(dir)
            .output()
            .unwrap()
    };
    // The same beta on both sides: everything agrees.
    export(&root.join("right"), BETA);
    let o = run(&root.join("right"));
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    eprintln!("{text}");
    assert!(o.status.success(), "parity failed:\n{text}");
    assert!(text.contains("loss_dpo") && text.contains("gae") && text.contains("vf_loss"));
    // A deliberately wrong beta on the Python side: the DPO-family losses must disagree.
    export(&root.join("wrong"), BETA * 1.01);
    let o = run(&root.join("wrong"));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!o.status.success(), "a wrong beta went unnoticed:\n{text}");
    assert!(text.lines().any(|l| l.starts_with("loss_dpo") && l.contains("MISMATCH")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("logits") && l.ends_with("ok")), "{text}");
    std::fs::remove_dir_all(&root).ok();
}
