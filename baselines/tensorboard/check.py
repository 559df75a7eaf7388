"""TensorBoard reads alignlab's event files back to metrics.csv and eval.csv.

    python check.py RESULTS_DIR TENSORBOARD_DIR

Every row of the two CSV files (method, setting, seed, step, metric, value) must be a scalar
TensorBoard's own reader (EventAccumulator) finds in the run <method>/<setting>/seed<k>, at its
step, under its tag (the method's prefix as train/), equal to the value as float32; and nothing
else may be there.
"""
import collections
import csv
import os
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(results, tb):
    want = collections.defaultdict(list)
    for name in ("metrics.csv", "eval.csv"):
        path = os.path.join(results, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for r in csv.DictReader(f):
                method, metric = r["method"], r["metric"]
                tag = "train/" + metric[len(method) + 1:] if metric.startswith(method + "/") else metric
                run = os.path.join(method.replace("/", "_"), (r["setting"] or "-").replace("/", "_"), "seed" + r["seed"])
                want[(run, tag)].append((int(r["step"]), np.float32(float(r["value"]))))
    runs = sorted({run for run, _ in want})
    rows = sum(len(v) for v in want.values())
    got_rows, bad = 0, 0
    for run in runs:
        acc = EventAccumulator(os.path.join(tb, run), size_guidance={"scalars": 0})
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        expected = {tag for r, tag in want if r == run}
        if tags != expected:
            print(f"{run}: tags differ: missing {sorted(expected - tags)[:5]}, extra {sorted(tags - expected)[:5]}")
            bad += 1
            continue
        for tag in sorted(tags):
            events = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag)]
            got_rows += len(events)
            w = sorted(want[(run, tag)], key=lambda p: p[0])
            same = len(events) == len(w) and all(
                a[0] == b[0] and (a[1] == b[1] or (np.isnan(a[1]) and np.isnan(b[1])))
                for a, b in zip(events, w)
            )
            if not same:
                print(f"{run} {tag}: tensorboard {events[:3]} ... against the CSV {w[:3]} ...")
                bad += 1
    print(f"{len(runs)} runs, {rows} CSV rows, {got_rows} scalars read by TensorBoard, {bad} series differ")
    if bad or got_rows != rows:
        sys.exit("tensorboard-check: FAILED")
    print("ok: TensorBoard reads back every row of metrics.csv and eval.csv")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
