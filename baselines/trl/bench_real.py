"""TRL 1.12 at real checkpoints' sizes, beside `alignlab bench --real`.

usage: python bench_real.py [--threads 2] [--json OUT]

A GPT-2-small-shaped model (d768, 12 layers, 12 heads, 50257 tokens; random weights from the
config, nothing downloaded) with a word-level tokenizer built here, so that each word is one
token and TRL trains on the shapes alignlab does:
- DPO step: TRL's DPOTrainer, 8 pairs of 64-token prompts and 64-token responses, sigmoid
  loss, beta 0.1, reference log-probs precomputed; in fp32 and with bf16 autocast (`bf16=True`,
  TRL's default precision);
- generation: transformers' `generate` (what TRL's online trainers call), 8 prompts of 64
  tokens, 64 new tokens sampled at temperature 1 with the cache; fp32, and under bf16 autocast.
Medians over steps after warm-up. Prints one JSON object.
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_trl import StepTimer, median, tokenizer  # noqa: E402

VOCAB = 50257
WORDS = [f"w{i}" for i in range(3, VOCAB)]


def lm():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=768, n_layer=12,
                                      n_head=12, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=0))


def text(g, n):
    return " ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (n,), generator=g))


def dpo_step(bf16, steps=5, pairs=8):
    from trl import DPOConfig, DPOTrainer

    g = torch.Generator().manual_seed(0)
    n = pairs * steps
    # 64 prompt tokens; 63 response words + the <eos> TRL appends = 64 response tokens. TRL
    # joins prompt and response as strings: the leading space keeps the words apart.
    ds = Dataset.from_dict({"prompt": [text(g, 64) for _ in range(n)],
                            "chosen": [" " + text(g, 63) for _ in range(n)],
                            "rejected": [" " + text(g, 63) for _ in range(n)]})
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=pairs,
                         learning_rate=1e-4, report_to="none", logging_steps=1000,
                         save_strategy="no", use_cpu=True, bf16=bf16, fp16=False,
                         dataloader_num_workers=0, seed=0, disable_tqdm=True, beta=0.1,
                         loss_type=["sigmoid"], precompute_ref_log_probs=True, max_length=128,
                         lr_scheduler_type="constant", max_grad_norm=10.0)
        tr = DPOTrainer(model=lm(), ref_model=lm(), args=args, train_dataset=ds,
                        processing_class=tokenizer(WORDS), callbacks=[timer])
        tr.train()
    return pairs / median(timer.times, 2)


def generation(bf16, reps=3):
    model = lm().eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (8, 64), generator=g)
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                           temperature=1.0, max_new_tokens=64, min_new_tokens=64,
                           pad_token_id=0, eos_token_id=2)
        times.append(time.perf_counter() - t)
    return 8 * 64 / median(times, 1)


def main():
    arg = lambda flag, default: sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default
    torch.set_num_threads(int(arg("--threads", 2)))
    import transformers
    import trl
    r = {"trl": trl.__version__, "transformers": transformers.__version__,
         "torch": torch.__version__, "threads": torch.get_num_threads()}
    for bf16 in (False, True):
        p = "bf16" if bf16 else "fp32"
        r[f"dpo_gpt2_{p}_pairs_per_s"] = dpo_step(bf16)
        r[f"generation_gpt2_{p}_tokens_per_s"] = generation(bf16)
    print(json.dumps(r))
    if "--json" in sys.argv:
        json.dump(r, open(arg("--json", None), "w"))


if __name__ == "__main__":
    main()
