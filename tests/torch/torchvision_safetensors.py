#!/usr/bin/python3
"""torchvision's side of tests/tools/ckpt.sh (run only when torch is installed).

    torchvision_safetensors.py make OUT.pth DEPTH CLASSES
        a torchvision ResNet with random weights (seed 1) and running
        statistics moved off their initial values, saved as a state dict
    torchvision_safetensors.py compare FILE.safetensors IMAGES.mts OURS.mts
        loads FILE strictly (every key, no other) into torchvision's ResNet
        of the depth and classes it holds, runs it in eval mode on the f32
        images of IMAGES.mts and compares its logits with the first tensor
        of each record of OURS.mts (embed -k logits); prints the largest
        difference relative to the largest logit, exits 1 above 1e-4

The safetensors file is read with json and numpy only, as ckpt(1) shows.
Needs python3-torch, python3-torchvision, python3-numpy, python3-msgpack.
"""
import json
import sys

import msgpack
import numpy as np
import torch
import torchvision

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    return {k: torch.from_numpy(np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                              DTYPES[v["dtype"]]).reshape(v["shape"]).copy())
            for k, v in header.items()}


def tensors(path):
    """The first tensor of every record of a raw stream, as numpy arrays."""
    dt = {"u8": "<u1", "u16": "<u2", "i32": "<i4", "i64": "<i8", "f32": "<f4", "f64": "<f8"}
    out = []
    for frame in msgpack.Unpacker(open(path, "rb"), raw=False):
        if "mts" in frame:
            continue
        t = next(v for v in frame.values() if isinstance(v, dict) and "dtype" in v)
        out.append(np.frombuffer(t["data"], dt[t["dtype"]]).reshape(t["shape"]))
    return np.stack(out)


def depth_of(sd):
    blocks = [sum(1 for k in sd if k.startswith(f"layer{l}.") and k.endswith(".conv1.weight")) for l in (1, 2, 3, 4)]
    bottleneck = "layer1.0.conv3.weight" in sd
    return {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
            (True, (3, 4, 23, 3)): 101, (True, (3, 8, 36, 3)): 152}[(bottleneck, tuple(blocks))]


def make(out, depth, classes):
    torch.manual_seed(1)
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(3)
    torch.save(model.state_dict(), out)


def compare(path, images, ours):
    sd = read_safetensors(path)
    model = getattr(torchvision.models, f"resnet{depth_of(sd)}")(num_classes=sd["fc.weight"].shape[0])
    model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        theirs = model(torch.from_numpy(tensors(images).astype(np.float32))).double().numpy()
    mine = tensors(ours).astype(np.float64).reshape(theirs.shape)
    err = float(np.abs(mine - theirs).max() / np.abs(theirs).max())
    print(f"{len(theirs)} images, {theirs.shape[1]} logits: largest difference {err:.2e} of the largest logit")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4]))
