"""Re-tokenise every row of an `alignlab export-prefs` file as TRL's DPOTrainer does, with the
tokenizer `alignlab export --hf` wrote, and compare with alignlab's ids.

TRL tokenises `prompt` and `prompt + chosen + eos_token` (likewise rejected) and takes the
response ids as the difference. alignlab's prompt ids start with `<bos>` (the exported
tokenizer adds it); a response cut at the length limit has no `<eos>` in alignlab's ids, and
TRL appends one (the row says `chosen_truncated` / `rejected_truncated`).

usage: python check_prefs.py EXPORT_DIR PREFS.jsonl   (exit status 1 on any mismatch)
"""
import json
import sys

from transformers import PreTrainedTokenizerFast


def main(hf, path):
    tok = PreTrainedTokenizerFast.from_pretrained(hf)
    rows = [json.loads(line) for line in open(path)]
    bad, merged = [], 0
    for i, r in enumerate(rows):
        if tok(r["prompt"])["input_ids"] != r["prompt_ids"]:
            bad.append(f"row {i}: prompt")
        for k in ("chosen", "rejected"):
            got = tok(r["prompt"] + r[k] + tok.eos_token)["input_ids"]
            want = r["prompt_ids"] + r[f"{k}_ids"] + ([tok.eos_token_id] if r[f"{k}_truncated"] else [])
            if got != want:
                bad.append(f"row {i}: {k}")
            merged += tok.pad_token_id in got
    print(f"{len(rows)} rows: {len(bad)} differ from alignlab's ids, {merged} hold <pad> (a merged word)")
    for b in bad[:10]:
        print("  " + b)
    return 1 if bad or merged else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
