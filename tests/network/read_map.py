#!/usr/bin/python3
"""Prints what pydicom (an independent reader) finds in an attention map Hilum writes, one
'key = value' line each: the SOP class, image type, patient/study/series, the referenced source
image, the pixel module and the decoded pixel array's shape and range.
Usage: read_map.py FILE (Debian python3-pydicom, python3-numpy)."""
import sys

import pydicom

ds = pydicom.dcmread(sys.argv[1])
source = ds.SourceImageSequence[0]
purpose = source.PurposeOfReferenceCodeSequence[0]
pixels = ds.pixel_array
for key, value in [
    ("SOPClassUID", ds.SOPClassUID),
    ("SOPInstanceUID", ds.SOPInstanceUID),
    ("ImageType", "\\".join(ds.ImageType)),
    ("Modality", ds.Modality),
    ("PatientID", ds.PatientID),
    ("PatientName", str(ds.PatientName)),
    ("StudyInstanceUID", ds.StudyInstanceUID),
    ("SeriesInstanceUID", ds.SeriesInstanceUID),
    ("ReferencedSOPClassUID", source.ReferencedSOPClassUID),
    ("ReferencedSOPInstanceUID", source.ReferencedSOPInstanceUID),
    ("Purpose", f"{purpose.CodeValue},{purpose.CodingSchemeDesignator}"),
    ("DerivationDescription", ds.DerivationDescription),
    ("BurnedInAnnotation", ds.get("BurnedInAnnotation", "")),
    ("PhotometricInterpretation", ds.PhotometricInterpretation),
    ("Shape", "x".join(str(n) for n in pixels.shape)),
    ("Range", f"{int(pixels.min())}-{int(pixels.max())}"),
    ("Colour", "yes" if (pixels[..., 0] != pixels[..., 2]).any() else "no"),
]:
    print(f"{key} = {value}")
