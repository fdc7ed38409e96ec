#!/usr/bin/python3
"""Collects what run.sh left in its temp dir and prints one markdown table.

  python3 bench/compare/report.py TMPDIR --variants "ti16 b16" --warmup 3 [--runs N]

Reads, for each variant V:
  TMPDIR/V/config.json                      the model (for the FLOP count)
  TMPDIR/V.hilum.json / V.hilum.log         Google Benchmark JSON (every repetition), the `check:` and
                                            `memory:` lines of bench_vit --precision f32
  TMPDIR/V.hilum_bf16.json / .log           the same for bench_vit --precision bf16
  TMPDIR/V.ort.log, TMPDIR/V.torch.log      `RESULT {json}` lines of ort_bench.mjs / torch_bench.py
  TMPDIR/V.<engine>.rss                     /usr/bin/time -f %M output (max RSS, KB)
  TMPDIR/peak.log                           peak_flops output
No third-party modules: runs with any python3.
"""

import argparse
import json
import os
import re
import statistics
import sys


def vit_macs_per_image(c):
    """Multiply-accumulates of every matrix product of one forward, attention included:
    patch embedding (a [N, C*p*p] x [C*p*p, D] product), per layer Q, K, V and output projections
    (4*T*D*D), scores Q K^T and probs V (2*T*T*D over all heads), the MLP (2*T*D*I), and the
    classifier on the CLS token.  LayerNorm, softmax, GELU and the adds are not counted."""
    d, inter, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    p, s, ch = c["patch_size"], c["image_size"], c["num_channels"]
    n = (s // p) ** 2
    t = n + 1
    labels = len(c.get("id2label", {})) or 2
    patch = n * ch * p * p * d
    per_layer = 4 * t * d * d + 2 * t * t * d + 2 * t * d * inter
    return patch + layers * per_layer + d * labels


def read_rss_kb(path):
    try:
        with open(path) as f:
            lines = [l.strip() for l in f if l.strip()]
        return int(lines[-1])
    except (OSError, ValueError, IndexError):
        return None


def result_lines(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("RESULT "):
                    out.append(json.loads(line[7:]))
    except OSError:
        pass
    return out


def hilum_results(tmp, v, warmup, key="hilum"):
    """Per-repetition times from Google Benchmark's JSON (one iteration per repetition); the first
    `warmup` repetitions of each batch are dropped, the median of the rest is reported."""
    path = os.path.join(tmp, f"{v}.{key}.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    check = check_f32 = per_image = None
    try:
        with open(os.path.join(tmp, f"{v}.{key}.log")) as f:
            text = f.read()
        m = re.search(r"check: max \|p_hilum - p_pytorch\| = (\S+)", text)
        check = float(m.group(1)) if m else None
        m = re.search(r"check: max \|p_hilum - p_f32\| = (\S+)", text)
        check_f32 = float(m.group(1)) if m else None
        m = re.search(r"(\S+) MiB per extra image", text)
        per_image = float(m.group(1)) if m else None
    except OSError:
        pass
    by_batch = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            continue
        m = re.match(r"BM_Forward/(\d+)", b["name"])
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
        by_batch.setdefault(int(m.group(1)), []).append(
            (b.get("repetition_index", 0), b["real_time"] * scale, b.get("iterations", 1)))
    out = []
    for batch, reps in sorted(by_batch.items()):
        reps.sort()
        timed = [t for _, t, _ in reps[warmup:]] or [t for _, t, _ in reps]
        med = statistics.median(timed)
        out.append(dict(engine="Hilum", batch=batch, runs=len(timed), median_ms=med, ms_per_image=med / batch,
                        max_dp=check, max_dp_f32=check_f32, mib_per_image=per_image,
                        iterations=sorted({i for _, _, i in reps})))
    return out


def fmt_ms(x):
    return "n/a" if x is None else (f"{x:.1f}" if x >= 100 else f"{x:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tmp")
    ap.add_argument("--variants", default="ti16 b16")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--labels", default="{}", help="JSON {engine key: label}")
    args = ap.parse_args()
    labels = json.loads(args.labels)

    peak = peak1 = None
    isa = ""
    try:
        with open(os.path.join(args.tmp, "peak.log")) as f:
            text = f.read()
        m = re.search(r"peak_gflops threads=(\d+) value=(\S+)", text)
        peak = float(m.group(2)) if m else None
        m = re.search(r"1 thread: (\S+) GFLOP/s", text)
        peak1 = float(m.group(1)) if m else None
        isa = text.splitlines()[0].split(",")[0] if text else ""
    except OSError:
        pass

    rows, notes, failed = [], [], False
    for v in args.variants.split():
        try:
            with open(os.path.join(args.tmp, v, "config.json")) as f:
                config = json.load(f)
            gflop = 2 * vit_macs_per_image(config) / 1e9
            notes.append(f"{v}: {gflop:.3f} GFLOP per image (2 x {vit_macs_per_image(config):,} MACs)")
        except OSError:
            gflop = None
        for key, results in (("hilum", hilum_results(args.tmp, v, args.warmup)),
                             ("hilum_bf16", hilum_results(args.tmp, v, args.warmup, "hilum_bf16")),
                             ("ort", result_lines(os.path.join(args.tmp, f"{v}.ort.log"))),
                             ("torch", result_lines(os.path.join(args.tmp, f"{v}.torch.log")))):
            name = labels.get(key, key)
            rss = read_rss_kb(os.path.join(args.tmp, f"{v}.{key}.rss"))
            if not results:
                failed = True
                rows.append([name, v, "-", "failed", "-", "-", "-", "-", "-", "-", "-"])
                continue
            for r in results:
                achieved = gflop * r["batch"] / (r["median_ms"] / 1e3) if gflop else None
                rows.append([
                    name, v, str(r["batch"]), fmt_ms(r["median_ms"]), fmt_ms(r["ms_per_image"]),
                    "n/a" if r.get("max_dp") is None else f"{r['max_dp']:.1e}",
                    "-" if r.get("max_dp_f32") is None else f"{r['max_dp_f32']:.1e}",
                    "n/a" if rss is None else f"{rss / 1024:.0f}",
                    "-" if r.get("mib_per_image") is None else f"{r['mib_per_image']:.1f}",
                    "n/a" if achieved is None else f"{achieved:.1f}",
                    "n/a" if achieved is None or not peak else f"{100 * achieved / peak:.0f}%",
                ])

    head = ["engine", "model", "batch", "median ms/batch", "ms/image", "max \\|Δp\\| vs PyTorch reference",
            "max \\|Δp\\| vs Hilum F32", "peak RSS (MiB)", "MiB per extra image", "GFLOP/s", "% of F32 peak"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * 8) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    if peak:
        print(f"Measured F32 peak (peak_flops, {isa}, 2 threads): {peak:.1f} GFLOP/s"
              + (f" (1 thread: {peak1:.1f})" if peak1 else "") + ".")
        if peak1 and peak < 1.8 * peak1:
            print(f"WARNING: the 2-thread peak is below 1.8x the 1-thread one: the other core was busy during "
                  f"peak_flops; with both cores free expect about {2 * peak1:.0f} GFLOP/s and smaller % of peak.")
    for n in notes:
        print(f"FLOPs: {n}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
