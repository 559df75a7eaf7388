"""TRL both ways: TRL's DPOTrainer trains alignlab's exported pi_SFT on alignlab's exported
preference pairs, and saves the policy for `alignlab eval --policy`, which measures it with the
world's exact gold and KL.

usage: python roundtrip.py SFT_HF_DIR PREFS.jsonl OUT_DIR [--steps 40] [--beta 0.1] [--lr 1e-4]
       [--batch 16] [--threads 2]

The pairs are the training split of `alignlab export-prefs`; the policy and the frozen
reference both start from `alignlab export --hf` of the SFT run folder; fp32 (TRL's bf16
autocast is a setting away), sigmoid loss, constant learning rate, no warm-up, gradient clip 10.
"""
import json
import os
import sys
import tempfile

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def main():
    sft, prefs, out = sys.argv[1:4]
    arg = lambda flag, default, kind: kind(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else default
    steps, beta, lr = arg("--steps", 40, int), arg("--beta", 0.1, float), arg("--lr", 1e-4, float)
    batch = arg("--batch", 16, int)
    torch.set_num_threads(arg("--threads", 2, int))
    torch.manual_seed(0)
    from trl import DPOConfig, DPOTrainer

    rows = [json.loads(line) for line in open(prefs)]
    rows = [r for r in rows if r["split"] == "train"]
    ds = Dataset.from_dict({k: [r[k] for r in rows] for k in ("prompt", "chosen", "rejected")})
    tok = PreTrainedTokenizerFast.from_pretrained(sft)
    policy = AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, max_steps=steps, per_device_train_batch_size=batch,
                         learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0,
                         beta=beta, loss_type=["sigmoid"], max_grad_norm=10.0, use_cpu=True,
                         bf16=False, fp16=False, report_to="none", save_strategy="no",
                         logging_steps=max(1, steps // 4), seed=0, disable_tqdm=True,
                         dataloader_num_workers=0)
        trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=ds,
                             processing_class=tok)
        trainer.train()
    policy.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"TRL DPO: {steps} steps of {batch} pairs (beta {beta}, lr {lr}) on {len(rows)} pairs; saved to {out}")


if __name__ == "__main__":
    main()
