"""alignlab against TRL 1.12 at real checkpoints' sizes: `alignlab bench --real` and
`baselines/trl/bench_real.py` on the same shapes and threads, one after the other, and their
ratios (higher is better for alignlab). Run by `make bench-compare` when `make baselines` has
installed TRL.

usage: python compare_real.py --alignlab EXE --trl PYTHON [--threads 2]
"""

import json
import os
import re
import subprocess
import sys
import tempfile


def main():
    arg = lambda flag, default: sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default
    exe, py, threads = arg("--alignlab", "target/release/alignlab"), arg("--trl", None), arg("--threads", "2")
    out = subprocess.run([exe, "bench", "--real", "--threads", threads, "--device", "cpu"],
                         capture_output=True, text=True, check=True).stdout
    print(out)
    if not py:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trl.json")
        subprocess.run([py, "-W", "ignore", os.path.join(here, "trl", "bench_real.py"), "--threads",
                        threads, "--json", path], check=True, capture_output=True, text=True)
        t = json.load(open(path))
    num = lambda pat: float(re.search(pat, out).group(1))
    rows = [
        ("dpo step GPT-2 small fp32 (pairs/s)", num(r"GPT-2 small \(d768 L12\) B8 pairs P64 N64 fp32\s+([\d.]+)"), t["dpo_gpt2_fp32_pairs_per_s"]),
        ("dpo step GPT-2 small bf16 (pairs/s)", num(r"GPT-2 small \(d768 L12\) B8 pairs P64 N64 bf16\s+([\d.]+)"), t["dpo_gpt2_bf16_pairs_per_s"]),
        ("generation GPT-2 small fp32 (tok/s)", num(r"B8 P64 N64 cached fp32\s+([\d.]+)"), t["generation_gpt2_fp32_tokens_per_s"]),
        ("generation GPT-2 small bf16 (tok/s)", num(r"B8 P64 N64 cached bf16\s+([\d.]+)"), t["generation_gpt2_bf16_tokens_per_s"]),
    ]
    print(f"TRL {t['trl']}, transformers {t['transformers']}, torch {t['torch']}, {t['threads']} threads; TRL's bf16 is its autocast (bf16=True)")
    print(f"{'step':38s} {'alignlab':>10s} {'TRL':>10s} {'ratio':>7s}")
    for name, a, b in rows:
        print(f"{name:38s} {a:10.2f} {b:10.2f} {a / b:6.2f}x")


if __name__ == "__main__":
    main()
