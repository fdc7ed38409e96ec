#!/usr/bin/python3
"""PyTorch (eager, CPU) latency of a Hugging Face ViT folder, for comparison with Hilum's engine.

  /usr/bin/python3 bench/compare/torch_bench.py MODEL_DIR [--runs N]

The module is the plain-PyTorch ViTForImageClassification of tests/reference/make_vit_reference.py
(imported from its path via export_onnx.load_model).  torch.set_num_threads(2), inference_mode.
Batch 1 (reference image 0) and batch 8 (the reference images repeated), each: 3 warm-up
forwards, then N timed forwards; prints the median ms per batch and per image and
max |p - p_ref| against MODEL_DIR/reference.safetensors.  The timed call is the whole module
forward (it also returns every block's output and attention map, which HF's model computes too).

PyTorch's matrix products go to whatever libblas.so.3 the process loads (Debian's torch is built
with BLAS_INFO=generic); the script prints which one, since Debian's default reference BLAS is
about 30x slower than OpenBLAS.  run.sh points LD_LIBRARY_PATH at an unpacked OpenBLAS.
The last lines are `RESULT {json}` for run.sh.
"""

import argparse
import ctypes
import importlib.util
import json
import os
import re
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # importing the reference script must leave no __pycache__ in the repo


def _export_module():
    spec = importlib.util.spec_from_file_location("export_onnx", os.path.join(HERE, "export_onnx.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def loaded_blas():
    try:
        with open("/proc/self/maps") as f:
            libs = set(re.findall(r"(/\S*(?:blas|lapack)\S*\.so[\w.]*)", f.read()))
    except OSError:
        return "unknown"
    main = sorted(l for l in libs if "blas" in os.path.basename(l))
    if not main:
        return "none loaded"
    # OpenBLAS picks its kernels at load time (DYNAMIC_ARCH), from the CPU or from
    # OPENBLAS_CORETYPE; which ones decides its speed.
    core = ""
    for lib in main:
        try:
            handle = ctypes.CDLL(lib)
            handle.openblas_get_corename.restype = ctypes.c_char_p
            core = f" (OpenBLAS kernels: {handle.openblas_get_corename().decode()})"
            break
        except (OSError, AttributeError):
            continue
    return ", ".join(main) + core


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    exp = _export_module()
    ref_mod, config, model = exp.load_model(args.model_dir)
    ref, _ = ref_mod.read_safetensors(os.path.join(args.model_dir, "reference.safetensors"))
    px, p_ref = ref["pixel_values"], ref["probabilities"]
    n_ref = px.shape[0]
    multi = config.get("problem_type") == "multi_label_classification"

    results = []
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            idx = torch.tensor([i % n_ref for i in range(batch)])
            x = px[idx].contiguous()
            out = None
            for _ in range(args.warmup):
                out = model(x)
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                out = model(x)
                times.append((time.perf_counter() - t) * 1e3)
            logits = out["logits"]
            p = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
            worst = float((p.double() - p_ref[idx].double()).abs().max())
            med = statistics.median(times)
            print(f"batch {batch}: median {med:.2f} ms/batch, {med / batch:.2f} ms/image (min {min(times):.2f}, "
                  f"max {max(times):.2f}, {args.runs} runs after {args.warmup} warm-up); max |p - p_ref| = {worst:.3e}")
            results.append(dict(engine=f"PyTorch {torch.__version__}", batch=batch, runs=args.runs, median_ms=med,
                                ms_per_image=med / batch, max_dp=worst, times_ms=times))
    blas = loaded_blas()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS: {blas}")
    for r in results:
        r["blas"] = blas
        print("RESULT " + json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
