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
    make_colour_dicom(tmp)


def colour_dump(photometric, samples, planar, pixel_bytes, extra=""):
    """An 8 x 8 colour image (8 bits per sample) in a dump2dcm text dump: the grey phantom's header
    with Samples per Pixel, Planar Configuration and the pixels replaced."""
    text = dicom_dump(bits=8, photometric=photometric, extra=extra)
    text = text.replace("(0028,0002) US 1", "(0028,0002) US %d" % samples + ("\n(0028,0006) US %d" % planar if samples == 3 else ""))
    text = text[:text.index("(7fe0,0010)")] + "(7fe0,0010) OB " + "\\".join("%02x" % b for b in pixel_bytes) + "\n"
    return text


def make_colour_dicom(tmp):
    """Colour images, read as the grey of their colours (2026-12-06): RGB interleaved and planar,
    YBR_FULL_422, PALETTE COLOR (16-bit tables), and RGB through RLE and lossy JPEG (GDCM's
    gdcmconv --j2k refuses these small colour images; pydicom's GDCMJ2K_TextGBR.dcm covers JPEG 2000
    colour in tests/data)."""
    n = 64
    rgb = [((i * 37) % 256, (i * 11) % 256, (i * 5 + 60) % 256) for i in range(n)]
    interleaved = [v for p in rgb for v in p]
    planar = [p[k] for k in range(3) for p in rgb]
    pairs = []
    for i in range(0, n, 2):
        pairs += [rgb[i][0], rgb[i + 1][0], rgb[i][1], rgb[i][2]]
    entries = 16
    lut = lambda k: "\\".join("%04x" % (((j * (k + 3) * 17) % 256) * 257) for j in range(entries))
    palette = (f"(0028,1101) US {entries}\\0\\16\n(0028,1102) US {entries}\\0\\16\n(0028,1103) US {entries}\\0\\16\n"
               f"(0028,1201) OW {lut(0)}\n(0028,1202) OW {lut(1)}\n(0028,1203) OW {lut(2)}")
    seeds = {
        "rgb.dcm": colour_dump("RGB", 3, 0, interleaved),
        "rgb-planar.dcm": colour_dump("RGB", 3, 1, planar),
        "ybr-full-422.dcm": colour_dump("YBR_FULL_422", 3, 0, pairs),
        "palette.dcm": colour_dump("PALETTE COLOR", 1, 0, [i % entries for i in range(n)], palette),
    }
    for name, text in seeds.items():
        path = os.path.join(tmp, name)
        dump2dcm(text, path, "+te")
        out("corpus", "dicom", name, read(path))
    base = os.path.join(tmp, "rgb.dcm")
    for name, cmd in {"rgb-rle.dcm": ["dcmcrle", base], "rgb-jpeg-baseline.dcm": ["dcmcjpeg", "+eb", base]}.items():
        path = os.path.join(tmp, name)
        run(*cmd, path)
        out("corpus", "dicom", name, read(path))


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


def extras(labels=2, D=8, features="cls"):
    """hilum.json as inference/src/model_extras.cpp writes it: calibration and a domain reference
    (features "none": the pixel parts alone, as a fine-tune with too few films keeps its parent's)."""
    def subspace(n):
        return {"mean": [0.1] * n, "axes": [[1.0 if i == a else 0.0 for i in range(n)] for a in range(2)], "variances": [2.0, 1.0],
                "residual_variance": 0.5, "threshold": 1.5, "threshold_quantile": 0.99, "images": 20}
    domain = {"features": features, "modalities": ["CR", "DX"],
              "populations": [{"name": "adult", "min_age_years": 18, "max_age_years": 90, "images": 20}]}
    if features == "cls":
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
    out("corpus", "model", "tiny-extras-pixels-only", model_input(config(), weights, preprocessor(16), extras(features="none")))
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


# ---------------------------------------------------------------- network (a peer's byte stream)
# What a peer sends on one connection to the Storage SCP (fuzz_network.cpp): an A-ASSOCIATE-RQ,
# P-DATA-TF PDUs and an A-RELEASE-RQ, sent at once (the SCP reads them in order).

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
VERIFICATION = "1.2.840.10008.1.1"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def pdu(kind, body):
    return struct.pack(">BBI", kind, 0, len(body)) + body


def item(kind, body):
    return struct.pack(">BBH", kind, 0, len(body)) + body


def ae(title):
    return title.encode().ljust(16)[:16]


