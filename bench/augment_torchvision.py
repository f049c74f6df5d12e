#!/usr/bin/python3
"""The peer of augment(1) in bench/augment.sh: torchvision's SimCLR chain on
PIL images, in one process.

    augment_torchvision.py STREAM SIZE [BLUR_P [ROUNDS]]

Reads the u8 (3, H, W) "image" tensors of an mts stream (msgpack + numpy, as
mts(5) shows), turns them into PIL images (not timed: a Dataset would hand
them over decoded), then runs the chain over all of them ROUNDS times
(default 3) and prints the best pass as "images_per_cpu_second N": images
per second of this process's CPU time, with one thread
(torch.set_num_threads(1)), i.e. the per-core rate, unaffected by other work
on a shared machine.  BLUR_P is the blur's probability (SimCLR: 0.5).
"""
import sys
import time

import msgpack
import numpy as np
import torch
from PIL import Image
from torchvision import transforms


def read_images(path):
    images = []
    with open(path, "rb") as f:
        for frame in msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30):
            if "mts" in frame:
                continue
            t = frame["image"]
            a = np.frombuffer(t["data"], dtype=np.uint8).reshape(t["shape"])
            images.append(Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0))))
    return images


def simclr_chain(size, blur_p):
    # SimCLR's augmentation as torchvision users write it: the blur kernel is
    # 10% of the image, made odd.
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
    return transforms.Compose([
        transforms.RandomResizedCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.RandomApply([transforms.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomApply([transforms.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_p),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])


def main():
    path, size = sys.argv[1], int(sys.argv[2])
    blur_p = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images = read_images(path)
    chain = simclr_chain(size, blur_p)
    chain(images[0])  # warm up (first-call set-up in torch)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for im in images:
            chain(im)
        best = min(best, time.process_time() - start)
    print("images_per_cpu_second %.1f" % (len(images) / best))


if __name__ == "__main__":
    main()
