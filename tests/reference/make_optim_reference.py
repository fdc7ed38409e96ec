#!/usr/bin/python3
"""PyTorch / NumPy reference ("golden files") for Hilum's training/ losses, optimizer, clipping,
metrics and head fitting (GitHub issue 5).

Usage (from the repository root, with Debian's python3-torch 1.13 and python3-numpy; the pyenv
python on PATH has no torch):

  /usr/bin/python3 tests/reference/make_optim_reference.py --out tests/reference/golden_optim

Writes small JSON files (every float is written with repr(), i.e. exactly):

  bce.json      torch.nn.functional.binary_cross_entropy_with_logits(pos_weight=...) with a
                0/1 mask, reduced as sum(mask * loss) / sum(mask): loss and d loss / d logits
                (float64 autograd on float32-representable inputs).
  ce.json       torch.nn.functional.cross_entropy (mean): loss and gradient (float64).
  adamw.json    10 steps of torch.optim.AdamW (float32, foreach=False) on two tensors: "decayed"
                ([3, 4], weight decay on, LR scale 1) and "plain" ([4], weight decay off, LR scale
                0.5 as layer-wise decay gives a block-1 tensor of a 1-block model with
                layer_decay 0.5), with given gradients and a per-step LR: parameters after every
                step, final moments.
  clip.json     torch.nn.utils.clip_grad_norm_ on three tensors, one case above and one below
                max_norm: returned norm and clipped gradients.
  delong.json   AUROC and DeLong's 95% CI computed the slow, textbook way in NumPy (the full
                psi(x_i, y_j) matrix, ties = 1/2), on scores with ties.
  head.json     L2-regularised, class-balanced logistic regression and squared-hinge linear SVM
                optima on a small masked problem: logistic by float64 Newton with the exact Hessian,
                SVM by float64 generalised Newton, cross-checked with torch's L-BFGS (strong Wolfe);
                both verified by their gradients.

Everything is seeded; regeneration gives identical files.
"""

import argparse
import json
import math
import os

import numpy as np
import torch

torch.set_num_threads(1)


def f32(x):
    """Round to float32 and return as a Python float (exact in JSON)."""
    return float(np.float32(x))


def as_list(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float64).tolist()


def write(out, name, obj):
    path = os.path.join(out, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def make_bce(rng):
    rows, cols = 5, 4
    logits = rng.normal(0.0, 3.0, size=(rows, cols)).astype(np.float32)
    logits[0, 0] = 40.0   # far in the tails: the stable formula matters
    logits[1, 1] = -35.0
    targets = (rng.random((rows, cols)) < 0.4).astype(np.float32)
    targets[0, 0] = 0.0
    targets[1, 1] = 1.0
    mask = (rng.random((rows, cols)) < 0.75).astype(np.float32)
    mask[0, 0] = mask[1, 1] = 1.0
    mask[2, 3] = 0.0
    pos_weight = np.array([1.0, 2.5, 7.0, 0.5], dtype=np.float32)
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(targets, dtype=torch.float64)
    m = torch.tensor(mask, dtype=torch.float64)
    pw = torch.tensor(pos_weight, dtype=torch.float64)
    per = torch.nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    loss = (per * m).sum() / m.sum()
    loss.backward()
    # Without pos_weight, too.
    x2 = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    per2 = torch.nn.functional.binary_cross_entropy_with_logits(x2, y, reduction="none")
    loss2 = (per2 * m).sum() / m.sum()
    loss2.backward()
    return {
        "logits": as_list(logits), "targets": as_list(targets), "mask": as_list(mask),
        "pos_weight": as_list(pos_weight),
        "loss": float(loss), "grad": as_list(x.grad),
        "loss_no_pos_weight": float(loss2), "grad_no_pos_weight": as_list(x2.grad),
    }


def make_ce(rng):
    rows, cols = 4, 6
    logits = rng.normal(0.0, 2.0, size=(rows, cols)).astype(np.float32)
    logits[3, 2] = 60.0  # large logit: needs the max subtraction
    classes = [2, 0, 5, 1]
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x, torch.tensor(classes))
    loss.backward()
    return {"logits": as_list(logits), "classes": classes, "loss": float(loss), "grad": as_list(x.grad)}


