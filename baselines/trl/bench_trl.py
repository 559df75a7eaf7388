"""TRL at the shapes of `alignlab bench`: what a researcher would use instead of alignlab.

usage: python bench_trl.py [--threads 2] [--quick] [--json OUT]

The same tiny model as alignlab (GPT-2 architecture: pre-LayerNorm, learned positions, tied
head; no dropout) built from a local config, a word-level tokenizer built here (no hub
download), random word sequences of the bench's shapes:
- SFT step: TRL's SFTTrainer, batch 64, 20 words + <eos> (21 positions), AdamW;
- DPO step: TRL's DPOTrainer, 64 pairs of 9-token prompts and 16-token responses,
  sigmoid loss, beta 0.1, reference log-probs precomputed (`precompute_ref_log_probs`);
- PPO: TRL's PPOTrainer (trl.experimental.ppo), 64 rollouts of 16 new tokens from 9-token
  prompts, 4 epochs over 2 minibatches of 32, a separate value model and reward model of the
  same size. Timed per iteration (between `on_step_end` callbacks) and, inside it, the time of
  generation (`batch_generation`, wrapped).
Every trainer runs in fp32 like alignlab (TRL's configs default to bf16 autocast, which on this
CPU is emulated and about 20x slower: that would not be a fair baseline). Each timing is the
median over steps after warm-up steps. Prints one JSON object.
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback

VOCAB = 51  # <pad> <bos> <eos> and 48 words, as alignlab's quick sentiment world
WORDS = [f"w{i}" for i in range(3, VOCAB)]


def tokenizer(words=WORDS):
    """A word-level tokenizer: `<pad>`, `<bos>`, `<eos>`, then `words` (each one token)."""
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2}
    vocab.update({w: i for i, w in enumerate(words, start=3)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<pad>")
    t.padding_side = "left"
    return t


def config(d, layers, labels=None):
    c = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=d, n_layer=layers, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if labels:
        c.num_labels = labels
    return c


def lm(d, layers):
    torch.manual_seed(0)
    return GPT2LMHeadModel(config(d, layers))


def text(g, n):
    return " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n,), generator=g))


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (or PPO iteration)."""

    def __init__(self):
        self.begin = None
        self.times = []
        self.last_end = None

    def on_step_begin(self, args, state, control, **kw):
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        if self.begin is not None:
            self.times.append(now - self.begin)
            self.begin = None
        elif self.last_end is not None:  # PPO calls on_step_end only: time between iterations
            self.times.append(now - self.last_end)
        self.last_end = now


