#!/usr/bin/python3
"""PyTorch goldens for Hilum's masked autoencoder (training/src/mae.cpp, training/mae.hpp).

The encoder is make_vit_reference.py's ViT (imported from beside this file: Hugging Face names);
masking, decoder and loss follow He et al.'s MAE code (models_mae.py): random_masking with the
kept indices given, CLS token plus its position embedding, encoder blocks and final LayerNorm,
decoder_embed, mask tokens put back in patch order, fixed 2-D sin-cos decoder position embeddings
(get_2d_sincos_pos_embed, here for a gh x gw grid: the first half encodes the column), decoder
blocks (the encoder's Layer), decoder_norm, decoder_pred, patchify in (row, column, channel)
order, norm_pix_loss with the unbiased variance and 1e-6, MSE over the masked patches only.
For each case it writes, into OUT/<case>/:

  config.json, model.safetensors   the encoder as a ViTModel backbone (HF names, F32)
  decoder.safetensors              the decoder under ViTMAE names (decoder.decoder_embed.weight,
                                   decoder.mask_token, decoder.decoder_layers.N.*, ...), with the
                                   decoder's shape in the metadata, as training::save_decoder
  mae.safetensors                  pixel_values [B,C,H,W], keep [B,K] (float), loss [1],
                                   prediction [B,N,P*P*C], grad.<encoder name> and
                                   grad.<decoder name> for every parameter

  /usr/bin/python3 tests/reference/make_mae_reference.py --out tests/reference/golden_mae

Debian's python3-torch, CPU, one thread, float32.  Regeneration is byte-identical.
"""

import argparse
import importlib.util
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True