# ---------------------------------------------------------------------------------------------
# AdamW and clipping
# ---------------------------------------------------------------------------------------------

def make_adamw(rng):
    lr_peak = f32(3e-2)
    betas = (f32(0.9), f32(0.999))
    eps = f32(1e-8)
    wd = f32(0.05)
    layer_decay = 0.5
    steps = 10
    decayed0 = rng.normal(0.0, 1.0, size=(3, 4)).astype(np.float32)
    plain0 = rng.normal(1.0, 0.2, size=(4,)).astype(np.float32)
    # Linear warm-up over 3 steps then cosine to 0 at 10 (float32 values, as the C++ passes them).
    lrs = []
    for s in range(steps):
        if s < 3:
            lr = lr_peak * s / 3 if s > 0 else lr_peak / 6
        else:
            lr = 0.5 * lr_peak * (1 + math.cos(math.pi * (s - 3) / 7))
        lrs.append(f32(lr))
    grads_decayed = [rng.normal(0.0, 1.0, size=(3, 4)).astype(np.float32) for _ in range(steps)]
    grads_plain = [rng.normal(0.0, 0.1, size=(4,)).astype(np.float32) for _ in range(steps)]
    grads_plain[4][:] = 0.0  # a zero gradient step: moments decay, the update continues

    a = torch.nn.Parameter(torch.tensor(decayed0))
    b = torch.nn.Parameter(torch.tensor(plain0))
    scale_plain = layer_decay ** 1  # depth 1 of a 1-block model: layer_decay^(L + 1 - d)
    opt = torch.optim.AdamW(
        [{"params": [a], "lr": lrs[0], "weight_decay": wd},
         {"params": [b], "lr": lrs[0] * scale_plain, "weight_decay": 0.0}],
        lr=lrs[0], betas=betas, eps=eps, weight_decay=wd, foreach=False)
    after_decayed, after_plain = [], []
    for s in range(steps):
        opt.param_groups[0]["lr"] = lrs[s] * 1.0
        opt.param_groups[1]["lr"] = lrs[s] * scale_plain
        a.grad = torch.tensor(grads_decayed[s])
        b.grad = torch.tensor(grads_plain[s])
        opt.step()
        after_decayed.append(as_list(a))
        after_plain.append(as_list(b))
    sa, sb = opt.state[a], opt.state[b]
    return {
        "torch_version": torch.__version__,
        "lr": lrs, "beta1": betas[0], "beta2": betas[1], "eps": eps, "weight_decay": wd,
        "layer_decay": layer_decay,
        "decayed": {"shape": [3, 4], "initial": as_list(decayed0), "grads": [as_list(g) for g in grads_decayed],
                    "after": after_decayed, "exp_avg": as_list(sa["exp_avg"]), "exp_avg_sq": as_list(sa["exp_avg_sq"])},
        "plain": {"shape": [4], "initial": as_list(plain0), "grads": [as_list(g) for g in grads_plain],
                  "after": after_plain, "exp_avg": as_list(sb["exp_avg"]), "exp_avg_sq": as_list(sb["exp_avg_sq"])},
    }


def make_clip(rng):
    shapes = [(3, 4), (4,), (3,)]  # classifier weight, a LayerNorm weight, classifier bias (C++ test)
    cases = []
    for max_norm in (1.5, 100.0):
        grads = [rng.normal(0.0, 1.0, size=s).astype(np.float32) for s in shapes]
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g)
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        cases.append({"max_norm": max_norm, "grads": [as_list(g) for g in grads], "norm": float(norm),
                      "clipped": [as_list(p.grad) for p in params]})
    return {"shapes": [list(s) for s in shapes], "cases": cases}


