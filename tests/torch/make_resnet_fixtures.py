#!/usr/bin/python3
"""Writes the PyTorch parity fixture of lib/models/resnet.

    /usr/bin/python3 tests/torch/make_resnet_fixtures.py [outdir]

needs torch 1.13, numpy and msgpack (Debian's python3-torch, python3-numpy,
python3-msgpack), and writes outdir/resnet.mts (default tests/fixtures/).

The models are a transcription of torchvision 0.14's resnet.py (BasicBlock,
Bottleneck with the stride on the 3x3 conv, downsample = conv1x1 + BN) with
SimCLR's width multiplier and a "small" CIFAR stem (3x3 s1, no max pool);
Debian 12 has no torchvision package.  Every weight, input and output
gradient is a closed-form function of its index (below, and the same in
tests/unit/test_resnet.c), so the fixture holds only results: for each case
the parameter names in order, the features of a training-mode forward, every
parameter gradient after backward with d(features) = r, the running
statistics after that step, and the features of an eval-mode forward that
follows.  Computed in float64; the gradients are stored rounded to float32.
Each case also records how far PyTorch's own float32 run lands from those
float64 results (features, and the worst parameter gradient, relative to
the largest entry of the tensor), which sets the C test's tolerances.
A second backward adds gradients at the stage maps a decoder reads (the
stem's output before the max pool, layer1..layer4's outputs), for
resnet_backward_stages: every parameter gradient, and PyTorch's float32
error on it.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


LAYOUT = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
          50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
          152: (Bottleneck, [3, 8, 36, 3])}


def scaled(base, width):
    return max(1, int(np.floor(base * width + 0.5)))


class ResNet(nn.Module):
    def __init__(self, depth, width, stem, in_ch):
        super().__init__()
        block, counts = LAYOUT[depth]
        self.inplanes = scaled(64, width)
        if stem == "large":
            self.conv1 = nn.Conv2d(in_ch, self.inplanes, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_ch, self.inplanes, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "large" else nn.Identity()
        self.layer1 = self._make_layer(block, scaled(64, width), counts[0], 1)
        self.layer2 = self._make_layer(block, scaled(128, width), counts[1], 2)
        self.layer3 = self._make_layer(block, scaled(256, width), counts[2], 2)
        self.layer4 = self._make_layer(block, scaled(512, width), counts[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def _make_layer(self, block, planes, count, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, count):
            layers.append(block(self.inplanes, planes, 1, None))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


# The closed-form values (mirrored in tests/unit/test_resnet.c): an integer
# hash of (tensor, index) to 24 bits, so that both sides start from the
# same float32 numbers.

def hash24(tensor, index):
    h = (index.astype(np.uint64) * np.uint64(2654435761) + np.uint64(tensor) * np.uint64(40503)
         + np.uint64(12345)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(2246822519)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(13)
    return (h >> np.uint64(8)).astype(np.float64)


def centred(tensor, n):
    """Uniform-looking values in [-0.5, 0.5), exact in float32."""
    return hash24(tensor, np.arange(n)) / 16777216.0 - 0.5


def param_values(index, name, shape):
    n = int(np.prod(shape))
    u = centred(index, n)
    if len(shape) == 4:  # conv: uniform with Kaiming's variance 2 / fan_out
        bound = np.sqrt(6.0 / (shape[0] * shape[2] * shape[3]))
        v = 2 * bound * u
    elif name.endswith(".weight"):  # BN gamma around 1
        v = 1 + 0.4 * u
    else:  # BN beta
        v = 0.2 * u
    return v.astype(np.float32).reshape(shape)


INPUT_TENSOR, DFEATURES_TENSOR = 1000, 1001


def tensor(a, dtype):
    a = np.ascontiguousarray(a, dtype=dtype)
    name = {np.float32: "f32", np.float64: "f64"}[dtype]
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def build(depth, width, stem, in_ch, dtype):
    model = ResNet(depth, width, stem, in_ch)
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):
            p.copy_(torch.from_numpy(param_values(i, name, tuple(p.shape))))
    return model.to(dtype)


def train_step(model, x):
    """Training-mode forward, backward with d(features) = r."""
    model.train()
    features = model(x)
    r = torch.from_numpy(centred(DFEATURES_TENSOR, features.numel()).astype(np.float32)
                         .reshape(features.shape)).to(features.dtype)
    (features * r).sum().backward()
    return features.detach().double(), [p.grad.double() for p in model.parameters()]


STAGE_TENSOR = 2000   # r of stage s is tensor 2000 + s


def stage_step(model, x):
    """Training-mode forward; backward of sum(r f) plus sum(r_s stage_s) over
    the stem's output before the max pool and layer1..layer4's outputs (the
    maps a U-Net decoder reads, lib/models/resnet.h's stages 0-4)."""
    model.train()
    s0 = model.relu(model.bn1(model.conv1(x)))
    stages = [s0]
    cur = model.maxpool(s0)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        cur = layer(cur)
        stages.append(cur)
    features = torch.flatten(model.avgpool(cur), 1)
    r = torch.from_numpy(centred(DFEATURES_TENSOR, features.numel()).astype(np.float32)
                         .reshape(features.shape)).to(features.dtype)
    objective = (features * r).sum()
    for k, st in enumerate(stages):
        rk = torch.from_numpy(centred(STAGE_TENSOR + k, st.numel()).astype(np.float32).reshape(st.shape))
        objective = objective + (st * rk.to(st.dtype)).sum()
    objective.backward()
    return [p.grad.double() for p in model.parameters()]


def relative_error(a, ref):
    return float((a - ref).abs().max() / ref.abs().max())


def run_case(depth, width, stem, in_ch, n, h, w):
    x32 = torch.from_numpy(centred(INPUT_TENSOR, n * in_ch * h * w).astype(np.float32)
                           .reshape(n, in_ch, h, w))
    model = build(depth, width, stem, in_ch, torch.float64)
    x = x32.double()
    features, grads = train_step(model, x)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    running_mean = np.concatenate([m.running_mean.numpy() for m in bns])
    running_var = np.concatenate([m.running_var.numpy() for m in bns])
    model.eval()
    with torch.no_grad():
        eval_features = model(x)
    # How far PyTorch's own float32 lands from float64 on the same step:
    # narrow, deep nets with batch statistics over few values amplify
    # rounding, and the C test's tolerances scale with this.
    features32, grads32 = train_step(build(depth, width, stem, in_ch, torch.float32), x32)
    stage_grads = stage_step(build(depth, width, stem, in_ch, torch.float64), x)
    stage_grads32 = stage_step(build(depth, width, stem, in_ch, torch.float32), x32)
    return {
        "depth": depth, "width": width, "stem": stem, "in_ch": in_ch, "n": n, "h": h, "w": w,
        "names": " ".join(name for name, _ in model.named_parameters()),
        "features": tensor(features.numpy(), np.float64),
        "grads": tensor(np.concatenate([g.numpy().ravel() for g in grads]), np.float32),
        "running_mean": tensor(running_mean, np.float64),
        "running_var": tensor(running_var, np.float64),
        "eval_features": tensor(eval_features.numpy(), np.float64),
        "torch_f32_features_error": relative_error(features32, features),
        "torch_f32_grad_error": max(relative_error(a, b) for a, b in zip(grads32, grads)),
        "stage_grads": tensor(np.concatenate([g.numpy().ravel() for g in stage_grads]), np.float32),
        "torch_f32_stage_grad_error": max(relative_error(a, b) for a, b in zip(stage_grads32, stage_grads)),
    }


CASES = [
    (18, 1 / 32, "small", 3, 3, 12, 10),
    (50, 1 / 32, "large", 1, 2, 40, 36),
]


def main():
    import msgpack  # here, so that make_safetensors_fixtures.py can import the models without it

    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    path = os.path.join(outdir, "resnet.mts")
    with open(path, "wb") as f:
        f.write(msgpack.packb({"mts": 1, "tool": "make_resnet_fixtures.py", "args": []},
                              use_bin_type=True))
        for case in CASES:
            f.write(msgpack.packb(run_case(*case), use_bin_type=True))
    print(f"{path}: {len(CASES)} records, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