def median(xs, skip):
    xs = sorted(xs[skip:]) or sorted(xs)
    return xs[len(xs) // 2]


def common_args(out, steps, batch):
    return dict(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-4, report_to="none", logging_steps=1000, save_strategy="no", use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0, seed=0, disable_tqdm=True)


def sft_step(d, layers, steps):
    from trl import SFTConfig, SFTTrainer

    g = torch.Generator().manual_seed(0)
    ds = Dataset.from_dict({"text": [text(g, 20) for _ in range(64 * steps)]})
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(**common_args(out, steps, 64), max_length=32, packing=False, adam_beta2=0.99, weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=1.0)
        tr = SFTTrainer(model=lm(d, layers), args=args, train_dataset=ds, processing_class=tokenizer(), callbacks=[timer])
        tr.train()
    return 64 * 21 / median(timer.times, 2)


def prefs_dataset(path, n):
    """The first `n` training pairs of `alignlab export-prefs` (cycled if fewer), as TRL's
    prompt/chosen/rejected text over this script's words: token id i is word `w{i}`, so TRL
    trains on exactly alignlab's token ids (TRL appends `<eos>` to each completion itself)."""
    rows = [json.loads(line) for line in open(path)]
    rows = [r for r in rows if r["split"] == "train"]
    if not rows:
        sys.exit(f"{path} has no training pairs; fix: pass a file written by alignlab export-prefs")
    special = {0: "<pad>", 1: "<bos>"}
    ids = lambda v: " ".join(special.get(i) or WORDS[i - 3] for i in v if i != 2)
    top = max(max(r["prompt_ids"] + r["chosen_ids"] + r["rejected_ids"]) for r in rows)
    if top >= VOCAB:
        sys.exit(f"{path}: token id {top} is past this script's vocabulary of {VOCAB}; fix: export a world with at most {VOCAB} tokens (the sentiment world)")
    pick = [rows[i % len(rows)] for i in range(n)]
    # The prompt ids start with <bos> (written as the word, this tokenizer adds none); the
    # responses start with a space, since TRL joins prompt and response as strings.
    return Dataset.from_dict({"prompt": [ids(r["prompt_ids"]) for r in pick], "chosen": [" " + ids(r["chosen_ids"]) for r in pick], "rejected": [" " + ids(r["rejected_ids"]) for r in pick]})


def dpo_step(d, layers, steps, prefs=None):
    from trl import DPOConfig, DPOTrainer

    g = torch.Generator().manual_seed(0)
    n = 64 * steps
    if prefs:
        ds = prefs_dataset(prefs, n)
    else:
        ds = Dataset.from_dict({"prompt": [text(g, 8) for _ in range(n)], "chosen": [text(g, 15) for _ in range(n)], "rejected": [text(g, 15) for _ in range(n)]})
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(**common_args(out, steps, 64), beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=True, max_length=32, lr_scheduler_type="constant", max_grad_norm=10.0)
        tr = DPOTrainer(model=lm(d, layers), ref_model=lm(d, layers), args=args, train_dataset=ds, processing_class=tokenizer(), callbacks=[timer])
        tr.train()
    return 64 / median(timer.times, 2)


def ppo_iteration(d, layers, iters):
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    import trl.experimental.ppo.ppo_trainer as ppo_mod

    gen_times = []
    inner = ppo_mod.batch_generation

    def timed(*a, **k):
        t = time.perf_counter()
        out = inner(*a, **k)
        gen_times.append(time.perf_counter() - t)
        return out

    ppo_mod.batch_generation = timed
    tok = tokenizer()
    g = torch.Generator().manual_seed(0)
    ds = Dataset.from_dict({"input_ids": [tok(text(g, 8))["input_ids"] for _ in range(64 * iters)]})
    timer = StepTimer()
    torch.manual_seed(0)
    value, reward = GPT2ForSequenceClassification(config(d, layers, 1)), GPT2ForSequenceClassification(config(d, layers, 1))
    with tempfile.TemporaryDirectory() as out:
        args = PPOConfig(
            **common_args(out, iters, 64),
            num_mini_batches=2,
            num_ppo_epochs=4,
            total_episodes=64 * iters,
            response_length=16,
            local_rollout_forward_batch_size=64,
            stop_token=None,
            kl_coef=0.05,
            cliprange=0.2,
            vf_coef=0.1,
            gamma=1.0,
            lam=0.95,
            num_sample_generations=0,
            missing_eos_penalty=None,
        )
        tr = PPOTrainer(args=args, processing_class=tok, model=lm(d, layers), ref_model=lm(d, layers), reward_model=reward, value_model=value, train_dataset=ds, callbacks=[timer])
        tr.train()
    ppo_mod.batch_generation = inner
    it = median(timer.times, 1)
    gen = median(gen_times, 2)
    return {"iteration_s": it, "generation_s": gen, "rollout_tokens_per_s": 64 * 16 / gen, "update_and_scoring_s": it - gen}


def main():
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    quick = "--quick" in sys.argv
    torch.set_num_threads(threads)
    steps = 4 if quick else 12
    res = {"threads": threads, "trl": __import__("trl").__version__, "transformers": __import__("transformers").__version__, "torch": torch.__version__}
    res["sft_d128_tokens_per_s"] = sft_step(128, 2, steps)
    res["sft_d256_tokens_per_s"] = sft_step(256, 4, steps)
    # --prefs FILE: DPO on the pairs alignlab trained on (`alignlab export-prefs`).
    prefs = sys.argv[sys.argv.index("--prefs") + 1] if "--prefs" in sys.argv else None
    if prefs:
        res["prefs"] = prefs
    res["dpo_d128_pairs_per_s"] = dpo_step(128, 2, steps, prefs)
    res["dpo_d256_pairs_per_s"] = dpo_step(256, 4, steps, prefs)
    res["ppo_d128"] = ppo_iteration(128, 2, 3 if quick else 6)
    out = json.dumps(res, indent=1)
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            f.write(out)
    print(out)


if __name__ == "__main__":
    main()
