"""Load an `alignlab export --hf` folder with Hugging Face transformers and check it against
alignlab: the logits of the recorded prompts within 1e-5, the greedy continuations token for
token, and the tokenizer's ids of the prompts' text.

usage: python check.py EXPORT_DIR   (exit status 1 on any mismatch)
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast


def main_reward_model(path):
    """A reward model's export: transformers' score (its one output at the last token) equals
    alignlab's within 1e-5."""
    from transformers import AutoModelForSequenceClassification

    check = load_file(f"{path}/alignlab_check.safetensors")
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        scores = model(input_ids=check["input_ids"]).logits[:, 0]
    diff = (scores - check["scores"]).abs().max().item()
    print(f"reward model scores: max |transformers - alignlab| = {diff:.3e}")
    if diff > 1e-5:
        print("FAILED: scores differ")
        return 1
    print("ok: transformers reproduces alignlab's reward model")
    return 0


def main(path):
    import json

    if json.load(open(f"{path}/config.json"))["architectures"][0].endswith("ForSequenceClassification"):
        return main_reward_model(path)
    check = load_file(f"{path}/alignlab_check.safetensors")
    ids, want_logits, want_greedy = check["input_ids"], check["logits"], check["greedy"]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    failures = []
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    diff = (logits - want_logits).abs().max().item()
    print(f"logits: max |transformers - alignlab| = {diff:.3e}")
    if diff > 1e-5:
        failures.append(f"logits differ by {diff:.3e}")
    n_new = want_greedy.shape[1]
    if n_new > 0:
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        for r in range(ids.shape[0]):
            mine = [t for t in want_greedy[r].tolist() if t >= 0]
            theirs = out[r, ids.shape[1]:].tolist()
            if tok.eos_token_id in theirs:
                theirs = theirs[: theirs.index(tok.eos_token_id) + 1]
            theirs = theirs[: len(mine)] if len(theirs) > len(mine) else theirs
            print(f"row {r}: alignlab {mine}\n       transformers {theirs}")
            if mine != theirs:
                failures.append(f"greedy continuation of row {r} differs")
    # A dataset world's export (a real tokenizer) records no text: random ids need not be what
    # a BPE gives for their decoding.
    import os
    texts = open(f"{path}/alignlab_check.txt").read().splitlines() if os.path.exists(f"{path}/alignlab_check.txt") else []
    for r, text in enumerate(texts):
        got = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
        if got != ids[r].tolist():
            failures.append(f"tokenizer: {text!r} -> {got}, alignlab {ids[r].tolist()}")
    if not texts:
        print("tokenizer: no text recorded (a real tokenizer's export: its ids are the tokenizer's own)")
    elif not any(f.startswith("tokenizer") for f in failures):
        print("tokenizer: the prompts' text gives alignlab's ids")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("ok: transformers reproduces alignlab's export")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
