#!/usr/bin/python3
"""PyTorch reference ("golden files") for Hilum's C++ ViT engine, in the style of llm.c.

Plain PyTorch + NumPy: no `transformers`, no `safetensors` library.  The model below is an
nn.Module whose state_dict names and shapes are exactly those of Hugging Face's
ViTForImageClassification (or ViTModel), and the checkpoint/reference files are written by the
small safetensors writer in this file.

Usage (from the repository root, with Debian's torch; see README.md beside this file):

  /usr/bin/python3 tests/reference/make_vit_reference.py --out tests/reference/golden
  /usr/bin/python3 tests/reference/make_vit_reference.py --verify tests/reference/golden
  /usr/bin/python3 tests/reference/make_vit_reference.py --bench /tmp/vit-b16 --variant b16
  /usr/bin/python3 tests/reference/make_vit_reference.py --check-torchvision

Everything is computed in float32 on the CPU with one thread.  `--verify` re-reads the files with
the reader in this file, rebuilds the model from config.json + model.safetensors alone, re-runs
the forward and asserts bit-for-bit equality, then compares against an independent float64 NumPy
implementation (explicit bicubic, per-head loops, erf GELU) to 1e-5.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CHESTXRAY14 = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]

# Rollout variants stored in every reference: name -> (head fusion, discard ratio).
ROLLOUTS = {
    "rollout.mean": ("mean", 0.0),
    "rollout.max.discard0.5": ("max", 0.5),
}

# The discard step picks the k smallest entries of each fused [T,T] map.  A C++ engine computes
# the attention probabilities with float32 rounding that differs from torch's by ~1e-8, so the
# golden inputs are chosen so that the k-th and (k+1)-th smallest values differ by at least this
# much (otherwise the set of discarded entries could legitimately differ).
DISCARD_MARGIN = 1e-6


# --------------------------------------------------------------------------------------------
# safetensors, by hand
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.float32:
        return t.numpy().astype("<f4", copy=False).tobytes()
    if t.dtype == torch.float16:
        return t.numpy().astype("<f2", copy=False).tobytes()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the 16-bit patterns.
        return t.view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    raise ValueError(f"unsupported dtype {t.dtype}")


def write_safetensors(path, tensors, metadata=None):
    """8-byte LE header length N, N bytes of JSON padded with spaces to a multiple of 8, raw LE
    data.  Tensors are laid out sorted by name, offsets contiguous from 0."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


