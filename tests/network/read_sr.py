#!/usr/bin/python3
"""Prints a structured report's content tree as pydicom reads it (an independent reader of what
Hilum writes): one line per content item, '<depth> <value type> <concept name> = <value>'.
Usage: read_sr.py FILE (Debian python3-pydicom)."""
import sys

import pydicom


def value(item):
    t = item.ValueType
    if t == "CODE":
        return item.ConceptCodeSequence[0].CodeMeaning
    if t == "TEXT":
        return item.TextValue
    if t == "PNAME":
        return str(item.PersonName)
    if t == "NUM":
        measured = item.get("MeasuredValueSequence")
        return str(measured[0].NumericValue) if measured else ""
    if t == "UIDREF":
        return item.UID
    if t == "DATETIME":
        return item.DateTime
    if t in ("IMAGE", "COMPOSITE"):
        return item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    if t == "SCOORD":
        return item.GraphicType + " " + "/".join(f"{v:g}" for v in item.GraphicData)
    return ""


def walk(items, depth):
    for item in items:
        name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        print(f"{depth} {item.ValueType} {name} = {value(item)}")
        if "ContentSequence" in item:
            walk(item.ContentSequence, depth + 1)


ds = pydicom.dcmread(sys.argv[1])
print(f"0 CONTAINER {ds.ConceptNameCodeSequence[0].CodeMeaning} =")
walk(ds.ContentSequence, 1)
