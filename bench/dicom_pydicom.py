#!/usr/bin/python3
"""The peer of case-pack on DICOM (bench/dicom.sh): what a pydicom user
writes to turn a folder of DICOM files into 224-pixel grey images grouped
by patient, in one process.

    dicom_pydicom.py make DIR N SIZE     write N files into DIR (see below)
    dicom_pydicom.py pack DIR [SIZE]     decode, rescale, window, invert, resize

`make` rewrites pydicom's own sample files with new patient ids and UIDs
(two files per patient): at SIZE 0 CT_small (128 x 128, rescale, no
window), MR_small (64 x 64, a window) and MR_small_RLE (the same, RLE)
in turn; at another SIZE, CT_small's pixels repeated to SIZE x SIZE with a
soft-tissue window (40, 400), as a CR/DX-sized file.

`pack` does per file what case-pack does: pixel_array, Rescale Slope and
Intercept, the first Window Center/Width as the standard's LINEAR function
(else the 0.5th and 99.5th percentiles), MONOCHROME1 inverted, 8 bits, then
PIL's bilinear resize (antialiased when it shrinks) to a short side of 224;
the images are kept in a dict by PatientID.  Prints the seconds taken.
"""
import os
import sys
import time

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import generate_uid

SAMPLES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")


def make(out, n, size):
    os.makedirs(out, exist_ok=True)
    names = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm"] if size == 0 else ["CT_small.dcm"]
    sources = [pydicom.dcmread(os.path.join(SAMPLES, f)) for f in names]
    if size:
        ds = sources[0]
        reps = -(-size // ds.Rows)
        ds.PixelData = np.tile(ds.pixel_array, (reps, reps))[:size, :size].copy().tobytes()
        ds.Rows = ds.Columns = size
        ds.WindowCenter, ds.WindowWidth = 40, 400
    for i in range(n):
        ds = sources[i % len(sources)]
        ds.PatientID = f"P{i // 2:05d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(os.path.join(out, f"{i:05d}.dcm"))


def first(v):
    return float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)


def to_8bit(ds):
    x = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        c, w = first(ds.WindowCenter), first(ds.WindowWidth)
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    else:
        lo, hi = np.percentile(x, [0.5, 99.5])
        y = (x - lo) / max(hi - lo, 1e-12) * 255
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 255 - y
    return y


def pack(folder, size=224):
    cases = {}
    for name in sorted(os.listdir(folder)):
        ds = pydicom.dcmread(os.path.join(folder, name))
        y = to_8bit(ds)
        h, w = y.shape
        tw, th = (size, round(h * size / w)) if w <= h else (round(w * size / h), size)
        cases.setdefault(ds.PatientID, []).append(np.asarray(Image.fromarray(y).resize((tw, th), Image.BILINEAR)))
    return cases


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        t0 = time.perf_counter()
        cases = pack(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 224)
        print(f"{time.perf_counter() - t0:.4f} s, {len(cases)} cases, {sum(len(v) for v in cases.values())} images")
