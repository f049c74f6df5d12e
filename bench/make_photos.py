#!/usr/bin/python3
"""Photo-like JPEG files for the decoding benchmark (bench/run.sh, case-pack
against PIL).

    make_photos.py ROOT N [WIDTH HEIGHT]

Writes ROOT/cNNNN/cNNNN.jpg for N cases (case-pack's --layout case: one
folder per case; the names differ, since vipsthumbnail names its outputs
after them), WIDTH x HEIGHT (default 800 x 600), JPEG quality 90,
4:2:0.  The machine has no photo collection, so every file is cut from one
of the real photographs scikit-learn ships (china.jpg, flower.jpg: 640 x 427):
a random 4:3 crop of at least half the photo, resized, possibly mirrored,
with per-channel gains and a little Gaussian sensor noise, so that the
files differ and their JPEG entropy is that of a camera photo (an upscaled
crop alone would be smoother, hence faster to decode, than a real one).
"""
import os
import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images


def main():
    root, n = sys.argv[1], int(sys.argv[2])
    width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (800, 600)
    sources = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(7)
    for i in range(n):
        src = sources[i % len(sources)]
        # A 4:3 crop covering 50-100% of the photo's height.
        h = int(src.height * rng.uniform(0.5, 1.0))
        w = min(src.width, h * 4 // 3)
        x0, y0 = rng.integers(0, src.width - w + 1), rng.integers(0, src.height - h + 1)
        im = src.crop((x0, y0, x0 + w, y0 + h)).resize((width, height), Image.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        a = np.asarray(im, dtype=np.float32) * rng.uniform(0.8, 1.2, 3)
        a += rng.normal(0, 3, a.shape)
        folder = os.path.join(root, f"c{i:04d}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f"c{i:04d}.jpg"), quality=90, subsampling="4:2:0")


if __name__ == "__main__":
    main()
