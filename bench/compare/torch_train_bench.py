#!/usr/bin/python3
"""PyTorch (eager, CPU) training step of a random ViT-Ti/16 or ViT-B/16, for comparison with
Hilum's bench_train (training/src/backprop.cpp).

  LD_LIBRARY_PATH=<OpenBLAS openmp dir> /usr/bin/python3 bench/compare/torch_train_bench.py \
      --variant ti16|b16 [--batch 8] [--steps 5] [--warmup 2] [--optimizer] [--threads 2] [--precision f32|bf16]

The module is the plain-PyTorch ViTForImageClassification of tests/reference/make_vit_reference.py
(Hugging Face layout; its forward also returns every block's output and attention map, which
autograd keeps anyway), 224 x 224, 14 labels, random weights, model.train().  One step:
zero_grad, forward, BCEWithLogitsLoss on random 0/1 targets, backward (and AdamW.step with
--optimizer).  Prints each step's time, the median and best images/s, and the process's peak RSS
(resource.getrusage ru_maxrss).  One variant per process so that the peak RSS is that variant's.

Debian's torch calls whatever libblas.so.3 it finds; the reference BLAS is ~30x slower than
OpenBLAS, so put an OpenBLAS (OpenMP build) first on LD_LIBRARY_PATH (bench/compare/run.sh shows
how); the script prints which BLAS it loaded.
"""

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # importing the reference script must leave no __pycache__ in the repo

def _sibling(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# torch_bench.py's BLAS probe; export_onnx.py's loader of tests/reference/make_vit_reference.py.
torch_bench = _sibling("torch_bench")
loaded_blas = torch_bench.loaded_blas


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=("b16", "ti16"), default="ti16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", action="store_true", help="include torch.optim.AdamW.step")
    ap.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                    help="bf16: forward under torch.autocast('cpu', dtype=torch.bfloat16) (PyTorch's mixed precision: "
                         "linear layers and matmuls in bfloat16 through oneDNN, F32 master weights)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    ref = torch_bench._export_module().load_reference_module()
    v = ref.BENCH[args.variant]   # the shapes make_vit_reference.py --bench writes
    config = ref.make_config(ref.CLS, v["d"], v["layers"], v["heads"], v["inter"], 224, 16, 3, True,
                             ref.CHESTXRAY14, "multi_label_classification")
    model = ref.build_model(config)
    model.load_state_dict(ref.random_weights(model, 301), strict=True)
    model.train()
    g = torch.Generator().manual_seed(7)
    x = torch.randn(args.batch, 3, 224, 224, generator=g)
    targets = (torch.rand(args.batch, 14, generator=g) < 0.3).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6) if args.optimizer else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS: {loaded_blas()}")
    print(f"torch_train_bench: {args.variant}, 224x224, batch {args.batch}, "
          f"{'AdamW step' if opt else 'no optimizer'}, precision {args.precision}")
    times = []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = model(x)
        loss = loss_fn(out["logits"].float(), targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if opt is not None:
            opt.step()
        t3 = time.perf_counter()
        del out, loss
        kind = "warm-up" if s < args.warmup else "timed"
        print(f"{kind} step {s}: {(t3 - t0) * 1e3:.1f} ms (forward {(t1 - t0) * 1e3:.1f}, backward {(t2 - t1) * 1e3:.1f}, "
              f"optimizer {(t3 - t2) * 1e3:.1f})", flush=True)
        if s >= args.warmup:
            times.append((t3 - t0) * 1e3)
    med, best = statistics.median(times), min(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"RESULT variant={args.variant} precision={args.precision} batch={args.batch} median_ms={med:.1f} best_ms={best:.1f} "
          f"images_per_s_median={1000 * args.batch / med:.2f} images_per_s_best={1000 * args.batch / best:.2f} "
          f"peak_rss_mib={rss:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