def associate_rq(contexts, called="HILUM", calling="FUZZSCU", max_pdu=16384):
    """contexts: [(id, abstract syntax, [transfer syntaxes])]."""
    body = struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32)
    body += item(0x10, b"1.2.840.10008.3.1.1.1")
    for pcid, abstract, syntaxes in contexts:
        sub = item(0x30, abstract.encode()) + b"".join(item(0x40, ts.encode()) for ts in syntaxes)
        body += item(0x20, struct.pack(">BBBB", pcid, 0, 0, 0) + sub)
    user = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.826.0.1.3680043.10.1138.7") + item(0x55, b"HILUMFUZZ")
    body += item(0x50, user)
    return pdu(0x01, body)


def element(group, elem, value):
    """An element in implicit VR little endian (command sets always are)."""
    if isinstance(value, str):
        value = value.encode()
        if len(value) % 2:
            value += b"\0"
    elif isinstance(value, int):
        value = struct.pack("<H", value)
    return struct.pack("<HHI", group, elem, len(value)) + value


def command(*elements):
    body = b"".join(elements)
    return element(0, 0, struct.pack("<I", len(body))) + body


def store_rq(message_id, sop_class, sop_instance):
    return command(element(0, 0x0002, sop_class), element(0, 0x0100, 0x0001), element(0, 0x0110, message_id),
                   element(0, 0x0700, 0), element(0, 0x0800, 0x0000), element(0, 0x1000, sop_instance))


def echo_rq(message_id):
    return command(element(0, 0x0002, VERIFICATION), element(0, 0x0100, 0x0030), element(0, 0x0110, message_id),
                   element(0, 0x0800, 0x0101))


def p_data(pcid, data, is_command, fragment=4096):
    """P-DATA-TF PDUs, one PDV each, of at most `fragment` bytes of `data`."""
    out = b""
    for at in range(0, max(len(data), 1), fragment):
        part = data[at:at + fragment]
        last = at + fragment >= len(data)
        header = (1 if is_command else 0) | (2 if last else 0)
        out += pdu(0x04, struct.pack(">IBB", len(part) + 2, pcid, header) + part)
    return out


def release_rq():
    return pdu(0x05, bytes(4))


