#!/usr/bin/python3
"""Writes tests/fixtures/dicom_pydicom.txt: pydicom's pixel_array of the
uncompressed (and RLE) sample files Debian's python3-pydicom ships, as one
line per frame, in the format of build/helpers/dicomvals:

    NAME FRAME SAMPLES ROWS COLUMNS MIN MAX FNV

FNV is the 64-bit FNV-1a hash of the values as little endian int32 in
(rows, columns, samples) order.  tests/tools/dicom.sh compares our decoder
with these lines, so that `make check` needs the sample files but not
pydicom.  Run it again after a pydicom upgrade:

    /usr/bin/python3 tests/pydicom/make_dicom_fixtures.py > tests/fixtures/dicom_pydicom.txt
"""
import os
import sys

import numpy as np
import pydicom

ROOT = "/usr/lib/python3/dist-packages/pydicom/data/test_files"
# Files whose pixels pydicom decodes with numpy alone (no codec plugin).
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
          "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5"}


def fnv(values):
    h = 0xcbf29ce484222325
    for b in values.astype("<i4").tobytes():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    rows = []
    for base, _, names in os.walk(ROOT):
        for name in sorted(names):
            path = os.path.join(base, name)
            try:
                ds = pydicom.dcmread(path)
                ts = str(ds.file_meta.TransferSyntaxUID)
                if ts not in NATIVE or "PixelData" not in ds or ds.BitsAllocated not in (8, 16):
                    continue
                arr = ds.pixel_array
            except Exception:
                continue
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            samples = int(ds.SamplesPerPixel)
            if frames == 1:
                arr = arr[None]
            rel = os.path.relpath(path, ROOT)
            for k in range(frames):
                a = arr[k].astype(np.int64)
                rows.append(f"{rel} {k} {samples} {ds.Rows} {ds.Columns} {a.min()} {a.max()} {fnv(a):016x}")
    sys.stdout.write("".join(r + "\n" for r in sorted(rows)))


main()
