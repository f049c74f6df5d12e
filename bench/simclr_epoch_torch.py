#!/usr/bin/python3
"""The peer of `pair-sample | augment | ntxent-step` in bench/run.sh: one
SimCLR epoch in PyTorch as a user would write it: the images in memory as
PIL images, a Dataset giving two views of an image through torchvision's
SimCLR chain (the chain of bench/augment_torchvision.py), a DataLoader with
2 worker processes, and the training step of bench/simclr_step_torch.py
(same model, head, NT-Xent and LARS) on torch.set_num_threads(THREADS).

    simclr_epoch_torch.py STREAM [--batch 128] [--depth 18] [--width 0.5]
                          [--stem small] [--workers 2] [--threads 2]

STREAM holds the u8 (C, H, W) "image" records (pair-sample --mode single).
Prints "seconds S images N": the wall time of the epoch (from creating the
DataLoader's iterator, which starts its workers, to the last step's update)
and the number of augmented views it trained on (2 per pair; the last
incomplete batch is dropped, as ntxent-step does).  Reading the stream,
importing torch and building the model are not timed.
"""
import argparse
import os
import sys
import time

import msgpack
import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from augment_torchvision import simclr_chain  # noqa: E402
from simclr_step_torch import LARS, encoder, ntxent, projection_head  # noqa: E402


def read_images(path):
    images = []
    with open(path, "rb") as f:
        for frame in msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30):
            if "mts" in frame:
                continue
            t = frame["image"]
            a = np.frombuffer(t["data"], dtype=np.uint8).reshape(t["shape"]).transpose(1, 2, 0)
            images.append(Image.fromarray(np.ascontiguousarray(a.squeeze(2) if a.shape[2] == 1 else a)))
    return images


class Pairs(torch.utils.data.Dataset):
    def __init__(self, images, chain):
        self.images, self.chain = images, chain

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        im = self.images[i]
        return self.chain(im), self.chain(im)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stream")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--stem", choices=["large", "small"], default="small")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)

    images = read_images(a.stream)
    channels, size = len(images[0].getbands()), images[0].width
    net, dim = encoder(a.depth, a.width, a.stem, channels)
    model = nn.Sequential(net, projection_head(dim)).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    exclude = [p for p in model.parameters() if p.ndim == 1]  # BN scales/shifts and biases
    opt = LARS([{"params": decay}, {"params": exclude, "exclude": True}], lr=0.3 * a.batch / 256)
    loader = torch.utils.data.DataLoader(Pairs(images, simclr_chain(size, 0.5)), batch_size=a.batch,
                                         shuffle=True, num_workers=a.workers, drop_last=True)

    views = 0
    t0 = time.perf_counter()
    for va, vb in loader:
        x = torch.stack([va, vb], 1).flatten(0, 1)  # rows 2k, 2k+1: the two views of pair k
        opt.zero_grad(set_to_none=False)
        loss = ntxent(model(x))
        loss.backward()
        opt.step()
        views += len(x)
    print(f"seconds {time.perf_counter() - t0:.3f} images {views} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
