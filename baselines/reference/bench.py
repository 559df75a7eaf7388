"""The PyTorch reference's speed at the shapes of `alignlab bench`, and the ratios.

usage: python3 bench.py [--alignlab target/release/alignlab] [--threads 2] [--rounds 2] [--trl PYTHON]
Runs alignlab's bench (same thread count) and the same steps here, in turns, `rounds` times,
then prints each side's best round and the alignlab / reference ratio of each (higher is
better for alignlab). With --trl, also runs
../trl/bench_trl.py under that Python (the venv of `make baselines`) and adds TRL's column and
the alignlab / TRL ratio.
"""

import json
import os
import tempfile

import re
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from alignref import GPT, dpo_loss, gae, ppo_policy_loss, ppo_value_loss


def median_time(fn, warmup=2, reps=10):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def sft_step(d, layers, batch=64, t=21, vocab=51):
    torch.manual_seed(0)
    m = GPT(vocab, 64, layers, 4, d)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0)
    seq = torch.randint(3, vocab, (batch, t + 1))
    valid = torch.ones(batch, t, dtype=torch.bool)

    def step():
        logits = m.logits(m(seq[:, :-1], valid))
        loss = F.cross_entropy(logits.reshape(-1, vocab), seq[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    return batch * t / median_time(step)


def dpo_step(d, layers, pairs=64, vocab=51):
    torch.manual_seed(0)
    m = GPT(vocab, 64, layers, 4, d)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    prompt = torch.randint(3, vocab, (2 * pairs, 9))
    prompt[:, 0] = 1
    resp = torch.randint(3, vocab, (2 * pairs, 16))
    tokens = torch.cat([prompt, resp], 1)
    valid = torch.ones_like(tokens, dtype=torch.bool)
    ref = torch.zeros(pairs)

    def step():
        logits = m.logits(m(tokens, valid)[:, 8:24])
        lp = torch.gather(F.log_softmax(logits, -1), 2, resp.unsqueeze(2)).squeeze(2).sum(1)
        loss = dpo_loss("sigmoid", 0.1, lp[:pairs], lp[pairs:], ref, ref).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()

    return pairs / median_time(step)


def ppo_iteration(d=128, layers=2, batch=64, minibatch=32, epochs=4, vocab=51, n_new=16):
    torch.manual_seed(0)
    policy, reference, critic, rm = (GPT(vocab, 64, layers, 4, d) for _ in range(4))
    vhead, rhead = torch.nn.Linear(d, 1), torch.nn.Linear(d, 1)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
    vopt = torch.optim.Adam(list(critic.parameters()) + list(vhead.parameters()), lr=1e-4)
    lens = torch.randint(3, 9, (batch,))
    prompt = torch.randint(3, vocab, (batch, 9))
    pvalid = torch.arange(9).unsqueeze(0) >= (9 - lens).unsqueeze(1)
    prompt[~pvalid] = 0
    out = {}

    def rollout():
        t0 = time.perf_counter()
        resp = policy.generate(prompt, pvalid, n_new)
        out["gen_s"] = time.perf_counter() - t0
        n = resp.shape[1]
        tokens = torch.cat([prompt, resp], 1)
        valid = torch.cat([pvalid, torch.ones_like(resp, dtype=torch.bool)], 1)
        mask = torch.ones(batch, n)
        with torch.no_grad():
            def lp(m):
                logits = m.logits(m(tokens, valid)[:, 8 : 8 + n])
                return torch.gather(F.log_softmax(logits, -1), 2, resp.unsqueeze(2)).squeeze(2)
            old, ref = lp(policy), lp(reference)
            values = vhead(critic(tokens, valid)[:, 8 : 8 + n]).squeeze(-1)
            score = rhead(rm(tokens, valid)[:, -1]).squeeze(-1)
            rewards = -0.1 * (old - ref)
            rewards[:, -1] += score
            adv = gae(rewards, values, mask, 1.0, 0.95)
            ret = adv + values
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        out.update(tokens=tokens, valid=valid, resp=resp, mask=mask, old=old, values=values, adv=adv, ret=ret, n=n)
        return mask.sum().item()

    def update():
        o = out
        n = o["n"]
        for _ in range(epochs):
            perm = torch.randperm(batch)
            for i in range(0, batch, minibatch):
                idx = perm[i : i + minibatch]
                logits = policy.logits(policy(o["tokens"][idx], o["valid"][idx])[:, 8 : 8 + n])
                new = torch.gather(F.log_softmax(logits, -1), 2, o["resp"][idx].unsqueeze(2)).squeeze(2)
                v = vhead(critic(o["tokens"][idx], o["valid"][idx])[:, 8 : 8 + n]).squeeze(-1)
                m = o["mask"][idx]
                loss = ppo_policy_loss(new, o["old"][idx], o["adv"][idx], m, 0.2) + 0.1 * ppo_value_loss(v, o["values"][idx], o["ret"][idx], m, 0.2)
                opt.zero_grad(set_to_none=True)
                vopt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
                vopt.step()

    tokens = rollout()
    gens = []

    def timed_rollout():
        rollout()
        gens.append(out["gen_s"])

    t_roll = median_time(timed_rollout, warmup=1, reps=5)
    t_upd = median_time(update, warmup=1, reps=5)
    gens.sort()
    return tokens / t_roll, t_roll, t_upd, batch * n_new / gens[len(gens) // 2]


def alignlab_round(exe, threads):
    """One `alignlab bench`: its printout and name -> throughput."""
    out = subprocess.run([exe, "bench", "--threads", str(threads), "--device", "cpu"], capture_output=True, text=True, check=True).stdout
    num = lambda pat: float(re.search(pat, out).group(1))
    upd = num(r"B64 .*?update ([\d.]+) s")
    roll = num(r"B64 .*?rollout\s+[\d.]+ tokens/s \(([\d.]+) s\)")
    return out, {
        "sft step d128 L2 (tokens/s)": num(r"sft step quick.*?\s([\d.]+) tokens/s"),
        "sft step d256 L4 (tokens/s)": num(r"sft step d256.*?\s([\d.]+) tokens/s"),
        "dpo step d128 L2 (pairs/s)": num(r"dpo step quick.*?\s([\d.]+) pairs/s"),
        "dpo step d256 L4 (pairs/s)": num(r"dpo step d256.*?\s([\d.]+) pairs/s"),
        "generation B64 N16 (tokens/s)": num(r"sampling quick B64 P9 N16 cached\s+([\d.]+) tokens/s"),
        # Per rollout, not per token: alignlab counts the tokens before <eos>, this reference all 16.
        "ppo rollout B64 (rollouts/s)": 1.0 / roll,
        "ppo update B64 (updates/s)": 1.0 / upd,
        "ppo iteration B64 (iter/s)": 1.0 / (roll + upd),
    }


def reference_round():
    _, roll, upd, gen_tps = ppo_iteration()
    return {
        "sft step d128 L2 (tokens/s)": sft_step(128, 2),
        "sft step d256 L4 (tokens/s)": sft_step(256, 4),
        "dpo step d128 L2 (pairs/s)": dpo_step(128, 2),
        "dpo step d256 L4 (pairs/s)": dpo_step(256, 4),
        "generation B64 N16 (tokens/s)": gen_tps,
        "ppo rollout B64 (rollouts/s)": 1.0 / roll,
        "ppo update B64 (updates/s)": 1.0 / upd,
        "ppo iteration B64 (iter/s)": 1.0 / (roll + upd),
    }


def trl_round(py, threads):
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "trl.json")
        subprocess.run([py, os.path.join(here, "..", "trl", "bench_trl.py"), "--threads", str(threads), "--json", out], check=True, capture_output=True, text=True)
        t = json.load(open(out))
    p = t["ppo_d128"]
    return t, {
        "sft step d128 L2 (tokens/s)": t["sft_d128_tokens_per_s"],
        "sft step d256 L4 (tokens/s)": t["sft_d256_tokens_per_s"],
        "dpo step d128 L2 (pairs/s)": t["dpo_d128_pairs_per_s"],
        "dpo step d256 L4 (pairs/s)": t["dpo_d256_pairs_per_s"],
        "generation B64 N16 (tokens/s)": p["rollout_tokens_per_s"],
        "ppo update B64 (updates/s)": 1.0 / p["update_and_scoring_s"],
        "ppo iteration B64 (iter/s)": 1.0 / p["iteration_s"],
    }


def main():
    arg = lambda flag, default: sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default
    threads = int(arg("--threads", 2))
    exe = arg("--alignlab", "target/release/alignlab")
    rounds = int(arg("--rounds", 2))
    trl_py = arg("--trl", None)
    torch.set_num_threads(threads)
    # The machine is shared and noisy: the sides take turns, `rounds` times, and each keeps its
    # best round, so a slow spell hits one round of one side rather than the whole comparison.
    best = {"alignlab": {}, "ref": {}, "trl": {}}
    keep = lambda side, got: best[side].update({k: max(v, best[side].get(k, 0.0)) for k, v in got.items()})
    for r in range(rounds):
        out, got = alignlab_round(exe, threads)
        if r == 0:
            print(out)
        keep("alignlab", got)
        keep("ref", reference_round())
        if trl_py:
            info, got = trl_round(trl_py, threads)
            keep("trl", got)
    if trl_py:
        print(f"TRL {info['trl']}, transformers {info['transformers']}, torch {info['torch']}, {info['threads']} threads, fp32")
    print(f"best of {rounds} interleaved rounds per side (throughputs; higher is better)")
    head = f"{'step':32s} {'alignlab':>12s} {'pytorch ref':>12s} {'ratio':>7s}"
    if trl_py:
        head += f" {'TRL':>12s} {'vs TRL':>8s}"
    print(head)
    for name, a in best["alignlab"].items():
        r = best["ref"][name]
        line = f"{name:32s} {a:12.1f} {r:12.1f} {a / r:7.2f}x"
        if name in best["trl"]:
            t = best["trl"][name]
            line += f" {t:12.1f} {a / t:7.2f}x"
        print(line)
    if trl_py:
        print("The rollout row includes the scoring passes (old log-probs, reference, values, reward); TRL")
        print("counts those in its update, so TRL has a generation and an update+scoring figure instead.")
        print("The iteration row compares whole iterations.")


if __name__ == "__main__":
    main()
