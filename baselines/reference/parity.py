"""Parity check: recompute what alignlab exported (tests/parity.rs) and compare.

usage: python3 parity.py DIR [--tol 1e-5]
Exits 0 when every quantity agrees within tol, 1 otherwise: the max abs difference, divided by
|value| where that exceeds 1 (float32 carries 7 digits: IPO's squared margins reach ~100).
"""

import json
import sys

import torch

from alignref import (dpo_loss, gae, load_gpt, ppo_policy_loss, ppo_value_loss, read_safetensors,
                      response_logps, reward_loss, reward_scores)


def main():
    d = sys.argv[1]
    tol = float(sys.argv[sys.argv.index("--tol") + 1]) if "--tol" in sys.argv else 1e-5
    cfg = json.load(open(f"{d}/config.json"))
    policy = load_gpt(read_safetensors(f"{d}/policy.safetensors"), cfg["model"])
    reference = load_gpt(read_safetensors(f"{d}/reference.safetensors"), cfg["model"])
    rm_w = read_safetensors(f"{d}/rm.safetensors")
    trunk = load_gpt({k: v for k, v in rm_w.items() if not k.startswith("score.")}, cfg["model"])
    x = read_safetensors(f"{d}/data.safetensors")
    got = {}
    with torch.no_grad():
        tokens, valid = x["tokens"], x["valid"]
        got["logits"] = policy.logits(policy(tokens, valid))
        args = (x["prompt"], x["prompt_valid"])
        pc = response_logps(policy, *args, x["chosen"], x["chosen_mask"]).sum(1)
        pr = response_logps(policy, *args, x["rejected"], x["rejected_mask"]).sum(1)
        rc = response_logps(reference, *args, x["chosen"], x["chosen_mask"]).sum(1)
        rr = response_logps(reference, *args, x["rejected"], x["rejected_mask"]).sum(1)
        got["token_logprobs"] = response_logps(policy, *args, x["chosen"], x["chosen_mask"])
        got["policy_chosen"], got["policy_rejected"] = pc, pr
        beta, eps = cfg["beta"], cfg["label_smoothing"]
        got["loss_dpo"] = dpo_loss("sigmoid", beta, pc, pr, rc, rr)
        got["loss_ipo"] = dpo_loss("ipo", beta, pc, pr, rc, rr)
        got["loss_cdpo"] = dpo_loss("cdpo", beta, pc, pr, rc, rr, eps)
        sc = reward_scores(trunk, rm_w["score.weight"], rm_w["score.bias"], *args, x["chosen"], x["chosen_mask"])
        sr = reward_scores(trunk, rm_w["score.weight"], rm_w["score.bias"], *args, x["rejected"], x["rejected_mask"])
        got["rm_chosen"] = sc
        got["rm_loss"] = reward_loss(sc, sr, cfg["margin"], cfg["center_coef"]).reshape(1)
        adv = gae(x["rewards"], x["values"], x["mask"], cfg["gamma"], cfg["gae_lambda"])
        got["gae"] = adv
        got["pg_loss"] = ppo_policy_loss(x["new_logp"], x["old_logp"], x["adv"], x["mask"], cfg["clip_coef"]).reshape(1)
        got["vf_loss"] = ppo_value_loss(x["new_values"], x["old_values"], x["returns"], x["mask"], cfg["vf_clip"]).reshape(1)
    worst = 0.0
    ok = True
    for name, t in got.items():
        want = x[f"expect.{name}"]
        diff = ((t.double() - want.double()).abs() / want.double().abs().clamp(min=1.0)).max().item()
        worst = max(worst, diff)
        flag = "ok" if diff <= tol else "MISMATCH"
        ok &= diff <= tol
        print(f"{name:16s} max |diff| / max(1, |value|) {diff:.3e}  {flag}")
    print(f"worst {worst:.3e} (tol {tol:g})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