# ---------------------------------------------------------------------------------------------
# Metrics: DeLong, the slow way
# ---------------------------------------------------------------------------------------------

def delong_slow(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    x = scores[labels == 1]  # positives
    y = scores[labels == 0]  # negatives
    psi = (x[:, None] > y[None, :]).astype(np.float64) + 0.5 * (x[:, None] == y[None, :])
    auc = psi.mean()
    v10 = psi.mean(axis=1)
    v01 = psi.mean(axis=0)
    s10 = np.var(v10, ddof=1) if len(x) > 1 else 0.0
    s01 = np.var(v01, ddof=1) if len(y) > 1 else 0.0
    var = s10 / len(x) + s01 / len(y)
    z = 1.959963984540054
    half = z * math.sqrt(var)
    return auc, var, max(0.0, auc - half), min(1.0, auc + half)


def make_delong(rng):
    cases = []
    n = 60
    labels = (rng.random(n) < 0.35).astype(int)
    scores = np.round(rng.normal(0.0, 1.0, n) + 0.8 * labels, 1)  # rounding makes many ties
    auc, var, lo, hi = delong_slow(scores, labels)
    cases.append({"scores": scores.tolist(), "labels": labels.tolist(), "auc": auc, "variance": var,
                  "ci_low": lo, "ci_high": hi})
    # A strong classifier: the CI is clamped at 1.
    labels2 = np.array([0] * 8 + [1] * 7)
    scores2 = np.concatenate([np.linspace(0.0, 0.5, 8), np.linspace(0.45, 1.0, 7)])
    auc, var, lo, hi = delong_slow(scores2, labels2)
    cases.append({"scores": scores2.tolist(), "labels": labels2.tolist(), "auc": auc, "variance": var,
                  "ci_low": lo, "ci_high": hi})
    return {"cases": cases}


# ---------------------------------------------------------------------------------------------
# Head fitting: reference optima
# ---------------------------------------------------------------------------------------------

def head_weights(targets, mask, balance):
    pos = float((mask * (targets > 0.5)).sum())
    neg = float((mask * (targets <= 0.5)).sum())
    wpos = (pos + neg) / (2 * pos) if balance else 1.0
    wneg = (pos + neg) / (2 * neg) if balance else 1.0
    a = mask * np.where(targets > 0.5, wpos, wneg)
    return a / a.sum()


def logistic_newton(X, y, a, l2):
    n, d = X.shape
    Xt = np.hstack([X, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[d] = 0.0

    def objective(th):
        z = Xt @ th
        return float(np.sum(a * (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * np.sum(th[:d] ** 2))

    for _ in range(100):
        z = Xt @ theta
        p = 1.0 / (1.0 + np.exp(-z))
        g = Xt.T @ (a * (p - y)) + reg * theta
        if np.max(np.abs(g)) < 1e-13:
            break
        H = Xt.T @ (Xt * (a * p * (1 - p))[:, None]) + np.diag(reg)
        step = np.linalg.solve(H, -g)
        t, f0 = 1.0, objective(theta)
        while objective(theta + t * step) > f0 + 1e-4 * t * g @ step and t > 1e-10:
            t *= 0.5
        theta = theta + t * step
    z = Xt @ theta
    p = 1.0 / (1.0 + np.exp(-z))
    g = Xt.T @ (a * (p - y)) + reg * theta
    return theta, float(np.max(np.abs(g))), objective(theta)


def svm_newton(X, y, a, l2):
    """Generalised Newton (exact dense solves, Armijo backtracking) for the squared hinge."""
    n, d = X.shape
    Xt = np.hstack([X, np.ones((n, 1))])
    sgn = 2.0 * y - 1.0
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[d] = 0.0

    def objective(th):
        return float(np.sum(a * np.maximum(0.0, 1.0 - sgn * (Xt @ th)) ** 2) + 0.5 * l2 * np.sum(th[:d] ** 2))

    def gradient(th):
        margin = np.maximum(0.0, 1.0 - sgn * (Xt @ th))
        return Xt.T @ (a * -2.0 * sgn * margin) + reg * th, margin

    for _ in range(200):
        g, margin = gradient(theta)
        if np.max(np.abs(g)) < 1e-14:
            break
        H = Xt.T @ (Xt * (2.0 * a * (margin > 0))[:, None]) + np.diag(reg) + 1e-14 * np.eye(d + 1)
        step = np.linalg.solve(H, -g)
        t, f0 = 1.0, objective(theta)
        while objective(theta + t * step) > f0 + 1e-4 * t * g @ step and t > 1e-12:
            t *= 0.5
        theta = theta + t * step
    g, _ = gradient(theta)
    return theta, float(np.max(np.abs(g))), objective(theta)


def svm_lbfgs(X, y, a, l2):
    n, d = X.shape
    Xt = torch.tensor(np.hstack([X, np.ones((n, 1))]), dtype=torch.float64)
    s = torch.tensor(2.0 * y - 1.0, dtype=torch.float64)
    at = torch.tensor(a, dtype=torch.float64)
    theta = torch.zeros(d + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=5000, tolerance_grad=1e-14, tolerance_change=1e-16,
                            history_size=20, line_search_fn="strong_wolfe")

    def objective():
        z = Xt @ theta
        return (at * torch.clamp(1.0 - s * z, min=0.0) ** 2).sum() + 0.5 * l2 * (theta[:d] ** 2).sum()

    def closure():
        opt.zero_grad()
        f = objective()
        f.backward()
        return f

    for _ in range(5):
        opt.step(closure)
    f = closure()
    return theta.detach().numpy(), float(theta.grad.abs().max()), float(f)


def make_head(rng):
    n, d = 160, 6
    X = rng.normal(0.0, 1.0, size=(n, d)).astype(np.float32)
    X[:, 2] = X[:, 2] * 3.0 + 1.0  # scales and offsets differ between columns
    X[:, 5] = X[:, 5] * 0.3 - 2.0
    beta = np.array([1.5, -1.0, 0.4, 0.0, 2.0, -0.8])
    z = X.astype(np.float64) @ beta - 1.0
    targets = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    mask = (rng.random(n) < 0.8).astype(np.float32)
    l2 = 0.01
    out = {"embeddings": as_list(X), "targets": as_list(targets), "mask": as_list(mask), "l2": l2}
    for balance in (True, False):
        a = head_weights(targets.astype(np.float64), mask.astype(np.float64), balance)
        y = (targets > 0.5).astype(np.float64)
        theta, gmax, f = logistic_newton(X.astype(np.float64), y, a, l2)
        assert gmax < 1e-10, gmax
        out[f"logistic_balance_{int(balance)}"] = {"weights": theta[:d].tolist(), "bias": float(theta[d]),
                                                   "objective": f, "max_abs_gradient": gmax}
        theta, gmax, f = svm_newton(X.astype(np.float64), y, a, l2)
        assert gmax < 1e-10, gmax
        cross, cross_gmax, _ = svm_lbfgs(X.astype(np.float64), y, a, l2)  # independent cross-check
        assert cross_gmax < 1e-6 and np.max(np.abs(cross - theta)) < 1e-5, (cross_gmax, np.max(np.abs(cross - theta)))
        out[f"svm_balance_{int(balance)}"] = {"weights": theta[:d].tolist(), "bias": float(theta[d]),
                                              "objective": f, "max_abs_gradient": gmax}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(20261125)
    write(args.out, "bce.json", make_bce(rng))
    write(args.out, "ce.json", make_ce(rng))
    write(args.out, "adamw.json", make_adamw(rng))
    write(args.out, "clip.json", make_clip(rng))
    write(args.out, "delong.json", make_delong(rng))
    write(args.out, "head.json", make_head(rng))


if __name__ == "__main__":
    main()
