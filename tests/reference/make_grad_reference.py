#!/usr/bin/python3
"""PyTorch gradient goldens for Hilum's ViT backward pass (training/src/backprop.cpp).

Plain PyTorch: the model is make_vit_reference.py's ViT (imported from beside this file), so the
tensor names and shapes are Hugging Face's ViTForImageClassification.  For several tiny random
ViTs it writes, into OUT/<case>/:

  config.json, model.safetensors   the checkpoint (HF names, F32), loadable by ViTModel::load
  grad.safetensors                 pixel_values [B,C,H,W], dlogits [B,L], and grad.<name> for every
                                   trainable parameter: d(sum(logits * dlogits))/d(parameter);
                                   metadata: first_trainable_block, seeds, torch version

relevance cases (`relevance_*`) whose relevance.safetensors holds, for one image and one output
`label` (metadata): pixel_values [1,C,H,W], logits [1,L], grad_probs.<block> [H,T,T] =
d(logits[0, label])/d(attention probabilities of that block), and relevance [gh,gw]: Chefer, Gur &
Wolf's class-specific relevance (ICCV 2021, "Generic Attention-model Explainability", eqs. 5-6:
R = I; R += mean_h((grad * A)^+) R per block; the CLS row over the patches, divided by its maximum),
accumulated in float64;

and one optimizer case (`adamw_bce`) whose grad.safetensors holds pixel_values, targets [B,L],
pos_weight [L] and losses [10]: ten steps of torch.optim.AdamW on BCEWithLogitsLoss(pos_weight)
(weight decay only on the ".weight" matrices, as ParamRef::decay), the loss of each step before
its update.  Optimizer settings are in the metadata.

  /usr/bin/python3 tests/reference/make_grad_reference.py --out tests/reference/golden_grad

Debian's python3-torch (1.13), CPU, one thread, float32.  Regeneration is byte-identical.
"""

import argparse
import importlib.util
import json
import os
import sys
import types

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # importing the reference script must leave no __pycache__


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_vit_reference", os.path.join(HERE, "make_vit_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _reference_module()
LABELS = ref.CHESTXRAY14


def _layer_forward_tanh(self, x):
    """make_vit_reference's Layer.forward with the tanh GELU (hidden_act gelu_pytorch_tanh)."""
    ctx, probs = self.attention.attention(self.layernorm_before(x))
    x = x + self.attention.output.dense(ctx)
    y = F.gelu(self.intermediate.dense(self.layernorm_after(x)), approximate="tanh")
    x = x + self.output.dense(y)
    return x, probs


def build(config, seed):
    model = ref.build_model(config)
    model.load_state_dict(ref.random_weights(model, seed), strict=True)
    if config["hidden_act"] != "gelu":
        assert config["hidden_act"] in ("gelu_new", "gelu_pytorch_tanh")
        for layer in model.vit.encoder.layer:
            layer.forward = types.MethodType(_layer_forward_tanh, layer)
    return model


def config_for(d, layers, heads, inter, image, patch, channels, qkv_bias, labels, act="gelu"):
    c = ref.make_config(ref.CLS, d, layers, heads, inter, image, patch, channels, qkv_bias, labels,
                        "multi_label_classification")
    c["hidden_act"] = act
    return c


def trainable(name, first):
    """Frozen: the embeddings and blocks [0, first) when first > 0 (TrainOptions semantics)."""
    if first == 0:
        return True
    if name.startswith("vit.embeddings."):
        return False
    if name.startswith("vit.encoder.layer."):
        return int(name.split(".")[3]) >= first
    return True


# name: (config, weight seed, input seed, (H, W), batch, first_trainable_block)
CASES = {
    # erf GELU, qkv bias, 4x4 grid
    "tiny_erf": (config_for(32, 2, 4, 64, 32, 8, 3, True, LABELS[:5]), 501, 601, (32, 32), 2, 0),
    # tanh GELU, no q/k/v bias, odd 3x3 grid, 3 layers, 1 channel
    "odd_tanh_nobias": (config_for(24, 3, 4, 48, 24, 8, 1, False, LABELS[:3], "gelu_pytorch_tanh"), 502, 602, (24, 24), 2, 0),
    # positions stored for 4x4, used on 5x3 (bicubic interpolation and its transpose)
    "interpolated": (config_for(32, 2, 4, 64, 32, 8, 3, True, LABELS[:4]), 503, 603, (40, 24), 3, 0),
    # embeddings and blocks 0, 1 frozen: gradients for block 2, the final LayerNorm and the head only
    "frozen_prefix": (config_for(32, 3, 4, 64, 32, 8, 3, True, LABELS[:4]), 504, 604, (32, 32), 2, 2),
}

# name: (config, weight seed, input seed, (H, W), label)
RELEVANCE = {
    # erf GELU, qkv bias, 4x4 grid, 3 blocks
    "relevance_erf": (config_for(32, 3, 4, 64, 32, 8, 3, True, LABELS[:4]), 511, 611, (32, 32), 2),
    # tanh GELU, no q/k/v bias, positions interpolated to a 5x3 grid, 1 channel
    "relevance_interpolated": (config_for(24, 2, 4, 48, 32, 8, 1, False, LABELS[:3], "gelu_pytorch_tanh"), 512, 612, (40, 24), 0),
}

