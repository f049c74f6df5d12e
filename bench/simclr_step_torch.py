#!/usr/bin/python3
"""The peer of bench/simclr_step.c: one SimCLR training step in PyTorch on
the CPU, as a user would write it.

    simclr_step_torch.py [--depth 18] [--width 1] [--stem large|small]
                         [--channels 3] [--size 224] [--pairs 16]
                         [--warmup 2] [--steps 5] [--threads 2]

The step: the 2N views of N pairs forward through a torchvision-layout
ResNet and SimCLR v2's 2-layer projection head (training mode), NT-Xent
(tau 0.1, both directions summed), backward, one LARS update (SimCLR's:
weight decay 1e-6 added to the gradient before the trust ratio, eta 0.001,
momentum 0.9, batch norms and biases excluded from both).  Prints one line
per step, then "best_step_s S images_per_s R loss L" with S the fastest step
after the warm-up steps and R = 2N / S.

At width 1 the encoder is torchvision's own resnet18/resnet50 (the small
stem replaces conv1 by a 3x3 stride-1 conv and the max pool by Identity);
torchvision has no width multiplier, so other widths use WideResNet below,
which has torchvision's structure with every channel count scaled (at width
1 it has exactly torchvision's parameters: the script checks that).
"""
import argparse
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = shortcut(cin, width, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3, as torchvision
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = shortcut(cin, cout, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


def shortcut(cin, cout, stride):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class WideResNet(nn.Module):
    """torchvision's ResNet with channel counts round(64 w 2^k) (at least 1),
    returning the pooled features."""

    def __init__(self, depth, width, in_ch):
        super().__init__()
        block, counts = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                         50: (Bottleneck, [3, 4, 6, 3])}[depth]
        stem = max(1, round(64 * width))
        self.conv1 = nn.Conv2d(in_ch, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = stem, []
        for k, count in enumerate(counts):
            planes = max(1, round(64 * width * 2 ** k))
            blocks = []
            for b in range(count):
                blocks.append(block(cin, planes, 2 if (k > 0 and b == 0) else 1))
                cin = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = cin

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def encoder(depth, width, stem, in_ch):
    if width == 1:
        net = getattr(torchvision.models, f"resnet{depth}")()
        check = WideResNet(depth, 1, 3)
        assert sum(p.numel() for p in net.parameters()) - net.fc.weight.numel() - net.fc.bias.numel() \
            == sum(p.numel() for p in check.parameters()), "WideResNet differs from torchvision's layout"
        feature_dim = net.fc.in_features
        net.fc = nn.Identity()
    else:
        net = WideResNet(depth, width, in_ch)
        feature_dim = net.feature_dim
    if stem == "small":
        net.conv1 = nn.Conv2d(in_ch, net.conv1.out_channels, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_ch != 3:
        net.conv1 = nn.Conv2d(in_ch, net.conv1.out_channels, 7, 2, 3, bias=False)
    return net, feature_dim


def projection_head(dim, out=128):
    """SimCLR v2's 2-layer head: linear without bias + BN + ReLU, linear + BN."""
    return nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
                         nn.Linear(dim, out, bias=False), nn.BatchNorm1d(out))


def ntxent(z, tau=0.1):
    """Rows 2k and 2k+1 are the two views of pair k; the loss of every anchor
    against its positive and the 2N-2 negatives, summed over both directions
    and divided by N (SimCLR's loss_a + loss_b)."""
    u = F.normalize(z, dim=1)
    s = u @ u.t() / tau
    s = s.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(z)) ^ 1
    return F.cross_entropy(s, target, reduction="sum") / (len(z) // 2)


class LARS(torch.optim.Optimizer):
    """SimCLR's LARSOptimizer (classic momentum): g' = g + wd w, trust
    eta |w| / |g'|, v = m v + lr trust g', w -= v; parameters marked
    exclude (batch norms, biases) get neither decay nor trust ratio."""

    def __init__(self, groups, lr, momentum=0.9, weight_decay=1e-6, eta=0.001):
        super().__init__(groups, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      exclude=False))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                trust = 1.0
                if not group["exclude"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(g)
                    if w_norm > 0 and g_norm > 0:
                        trust = (group["eta"] * w_norm / g_norm).item()
                state = self.state[p]
                if "v" not in state:
                    state["v"] = torch.zeros_like(p)
                v = state["v"]
                v.mul_(group["momentum"]).add_(g, alpha=group["lr"] * trust)
                p.sub_(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--width", type=float, default=1)
    ap.add_argument("--stem", choices=["large", "small"], default="large")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)

    net, dim = encoder(a.depth, a.width, a.stem, a.channels)
    model = nn.Sequential(net, projection_head(dim)).train()
    decay, exclude = [], []
    for name, p in model.named_parameters():
        (exclude if p.ndim == 1 else decay).append(p)  # BN scales/shifts and biases are the 1-d ones
    opt = LARS([{"params": decay}, {"params": exclude, "exclude": True}], lr=0.3 * a.pairs / 256)
    rows = 2 * a.pairs
    x = torch.rand(rows, a.channels, a.size, a.size) * 2 - 1
    nparams = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; resnet{a.depth} x{a.width:g}, "
          f"{a.stem} stem, {a.channels} channels, {nparams} parameters; "
          f"{a.pairs} pairs ({rows} images) of {a.channels}x{a.size}x{a.size}", flush=True)

    best = float("inf")
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = ntxent(model(x))
        loss.backward()
        opt.step()
        t = time.perf_counter() - t0
        print(f"  step {s + 1}{' (warm-up)' if s < a.warmup else ''}: {t:.3f} s, loss {loss.item():.4f}",
              flush=True)
        if s >= a.warmup:
            best = min(best, t)
    print(f"best_step_s {best:.4f} images_per_s {rows / best:.2f} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
