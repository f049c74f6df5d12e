#!/usr/bin/python3
"""Writes the PyTorch parity fixture of the layers of PCRL's decoder.

    /usr/bin/python3 tests/torch/make_decoder_fixtures.py [outdir]

needs torch 1.13, numpy and msgpack (Debian's python3-torch, python3-numpy,
python3-msgpack), and writes outdir/decoder.mts (default tests/fixtures/):
one record per case of one decoder block of the official PCRL code
(Luchixiang/PCRL, pytorch/models/pcrl_model.py) with its gate and an
output head, in float64:

    g    = sigmoid(fc2(relu(fc1(code))))           code (n, 6): the view's flips and rotation
    u    = interpolate(x * g[:, :, None, None], scale_factor=2, mode="nearest")
    v    = relu(bn(conv3x3(cat([u, skip], 1))))   (training-mode batch norm)
    out  = sigmoid(conv3x3(v) + bias)
    loss = mse(out, target)

with the inputs, every weight, the output, the loss and the gradients of the
loss with respect to x, skip, code and every weight.  `make check` composes
the same block from lib/ (test_decoder_parity in tests/unit/test_layers.c).
The inputs come from a fixed seed: running the script again writes the same
bytes.
"""
import os
import sys

import msgpack
import numpy as np
import torch
import torch.nn.functional as F


def tensor(a):
    a = np.ascontiguousarray(a, dtype=np.float64)
    return {"dtype": "f64", "shape": list(a.shape), "data": a.astype("<f8").tobytes()}


def case(name, n, c, h, w, skip_ch, mid, out_ch, hidden, seed):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).requires_grad_()

    x = rand(n, c, h, w)
    skip = rand(n, skip_ch, 2 * h, 2 * w)
    code = torch.zeros(n, 6, dtype=torch.float64)
    for i in range(n):   # vflip, hflip, one-hot k of the 90-degree rotation
        code[i, 0], code[i, 1], code[i, 2 + (i * 3) % 4] = i % 2, (i // 2) % 2, 1
    code.requires_grad_()
    fc1_w, fc1_b = rand(hidden, 6, scale=0.5), rand(hidden, scale=0.5)
    fc2_w, fc2_b = rand(c, hidden, scale=0.5), rand(c, scale=0.5)
    conv_w = rand(mid, c + skip_ch, 3, 3, scale=0.3)
    bn_w, bn_b = rand(mid, scale=0.5), rand(mid, scale=0.5)
    head_w, head_b = rand(out_ch, mid, 3, 3, scale=0.3), rand(out_ch, scale=0.3)
    target = torch.rand(n, out_ch, 2 * h, 2 * w, generator=g, dtype=torch.float64)

    gate = torch.sigmoid(F.linear(F.relu(F.linear(code, fc1_w, fc1_b)), fc2_w, fc2_b))
    u = F.interpolate(x * gate[:, :, None, None], scale_factor=2, mode="nearest")
    v = F.conv2d(torch.cat([u, skip], 1), conv_w, padding=1)
    v = F.relu(F.batch_norm(v, None, None, bn_w, bn_b, training=True, eps=1e-5))
    out = torch.sigmoid(F.conv2d(v, head_w, head_b, padding=1))
    loss = F.mse_loss(out, target)
    inputs = {"x": x, "skip": skip, "code": code, "fc1_w": fc1_w, "fc1_b": fc1_b, "fc2_w": fc2_w,
              "fc2_b": fc2_b, "conv_w": conv_w, "bn_w": bn_w, "bn_b": bn_b, "head_w": head_w, "head_b": head_b}
    grads = torch.autograd.grad(loss, list(inputs.values()))
    rec = {"case": name, "n": n, "c": c, "h": h, "w": w, "skip_ch": skip_ch, "mid": mid, "out_ch": out_ch,
           "hidden": hidden, "loss": float(loss), "target": tensor(target.detach()), "out": tensor(out.detach())}
    for (k, v_), d in zip(inputs.items(), grads):
        rec[k] = tensor(v_.detach())
        rec["d_" + k] = tensor(d)
    return rec


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
    records = [case("square", 2, 4, 3, 3, 3, 5, 2, 8, 1), case("odd", 3, 3, 3, 5, 2, 4, 1, 6, 2)]
    path = os.path.join(outdir, "decoder.mts")
    with open(path, "wb") as f:
        f.write(msgpack.packb({"mts": 1, "tool": "make_decoder_fixtures.py", "args": []}, use_bin_type=True))
        for r in records:
            f.write(msgpack.packb(r, use_bin_type=True))
    print(f"{path}: {len(records)} records, {os.path.getsize(path)} bytes")


main()