ADAMW = dict(config=config_for(32, 2, 4, 64, 32, 8, 3, True, LABELS[:6]), weight_seed=505, input_seed=605,
             batch=4, steps=10, lr=1e-3, weight_decay=0.05, beta1=0.9, beta2=0.999, eps=1e-8)


def write_model(outdir, config, model):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    ref.write_safetensors(os.path.join(outdir, "model.safetensors"), sd, {"format": "pt"})


def write_grad_case(outdir, config, wseed, iseed, hw, batch, first):
    model = build(config, wseed)
    write_model(outdir, config, model)
    g = torch.Generator().manual_seed(iseed)
    pixels = torch.randn(batch, config["num_channels"], hw[0], hw[1], generator=g)
    dlogits = torch.randn(batch, len(config["id2label"]), generator=g)
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(name, first))
    logits = model(pixels)["logits"]
    (logits * dlogits).sum().backward()
    out = {"pixel_values": pixels, "dlogits": dlogits}
    for name, p in model.named_parameters():
        if p.requires_grad:
            out["grad." + name] = p.grad.detach().contiguous()
    meta = {"format": "pt", "generator": "tests/reference/make_grad_reference.py", "torch": torch.__version__,
            "weight_seed": wseed, "input_seed": iseed, "first_trainable_block": first,
            "loss": "sum(logits * dlogits)"}
    ref.write_safetensors(os.path.join(outdir, "grad.safetensors"), out, meta)


def write_relevance_case(outdir, config, wseed, iseed, hw, label):
    model = build(config, wseed)
    write_model(outdir, config, model)
    g = torch.Generator().manual_seed(iseed)
    pixels = torch.randn(1, config["num_channels"], hw[0], hw[1], generator=g)
    out = model(pixels)
    blocks = config["num_hidden_layers"]
    probs = [out[f"attention.{i}"] for i in range(blocks)]
    for p in probs:
        p.retain_grad()
    out["logits"][0, label].backward()
    t = probs[0].shape[-1]
    r = torch.eye(t, dtype=torch.float64)
    for p in probs:
        cam = (p.grad[0].double() * p[0].detach().double()).clamp(min=0).mean(0)
        r = r + cam @ r
    patch = config["patch_size"]
    rel = r[0, 1:].reshape(hw[0] // patch, hw[1] // patch)
    if rel.max() > 0:
        rel = rel / rel.max()
    tensors = {"pixel_values": pixels, "logits": out["logits"].detach().contiguous(),
               "relevance": rel.float().contiguous()}
    for i, p in enumerate(probs):
        tensors[f"grad_probs.{i}"] = p.grad[0].detach().contiguous()
    meta = {"format": "pt", "generator": "tests/reference/make_grad_reference.py", "torch": torch.__version__,
            "weight_seed": wseed, "input_seed": iseed, "label": label,
            "relevance": "Chefer et al. 2021 eqs. 5-6, float64, CLS row / max"}
    ref.write_safetensors(os.path.join(outdir, "relevance.safetensors"), tensors, meta)


def write_adamw_case(outdir):
    a = ADAMW
    config = a["config"]
    model = build(config, a["weight_seed"])
    write_model(outdir, config, model)
    g = torch.Generator().manual_seed(a["input_seed"])
    n_labels = len(config["id2label"])
    pixels = torch.randn(a["batch"], config["num_channels"], 32, 32, generator=g)
    targets = (torch.rand(a["batch"], n_labels, generator=g) < 0.4).float()
    pos_weight = 1.0 + 2.0 * torch.rand(n_labels, generator=g)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith(".weight") and "layernorm" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    losses = []
    for _ in range(a["steps"]):
        opt.zero_grad()
        loss = loss_fn(model(pixels)["logits"], targets)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    out = {"pixel_values": pixels, "targets": targets, "pos_weight": pos_weight,
           "losses": torch.tensor(losses, dtype=torch.float32)}
    meta = {"format": "pt", "generator": "tests/reference/make_grad_reference.py", "torch": torch.__version__,
            "weight_seed": a["weight_seed"], "input_seed": a["input_seed"], "steps": a["steps"], "lr": a["lr"],
            "weight_decay": a["weight_decay"], "beta1": a["beta1"], "beta2": a["beta2"], "eps": a["eps"],
            "loss": "BCEWithLogitsLoss(pos_weight), mean; decay on .weight matrices except LayerNorm"}
    ref.write_safetensors(os.path.join(outdir, "grad.safetensors"), out, meta)
    return losses


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="write every case into OUT/<case>/")
    args = ap.parse_args()
    torch.set_num_threads(1)
    total = 0
    for name, (config, wseed, iseed, hw, batch, first) in CASES.items():
        d = os.path.join(args.out, name)
        write_grad_case(d, config, wseed, iseed, hw, batch, first)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        print(f"{name:18s} {size / 1024:7.1f} KiB")
    for name, (config, wseed, iseed, hw, label) in RELEVANCE.items():
        d = os.path.join(args.out, name)
        write_relevance_case(d, config, wseed, iseed, hw, label)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        print(f"{name:18s} {size / 1024:7.1f} KiB")
    d = os.path.join(args.out, "adamw_bce")
    losses = write_adamw_case(d)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    total += size
    print(f"{'adamw_bce':18s} {size / 1024:7.1f} KiB  losses {' '.join(f'{l:.6f}' for l in losses)}")
    print(f"total {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
