#!/usr/bin/python3
"""Two model versions on the same validation films, compared pairwise (issue 17's goal, judged as a
difference rather than as two separate intervals).

  bench/cluster/paired.py EXPORT_DIR A.jsonl B.jsonl

EXPORT_DIR is an `export --format dataset` folder (its labels.csv names each image's patient, split
and labels); A.jsonl and B.jsonl are `hilum-cli classify --model VERSION --json` over its PNG images.
For each finding with both classes among the validation films: each model's AUROC, their difference
B - A, and a 95% interval of the difference from 2,000 bootstrap resamples of validation patients
(both models resampled together, so what the films have in common cancels). With one or two positive
films the separate DeLong intervals say little; the paired interval says whether the two models rank
the same films differently.
"""
import csv
import json
import os
import sys

import numpy as np

# The AUROC (ties count half) that bench/model/population_report.py computes for the model cards.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from population_report import auroc  # noqa: E402


def probabilities(path):
    out = {}
    for line in open(path):
        row = json.loads(line)
        if row.get("ok"):
            out[os.path.splitext(os.path.basename(row["path"]))[0]] = row["probabilities"]
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    export, a_path, b_path = sys.argv[1:]
    rows = [r for r in csv.DictReader(open(os.path.join(export, "labels.csv"))) if r["split"] == "validation"]
    a, b = probabilities(a_path), probabilities(b_path)
    rows = [r for r in rows if r["image"] in a and r["image"] in b]
    findings = [k for k in rows[0] if k not in ("image", "patient", "split")]
    patients = sorted({r["patient"] for r in rows})
    index = {p: [i for i, r in enumerate(rows) if r["patient"] == p] for p in patients}
    rng = np.random.default_rng(1)
    draws = [np.concatenate([index[p] for p in rng.choice(patients, len(patients))]) for _ in range(2000)]
    print(f"{len(rows)} validation films of {len(patients)} patients; A = {os.path.basename(a_path)}, B = {os.path.basename(b_path)}")
    print(f"{'finding':<20} {'pos':>4} {'neg':>4} {'A':>6} {'B':>6} {'B - A (95% CI, paired patient bootstrap)':>44}")
    for f in findings:
        # "not assessed" (empty) is left out, as the gate does.
        keep = [i for i, r in enumerate(rows) if r[f] in ("0", "1")]
        if not keep:
            continue
        y = np.array([float(r[f]) if r[f] in ("0", "1") else 0.0 for r in rows])
        mask = np.zeros(len(rows), bool)
        mask[keep] = True
        pa = np.array([a[r["image"]].get(f, np.nan) for r in rows])
        pb = np.array([b[r["image"]].get(f, np.nan) for r in rows])
        if np.isnan(pa[mask]).any() or np.isnan(pb[mask]).any():
            continue
        pos, neg = int(y[mask].sum()), int((1 - y[mask]).sum())
        if pos == 0 or neg == 0:
            continue
        ra, rb = auroc(pa[mask], y[mask]), auroc(pb[mask], y[mask])
        diffs = []
        for d in draws:
            d = d[mask[d]]
            da, db = auroc(pa[d], y[d]), auroc(pb[d], y[d])
            if not (np.isnan(da) or np.isnan(db)):
                diffs.append(db - da)
        lo, hi = np.quantile(diffs, [0.025, 0.975])
        verdict = "same" if lo <= 0 <= hi else "differ"
        print(f"{f:<20} {pos:>4} {neg:>4} {ra:6.3f} {rb:6.3f} {rb - ra:+8.3f} ({lo:+.3f} to {hi:+.3f}) {verdict:>8}")


if __name__ == "__main__":
    main()