def read_safetensors(path, strict=True):
    """Returns ({name: tensor in its stored dtype}, metadata dict).  With strict=True also checks
    the layout rules our writer promises (alignment, name order, contiguous offsets, no slack)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    sizes = {"F32": 4, "F16": 2, "BF16": 2}
    out = {}
    expect = 0
    for name in sorted(header):
        info = header[name]
        begin, end = info["data_offsets"]
        numel = int(np.prod(info["shape"])) if info["shape"] else 1
        assert end - begin == numel * sizes[info["dtype"]], f"{path}: {name}: bad byte size"
        if strict:
            assert begin == expect, f"{path}: {name}: offsets not contiguous in name order"
        expect = end
        buf = data[begin:end]
        if info["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<f4").astype(np.float32))
        elif info["dtype"] == "F16":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<f2").astype(np.float16))
        else:
            t = torch.from_numpy(np.frombuffer(buf, dtype="<i2").astype(np.int16)).view(torch.bfloat16)
        out[name] = t.reshape(info["shape"])
    if strict:
        assert n % 8 == 0, f"{path}: header length {n} is not a multiple of 8"
        assert raw[8:8 + n].decode("utf-8").rstrip(" ").endswith("}")
        assert len(data) == expect, f"{path}: {len(data) - expect} trailing bytes"
    return out, metadata


# --------------------------------------------------------------------------------------------
# The model: same module tree (so the same state_dict names) as HF's ViT
# --------------------------------------------------------------------------------------------

class PatchEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.projection = nn.Conv2d(c["num_channels"], c["hidden_size"], c["patch_size"], stride=c["patch_size"])


class Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, g = c["hidden_size"], c["image_size"] // c["patch_size"]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + g * g, d))
        self.patch_embeddings = PatchEmbeddings(c)

    def forward(self, pixel_values):
        x = self.patch_embeddings.projection(pixel_values)        # [B, D, gh, gw]
        b, d, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)                          # [B, gh*gw, D], row-major grid
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        pos = interpolate_position_embeddings(self.position_embeddings, gh, gw)
        return x + pos, pos


def interpolate_position_embeddings(pos, gh, gw):
    """pos [1, 1+g*g, D].  Returns it unchanged when the grid matches, else the patch part is
    bicubically resized to (gh, gw) (PyTorch's bicubic: A=-0.75, align_corners=False, taps
    clamped to the border); the CLS position is kept."""
    n = pos.shape[1] - 1
    g = int(round(math.sqrt(n)))
    assert g * g == n, "position grid must be square"
    if gh == g and gw == g:
        return pos
    d = pos.shape[2]
    grid = pos[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
    patch = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d)
    return torch.cat([pos[:, :1], patch], dim=1)


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.query = nn.Linear(d, d, bias=c["qkv_bias"])
        self.key = nn.Linear(d, d, bias=c["qkv_bias"])
        self.value = nn.Linear(d, d, bias=c["qkv_bias"])

    def forward(self, x):
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads

        def split(y):
            return y.view(b, t, h, dh).permute(0, 2, 1, 3)        # [B, H, T, dh]

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
        probs = torch.softmax(scores, dim=-1)                     # [B, H, T, T]
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, t, d)
        return ctx, probs


class Dense(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.dense = nn.Linear(din, dout)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = SelfAttention(c)
        self.output = Dense(c["hidden_size"], c["hidden_size"])


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, i, eps = c["hidden_size"], c["intermediate_size"], c["layer_norm_eps"]
        self.attention = Attention(c)
        self.intermediate = Dense(d, i)
        self.output = Dense(i, d)
        self.layernorm_before = nn.LayerNorm(d, eps=eps)
        self.layernorm_after = nn.LayerNorm(d, eps=eps)

    def forward(self, x):
        ctx, probs = self.attention.attention(self.layernorm_before(x))
        x = x + self.attention.output.dense(ctx)
        y = F.gelu(self.intermediate.dense(self.layernorm_after(x)))   # exact (erf) GELU
        x = x + self.output.dense(y)
        return x, probs


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])


class Pooler(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])


class ViTModel(nn.Module):
    def __init__(self, c, add_pooling_layer):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.layernorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        if add_pooling_layer:
            self.pooler = Pooler(c)   # present in the checkpoint, never used by the engine

    def forward(self, pixel_values):
        out = {}
        x, pos = self.embeddings(pixel_values)
        out["_position_embeddings"] = pos
        out["embeddings"] = x
        for i, layer in enumerate(self.encoder.layer):
            x, probs = layer(x)
            out[f"block.{i}"] = x
            out[f"attention.{i}"] = probs
        out["final_layernorm"] = self.layernorm(x)
        return out


class ViTForImageClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vit = ViTModel(c, add_pooling_layer=False)
        self.classifier = nn.Linear(c["hidden_size"], len(c["id2label"]))
        self.multi_label = c.get("problem_type") == "multi_label_classification"

    def forward(self, pixel_values):
        out = self.vit(pixel_values)
        logits = self.classifier(out["final_layernorm"][:, 0])
        out["logits"] = logits
        out["probabilities"] = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return out


def build_model(config):
    arch = config["architectures"][0]
    if arch == "ViTForImageClassification":
        return ViTForImageClassification(config)
    if arch == "ViTModel":
        return ViTModel(config, add_pooling_layer=True)
    raise ValueError(arch)


# --------------------------------------------------------------------------------------------
# Attention rollout (the definition the C++ engine reproduces)
# --------------------------------------------------------------------------------------------

def rollout(attentions, fusion, discard_ratio, gh, gw, margins=None):
    """attentions: list over layers of [B, H, T, T].  Returns [B, gh, gw]."""
    bsz, _, t, _ = attentions[0].shape
    eye = torch.eye(t, dtype=torch.float32)
    maps = []
    for b in range(bsz):
        r = torch.eye(t, dtype=torch.float32)
        for att in attentions:
            a = att[b]
            fused = a.mean(dim=0) if fusion == "mean" else a.max(dim=0).values
            fused = fused.clone()
            if discard_ratio > 0:
                flat = fused.view(-1)
                k = int(flat.numel() * discard_ratio)
                if margins is not None:
                    s = torch.sort(flat).values
                    margins.append(float(s[k] - s[k - 1]))
                idx = torch.topk(flat, k, largest=False).indices
                idx = idx[idx != 0]
                flat[idx] = 0
            a = (fused + eye) / 2
            a = a / a.sum(dim=-1, keepdim=True)
            r = torch.matmul(a, r)
        m = r[0, 1:].reshape(gh, gw)
        maps.append(m / m.max())
    return torch.stack(maps)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------

def make_config(arch, d, layers, heads, inter, image, patch, channels, qkv_bias, labels,
                problem_type, torch_dtype="float32"):
    if labels is None:   # HF's defaults for a config without labels
        labels = ["LABEL_0", "LABEL_1"]
    return {
        "architectures": [arch],
        "attention_probs_dropout_prob": 0.0,
        "encoder_stride": patch,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": d,
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "image_size": image,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "label2id": {n: i for i, n in enumerate(labels)},
        "layer_norm_eps": 1e-12,
        "model_type": "vit",
        "num_attention_heads": heads,
        "num_channels": channels,
        "num_hidden_layers": layers,
        "patch_size": patch,
        "problem_type": problem_type,
        "qkv_bias": qkv_bias,
        "torch_dtype": torch_dtype,
    }


CLS = "ViTForImageClassification"
CASES = {
    # name: (config, weight seed, input seed, (H, W) of the inputs, stored weight dtype)
    "tiny_multilabel": (
        make_config(CLS, 32, 2, 4, 64, 32, 8, 3, True, CHESTXRAY14[:6], "multi_label_classification"),
        101, 201, (32, 32), torch.float32),
    "odd_grid_nobias": (
        make_config(CLS, 24, 2, 3, 48, 28, 4, 1, False, ["Normal", "Pneumonia", "Tuberculosis"],
                    "single_label_classification"),
        102, 202, (28, 28), torch.float32),
    "interpolated": (
        make_config(CLS, 32, 2, 4, 64, 32, 8, 3, True, CHESTXRAY14[:4], "multi_label_classification"),
        103, 203, (48, 48), torch.float32),
    "interpolated_nonsquare": (
        make_config(CLS, 32, 2, 4, 64, 32, 8, 3, True, CHESTXRAY14[:4], "multi_label_classification"),
        103, 204, (40, 32), torch.float32),
    "bf16_weights": (
        make_config(CLS, 32, 2, 4, 64, 32, 8, 3, True, CHESTXRAY14[:6], "multi_label_classification",
                    "bfloat16"),
        101, 201, (32, 32), torch.bfloat16),
    "f16_weights": (
        make_config(CLS, 32, 2, 4, 64, 32, 8, 3, True, CHESTXRAY14[:6], "multi_label_classification",
                    "float16"),
        101, 201, (32, 32), torch.float16),
    "backbone_only": (
        make_config("ViTModel", 32, 2, 4, 64, 32, 8, 3, True, None, None),
        105, 205, (32, 32), torch.float32),
}

BENCH = {
    "b16": dict(d=768, layers=12, heads=12, inter=3072),
    "ti16": dict(d=192, layers=12, heads=3, inter=768),
}


def random_weights(model, seed):
    """std 0.02 for matrices, conv, cls and position embeddings; 0.02*randn biases; LayerNorm
    weight 1+0.1*randn, bias 0.05*randn.  Drawn in state_dict order from one generator.

    Exception: query and key weight matrices get std hidden_size**-0.5, which makes the attention
    scores roughly unit-variance.  With std 0.02 they would be ~0.01 and every softmax row would be
    uniform to within ~1%: the softmax/scale would hardly be tested, and the k-th smallest entry of
    the discard step would sit ~1e-7 from its neighbour, so a correct float32 engine could discard
    a different set.  Peaked attention (like a trained model's) avoids both."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in model.state_dict().items():
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if "layernorm" in name:
            r = 1.0 + 0.1 * r if name.endswith(".weight") else 0.05 * r
        elif name.endswith(("attention.query.weight", "attention.key.weight")):
            r = r / math.sqrt(p.shape[1])
        else:
            r = 0.02 * r
        sd[name] = r
    return sd


def reference_outputs(model, config, pixel_values, margins=None):
    torch.set_num_threads(1)
    with torch.no_grad():
        out = model(pixel_values)
    gh = pixel_values.shape[2] // config["patch_size"]
    gw = pixel_values.shape[3] // config["patch_size"]
    atts = [out[f"attention.{i}"] for i in range(config["num_hidden_layers"])]
    with torch.no_grad():
        for name, (fusion, ratio) in ROLLOUTS.items():
            out[name] = rollout(atts, fusion, ratio, gh, gw, margins if ratio > 0 else None)
    g = config["image_size"] // config["patch_size"]   # grid of the stored position embeddings
    pos = out.pop("_position_embeddings")
    if (gh, gw) != (g, g):
        out["position_embeddings.interpolated"] = pos
    out["pixel_values"] = pixel_values
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def write_case(outdir, config, weight_seed, input_seed, hw, store_dtype, batch, check_margin=True):
    os.makedirs(outdir, exist_ok=True)
    model = build_model(config).eval()
    sd32 = random_weights(model, weight_seed)
    stored = {k: v.to(store_dtype) for k, v in sd32.items()}     # round-to-nearest-even
    model.load_state_dict({k: v.to(torch.float32) for k, v in stored.items()}, strict=True)

    attempt = 0
    while True:
        g = torch.Generator().manual_seed(input_seed + 1000 * attempt)
        pixel_values = torch.randn(batch, config["num_channels"], hw[0], hw[1], generator=g)
        margins = []
        ref = reference_outputs(model, config, pixel_values, margins)
        if not check_margin or min(margins) >= DISCARD_MARGIN:
            break
        attempt += 1
        assert attempt < 50, "could not find inputs with a clear discard threshold"

    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(outdir, "model.safetensors"), stored, {"format": "pt"})
    meta = {
        "format": "pt",
        "generator": "tests/reference/make_vit_reference.py",
        "torch": torch.__version__,
        "weight_seed": weight_seed,
        "input_seed": input_seed + 1000 * attempt,
        "input_height": hw[0],
        "input_width": hw[1],
        "grid_h": hw[0] // config["patch_size"],
        "grid_w": hw[1] // config["patch_size"],
        "rollout.mean": "fusion=mean discard_ratio=0",
        "rollout.max.discard0.5": "fusion=max discard_ratio=0.5",
        "min_discard_margin": f"{min(margins):.3e}" if margins else "n/a",
    }
    write_safetensors(os.path.join(outdir, "reference.safetensors"), ref, meta)
    return ref, min(margins) if margins else None


