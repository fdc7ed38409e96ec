#!/usr/bin/python3
"""Export a Hugging Face ViT folder (config.json + model.safetensors) to ONNX.

Usage (Debian's torch; from anywhere):

  /usr/bin/python3 bench/compare/export_onnx.py MODEL_DIR OUT.onnx [--opset 17]

The module is the plain-PyTorch ViTForImageClassification of
tests/reference/make_vit_reference.py (imported from its path, not copied); its weights are read
with that file's safetensors reader.  The graph has one input `pixel_values` [batch, C, H, W]
(batch is a dynamic axis, H and W fixed to the config's image_size) and one output `logits`
[batch, num_labels].  When python3-onnx is installed the file is checked with onnx.checker.
"""

import argparse
import importlib.util
import json
import os
import sys
import warnings

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # importing the reference script must leave no __pycache__ in the repo
REFERENCE_SCRIPT = os.path.join(HERE, "..", "..", "tests", "reference", "make_vit_reference.py")


def load_reference_module():
    spec = importlib.util.spec_from_file_location("make_vit_reference", os.path.abspath(REFERENCE_SCRIPT))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_model(model_dir):
    """Returns (reference module, config, model in eval mode with the folder's weights as F32)."""
    ref = load_reference_module()
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    weights, _ = ref.read_safetensors(os.path.join(model_dir, "model.safetensors"))
    model = ref.build_model(config).eval()
    model.load_state_dict({k: v.to(torch.float32) for k, v in weights.items()}, strict=True)
    return ref, config, model


class LogitsOnly(nn.Module):
    """The reference module returns a dict of every intermediate; ONNX gets the logits alone
    (the unused outputs are removed by the exporter's dead-code elimination)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values)["logits"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset (torch 1.13 supports 7..17; default 17)")
    args = ap.parse_args()

    _, config, model = load_model(args.model_dir)
    if config["architectures"][0] != "ViTForImageClassification":
        sys.exit("export_onnx.py: only ViTForImageClassification folders have logits")
    c, s = config["num_channels"], config["image_size"]
    dummy = torch.randn(1, c, s, s, generator=torch.Generator().manual_seed(0))
    wrapper = LogitsOnly(model).eval()
    # The tracer warns that the patch grid (H/patch, W/patch) and sqrt(head_dim) become constants:
    # intended, the graph is for the config's image_size only (batch stays dynamic).
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (dummy,), args.out,
            input_names=["pixel_values"], output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=args.opset, do_constant_folding=True,
        )
    size_mb = os.path.getsize(args.out) / 1e6
    try:
        import onnx
    except ImportError:
        print(f"exported {args.out} ({size_mb:.1f} MB, opset {args.opset}); python3-onnx not installed: not checked")
        return 0
    onnx.checker.check_model(args.out)   # by path: works for models above protobuf's 2 GB too
    m = onnx.load(args.out, load_external_data=False)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"exported {args.out} ({size_mb:.1f} MB, opset {args.opset}, {len(m.graph.node)} nodes); "
          f"onnx {onnx.__version__} checker OK; ops: {' '.join(ops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
