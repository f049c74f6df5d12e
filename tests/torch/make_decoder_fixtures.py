#!/usr/bin/python3
"""Writes the PyTorch parity fixtures of PCRL's decoder: its layers and the whole U-Net decoder.

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
the same block from lib/ (decoder_block_torch_parity in tests/unit/test_layers.c).

It also writes outdir/unet.mts: the whole decoder of lib/models/unet.h (five such
blocks over a ResNet-18's bottleneck and stage maps, the gate on the
bottleneck, a 3x3 head with bias and a sigmoid) for a small and a large
stem, with its weights under lib/models/unet.h's names, the inputs, the output
and the gradients of sum(r * output) with respect to the bottleneck, the
skips, the code and every weight (tests/unit/test_unet.c).
The inputs come from a fixed seed: running the script again writes the same
bytes.
"""
import os
import sys

import msgpack
import numpy as np
import torch
import torch.nn.functional as F


def tensor(a, f32=False):
    a = np.ascontiguousarray(a, dtype=np.float64)
    return {"dtype": "f32" if f32 else "f64", "shape": list(a.shape),
            "data": a.astype("<f4" if f32 else "<f8").tobytes()}


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


def unet_case(name, stem, width, h, n, seed, alpha=None):
    """lib/models/unet.h's decoder over ResNet-18 at this width and stem, for h x h images;
    with alpha, PCRL's hybrid context: alpha A + (1 - alpha) B of two inputs, each
    bottleneck gated by its own code (B's maps get no gradient)."""
    g = torch.Generator().manual_seed(seed)

    # Inputs and weights are f32 values (stored as f32: what the decoder
    # reads), computed on in float64.
    def rand(*shape, scale=1.0):
        x = (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale
        return x.float().double().requires_grad_()

    def wid(c):
        return max(1, round(c * width))
    # Stage maps of ResNet-18: the stem, layer1..layer4.
    if stem == "large":
        sizes = [h // 2, h // 4, h // 8, h // 16, h // 32]
    else:
        sizes = [h, h, h // 2, h // 4, h // 8]
    chans = [wid(64), wid(64), wid(128), wid(256), wid(512)]
    bottleneck = rand(n, chans[4], sizes[4], sizes[4])
    skips = [rand(n, chans[s], sizes[s], sizes[s]) for s in (3, 2, 1, 0)]
    code = torch.zeros(n, 6, dtype=torch.float64)
    for i in range(n):
        code[i, 0], code[i, 1], code[i, 2 + (i * 3) % 4] = i % 2, (i + 1) % 2, 1
    code.requires_grad_()
    if alpha is not None:
        bottleneck_b = rand(n, chans[4], sizes[4], sizes[4]).detach()
        skips_b = [rand(n, chans[s], sizes[s], sizes[s]).detach() for s in (3, 2, 1, 0)]
        code_b = torch.zeros(n, 6, dtype=torch.float64)
        for i in range(n):
            code_b[i, 0], code_b[i, 1], code_b[i, 2 + (i + 1) % 4] = (i + 1) % 2, i % 2, 1
    params = {}
    widths = [wid(c) for c in (256, 128, 64, 32, 16)]
    cin, cur = chans[4], sizes[4]
    blocks = []
    for i in range(5):
        skip_ch, target = (chans[3 - i], sizes[3 - i]) if i < 4 else (0, h)
        up = target > cur
        out = widths[i]
        for j, ci in ((1, cin + skip_ch), (2, out)):
            params[f"decoder.blocks.{i}.conv{j}.0.weight"] = rand(out, ci, 3, 3, scale=0.4)
            params[f"decoder.blocks.{i}.conv{j}.1.weight"] = rand(out, scale=0.5)
            params[f"decoder.blocks.{i}.conv{j}.1.bias"] = rand(out, scale=0.5)
        blocks.append((up, skip_ch))
        cin, cur = out, target
    params["decoder.head.weight"] = rand(1, cin, 3, 3, scale=0.4)
    params["decoder.head.bias"] = rand(1, scale=0.3)
    params["decoder.gate.fc1.weight"] = rand(256, 6, scale=0.4)
    params["decoder.gate.fc1.bias"] = rand(256, scale=0.4)
    params["decoder.gate.fc2.weight"] = rand(chans[4], 256, scale=0.1)
    params["decoder.gate.fc2.bias"] = rand(chans[4], scale=0.4)

    def conv_bn_relu(x, prefix):
        x = F.conv2d(x, params[prefix + ".0.weight"], padding=1)
        return F.relu(F.batch_norm(x, None, None, params[prefix + ".1.weight"], params[prefix + ".1.bias"],
                                   training=True, eps=1e-5))
    def gate(c):
        return torch.sigmoid(F.linear(F.relu(F.linear(c, params["decoder.gate.fc1.weight"],
                                                      params["decoder.gate.fc1.bias"])),
                                      params["decoder.gate.fc2.weight"], params["decoder.gate.fc2.bias"]))
    x = bottleneck * gate(code)[:, :, None, None]
    used_skips = skips
    if alpha is not None:
        x = alpha * x + (1 - alpha) * bottleneck_b * gate(code_b)[:, :, None, None]
        used_skips = [alpha * a + (1 - alpha) * b for a, b in zip(skips, skips_b)]
    for i, (up, skip_ch) in enumerate(blocks):
        if up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip_ch:
            x = torch.cat([x, used_skips[i]], 1)
        x = conv_bn_relu(x, f"decoder.blocks.{i}.conv1")
        x = conv_bn_relu(x, f"decoder.blocks.{i}.conv2")
    out = torch.sigmoid(F.conv2d(x, params["decoder.head.weight"], params["decoder.head.bias"], padding=1))
    r = (torch.rand(out.shape, generator=g, dtype=torch.float64) * 2 - 1).float().double()
    objective = (r * out).sum()
    wrt = [bottleneck] + skips + [code] + list(params.values())
    grads = torch.autograd.grad(objective, wrt)
    rec = {"case": name, "stem": stem, "width": width, "h": h, "n": n, "in_ch": 1,
           "bottleneck": tensor(bottleneck.detach(), True), "d_bottleneck": tensor(grads[0]),
           "code": tensor(code.detach(), True), "d_code": tensor(grads[5]), "r": tensor(r, True),
           "out": tensor(out.detach()),
           "params": list(params.keys())}
    for k in range(4):
        rec[f"skip{k}"] = tensor(skips[k].detach(), True)
        rec[f"d_skip{k}"] = tensor(grads[1 + k])
    if alpha is not None:
        rec["alpha"] = alpha
        rec["bottleneck_b"] = tensor(bottleneck_b, True)
        rec["code_b"] = tensor(code_b, True)
        for k in range(4):
            rec[f"skip_b{k}"] = tensor(skips_b[k], True)
    for (k, v), d in zip(params.items(), grads[6:]):
        rec[k] = tensor(v.detach(), True)
        rec["d_" + k] = tensor(d)
    return rec


def write(path, tool, records):
    with open(path, "wb") as f:
        f.write(msgpack.packb({"mts": 1, "tool": tool, "args": []}, use_bin_type=True))
        for r in records:
            f.write(msgpack.packb(r, use_bin_type=True))
    print(f"{path}: {len(records)} records, {os.path.getsize(path)} bytes")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
    records = [case("square", 2, 4, 3, 3, 3, 5, 2, 8, 1), case("odd", 3, 3, 3, 5, 2, 4, 1, 6, 2)]
    write(os.path.join(outdir, "decoder.mts"), "make_decoder_fixtures.py", records)
    write(os.path.join(outdir, "unet.mts"), "make_decoder_fixtures.py",
          [unet_case("small stem", "small", 1 / 16, 16, 2, 3), unet_case("large stem", "large", 1 / 16, 32, 3, 4),
           unet_case("mixed", "small", 1 / 16, 16, 2, 5, alpha=0.6875)])


main()
