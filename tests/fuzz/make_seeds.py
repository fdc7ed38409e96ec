#!/usr/bin/env python3
"""Writes the fuzz harnesses' seed corpus (corpus/NAME) and the reproducers of issue 16's defects
(regressions/NAME; inputs found by campaigns are added there by hand and kept). Run from anywhere:
tests/fuzz/make_seeds.py. Needs Python 3 and DCMTK's
command-line tools (dump2dcm, dcmcrle, dcmcjpeg, dcmcjpls, dcmmkdir; Debian's `dcmtk`); gdcmconv
(`libgdcm-tools`) for JPEG 2000 when present. Every file is small (a few KiB) and deterministic."""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\n--hilum-fuzz-file--\n"  # fuzz_model.cpp's kSeparator


def out(kind, folder, name, data):
    path = os.path.join(HERE, kind, folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- DICOM (dump2dcm text dumps)

def dicom_dump(rows=8, cols=8, bits=16, stored=12, signed=False, photometric="MONOCHROME2", extra="", name="Doe^Jane",
               pid="PID-0001", sop="1.2.826.0.1.3680043.10.1138.100.1"):
    n = rows * cols
    if bits == 16:
        values = [(i * 37) % (1 << stored) for i in range(n)]
        if signed:
            values = [v - (1 << (stored - 1)) for v in values]
        pixels = "(7fe0,0010) OW " + "\\".join("%04x" % (v & 0xFFFF) for v in values)
    else:
        values = [(i * 37) % 256 for i in range(n)]
        # OB values are bytes
        pixels = "(7fe0,0010) OB " + "\\".join("%02x" % v for v in values)
    return f"""
(0008,0008) CS [ORIGINAL\\PRIMARY]
(0008,0016) UI =DigitalXRayImageStorageForPresentation
(0008,0018) UI [{sop}]
(0008,0020) DA [20240131]
(0008,0030) TM [101500]
(0008,0050) SH [ACC42]
(0008,0060) CS [DX]
(0008,0090) PN [Ref^Doctor]
(0010,0010) PN [{name}]
(0010,0020) LO [{pid}]
(0010,0030) DA [19700101]
(0010,0040) CS [F]
(0018,0015) CS [CHEST]
(0018,5101) CS [PA]
(0020,000d) UI [1.2.826.0.1.3680043.10.1138.100]
(0020,000e) UI [1.2.826.0.1.3680043.10.1138.100.0]
(0020,0013) IS [1]
(0028,0002) US 1
(0028,0004) CS [{photometric}]
(0028,0010) US {rows}
(0028,0011) US {cols}
(0028,0030) DS [0.2\\0.2]
(0028,0100) US {bits}
(0028,0101) US {stored if bits == 16 else 8}
(0028,0102) US {(stored if bits == 16 else 8) - 1}
(0028,0103) US {1 if signed else 0}
{extra}
{pixels}
"""


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dump2dcm(text, path, *options):
    with tempfile.NamedTemporaryFile("w", suffix=".dump", delete=False) as f:
        f.write(text)
        name = f.name
    try:
        run("dump2dcm", *options, name, path)
    finally:
        os.unlink(name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


WINDOW = "(0028,1050) DS [2048]\n(0028,1051) DS [4096]\n(0028,1055) LO [FULL]"
RESCALE = "(0028,1052) DS [-1024]\n(0028,1053) DS [2]\n(0028,1054) LO [HU]"
def sequence(tag, *items):
    """A dump2dcm sequence of explicit length holding `items` (each a dump text)."""
    out = [f"{tag} SQ (Sequence with explicit length #={len(items)})"]
    for item in items:
        out.append("  (fffe,e000) na (Item with explicit length)")
        out += ["    " + line for line in item.splitlines()]
        out.append("  (fffe,e00d) na (ItemDelimitationItem)")
    out.append("(fffe,e0dd) na (SequenceDelimitationItem)")
    return "\n".join(out)


VOI_LUT = sequence("(0028,3010)", "(0028,3002) US 4\\0\\16\n(0028,3003) LO [LUT]\n(0028,3006) US 0\\1000\\2000\\4095")
MODALITY_LUT = sequence("(0028,3000)", "(0028,3002) US 4\\0\\16\n(0028,3004) LO [MLUT]\n(0028,3006) US 10\\20\\30\\40")


def nested_code_meaning(depth, meaning):
    """An Anatomic Region Sequence whose Code Meaning (free text) holds `meaning`, `depth` levels down
    (Anatomic Region Sequence, then Anatomic Region Modifier Sequences)."""
    text = f"(0008,0100) SH [T-D3000]\n(0008,0102) SH [SRT]\n(0008,0104) LO [{meaning}]"
    for level in range(depth):
        text = sequence("(0008,2218)" if level == depth - 1 else "(0008,2220)", text)
    return text


def fixed_media_uid(data):
    """dcmmkdir gives each DICOMDIR a new Media Storage SOP Instance UID: replaced by a fixed one of the
    same length (the DICOMDIR's record offsets stay right), so that the seeds are the same every run."""
    at = data.index(b"\x02\x00\x03\x00UI") + 6
    length = struct.unpack("<H", data[at:at + 2])[0]
    uid = b"1.2.826.0.1.3680043.10.1138.9."
    uid = (uid + b"1" * length)[:length - 1] + (b"1" if data[at + 2 + length - 1:at + 2 + length] != b"\x00" else b"\x00")
    return data[:at + 2] + uid + data[at + 2 + length:]


def make_dicom(tmp):
    seeds = {
        "explicit-le-window.dcm": (dicom_dump(extra=WINDOW), ["+te"]),
        "implicit-le.dcm": (dicom_dump(), ["+ti"]),
        "explicit-be.dcm": (dicom_dump(extra=WINDOW), ["+tb"]),
        "acr-nema.dcm": (dicom_dump(), ["-F", "+ti"]),
        "monochrome1-rescale.dcm": (dicom_dump(photometric="MONOCHROME1", extra=RESCALE), ["+te"]),
        "signed.dcm": (dicom_dump(signed=True, extra=RESCALE), ["+te"]),
        "8-bit.dcm": (dicom_dump(bits=8), ["+te"]),
        "voi-lut.dcm": (dicom_dump(extra=VOI_LUT), ["+te"]),
        "modality-lut.dcm": (dicom_dump(extra=MODALITY_LUT), ["+te"]),
        "sigmoid.dcm": (dicom_dump(extra=WINDOW + "\n(0028,1056) CS [SIGMOID]"), ["+te"]),
    }
    for name, (text, options) in seeds.items():
        path = os.path.join(tmp, name)
        dump2dcm(text, path, *options)
        out("corpus", "dicom", name, read(path))
    base = os.path.join(tmp, "explicit-le-window.dcm")
    base8 = os.path.join(tmp, "8-bit.dcm")
    for name, cmd in {"rle.dcm": ["dcmcrle", base], "jpeg-lossless.dcm": ["dcmcjpeg", "+e1", base],
                      "jpeg-baseline.dcm": ["dcmcjpeg", "+eb", "+un", base8], "jpeg-ls.dcm": ["dcmcjpls", base]}.items():
        path = os.path.join(tmp, name)
        run(*cmd, path)
        out("corpus", "dicom", name, read(path))
    if shutil.which("gdcmconv"):
        path = os.path.join(tmp, "j2k.dcm")
        run("gdcmconv", "--j2k", base, path)
        out("corpus", "dicom", "j2k.dcm", read(path))
    # A DICOMDIR over two images (dcmmkdir wants 8-character upper-case names in the medium's folder).
    media = os.path.join(tmp, "media")
    os.makedirs(os.path.join(media, "IMAGES"))
    shutil.copy(base, os.path.join(media, "IMAGES", "IM000001"))
    shutil.copy(os.path.join(tmp, "implicit-le.dcm"), os.path.join(media, "IMAGES", "IM000002"))
    dump2dcm(dicom_dump(sop="1.2.826.0.1.3680043.10.1138.100.2"), os.path.join(media, "IMAGES", "IM000002"), "+te")
    subprocess.run(["dcmmkdir", "--recurse", "+I", "IMAGES"], cwd=media, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    dicomdir = fixed_media_uid(read(os.path.join(media, "DICOMDIR")))
    out("corpus", "dicom", "dicomdir", dicomdir)
    # Issue 16, defect 3: a Referenced File ID that climbs out of the medium (same length, so the
    # DICOMDIR's offsets stay right: IMAGES\IM000001 -> ..\..\..\..\ETC\PASSWD would not fit, so
    # the element is rewritten with its new length and every offset after it is left to the reader).
    for old, new, name in [(b"IMAGES\\IM000001", b"..\\..\\ETC\\PASSWD", "defect3-dicomdir-dotdot"),
                           (b"IMAGES\\IM000001", b"\\ETC\\PASSWD\\X\\Y", "defect3-dicomdir-absolute")]:
        assert len(old) + 1 >= len(new) and old in dicomdir, (old, new)
        padded = new + b" " * (len(old) + (len(old) % 2) - len(new))
        original = old + b" " * (len(old) % 2)
        out("regressions", "dicom", name, dicomdir.replace(original, padded[:len(original)], 1))
    # Issue 16, defect 11: free text (the patient's name) in a Code Meaning nested three levels down.
    path = os.path.join(tmp, "nested.dcm")
    dump2dcm(dicom_dump(extra=nested_code_meaning(3, "Doe^Jane PID-0001")), path, "+te")
    out("regressions", "dicom", "defect11-nested-code-meaning.dcm", read(path))


# ---------------------------------------------------------------- model folders

def safetensors(tensors, dtype="F32", metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, shape, values in tensors:
        if dtype == "F32":
            data = struct.pack("<%df" % len(values), *values)
        elif dtype == "F16":
            data = struct.pack("<%de" % len(values), *values)
        else:  # BF16: the upper half of the F32
            data = b"".join(struct.pack("<f", v)[2:] for v in values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def tiny_vit(D=8, I=16, P=8, S=16, C=3, layers=1, labels=2, classifier=True, prefix="vit.", poison=None):
    """A ViT small enough to run in microseconds; `poison` = (tensor name, value) plants one value."""
    def values(n, seed):
        return [math.sin(seed * 1.7 + k * 0.37) * 0.2 for k in range(n)]
    grid = (S // P) ** 2
    t = [(prefix + "embeddings.cls_token", [1, 1, D], values(D, 1)),
         (prefix + "embeddings.position_embeddings", [1, grid + 1, D], values((grid + 1) * D, 2)),
         (prefix + "embeddings.patch_embeddings.projection.weight", [D, C, P, P], values(D * C * P * P, 3)),
         (prefix + "embeddings.patch_embeddings.projection.bias", [D], values(D, 4))]
    for i in range(layers):
        p = f"{prefix}encoder.layer.{i}."
        t += [(p + "layernorm_before.weight", [D], [1.0] * D), (p + "layernorm_before.bias", [D], values(D, 5))]
        for k, n in enumerate(["query", "key", "value"]):
            t += [(p + f"attention.attention.{n}.weight", [D, D], values(D * D, 6 + k)),
                  (p + f"attention.attention.{n}.bias", [D], values(D, 9 + k))]
        t += [(p + "attention.output.dense.weight", [D, D], values(D * D, 12)), (p + "attention.output.dense.bias", [D], values(D, 13)),
              (p + "layernorm_after.weight", [D], [1.0] * D), (p + "layernorm_after.bias", [D], values(D, 14)),
              (p + "intermediate.dense.weight", [I, D], values(I * D, 15)), (p + "intermediate.dense.bias", [I], values(I, 16)),
              (p + "output.dense.weight", [D, I], values(D * I, 17)), (p + "output.dense.bias", [D], values(D, 18))]
    t += [(prefix + "layernorm.weight", [D], [1.0] * D), (prefix + "layernorm.bias", [D], values(D, 19))]
    if classifier:
        t += [("classifier.weight", [labels, D], values(labels * D, 20)), ("classifier.bias", [labels], values(labels, 21))]
    if poison:
        t = [(n, s, [poison[1]] + v[1:] if n == poison[0] else v) for n, s, v in t]
    return t


def config(D=8, I=16, P=8, S=16, layers=1, labels=2, **override):
    c = {"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": D, "num_hidden_layers": layers,
         "num_attention_heads": 2, "intermediate_size": I, "image_size": S, "patch_size": P, "num_channels": 3,
         "layer_norm_eps": 1e-12, "hidden_act": "gelu", "qkv_bias": True, "problem_type": "multi_label_classification",
         "id2label": {str(k): ["Effusion", "Pneumonia", "Mass"][k] for k in range(labels)},
         "label2id": {["Effusion", "Pneumonia", "Mass"][k]: k for k in range(labels)}}
    c.update(override)
    return json.dumps(c, indent=1).encode()


def preprocessor(size=16, **override):
    p = {"do_normalize": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
         "size": {"height": size, "width": size}, "image_processor_type": "ViTImageProcessor"}
    p.update(override)
    return json.dumps(p).encode()


def extras(labels=2, D=8):
    """hilum.json as inference/src/model_extras.cpp writes it: calibration and a domain reference."""
    def subspace(n):
        return {"mean": [0.1] * n, "axes": [[1.0 if i == a else 0.0 for i in range(n)] for a in range(2)], "variances": [2.0, 1.0],
                "residual_variance": 0.5, "threshold": 1.5, "threshold_quantile": 0.99, "images": 20}
    domain = {"features": "cls", "modalities": ["CR", "DX"],
              "populations": [{"name": "adult", "min_age_years": 18, "max_age_years": 90, "images": 20}]}
    domain.update(subspace(D))
    domain["thumbnail"] = dict(subspace(16), side=4)
    return json.dumps({"format": 1, "calibration": {"method": "platt", "labels": ["Effusion", "Pneumonia"][:labels],
                                                    "parameters": [[1.2, -0.1]] * labels, "fitted_on": "fuzz seed", "images": 10},
                       "domain": domain}, indent=1).encode()


def model_input(*files):
    return SEP.join(files)


def make_model():
    weights = safetensors(tiny_vit())
    out("corpus", "model", "tiny-f32", model_input(config(), weights))
    out("corpus", "model", "tiny-f16", model_input(config(), safetensors(tiny_vit(), "F16")))
    out("corpus", "model", "tiny-bf16", model_input(config(), safetensors(tiny_vit(), "BF16", {"format": "pt"})))
    out("corpus", "model", "tiny-preprocessor", model_input(config(), weights, preprocessor(24)))
    out("corpus", "model", "tiny-extras", model_input(config(), weights, preprocessor(16), extras()))
    out("corpus", "model", "backbone", model_input(config(labels=0, id2label={}, label2id={}, architectures=["ViTModel"]),
                                                   safetensors(tiny_vit(classifier=False, prefix=""))))
    out("corpus", "model", "two-layers", model_input(config(layers=2, labels=3), safetensors(tiny_vit(layers=2, labels=3))))
    # Issue 16, defect 5: deeply nested config.json (stack overflow when re-serialised).
    out("regressions", "model", "defect5-config-depth-30000", model_input(b'{"hidden_size":8,"x":' + b"[" * 30000 + b"]" * 30000 + b"}",
                                                                      weights))
    out("regressions", "model", "defect5-config-objects-5000", model_input(b'{"a":' * 5000 + b"1" + b"}" * 5000, weights))
    # Defect 6: numbers out of range in config.json and preprocessor_config.json.
    out("regressions", "model", "defect6-size-negative", model_input(config(), weights, preprocessor(-5)))
    out("regressions", "model", "defect6-size-huge", model_input(config(), weights, preprocessor(100000)))
    out("regressions", "model", "defect6-hidden-size-wraps", model_input(config(D=4294967304), weights))
    out("regressions", "model", "defect6-hidden-size-1e30", model_input(config().replace(b'"hidden_size": 8', b'"hidden_size": 1e30'), weights))
    out("regressions", "model", "defect6-image-std-zero", model_input(config(), weights, preprocessor(16, image_std=[0, 0, 0])))
    # Defect 7: non-finite weights.
    out("regressions", "model", "defect7-nan-weight", model_input(config(), safetensors(tiny_vit(poison=("classifier.weight", float("nan"))))))
    out("regressions", "model", "defect7-inf-weight",
        model_input(config(), safetensors(tiny_vit(poison=("vit.encoder.layer.0.attention.attention.query.weight", float("inf"))))))
    out("regressions", "model", "defect7-inf-f16", model_input(config(), safetensors(tiny_vit(poison=("vit.layernorm.bias", float("-inf"))), "F16")))


# ---------------------------------------------------------------- label CSV

UID1, UID2 = "1.2.826.0.1.3680043.10.1138.1", "1.2.826.0.1.3680043.10.1138.2"  # fuzz_labels_csv.cpp's catalog


def make_csv():
    out("corpus", "labels_csv", "columns.csv", f"image,Effusion,Pneumonia\n{UID1},present,absent\n{UID2},1,\n".encode())
    out("corpus", "labels_csv", "values.csv",
        f"image,Effusion,Cardiomegaly,Mass\r\n{UID1},yes,no,-1\r\n{UID2},uncertain,0,cleared\r\n".encode())
    out("corpus", "labels_csv", "chestxray14.csv",
        f"Image Index,Finding Labels,Patient ID\n{UID1},Effusion|Mass,P1\n{UID2},No Finding,P2\n".encode())
    out("corpus", "labels_csv", "quoted.csv",
        f'"image","Effusion","Pleural_Thickening"\n"{UID1}","present","ab""sent"\n"{UID2}","absent","present"\n'.encode())
    out("corpus", "labels_csv", "problems.csv",
        f"image,Effusion,Dragons\n{UID1},maybe,present\n9.9.9,present,absent\n,present,\n{UID2},present,absent,extra\n".encode())
    # Issue 16, defect 10: a long cell is refused without echoing it whole (64 KiB here).
    out("regressions", "labels_csv", "defect10-long-cell.csv", f"image,Effusion\n{UID1},".encode() + b"x" * 65536 + b"\n")
    out("regressions", "labels_csv", "defect10-long-header.csv", b"image," + b"F" * 65536 + f"\n{UID1},present\n".encode())
    # Defect 9: text that is not UTF-8 in a finding name and a value; defect 8: formula-like finding names.
    out("regressions", "labels_csv", "defect9-invalid-utf8.csv", f"image,Effusion\xff\xfe,Mass\n{UID1}\x80,present,\xc3\n".encode("latin-1"))
    out("regressions", "labels_csv", "defect8-formula-findings.csv",
        f"image,=cmd|' /C calc'!A0,@SUM(A1),+1,-1,\tTab\n{UID1},present,present,present,present,present\n".encode())
    out("regressions", "labels_csv", "unterminated-quote.csv", f'image,Effusion\n"{UID1},present\n'.encode())


def main():
    # Files are (re)written, never removed: regressions/ also holds inputs found by fuzzing.
    with tempfile.TemporaryDirectory() as tmp:
        make_dicom(tmp)
    make_model()
    make_csv()
    total = sum(len(files) for _, _, files in os.walk(os.path.join(HERE, "corpus"))) + \
        sum(len(files) for _, _, files in os.walk(os.path.join(HERE, "regressions")))
    print(f"make_seeds: {total} files under {HERE}/corpus and regressions")


if __name__ == "__main__":
    sys.exit(main())
