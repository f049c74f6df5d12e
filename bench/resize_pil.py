#!/usr/bin/python3
"""The peer of case-pack(1) in bench/run.sh: PIL decoding a folder of JPEG
photos for training at 224, one process, as a user's preprocessing script
would: draft decoding (libjpeg's DCT scaling, so that the short side stays at
least 224), resize so that the short side is 224 (PIL's default resampling),
centre crop 224 x 224, RGB u8 pixels appended to OUT (as case-pack writes a
pack).

    resize_pil.py ROOT OUT [ROUNDS]

Prints the best of ROUNDS (default 3) passes as "seconds S files N".
"""
import glob
import os
import sys
import time

import numpy as np
from PIL import Image

SIZE = 224


def load(path):
    im = Image.open(path)
    im.draft("RGB", (SIZE, SIZE))
    im = im.convert("RGB")
    scale = SIZE / min(im.size)
    w, h = max(SIZE, round(im.width * scale)), max(SIZE, round(im.height * scale))
    im = im.resize((w, h))
    left, top = (w - SIZE) // 2, (h - SIZE) // 2
    return np.asarray(im.crop((left, top, left + SIZE, top + SIZE)))


def main():
    root, out = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    files = sorted(glob.glob(os.path.join(root, "*", "*.jpg")))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        with open(out, "wb") as f:
            for path in files:
                f.write(load(path).tobytes())
        best = min(best, time.perf_counter() - t0)
    print(f"seconds {best:.4f} files {len(files)}")


if __name__ == "__main__":
    main()