# --------------------------------------------------------------------------------------------
# Verification: re-read the files alone; bitwise re-run + independent float64 NumPy forward
# --------------------------------------------------------------------------------------------

def _erf(x):
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def _cubic_weights(t, a=-0.75):
    def near(x):   # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):    # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _bicubic_np(img, oh, ow):
    """img [D, ih, iw] -> [D, oh, ow]; PyTorch's align_corners=False bicubic, spelled out."""
    d, ih, iw = img.shape

    def taps(o, i_size, o_size):
        scale = i_size / o_size
        src = (o + 0.5) * scale - 0.5          # not clamped for cubic
        i0 = math.floor(src)
        w = _cubic_weights(src - i0)
        idx = [min(max(i0 - 1 + j, 0), i_size - 1) for j in range(4)]
        return idx, w

    out = np.zeros((d, oh, ow))
    for y in range(oh):
        iy, wy = taps(y, ih, oh)
        for x in range(ow):
            ix, wx = taps(x, iw, ow)
            acc = np.zeros(d)
            for a in range(4):
                for b in range(4):
                    acc += wy[a] * wx[b] * img[:, iy[a], ix[b]]
            out[:, y, x] = acc
    return out


def numpy_forward(config, w, pixels):
    """Independent float64 implementation from the raw tensors (no torch.nn)."""
    cls_model = config["architectures"][0] == "ViTForImageClassification"
    pre = "vit." if cls_model else ""
    w = {k: v.to(torch.float64).numpy() for k, v in w.items()}
    x_in = pixels.to(torch.float64).numpy()
    eps = config["layer_norm_eps"]
    p, d, h = config["patch_size"], config["hidden_size"], config["num_attention_heads"]
    bsz, c, hh, ww = x_in.shape
    gh, gw = hh // p, ww // p
    dh = d // h

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y

    out = {}
    # patches in row-major grid order, each flattened as (c, py, px) like the conv weight
    patches = x_in.reshape(bsz, c, gh, p, gw, p).transpose(0, 2, 4, 1, 3, 5).reshape(bsz, gh * gw, c * p * p)
    wproj = w[pre + "embeddings.patch_embeddings.projection.weight"].reshape(d, c * p * p)
    tok = patches @ wproj.T + w[pre + "embeddings.patch_embeddings.projection.bias"]
    pos = w[pre + "embeddings.position_embeddings"][0]
    g = int(round(math.sqrt(pos.shape[0] - 1)))
    if (gh, gw) != (g, g):
        grid = pos[1:].reshape(g, g, d).transpose(2, 0, 1)
        grid = _bicubic_np(grid, gh, gw).transpose(1, 2, 0).reshape(gh * gw, d)
        pos = np.concatenate([pos[:1], grid], 0)
        out["position_embeddings.interpolated"] = pos[None]
    cls = np.broadcast_to(w[pre + "embeddings.cls_token"], (bsz, 1, d))
    x = np.concatenate([cls, tok], 1) + pos[None]
    out["embeddings"] = x
    t = x.shape[1]
    for i in range(config["num_hidden_layers"]):
        L = f"{pre}encoder.layer.{i}."
        y = ln(x, L + "layernorm_before")
        q = lin(y, L + "attention.attention.query")
        k = lin(y, L + "attention.attention.key")
        v = lin(y, L + "attention.attention.value")
        ctx = np.zeros((bsz, t, d))
        probs = np.zeros((bsz, h, t, t))
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            s = q[:, :, sl] @ k[:, :, sl].transpose(0, 2, 1) / math.sqrt(dh)
            s = np.exp(s - s.max(-1, keepdims=True))
            s = s / s.sum(-1, keepdims=True)
            probs[:, hd] = s
            ctx[:, :, sl] = s @ v[:, :, sl]
        x = x + lin(ctx, L + "attention.output.dense")
        y = lin(ln(x, L + "layernorm_after"), L + "intermediate.dense")
        y = 0.5 * y * (1.0 + _erf(y / math.sqrt(2.0)))
        x = x + lin(y, L + "output.dense")
        out[f"block.{i}"] = x
        out[f"attention.{i}"] = probs
    out["final_layernorm"] = ln(x, pre + "layernorm")
    if cls_model:
        logits = out["final_layernorm"][:, 0] @ w["classifier.weight"].T + w["classifier.bias"]
        out["logits"] = logits
        if config.get("problem_type") == "multi_label_classification":
            out["probabilities"] = 1 / (1 + np.exp(-logits))
        else:
            e = np.exp(logits - logits.max(-1, keepdims=True))
            out["probabilities"] = e / e.sum(-1, keepdims=True)
    for name, (fusion, ratio) in ROLLOUTS.items():
        maps = []
        for b in range(bsz):
            r = np.eye(t)
            for i in range(config["num_hidden_layers"]):
                a = out[f"attention.{i}"][b]
                f = a.mean(0) if fusion == "mean" else a.max(0)
                f = f.copy().reshape(-1)
                if ratio > 0:
                    kk = int(f.size * ratio)
                    order = np.argsort(f, kind="stable")[:kk]
                    f[order[order != 0]] = 0
                f = f.reshape(t, t)
                a = (f + np.eye(t)) / 2
                a = a / a.sum(-1, keepdims=True)
                r = a @ r
            m = r[0, 1:].reshape(gh, gw)
            maps.append(m / m.max())
        out[name] = np.stack(maps)
    return out


