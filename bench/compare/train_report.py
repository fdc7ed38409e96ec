#!/usr/bin/python3
"""Collects train_run.sh's results and prints one markdown table.

  python3 bench/compare/train_report.py TMPDIR [--torch-label LABEL]

Reads TMPDIR/results.txt (one line per process: `round=R engine=hilum|torch variant=V
precision=P batch=B median_ms=... images_per_s_median=... peak_rss_mib=...`, the RESULT lines of
bench_train and torch_train_bench.py) and TMPDIR/peak.log (peak_flops).  For each variant,
engine and precision: the median over the rounds of each process's median images/s (and the
range), the largest peak RSS, the GFLOP/s and its share of the measured peak of that precision,
and Hilum's ratio to PyTorch in the same round and precision (the median of the per-round ratios).
GFLOP per step: 3 x the forward's (report.vit_macs_per_image x 2): the forward, then dX and dW of
every product.  No third-party modules.
"""

import argparse
import importlib.util
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
_spec = importlib.util.spec_from_file_location("report", os.path.join(HERE, "report.py"))
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)

# bench_train's and torch_train_bench.py's models: ViT-Ti/16 and ViT-B/16 at 224, 14 labels.
CONFIGS = {
    "ti16": dict(hidden_size=192, intermediate_size=768, num_hidden_layers=12, patch_size=16, image_size=224, num_channels=3,
                 id2label={str(i): f"L{i}" for i in range(14)}),
    "b16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, patch_size=16, image_size=224, num_channels=3,
                id2label={str(i): f"L{i}" for i in range(14)}),
}


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
            if fields:
                rows.append(fields)
    return rows


def peaks(path):
    out = {}
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return out
    for key, name in (("f32", "peak_gflops"), ("bf16", "peak_bf16_gflops")):
        m = re.search(name + r" threads=\d+ value=(\S+)", text)
        if m:
            out[key] = float(m.group(1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tmp")
    ap.add_argument("--torch-label", default="PyTorch")
    args = ap.parse_args()
    rows = parse(os.path.join(args.tmp, "results.txt"))
    peak = peaks(os.path.join(args.tmp, "peak.log"))
    # (variant, engine, precision) -> {round: row}
    runs = {}
    for r in rows:
        runs.setdefault((r["variant"], r["engine"], r["precision"]), {})[r["round"]] = r
    header = ["engine", "precision", "model", "images/s (median)", "range", "x PyTorch same precision", "x PyTorch F32",
              "peak RSS (MiB)", "GFLOP/s", "% of peak"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    for variant in ("ti16", "b16"):
        gflop_per_image = 3 * 2 * report.vit_macs_per_image(CONFIGS[variant]) / 1e9
        for precision in ("f32", "bf16"):
            for engine in ("hilum", "torch"):
                by_round = runs.get((variant, engine, precision))
                if not by_round:
                    continue
                ips = [float(r["images_per_s_median"]) for r in by_round.values()]
                med = statistics.median(ips)

                def ratio(other_precision):
                    other = runs.get((variant, "torch", other_precision), {})
                    vals = [float(r["images_per_s_median"]) / float(other[k]["images_per_s_median"])
                            for k, r in by_round.items() if k in other]
                    return f"{statistics.median(vals):.2f}" if vals and engine == "hilum" else ""

                rss = max(float(r["peak_rss_mib"]) for r in by_round.values())
                gflops = med * gflop_per_image
                share = f"{100 * gflops / peak[precision]:.0f}%" if precision in peak else "n/a"
                label = "**Hilum**" if engine == "hilum" else args.torch_label
                print(f"| {label} | {precision.upper()} | {variant} | {med:.2f} | {min(ips):.2f}-{max(ips):.2f} | {ratio(precision)} | "
                      f"{ratio('f32')} | {rss:.0f} | {gflops:.0f} | {share} |")
    if peak:
        print()
        print("Measured peaks (peak_flops, 2 threads): " + ", ".join(f"{k.upper()} {v:.1f} GFLOP/s" for k, v in sorted(peak.items())) + ".")
    for variant in ("ti16", "b16"):
        print(f"GFLOP per training image ({variant}): {3 * 2 * report.vit_macs_per_image(CONFIGS[variant]) / 1e9:.2f} "
              "(3 x the forward's matrix products).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
