#!/usr/bin/python3
"""The peer of bench/pcrl_step.c: one PCRL training step in PyTorch on the
CPU, as a user would write it from the official code (Luchixiang/PCRL,
pcrl.py and models/pcrl_model.py) and MoCo's.

    pcrl_step_torch.py [--depth 18] [--width 1] [--stem large|small]
                       [--channels 3] [--size 224] [--pairs 8]
                       [--warmup 2] [--steps 5] [--threads 2]

The step, as lib/training/pcrl.h's: the student (torchvision-layout ResNet + a
2-layer projection head of width 128 with batch norm) on the N views a, the
momentum teacher (a deepcopy, no_grad, training-mode batch norm) on the N
views b; InfoNCE of the normalised projections against a queue of 16384
keys (tau 0.2); the U-Net decoder (segmentation_models_pytorch's
DecoderBlock: nearest 2x upsampling, concatenation of the skip, two 3x3
conv + BN + ReLU; widths 256..16 times the encoder's width; a 3x3 head
with bias and a sigmoid; the bottleneck gated by sigmoid(fc2(relu(fc1(code)))))
decodes three contexts: the student's maps, the teacher's, and their
alpha-mixture (each bottleneck gated by its own code), each against its
target with MSE; loss = contrast + the mean of the three; backward, one
SGD step (momentum 0.9, weight decay 1e-4), the teacher's EMA
(m = 0.999), the keys into the queue.  Prints one line per step, then
"best_step_s S images_per_s R loss L" with R = 2N / S.
"""
import argparse
import copy
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simclr_step_torch import encoder  # noqa: E402  torchvision's ResNet, or its width-scaled copy


def stages(net, x):
    """The stem's output (before the max pool) and layer1..layer4's."""
    s0 = F.relu(net.bn1(net.conv1(x)))
    s1 = net.layer1(net.maxpool(s0))
    s2 = net.layer2(s1)
    s3 = net.layer3(s2)
    s4 = net.layer4(s3)
    return [s0, s1, s2, s3, s4]


def conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Decoder(nn.Module):
    def __init__(self, chans, width, out_ch, upsample):
        super().__init__()
        widths = [max(1, round(c * width)) for c in (256, 128, 64, 32, 16)]
        cin, blocks = chans[4], []
        for i in range(5):
            skip = chans[3 - i] if i < 4 else 0
            blocks.append(nn.ModuleDict({"conv1": conv_bn_relu(cin + skip, widths[i]),
                                         "conv2": conv_bn_relu(widths[i], widths[i])}))
            cin = widths[i]
        self.blocks = nn.ModuleList(blocks)
        self.upsample = upsample
        self.head = nn.Conv2d(cin, out_ch, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(6, 256), nn.Linear(256, chans[4])

    def gate(self, code):
        return torch.sigmoid(self.fc2(F.relu(self.fc1(code))))[:, :, None, None]

    def forward(self, maps, code, other=None, other_code=None, alpha=1.0):
        x, skips = maps[4] * self.gate(code), [maps[3], maps[2], maps[1], maps[0]]
        if other is not None:
            x = alpha * x + (1 - alpha) * other[4] * self.gate(other_code)
            skips = [alpha * a + (1 - alpha) * b for a, b in zip(skips, [other[3], other[2], other[1], other[0]])]
        for i, block in enumerate(self.blocks):
            if self.upsample[i]:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if i < 4:
                x = torch.cat([x, skips[i]], 1)
            x = block["conv2"](block["conv1"](x))
        return torch.sigmoid(self.head(x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--width", type=float, default=1)
    ap.add_argument("--stem", choices=["large", "small"], default="large")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)

    net, dim = encoder(a.depth, a.width, a.stem, a.channels)
    head = nn.Sequential(nn.Linear(dim, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
                         nn.Linear(128, 128, bias=False), nn.BatchNorm1d(128))
    n, size = a.pairs, a.size
    x = torch.rand(2 * n, a.channels, size, size) * 2 - 1
    with torch.no_grad():
        shapes = [m.shape for m in stages(net, x[:2])]
    chans = [s[1] for s in shapes]
    # A block upsamples where its skip (the last block: the image) is larger than its input.
    sides = [shapes[4][2]] + [shapes[3 - i][2] if i < 4 else size for i in range(5)]
    upsample = [sides[i + 1] > sides[i] for i in range(5)]
    decoder = Decoder(chans, a.width, a.channels, upsample)
    student = nn.ModuleDict({"net": net, "head": head}).train()
    teacher = copy.deepcopy(student).train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    params = list(student.parameters()) + list(decoder.parameters())
    opt = torch.optim.SGD(params, lr=0.03 * n / 256, momentum=0.9, weight_decay=1e-4)
    queue = F.normalize(torch.randn(16384, 128), dim=1)
    ptr = 0
    xa, xb = x[0::2].contiguous(), x[1::2].contiguous()
    targets = torch.rand(2 * n, a.channels, size, size)
    ta, tb = targets[0::2].contiguous(), targets[1::2].contiguous()
    code = torch.zeros(2 * n, 6)
    for v in range(2 * n):
        code[v, 0], code[v, 1], code[v, 2 + v % 4] = v % 2, v // 2 % 2, 1
    ca, cb = code[0::2].contiguous(), code[1::2].contiguous()
    nparams = sum(p.numel() for p in params)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; resnet{a.depth} x{a.width:g}, "
          f"{a.stem} stem, {a.channels} channels + decoder, {nparams} parameters; {n} pairs of "
          f"{a.channels}x{size}x{size}, queue 16384", flush=True)

    best = float("inf")
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        s_maps = stages(student["net"], xa)
        q = F.normalize(student["head"](torch.flatten(F.adaptive_avg_pool2d(s_maps[4], 1), 1)), dim=1)
        with torch.no_grad():
            t_maps = stages(teacher["net"], xb)
            k = F.normalize(teacher["head"](torch.flatten(F.adaptive_avg_pool2d(t_maps[4], 1), 1)), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / 0.2
        contrast = F.cross_entropy(logits, torch.zeros(n, dtype=torch.long))
        u = torch.rand(()).item()
        alpha = max(u, 1 - u)
        r1 = F.mse_loss(decoder(s_maps, ca), ta)
        r2 = F.mse_loss(decoder(t_maps, cb), tb)
        r3 = F.mse_loss(decoder(s_maps, ca, t_maps, cb, alpha), alpha * ta + (1 - alpha) * tb)
        loss = contrast + (r1 + r2 + r3) / 3
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, ps in zip(teacher.parameters(), student.parameters()):
                pt.mul_(0.999).add_(ps, alpha=0.001)
            queue[torch.arange(ptr, ptr + n) % len(queue)] = k
            ptr = (ptr + n) % len(queue)
        t = time.perf_counter() - t0
        print(f"  step {s + 1}{' (warm-up)' if s < a.warmup else ''}: {t:.3f} s, loss {loss.item():.4f}",
              flush=True)
        if s >= a.warmup:
            best = min(best, t)
    print(f"best_step_s {best:.4f} images_per_s {2 * n / best:.2f} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