def verify_dir(case_dir, numpy_check=True):
    with open(os.path.join(case_dir, "config.json")) as f:
        config = json.load(f)
    weights, _ = read_safetensors(os.path.join(case_dir, "model.safetensors"))
    ref, meta = read_safetensors(os.path.join(case_dir, "reference.safetensors"))
    want_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config["torch_dtype"]]
    assert all(v.dtype == want_dtype for v in weights.values()), "weight dtype differs from torch_dtype"
    assert all(v.dtype == torch.float32 for v in ref.values()), "reference tensors must be F32"
    w32 = {k: v.to(torch.float32) for k, v in weights.items()}
    model = build_model(config).eval()
    model.load_state_dict(w32, strict=True)   # names and shapes match the HF layout exactly
    again = reference_outputs(model, config, ref["pixel_values"])
    assert set(again) == set(ref), f"tensor sets differ: {set(again) ^ set(ref)}"
    for k in sorted(ref):
        assert again[k].shape == ref[k].shape, k
        assert torch.equal(again[k], ref[k]), f"{case_dir}: {k} differs on re-run"
    worst = 0.0
    if numpy_check:
        npo = numpy_forward(config, weights_to_f32(weights), ref["pixel_values"])
        for k, v in npo.items():
            # float32 vs float64: 1e-5, relative to the tensor's largest magnitude when above 1
            # (the ViT-B/16 residual stream reaches |x| ~ 6.5 and drifts ~1e-5 from float64).
            r = ref[k].double().numpy()
            diff = float(np.abs(r - v).max()) / max(1.0, float(np.abs(r).max()))
            worst = max(worst, diff)
            assert diff < 1e-5, f"{case_dir}: {k}: float64 NumPy differs by {diff:.3e} (scaled)"
        assert set(npo) | {"pixel_values"} == set(ref), set(npo) ^ set(ref)
    return worst, meta