def _reference_module():
    spec = importlib.util.spec_from_file_location("make_vit_reference", os.path.join(HERE, "make_vit_reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _reference_module()


def sincos_1d(dim, pos):
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, gh, gw):
    """MAE's get_2d_sincos_pos_embed(dim, grid, cls_token=True) for a gh x gw grid."""
    grid = np.meshgrid(np.arange(gw, dtype=np.float32), np.arange(gh, dtype=np.float32))   # w goes first
    grid = np.stack(grid, axis=0).reshape(2, 1, gh, gw)
    emb = np.concatenate([sincos_1d(dim // 2, grid[0]), sincos_1d(dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)


class Decoder(nn.Module):
    def __init__(self, c, dc):
        super().__init__()
        dd = dc["hidden_size"]
        self.decoder_embed = nn.Linear(c["hidden_size"], dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_layers = nn.ModuleList([ref.Layer(dc) for _ in range(dc["num_hidden_layers"])])
        self.decoder_norm = nn.LayerNorm(dd, eps=dc["layer_norm_eps"])
        self.decoder_pred = nn.Linear(dd, c["patch_size"] ** 2 * c["num_channels"])


class MAE(nn.Module):
    def __init__(self, c, dc):
        super().__init__()
        self.c = c
        self.dc = dc
        self.vit = ref.ViTModel(c, add_pooling_layer=False)
        self.decoder = Decoder(c, dc)

    def patchify(self, imgs):
        p = self.c["patch_size"]
        n, ch, h, w = imgs.shape
        x = imgs.reshape(n, ch, h // p, p, w // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, (h // p) * (w // p), p * p * ch)

    def forward(self, imgs, keep, norm_pix):
        e = self.vit.embeddings
        x = e.patch_embeddings.projection(imgs)
        b, d, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos = ref.interpolate_position_embeddings(e.position_embeddings, gh, gw)
        x = x + pos[:, 1:, :]
        x = torch.gather(x, 1, keep.unsqueeze(-1).repeat(1, 1, d))       # kept patches, keep's order
        cls = e.cls_token + pos[:, :1, :]
        x = torch.cat([cls.expand(b, -1, -1), x], dim=1)
        for layer in self.vit.encoder.layer:
            x, _ = layer(x)
        x = self.vit.layernorm(x)
        dec = self.decoder
        x = dec.decoder_embed(x)
        n = gh * gw
        k = keep.shape[1]
        # Unshuffle: ids_restore of MAE's random_masking for ids_shuffle = [keep, the rest].
        rest = [[i for i in range(n) if i not in set(row.tolist())] for row in keep]
        ids_shuffle = torch.cat([keep, torch.tensor(rest, dtype=torch.long)], dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask_tokens = dec.mask_token.repeat(b, n - k, 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        dpos = torch.from_numpy(sincos_2d(self.dc["hidden_size"], gh, gw)).float().unsqueeze(0)
        x = x + dpos
        for layer in dec.decoder_layers:
            x, _ = layer(x)
        x = dec.decoder_norm(x)
        pred = dec.decoder_pred(x)[:, 1:, :]
        target = self.patchify(imgs)
        if norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        mask = torch.ones(b, n)
        mask[:, :k] = 0
        mask = torch.gather(mask, 1, ids_restore)
        loss = ((pred - target) ** 2).mean(dim=-1)
        loss = (loss * mask).sum() / mask.sum()
        return loss, pred


def random_weights(model, seed):
    """make_vit_reference's recipe (0.02 randn, q/k 1/sqrt(in), LayerNorm near 1), larger
    embeddings so that every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in model.state_dict().items():
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if "norm" in name:
            r = 1.0 + 0.1 * r if name.endswith(".weight") else 0.05 * r
        elif name.endswith(("attention.query.weight", "attention.key.weight")):
            r = r / math.sqrt(p.shape[1])
        elif name.endswith(("cls_token", "position_embeddings", "mask_token")):
            r = 0.5 * r
        elif name.endswith(".weight"):
            r = r / math.sqrt(p.shape[1] if p.dim() == 2 else p[0].numel())
        else:
            r = 0.1 * r
        sd[name] = r
    return sd


def decoder_config(c, dd, layers, heads, inter):
    dc = dict(c)
    dc.update(hidden_size=dd, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=inter, qkv_bias=True)
    return dc


# name: (encoder config, (decoder width, blocks, heads, MLP), weight seed, input seed, (H, W), batch, kept, norm_pix)
CASES = {
    # 3 channels (the patch order row, column, channel), 4x4 grid, 4 of 16 patches kept
    "tiny_rgb": (ref.make_config("ViTModel", 32, 2, 2, 64, 32, 8, 3, True, None, None), (16, 1, 2, 32), 701, 801, (32, 32), 2, 4, True),
    # 1 channel, positions stored for 4x4 used on 5x3 (encoder: bicubic; decoder: sin-cos of 5x3),
    # 2 decoder blocks, plain pixels as the target
    "grey_interpolated_plain": (ref.make_config("ViTModel", 32, 2, 2, 64, 32, 8, 1, True, None, None), (16, 2, 2, 32), 702, 802, (40, 24), 3, 3,
                                False),
}


def write_case(outdir, c, dshape, wseed, iseed, hw, batch, kept, norm_pix):
    dc = decoder_config(c, *dshape)
    model = MAE(c, dc)
    model.load_state_dict(random_weights(model, wseed), strict=True)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    ref.write_safetensors(os.path.join(outdir, "model.safetensors"),
                          {k[len("vit."):]: v for k, v in sd.items() if k.startswith("vit.")}, {"format": "pt"})
    dmeta = {"format": "pt", "decoder_hidden_size": dshape[0], "decoder_num_hidden_layers": dshape[1],
             "decoder_num_attention_heads": dshape[2], "decoder_intermediate_size": dshape[3],
             "norm_pix_loss": "true" if norm_pix else "false", "mask_ratio": 1.0 - kept / ((hw[0] // 8) * (hw[1] // 8)),
             "encoder_hidden_size": c["hidden_size"], "decoder_position_embeddings": "fixed 2-D sin-cos"}
    ref.write_safetensors(os.path.join(outdir, "decoder.safetensors"),
                          {k: v for k, v in sd.items() if k.startswith("decoder.")}, dmeta)
    g = torch.Generator().manual_seed(iseed)
    pixels = torch.randn(batch, c["num_channels"], hw[0], hw[1], generator=g)
    n = (hw[0] // c["patch_size"]) * (hw[1] // c["patch_size"])
    keep = torch.stack([torch.randperm(n, generator=g)[:kept] for _ in range(batch)])
    loss, pred = model(pixels, keep, norm_pix)
    loss.backward()
    out = {"pixel_values": pixels, "keep": keep.float(), "loss": loss.detach().reshape(1), "prediction": pred.detach().contiguous()}
    for name, p in model.named_parameters():
        key = name[len("vit."):] if name.startswith("vit.") else name
        out["grad." + key] = p.grad.detach().contiguous()
    meta = {"format": "pt", "generator": "tests/reference/make_mae_reference.py", "torch": torch.__version__,
            "weight_seed": wseed, "input_seed": iseed, "norm_pix_loss": "true" if norm_pix else "false"}
    ref.write_safetensors(os.path.join(outdir, "mae.safetensors"), out, meta)
    return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="write every case into OUT/<case>/")
    args = ap.parse_args()
    torch.set_num_threads(1)
    total = 0
    for name, case in CASES.items():
        d = os.path.join(args.out, name)
        loss = write_case(d, *case)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        total += size
        print(f"{name:24s} {size / 1024:7.1f} KiB  loss {loss:.6f}")
    print(f"total {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
