#!/usr/bin/python3
"""Writes the PyTorch parity fixtures of safetensors import (test_safetensors).

    /usr/bin/python3 tests/torch/make_safetensors_fixtures.py [outdir]

needs torch and numpy only (Debian's python3-torch, python3-numpy): the
safetensors files are written with json and numpy as ckpt(1) shows, not
with the safetensors package.  For each case it writes, in outdir
(default tests/fixtures/):

    st_NAME.safetensors     the model's state dict, torchvision's names
    st_NAME_io.safetensors  an input batch (F32) and the outputs (F64):
                            eval.features, eval.logits (eval mode, running
                            statistics), then train.features, train.logits
                            (training mode, batch statistics)

The models are torchvision's layout at reduced width (the transcription of
make_resnet_fixtures.py, whose names and order are torchvision's: at width
1 its state dict is torchvision's resnetN's, key for key and shape for
shape, checked below when torchvision is installed), so the fixtures stay
small: torchvision's own ResNet-18 is 45 MB of weights.  Weights are
PyTorch's initialisation from a fixed seed, batch norm's affine
parameters and running statistics moved off their initial values.
ResNet-18 is stored as F32, ResNet-50 as F16 (the reader converts it).
The reference runs in float64 on the weights as stored, so the C test
compares float32 arithmetic against exact results; each io file's
metadata also says how far PyTorch's own float32 lands from them.
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_resnet_fixtures import ResNet  # noqa: E402

NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
         np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> numpy array, written in this order."""
    header, data, at = {"__metadata__": {"format": "pt", **(metadata or {})}}, [], 0
    for name, a in tensors.items():
        a = a.copy(order="C")  # (np.ascontiguousarray makes a scalar 1-d)
        data.append(a.astype(a.dtype.newbyteorder("<")).tobytes())
        header[name] = {"dtype": NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [at, at + a.nbytes]}
        at += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(data))


class Classifier(nn.Module):
    def __init__(self, encoder, classes, features):
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        h = self.encoder(x)
        return h, self.fc(h)


def state_dict(model):
    """torchvision's names: the encoder's own, fc.* for the classifier."""
    return {k[len("encoder."):] if k.startswith("encoder.") else k: v for k, v in model.state_dict().items()}


def check_torchvision_names(depth):
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed: names not compared")
        return
    ours = ResNet(depth, 1, "large", 3).state_dict()
    theirs = {k: v for k, v in getattr(torchvision.models, f"resnet{depth}")().state_dict().items()
              if not k.startswith("fc.")}
    assert list(ours) == list(theirs), f"resnet{depth}: names differ from torchvision's"
    assert all(ours[k].shape == theirs[k].shape for k in ours), f"resnet{depth}: shapes differ"
    print(f"resnet{depth} at width 1: torchvision's names and shapes")


def run_case(name, depth, width, stem, in_ch, classes, n, h, w, dtype):
    torch.manual_seed(depth)
    encoder = ResNet(depth, width, stem, in_ch)
    features = encoder.layer4[-1].bn2.num_features if depth < 50 else encoder.layer4[-1].bn3.num_features
    model = Classifier(encoder, classes, features)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
        # The values the file can hold (F16: rounded), which the reader
        # turns into float32 exactly.
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.copy_(torch.from_numpy(t.numpy().astype(dtype).astype(np.float32)))
    sd = {k: v.numpy().astype(dtype) if v.is_floating_point() else v.numpy() for k, v in state_dict(model).items()}
    write_safetensors(f"st_{name}.safetensors", sd)
    x = torch.from_numpy(np.random.default_rng(depth).standard_normal((n, in_ch, h, w)).astype(np.float32))
    m32, model = copy.deepcopy(model), model.double()
    out, meta = {"input": x.numpy()}, {"case": f"resnet{depth} x{width} {stem} stem {in_ch}ch, batch {n}x{h}x{w}"}
    with torch.no_grad():
        for mode in ("eval", "train"):
            model.train(mode == "train")
            m32.train(mode == "train")
            f, z = model(x.double())
            out[f"{mode}.features"], out[f"{mode}.logits"] = f.numpy(), z.numpy()
            # PyTorch's own float32 error, the yardstick for ours.
            f32, z32 = m32(x)
            for key, a, b in (("features", f32, f), ("logits", z32, z)):
                err = float((a.double() - b).abs().max() / b.abs().max())
                meta[f"torch_f32.{mode}.{key}"] = f"{err:.3g}"
    write_safetensors(f"st_{name}_io.safetensors", out, meta)
    print(f"st_{name}: {os.path.getsize(f'st_{name}.safetensors')} + {os.path.getsize(f'st_{name}_io.safetensors')} bytes")


CASES = [
    ("resnet18", 18, 1 / 16, "large", 3, 5, 4, 40, 36, np.float32),
    ("resnet50", 50, 1 / 16, "large", 1, 3, 4, 64, 56, np.float16),
]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.chdir(outdir)
    check_torchvision_names(18)
    check_torchvision_names(50)
    for case in CASES:
        run_case(*case)


if __name__ == "__main__":
    main()