def weights_to_f32(weights):
    return {k: v.to(torch.float32) for k, v in weights.items()}


# --------------------------------------------------------------------------------------------
# torchvision cross-check
# --------------------------------------------------------------------------------------------

def check_torchvision():
    import torchvision
    torch.set_num_threads(1)
    tv = torchvision.models.vit_b_16(weights=None, num_classes=14).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():   # torchvision zero-inits the head: randomise everything like ours
        for name, p in tv.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if ".ln" in name or name.startswith("encoder.ln"):
                r = 1.0 + 0.1 * r if name.endswith("weight") else 0.05 * r
            else:
                r = 0.02 * r
            p.copy_(r)
    config = make_config(CLS, 768, 12, 12, 3072, 224, 16, 3, True, CHESTXRAY14, "multi_label_classification")
    config["layer_norm_eps"] = 1e-6    # torchvision's LayerNorm eps
    ours = build_model(config).eval()
    tsd = tv.state_dict()
    sd = {
        "vit.embeddings.cls_token": tsd["class_token"],
        "vit.embeddings.position_embeddings": tsd["encoder.pos_embedding"],
        "vit.embeddings.patch_embeddings.projection.weight": tsd["conv_proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": tsd["conv_proj.bias"],
        "vit.layernorm.weight": tsd["encoder.ln.weight"],
        "vit.layernorm.bias": tsd["encoder.ln.bias"],
        "classifier.weight": tsd["heads.head.weight"],
        "classifier.bias": tsd["heads.head.bias"],
    }
    for i in range(12):
        s, o = f"encoder.layers.encoder_layer_{i}.", f"vit.encoder.layer.{i}."
        qw, kw, vw = tsd[s + "self_attention.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = tsd[s + "self_attention.in_proj_bias"].chunk(3, dim=0)
        sd.update({
            o + "layernorm_before.weight": tsd[s + "ln_1.weight"],
            o + "layernorm_before.bias": tsd[s + "ln_1.bias"],
            o + "attention.attention.query.weight": qw, o + "attention.attention.query.bias": qb,
            o + "attention.attention.key.weight": kw, o + "attention.attention.key.bias": kb,
            o + "attention.attention.value.weight": vw, o + "attention.attention.value.bias": vb,
            o + "attention.output.dense.weight": tsd[s + "self_attention.out_proj.weight"],
            o + "attention.output.dense.bias": tsd[s + "self_attention.out_proj.bias"],
            o + "layernorm_after.weight": tsd[s + "ln_2.weight"],
            o + "layernorm_after.bias": tsd[s + "ln_2.bias"],
            o + "intermediate.dense.weight": tsd[s + "mlp.0.weight"],
            o + "intermediate.dense.bias": tsd[s + "mlp.0.bias"],
            o + "output.dense.weight": tsd[s + "mlp.3.weight"],
            o + "output.dense.bias": tsd[s + "mlp.3.bias"],
        })
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        a = tv(x)
        b = ours(x)["logits"]
    diff = float((a - b).abs().max())
    # Control: the comparison must be able to fail.  Swap query and key of the last layer
    # (a transposed attention map) and the logits must move far more than the tolerance.
    L = "vit.encoder.layer.11.attention.attention."
    sd[L + "query.weight"], sd[L + "key.weight"] = sd[L + "key.weight"], sd[L + "query.weight"]
    sd[L + "query.bias"], sd[L + "key.bias"] = sd[L + "key.bias"], sd[L + "query.bias"]
    ours.load_state_dict(sd, strict=True)
    with torch.no_grad():
        control = float((a - ours(x)["logits"]).abs().max())
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: vit_b_16 (random weights, "
          f"14 classes, eps 1e-6), batch 2 x 3x224x224: max |logit diff| = {diff:.3e} "
          f"(logit max |value| = {float(a.abs().max()):.3e}; control with q/k swapped in layer 11: "
          f"{control:.3e})")
    assert diff < 1e-4, diff
    assert control > 1e-3, control
    return diff


# --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write all golden cases into OUT/<case>/")
    ap.add_argument("--verify", metavar="DIR", help="re-read DIR/<case>/ (or DIR itself) and check it")
    ap.add_argument("--bench", metavar="OUTDIR", help="write a random-weight ViT-B/16 or Ti/16 folder")
    ap.add_argument("--variant", choices=sorted(BENCH), default="b16")
    ap.add_argument("--batch", type=int, default=None, help="batch of the reference (2 for goldens, 1 for --bench)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the float64 NumPy comparison in --verify")
    ap.add_argument("--check-torchvision", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    did = False
    if args.out:
        for name, (config, wseed, iseed, hw, dtype) in CASES.items():
            d = os.path.join(args.out, name)
            _, margin = write_case(d, config, wseed, iseed, hw, dtype, args.batch or 2)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            print(f"{name:24s} {size / 1024:7.1f} KiB  min discard margin {margin:.2e}")
        did = True
    if args.bench:
        v = BENCH[args.variant]
        config = make_config(CLS, v["d"], v["layers"], v["heads"], v["inter"], 224, 16, 3, True,
                             CHESTXRAY14, "multi_label_classification")
        _, margin = write_case(args.bench, config, 301, 401, (224, 224), torch.float32, args.batch or 1,
                               check_margin=False)
        print(f"wrote {args.variant} to {args.bench} (min discard margin {margin:.2e})")
        did = True
    if args.verify:
        root = args.verify
        dirs = [root] if os.path.exists(os.path.join(root, "config.json")) else \
            sorted(os.path.join(root, d) for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "config.json")))
        assert dirs, f"no case folders in {root}"
        for d in dirs:
            worst, meta = verify_dir(d, numpy_check=not args.no_numpy)
            extra = "" if args.no_numpy else f", float64 NumPy max diff {worst:.2e} (scaled by max(1, max|x|))"
            print(f"verified {d}: bitwise re-run OK{extra}")
        did = True
    if args.check_torchvision:
        check_torchvision()
        did = True
    if not did:
        ap.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
