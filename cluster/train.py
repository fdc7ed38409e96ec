#!/usr/bin/python3
"""Fine-tunes Hilum's Hugging Face ViT on a training set exported by
`hilum-cli export --format dataset`, with PyTorch's distributed engine.

    torchrun --nproc_per_node N cluster/train.py --export DIR --out DIR [--epochs N] [--lr X] [--batch N]

(with Debian's python3-torch: `/usr/bin/python3 -m torch.distributed.run` stands in for torchrun).
One process per GPU (NCCL) or per CPU share (gloo); without torchrun it runs as one process.
See cluster/README.md for what is read, what is written, and the Slurm / Kubernetes lines.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

# The plain-PyTorch ViT (Hugging Face's module tree and state_dict names) and the safetensors
# reader/writer of the engine's reference: one definition of the architecture for both.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tests", "reference"))
import make_vit_reference as ref  # noqa: E402

TRAINING_SET_FORMAT = "hilum-training-set"
REPORT_FORMAT = "hilum-cluster-training-report"


class Refused(Exception):
    """An export this program will not train on (the reason is printed, the exit status is 2)."""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# Distributed setup
# ------------------------------------------------------------------------------------------------

def setup():
    """(rank, world_size, device, backend). torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*."""
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        # Processes on one machine share its cores.
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))
    if distributed:
        dist.init_process_group(backend=backend)
        return dist.get_rank(), dist.get_world_size(), device, backend
    return 0, 1, device, "none"


def bf16_available(device):
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def all_gather(obj, world_size):
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------------------------
# The export
# ------------------------------------------------------------------------------------------------

def verify_export(export, out, rank, world_size):
    """Reads manifest.json and checks every file it names (each process a share of them); rank 0
    also checks that the output folder is free. Every process raises the same Refused."""
    manifest_path = os.path.join(export, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise Refused(f"{export}: no manifest.json (not a `hilum-cli export --format dataset` folder)")
    with open(manifest_path, "rb") as f:
        raw = f.read()
    manifest = json.loads(raw.decode("utf-8"))
    if manifest.get("format") != TRAINING_SET_FORMAT:
        raise Refused(f"{manifest_path}: format is {manifest.get('format')!r}, not {TRAINING_SET_FORMAT!r}")
    files = manifest.get("files", [])
    problems = []
    if rank == 0 and os.path.exists(out) and not (os.path.isdir(out) and not os.listdir(out)):
        problems.append(f"{out}: the output folder already exists and is not empty")
    for entry in files[rank::world_size]:
        path = os.path.join(export, entry["path"])
        if os.path.isabs(entry["path"]) or ".." in entry["path"].split("/"):
            problems.append(f"{entry['path']}: not a path inside the export")
        elif not os.path.isfile(path):
            problems.append(f"{entry['path']}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: altered (its SHA-256 differs from the manifest's)")
    problems = sorted(p for share in all_gather(problems, world_size) for p in share)
    if problems:
        raise Refused(f"{export}: " + "; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
    return manifest, hashlib.sha256(raw).hexdigest()


def read_labels(export, manifest):
    """[(image, patient, split, targets[float], mask[float])] from labels.csv: 1 present, 0 absent,
    empty = not assessed (mask 0)."""
    import csv
    outputs = manifest["outputs"]
    rows = []
    with open(os.path.join(export, manifest.get("labels", "labels.csv")), newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[3:] != outputs:
            raise Refused("labels.csv: its columns are not the manifest's outputs")
        for cells in reader:
            image, patient, split = cells[0], cells[1], cells[2]
            target = [1.0 if c == "1" else 0.0 for c in cells[3:]]
            mask = [0.0 if c == "" else 1.0 for c in cells[3:]]
            rows.append((image, patient, split, target, mask))
    return rows


# ------------------------------------------------------------------------------------------------
# Preprocessing: exactly the engine's (inference/src/preprocess.cpp)
# ------------------------------------------------------------------------------------------------

def triangle_taps(n_in, n_out, start=0.0, length=None):
    """[n_out, n_in] weights of the engine's antialiased triangle filter (make_taps) for the
    samples start .. start + length of the input (all of it by default)."""
    length = n_in if length is None else length
    scale = length / n_out
    support = max(1.0, scale)
    max_taps = int(math.ceil(support)) * 2 + 1
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        center = start + (o + 0.5) * scale
        lo = max(0, int(math.floor(center - support)))
        hi = min(n_in, int(math.ceil(center + support)))
        taps = [max(0.0, 1.0 - abs((i + 0.5 - center) / support)) for i in range(lo, hi)]
        total = sum(taps)
        for k, t in enumerate(taps[:max_taps]):
            w[o, lo + k] = t / total if total > 0 else 0.0
    return torch.from_numpy(w.astype(np.float32))


def sides(value, default):
    """A preprocessor size: one side for both, or {"height": H, "width": W}."""
    if isinstance(value, (int, float)):
        return int(value), int(value)
    value = value or {}
    return int(value.get("height", default)), int(value.get("width", default))


def window(n, resized, kept):
    """The engine's model_window along one side: Hugging Face's resize to `resized`, then the
    centre `kept` ((resized - kept) // 2 dropped first), in the image's own samples."""
    if not resized or resized < kept:
        return 0.0, float(n)
    per = n / resized
    return ((resized - kept) // 2) * per, kept * per


class Preprocessor:
    def __init__(self, config, preprocessor):
        self.height, self.width = sides(preprocessor.get("size"), config["image_size"])
        self.resize_height = self.resize_width = 0
        if preprocessor.get("do_center_crop"):
            # Resize to `size`, keep the centre `crop_size`: the model sees a centre crop.
            self.resize_height, self.resize_width = self.height, self.width
            self.height, self.width = sides(preprocessor.get("crop_size"), config["image_size"])
        self.channels = int(config.get("num_channels", 3))
        mean = preprocessor.get("image_mean", [0.5, 0.5, 0.5])
        std = preprocessor.get("image_std", [0.5, 0.5, 0.5])
        mean = mean if isinstance(mean, list) else [mean] * 3
        std = std if isinstance(std, list) else [std] * 3
        self.mean = [float(mean[min(c, len(mean) - 1)]) for c in range(self.channels)]
        self.std = [float(std[min(c, len(std) - 1)]) for c in range(self.channels)]
        self._taps = {}

    def __call__(self, png_path):
        with Image.open(png_path) as im:
            grey = np.asarray(im, dtype=np.float64)
        if grey.ndim != 2:
            raise Refused(f"{png_path}: not a grey image")
        grey = torch.from_numpy((grey / 65535.0).astype(np.float32))
        h, w = grey.shape
        key = (h, w)
        if key not in self._taps:
            self._taps[key] = (triangle_taps(h, self.height, *window(h, self.resize_height, self.height)),
                               triangle_taps(w, self.width, *window(w, self.resize_width, self.width)))
        wy, wx = self._taps[key]
        resized = wy @ (grey @ wx.T)           # horizontal pass, then vertical, as the engine does
        resized = resized.clamp(0.0, 1.0)
        planes = [(resized - self.mean[c]) / self.std[c] for c in range(self.channels)]
        return torch.stack(planes)             # [C, H, W]


class ImageSet(torch.utils.data.Dataset):
    def __init__(self, export, rows, preprocess):
        self.export, self.rows, self.preprocess = export, rows, preprocess

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        image, _, _, target, mask = self.rows[i]
        x = self.preprocess(os.path.join(self.export, "images", image + ".png"))
        return x, torch.tensor(target), torch.tensor(mask), i


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------

def load_start_model(folder, outputs, train_rows):
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    preprocessor = {}
    if os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        with open(os.path.join(folder, "preprocessor_config.json"), encoding="utf-8") as f:
            preprocessor = json.load(f)
    if config.get("hidden_act", "gelu") != "gelu":
        raise Refused(f"{folder}: hidden_act {config.get('hidden_act')!r}: this program trains the exact (erf) GELU only")
    config.setdefault("qkv_bias", True)
    config.setdefault("layer_norm_eps", 1e-12)
    config.setdefault("num_channels", 3)
    state, _ = ref.read_safetensors(os.path.join(folder, "model.safetensors"), strict=False)
    base_labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    # The head follows the export's outputs: a base output keeps its row, a new one starts at
    # zero weights and the log-odds of its base rate in training (as the engine's fine-tune does).
    config["id2label"] = {str(i): name for i, name in enumerate(outputs)}
    config["label2id"] = {name: i for i, name in enumerate(outputs)}
    config["problem_type"] = "multi_label_classification"
    config["architectures"] = ["ViTForImageClassification"]
    config["torch_dtype"] = "float32"
    model = ref.build_model(config)
    d = config["hidden_size"]
    weight = torch.zeros(len(outputs), d)
    bias = torch.zeros(len(outputs))
    for j, name in enumerate(outputs):
        if name in base_labels and "classifier.weight" in state:
            k = base_labels.index(name)
            weight[j] = state["classifier.weight"][k].float()
            bias[j] = state["classifier.bias"][k].float()
        else:
            seen = [r[3][j] for r in train_rows if r[4][j] > 0]
            p = min(max(sum(seen) / len(seen), 0.02), 0.98) if seen else 0.5
            bias[j] = math.log(p / (1 - p))
    state = {k: v.float() for k, v in state.items() if not k.startswith("classifier.") and not k.startswith("vit.pooler")}
    state["classifier.weight"] = weight
    state["classifier.bias"] = bias
    model.load_state_dict(state, strict=True)
    return model, config, preprocessor


def masked_bce(logits, target, mask):
    """Binary cross-entropy over the assessed findings only ("not assessed" never counts)."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def write_folder(out, model, config, preprocessor, export, report):
    """config.json, model.safetensors, preprocessor_config.json, the export's manifest and labels,
    and training_report.json (with every file's SHA-256), into a temporary folder renamed into place."""
    out = os.path.abspath(out)
    tmp = os.path.join(os.path.dirname(out), "." + os.path.basename(out) + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    ref.write_safetensors(os.path.join(tmp, "model.safetensors"), state, metadata={"format": "pt"})
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(tmp, "preprocessor_config.json"), "w", encoding="utf-8") as f:
        json.dump(preprocessor, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.copyfile(os.path.join(export, "manifest.json"), os.path.join(tmp, "manifest.json"))
    shutil.copyfile(os.path.join(export, "labels.csv"), os.path.join(tmp, "labels.csv"))
    report["files"] = {name: sha256_file(os.path.join(tmp, name))
                       for name in ("config.json", "model.safetensors", "preprocessor_config.json", "manifest.json", "labels.csv")}
    with open(os.path.join(tmp, "training_report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    for name in os.listdir(tmp):
        with open(os.path.join(tmp, name), "rb") as f:
            os.fsync(f.fileno())
    if os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)
    os.rename(tmp, out)


# ------------------------------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", required=True, help="a folder written by `hilum-cli export --format dataset`")
    p.add_argument("--out", required=True, help="the Hugging Face folder to write (new, or an empty folder)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=8, help="images per process and step")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--precision", choices=["auto", "bf16", "f32"], default="auto",
                   help="auto: bf16 autocast where the device has it (CUDA with bf16, a CPU with AVX512_BF16/AMX), else f32")
    p.add_argument("--workers", type=int, default=0, help="data-loader processes per training process")
    args = p.parse_args(argv)

    rank, world_size, device, backend = setup()
    try:
        manifest, manifest_sha = verify_export(args.export, args.out, rank, world_size)
        rows = read_labels(args.export, manifest)
        train_rows = [r for r in rows if r[2] == "train"]
        validation_rows = [r for r in rows if r[2] == "validation"]
        if not train_rows:
            raise Refused("the training set has no training images")
        torch.manual_seed(args.seed)
        model, config, preprocessor = load_start_model(os.path.join(args.export, manifest["base_model"]["folder"]),
                                                       manifest["outputs"], train_rows)
    except Refused as e:
        if rank == 0:
            print(f"train.py: refused: {e}", file=sys.stderr)
        if world_size > 1:
            dist.destroy_process_group()
        return 2

    use_bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_available(device))
    preprocess = Preprocessor(config, preprocessor)
    model.to(device)
    if world_size > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        ddp = model
    train_set = ImageSet(args.export, train_rows, preprocess)
    sampler = torch.utils.data.distributed.DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True,
                                                              seed=args.seed, drop_last=False)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, sampler=sampler, num_workers=args.workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = max(1, args.epochs * len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))

    history = []
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        ddp.train()
        total = torch.zeros(2, dtype=torch.float64)
        for x, target, mask, _ in loader:
            x, target, mask = x.to(device), target.to(device), mask.to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = ddp(x)["logits"]
            loss = masked_bce(logits, target, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += torch.tensor([loss.item() * x.shape[0], x.shape[0]], dtype=torch.float64)
        if world_size > 1:
            dist.all_reduce(total)
        mean_loss = float(total[0] / max(total[1], 1))
        history.append({"epoch": epoch, "train_loss": mean_loss})
        if rank == 0:
            print(f"epoch {epoch}/{args.epochs}: train loss {mean_loss:.4f} ({int(total[1])} images, {world_size} process(es))",
                  flush=True)

    status = 0
    if rank == 0:
        # PyTorch's own validation probabilities, in F32 (no autocast): Hilum's import checks that its
        # engine gives the same numbers before it evaluates the model on the gate's patients.
        model.eval()
        probabilities = {}
        with torch.no_grad():
            for i in range(0, len(validation_rows), 16):
                chunk = validation_rows[i:i + 16]
                x = torch.stack([preprocess(os.path.join(args.export, "images", r[0] + ".png")) for r in chunk]).to(device)
                p = torch.sigmoid(model(x)["logits"].float()).cpu()
                for r, q in zip(chunk, p):
                    probabilities[r[0]] = [float(v) for v in q]
        report = {
            "format": REPORT_FORMAT,
            "version": 1,
            "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "manifest_sha256": manifest_sha,
            "catalog_id": manifest["catalog_id"],
            "snapshot_sha256": manifest["snapshot_sha256"],
            "split_sha256": manifest["split_sha256"],
            "base_model": manifest["base_model"]["version"],
            "labels": manifest["outputs"],
            "epochs": args.epochs,
            "learning_rate": args.lr,
            "batch_size": args.batch,
            "global_batch_size": args.batch * world_size,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "world_size": world_size,
            "backend": backend,
            "device": device.type,
            "precision": "bf16" if use_bf16 else "f32",
            "torch_version": torch.__version__,
            "history": history,
            "split": {"train": {"images": len(train_rows), "patients": len({r[1] for r in train_rows})},
                      "validation": {"images": len(validation_rows), "patients": len({r[1] for r in validation_rows})}},
            "trained_images": [r[0] for r in train_rows],
            "validation_probabilities": probabilities,
        }
        try:
            write_folder(args.out, model, config, preprocessor, args.export, report)
            print(f"wrote {args.out} (manifest sha256 {manifest_sha})", flush=True)
        except OSError as e:
            print(f"train.py: cannot write {args.out}: {e}", file=sys.stderr)
            status = 1
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