def dataset_of(path):
    """The dataset of a Part 10 file written by dump2dcm +te (explicit VR little endian): what
    follows the preamble and the meta group."""
    data = read(path)
    assert data[128:132] == b"DICM"
    at = 132
    while at < len(data) and struct.unpack("<H", data[at:at + 2])[0] == 2:
        vr = data[at + 4:at + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            at += 12 + struct.unpack("<I", data[at + 8:at + 12])[0]
        else:
            at += 8 + struct.unpack("<H", data[at + 6:at + 8])[0]
    return data[at:]


def make_network(tmp):
    def dataset(name, rows=32, cols=32, sop=None, sop_class=None, pid="PID-0001"):
        uid = sop or "1.2.826.0.1.3680043.10.1138.200." + str(len(name))
        text = dicom_dump(rows=rows, cols=cols, pid=pid, sop=uid)
        if sop_class:
            text = text.replace("(0008,0016) UI =DigitalXRayImageStorageForPresentation", f"(0008,0016) UI [{sop_class}]")
        path = os.path.join(tmp, name + ".dcm")
        dump2dcm(text, path, "+te", "+l", "65536")  # long lines: the pixel values
        return dataset_of(path)

    contexts = [(1, VERIFICATION, [IMPLICIT_LE]), (3, DX_PRESENTATION, [EXPLICIT_LE, IMPLICIT_LE]),
                (5, CR, [EXPLICIT_LE]), (7, BASIC_TEXT_SR, [EXPLICIT_LE])]
    rq = associate_rq(contexts)
    uid1, uid2 = "1.2.826.0.1.3680043.10.1138.200.1", "1.2.826.0.1.3680043.10.1138.200.2"
    dx1 = dataset("dx1", sop=uid1)

    def store(pcid, message_id, sop_class, sop, data, fragment=4096):
        return p_data(pcid, store_rq(message_id, sop_class, sop), True) + p_data(pcid, data, False, fragment)

    out("corpus", "network", "echo", rq + p_data(1, echo_rq(1), True) + release_rq())
    out("corpus", "network", "store-dx", rq + store(3, 1, DX_PRESENTATION, uid1, dx1) + release_rq())
    out("corpus", "network", "store-fragmented", rq + p_data(3, store_rq(1, DX_PRESENTATION, uid1), True, 40) +
        p_data(3, dx1, False, 300) + release_rq())
    cr = dataset("cr", sop=uid2, sop_class=CR)  # same patient and study: both are filed
    out("corpus", "network", "store-two-echo", rq + store(3, 1, DX_PRESENTATION, uid1, dx1) + p_data(1, echo_rq(2), True) +
        store(5, 3, CR, uid2, cr) + release_rq())
    # The same SOP Instance UID twice with different content (a conflict), then again the same.
    other = dataset("dx1-other", sop=uid1, pid="PID-0003")
    out("corpus", "network", "store-conflict", rq + store(3, 1, DX_PRESENTATION, uid1, dx1) + store(3, 2, DX_PRESENTATION, uid1, other) +
        store(3, 3, DX_PRESENTATION, uid1, dx1) + release_rq())
    # Refused by Hilum's checks (kept as regressions: each must be refused, nothing kept).
    out("regressions", "network", "calling-ae-not-allowed", associate_rq(contexts, calling="INTRUDER") +
        store(3, 1, DX_PRESENTATION, uid1, dx1) + release_rq())
    out("regressions", "network", "calling-ae-wrong-host", associate_rq(contexts, calling="OTHER") +
        store(3, 1, DX_PRESENTATION, uid1, dx1) + release_rq())
    # Only spaces pad an AE title: "FUZZSCU" followed by a tab is another (invalid) title.
    out("regressions", "network", "calling-ae-control-character", associate_rq(contexts, calling="FUZZSCU\t") +
        store(3, 1, DX_PRESENTATION, uid1, dx1) + release_rq())
    out("regressions", "network", "called-ae-not-ours", associate_rq(contexts, called="PACS") +
        store(3, 1, DX_PRESENTATION, uid1, dx1) + release_rq())
    out("regressions", "network", "sop-class-not-kept", rq + store(7, 1, BASIC_TEXT_SR, uid1, dataset("sr", sop=uid1, sop_class=BASIC_TEXT_SR)) +
        release_rq())
    out("regressions", "network", "dataset-over-limit", rq + store(3, 1, DX_PRESENTATION, uid1, dataset("big", rows=64, cols=72, sop=uid1)) +
        release_rq())
    out("regressions", "network", "dataset-uid-mismatch", rq + store(3, 1, DX_PRESENTATION, uid2, dx1) + release_rq())
    bad = "1.2.826.0.1.3680043.10.1138/../../../x"
    out("regressions", "network", "uid-path-traversal", rq + store(3, 1, DX_PRESENTATION, bad, dataset("bad", sop=bad)) + release_rq())
    # Study Instance UID the store cannot hold (it names the store's folder), SOP Instance UID valid.
    text = dicom_dump(rows=32, cols=32, sop=uid1).replace("(0020,000d) UI [1.2.826.0.1.3680043.10.1138.100]",
                                                          "(0020,000d) UI [1.2.826.0.1.3680043.10.1138.100/../x]")
    path = os.path.join(tmp, "bad-study.dcm")
    dump2dcm(text, path, "+te", "+l", "65536")
    out("regressions", "network", "study-uid-invalid", rq + store(3, 1, DX_PRESENTATION, uid1, dataset_of(path)) + release_rq())
    out("regressions", "network", "broken-off", rq + store(3, 1, DX_PRESENTATION, uid1, dx1)[:-700])
    out("regressions", "network", "pdu-over-max", rq + p_data(3, store_rq(1, DX_PRESENTATION, uid1), True) +
        p_data(3, dx1, False, 20000))


def main():
    # Files are (re)written, never removed: regressions/ also holds inputs found by fuzzing.
    # Arguments: the targets to write (dicom, model, labels_csv, network); none: all of them.
    targets = set(sys.argv[1:]) or {"dicom", "model", "labels_csv", "network"}
    with tempfile.TemporaryDirectory() as tmp:
        if "dicom" in targets:
            make_dicom(tmp)
        if "network" in targets:
            make_network(tmp)
    if "model" in targets:
        make_model()
    if "labels_csv" in targets:
        make_csv()
    total = sum(len(files) for _, _, files in os.walk(os.path.join(HERE, "corpus"))) + \
        sum(len(files) for _, _, files in os.walk(os.path.join(HERE, "regressions")))
    print(f"make_seeds: {total} files under {HERE}/corpus and regressions")


if __name__ == "__main__":
    sys.exit(main())
