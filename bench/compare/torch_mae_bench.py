#!/usr/bin/python3
"""PyTorch (eager, CPU) masked-autoencoder pre-training step, for comparison with Hilum's
bench_mae (training/src/mae.cpp).

  LD_LIBRARY_PATH=<OpenBLAS openmp dir> /usr/bin/python3 bench/compare/torch_mae_bench.py \
      --variant ti16|s16 [--image-size 224] [--batch 32] [--mask-ratio 0.9] [--steps 5] [--warmup 1] \
      [--threads 2] [--precision f32|bf16]

The model is tests/reference/make_mae_reference.py's MAE (make_vit_reference's ViT encoder, He et
al.'s decoder: 128 wide, 2 blocks, 4 heads, fixed sin-cos positions, norm-pix loss on the masked
patches) with MAE's own random_masking (noise, argsort, gather) drawn afresh every step.  One step:
zero_grad, forward, backward, torch.optim.AdamW.step on encoder and decoder -- what bench_mae
times.  --precision bf16 runs the forward under torch.autocast('cpu', dtype=torch.bfloat16).
Prints each step's time, then a RESULT line (median and best images/s, peak RSS).
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
sys.dont_write_bytecode = True


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mae_ref = _load("make_mae_reference", os.path.join(HERE, "..", "..", "tests", "reference", "make_mae_reference.py"))
torch_bench = _load("torch_bench", os.path.join(HERE, "torch_bench.py"))
ref = mae_ref.ref

VARIANTS = {"ti16": dict(d=192, layers=12, heads=3, inter=768), "s16": dict(d=384, layers=12, heads=6, inter=1536)}


def step_forward(model, imgs, mask_ratio, dpos):
    """models_mae.py's forward with its random_masking (fresh noise each call)."""
    e = model.vit.embeddings
    x = e.patch_embeddings.projection(imgs)
    b, d, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2) + e.position_embeddings[:, 1:, :]
    n = gh * gw
    keep_n = int(n * (1 - mask_ratio))
    noise = torch.rand(b, n)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep_n]
    x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, d))
    mask = torch.ones(b, n)
    mask[:, :keep_n] = 0
    mask = torch.gather(mask, 1, ids_restore)
    cls = e.cls_token + e.position_embeddings[:, :1, :]
    x = torch.cat([cls.expand(b, -1, -1), x], dim=1)
    for layer in model.vit.encoder.layer:
        x, _ = layer(x)
    x = model.vit.layernorm(x)
    dec = model.decoder
    x = dec.decoder_embed(x)
    mask_tokens = dec.mask_token.repeat(b, n + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
    x = torch.cat([x[:, :1, :], x_], dim=1) + dpos
    for layer in dec.decoder_layers:
        x, _ = layer(x)
    pred = dec.decoder_pred(dec.decoder_norm(x))[:, 1:, :]
    target = model.patchify(imgs)
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1.e-6) ** .5
    loss = ((pred.float() - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=tuple(VARIANTS), default="ti16")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mask-ratio", type=float, default=0.9)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=("f32", "bf16"), default="f32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(7)
    v = VARIANTS[args.variant]
    c = ref.make_config("ViTModel", v["d"], v["layers"], v["heads"], v["inter"], args.image_size, 16, 3, True, None, None)
    dc = mae_ref.decoder_config(c, 128, 2, 4, 512)
    model = mae_ref.MAE(c, dc)
    model.train()
    g = args.image_size // 16
    dpos = torch.from_numpy(mae_ref.sincos_2d(128, g, g)).float().unsqueeze(0)
    imgs = torch.randn(args.batch, 3, args.image_size, args.image_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.95))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS: {torch_bench.loaded_blas()}")
    print(f"torch_mae_bench: {args.variant}, {args.image_size}x{args.image_size}, batch {args.batch}, mask {args.mask_ratio}, "
          f"precision {args.precision}")
    times = []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = step_forward(model, imgs, args.mask_ratio, dpos)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        kind = "warm-up" if s < args.warmup else "timed"
        print(f"{kind} step {s}: {(t3 - t0) * 1e3:.1f} ms (forward {(t1 - t0) * 1e3:.1f}, backward {(t2 - t1) * 1e3:.1f}, "
              f"optimizer {(t3 - t2) * 1e3:.1f}), loss {float(loss):.4f}", flush=True)
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
