#!/usr/bin/python3
"""Writes the PyTorch parity fixtures of lib/training/loss and lib/training/optim.

    /usr/bin/python3 tests/torch/make_loss_fixtures.py [outdir]

needs torch 1.13, numpy and msgpack (Debian's python3-torch, python3-numpy,
python3-msgpack), and writes into outdir (default tests/fixtures/):

  loss.mts   NT-Xent, softmax cross entropy, sigmoid BCE and InfoNCE against a
             queue of keys (MoCo's, PCRL's contrast): inputs, the loss
             and its gradient from torch autograd in float64, top-1 counts.
  optim.mts  SGD (momentum, Nesterov, weight decay) and AdamW trajectories
             from torch.optim, LARS from a numpy transcription of SimCLR's
             lars_optimizer.py: per-step gradients and learning rates, the
             weights after every step, the final optimiser state.

Both are tensor streams (see mts(5)): a header map, then one record map per
case; `make check` reads them without torch.  The inputs come from a fixed
seed, so running the script again writes the same bytes.
"""
import os
import sys

import msgpack
import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.int64): "i64"}


def tensor(a):
    a = np.ascontiguousarray(a)
    return {"dtype": DTYPES[a.dtype], "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def write_stream(path, records):
    with open(path, "wb") as f:
        f.write(msgpack.packb({"mts": 1, "tool": "make_loss_fixtures.py", "args": []}, use_bin_type=True))
        for r in records:
            f.write(msgpack.packb(r, use_bin_type=True))
    print(f"{path}: {len(records)} records, {os.path.getsize(path)} bytes")


# ---- losses ------------------------------------------------------------------

def ntxent_interleaved(z, tau, lo, hi):
    """The loss share of anchors [lo, hi): rows 2k, 2k+1 are pair k; summed directions."""
    rows = z.shape[0]
    u = F.normalize(z, dim=1)
    s = u @ u.T / tau
    s = s.masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))
    pos = torch.arange(rows) ^ 1
    loss = F.cross_entropy(s[lo:hi], pos[lo:hi], reduction="sum") / (rows // 2)
    correct = int((s[lo:hi].argmax(dim=1) == pos[lo:hi]).sum())
    return loss, correct


def ntxent_simclr_reference(z, tau):
    """objective.add_contrastive_loss of SimCLR (one replica), on the same pairs."""
    u = F.normalize(z, dim=1)
    h1, h2 = u[0::2], u[1::2]  # the reference stacks all first views, then all second views
    n = h1.shape[0]
    mask = torch.eye(n, dtype=z.dtype) * 1e9
    aa = h1 @ h1.T / tau - mask
    bb = h2 @ h2.T / tau - mask
    ab = h1 @ h2.T / tau
    ba = h2 @ h1.T / tau
    labels = torch.arange(n)
    loss_a = F.cross_entropy(torch.cat([ab, aa], 1), labels)
    loss_b = F.cross_entropy(torch.cat([ba, bb], 1), labels)
    return loss_a + loss_b


def ntxent_case(rng, pairs, dim, tau, noise, lo=None, hi=None):
    rows = 2 * pairs
    lo = 0 if lo is None else lo
    hi = rows if hi is None else hi
    a = rng.standard_normal((pairs, dim))
    b = a + noise * rng.standard_normal((pairs, dim))
    z32 = np.empty((rows, dim), np.float32)
    z32[0::2], z32[1::2] = a, b
    z = torch.tensor(z32, dtype=torch.float64, requires_grad=True)
    loss, correct = ntxent_interleaved(z, tau, lo, hi)
    loss.backward()
    if (lo, hi) == (0, rows):
        ref = ntxent_simclr_reference(z.detach(), tau)
        assert abs(float(ref) - float(loss)) < 1e-12 * abs(float(loss)), (float(ref), float(loss))
    return {"kind": "ntxent", "z": tensor(z32), "tau": float(tau), "lo": lo, "hi": hi,
            "loss": float(loss), "dz": tensor(z.grad.numpy()), "correct": correct}


def softmax_case(rng, n, classes, scale):
    x32 = (scale * rng.standard_normal((n, classes))).astype(np.float32)
    labels = rng.integers(0, classes, n).astype(np.int64)
    x = torch.tensor(x32, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(x, torch.tensor(labels))
    loss.backward()
    correct = int((x.detach().argmax(dim=1) == torch.tensor(labels)).sum())
    return {"kind": "softmax_xent", "logits": tensor(x32), "labels": tensor(labels),
            "loss": float(loss), "dlogits": tensor(x.grad.numpy()), "correct": correct}


def bce_case(rng, n, classes, scale):
    x32 = (scale * rng.standard_normal((n, classes))).astype(np.float32)
    t32 = (rng.random((n, classes)) < 0.3).astype(np.float32)
    x = torch.tensor(x32, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.BCEWithLogitsLoss()(x, torch.tensor(t32, dtype=torch.float64))
    loss.backward()
    return {"kind": "sigmoid_bce", "logits": tensor(x32), "targets": tensor(t32),
            "loss": float(loss), "dlogits": tensor(x.grad.numpy())}


def infonce_case(rng, n, dim, queue_size, tau):
    """MoCo's InfoNCE: q normalised with its gradient, k and the (unit) queue without."""
    q32 = rng.standard_normal((n, dim)).astype(np.float32)
    k32 = (q32 + 0.6 * rng.standard_normal((n, dim))).astype(np.float32)
    queue = rng.standard_normal((queue_size, dim))
    queue32 = (queue / np.linalg.norm(queue, axis=1, keepdims=True)).astype(np.float32)
    q = torch.tensor(q32, dtype=torch.float64, requires_grad=True)
    u, v = F.normalize(q, dim=1), F.normalize(torch.tensor(k32, dtype=torch.float64), dim=1)
    logits = torch.cat([(u * v).sum(1, keepdim=True), u @ torch.tensor(queue32, dtype=torch.float64).T], 1) / tau
    loss = F.cross_entropy(logits, torch.zeros(n, dtype=torch.long))
    loss.backward()
    correct = int((logits[:, 0:1] > logits[:, 1:]).all(1).sum())
    return {"kind": "infonce", "q": tensor(q32), "k": tensor(k32), "queue": tensor(queue32), "tau": float(tau),
            "loss": float(loss), "dq": tensor(q.grad.numpy()), "correct": correct}


def loss_records():
    rng = np.random.default_rng(20240611)
    return [
        ntxent_case(rng, pairs=8, dim=8, tau=0.5, noise=0.8),
        ntxent_case(rng, pairs=32, dim=32, tau=0.1, noise=1.0),
        # the share of anchors [10, 26) of a gathered batch (one of several processes)
        ntxent_case(rng, pairs=16, dim=16, tau=0.2, noise=0.7, lo=10, hi=26),
        softmax_case(rng, n=16, classes=27, scale=2.0),
        softmax_case(rng, n=4, classes=5, scale=30.0),   # saturated softmax
        bce_case(rng, n=16, classes=5, scale=2.0),
        bce_case(rng, n=4, classes=5, scale=40.0),       # saturated sigmoids
        # after the others, so that their inputs stay what they were
        infonce_case(rng, n=16, dim=32, queue_size=200, tau=0.2),
    ]


# ---- optimisers ----------------------------------------------------------------

STEPS = 5
# name, shape, no_decay; "zero.weight" starts at 0 (LARS's trust ratio 1 branch)
PARAMS = [("fc.weight", (4, 3), False), ("fc.bias", (3,), True), ("zero.weight", (2, 2), False)]


def optim_inputs(rng):
    init = {n: rng.standard_normal(s).astype(np.float32) for n, s, _ in PARAMS}
    init["zero.weight"][:] = 0
    grads = {n: rng.standard_normal((STEPS,) + s).astype(np.float32) for n, s, _ in PARAMS}
    return init, grads


def torch_trajectory(make_opt, init, grads, lrs, state_keys):
    ps = {n: torch.tensor(init[n], requires_grad=True) for n, _, _ in PARAMS}
    opt = make_opt([ps[n] for n, _, d in PARAMS if not d], [ps[n] for n, _, d in PARAMS if d])
    after = {n: [] for n in ps}
    for t in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        for n, p in ps.items():
            p.grad = torch.tensor(grads[n][t])
        opt.step()
        for n, p in ps.items():
            after[n].append(p.detach().numpy().copy())
    state = {}
    for n, p in ps.items():
        for ours, theirs in state_keys:
            state[f"{n}.{ours}"] = opt.state[p][theirs].numpy().copy()
    return after, state, int(opt.state[ps["fc.weight"]].get("step", torch.tensor(STEPS)))


def lars_trajectory(init, grads, lrs, momentum, wd, eta, nesterov):
    """SimCLR's LARSOptimizer.apply_gradients (classic_momentum=True) in numpy float64."""
    w = {n: init[n].astype(np.float64) for n in init}
    v = {n: np.zeros_like(w[n]) for n in w}
    after = {n: [] for n in w}
    for t in range(STEPS):
        for n, _, no_decay in PARAMS:
            grad = grads[n][t].astype(np.float64)
            if wd and not no_decay:
                grad = grad + wd * w[n]
            trust = 1.0
            if not no_decay:
                w_norm, g_norm = np.linalg.norm(w[n]), np.linalg.norm(grad)
                trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
            scaled_lr = lrs[t] * trust
            next_v = momentum * v[n] + scaled_lr * grad
            update = momentum * next_v + scaled_lr * grad if nesterov else next_v
            w[n] = w[n] - update
            v[n] = next_v
            after[n].append(w[n].copy())
    return after, {f"{n}.momentum": v[n] for n in v}, STEPS


def optim_record(name, cfg, lrs, init, grads, after, state, steps):
    r = {"case": name, "steps": steps, "lr": tensor(np.array(lrs, np.float64))}
    r.update(cfg)
    for n, _, no_decay in PARAMS:
        r[f"{n}.no_decay"] = int(no_decay)
        r[f"{n}.init"] = tensor(init[n])
        r[f"{n}.grads"] = tensor(grads[n])
        r[f"{n}.after"] = tensor(np.stack(after[n]).astype(np.float64))
    for k, a in state.items():
        r[f"state:{k}"] = tensor(np.asarray(a, np.float64))
    return r


def optim_records():
    rng = np.random.default_rng(7)
    records = []
    for nesterov in (False, True):
        init, grads = optim_inputs(rng)
        lrs = [0.1, 0.05, 0.2, 0.1, 0.02]
        cfg = {"optimizer": "sgd", "momentum": 0.9, "nesterov": int(nesterov), "weight_decay": 0.01}
        make = lambda decay, no_decay: torch.optim.SGD(
            [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lrs[0], momentum=0.9, nesterov=nesterov, weight_decay=0.01)
        after, state, steps = torch_trajectory(make, init, grads, lrs, [("momentum", "momentum_buffer")])
        records.append(optim_record("sgd_nesterov" if nesterov else "sgd_momentum", cfg, lrs,
                                    init, grads, after, state, steps))
    init, grads = optim_inputs(rng)
    lrs = [1e-2, 5e-3, 2e-2, 1e-2, 1e-3]
    cfg = {"optimizer": "adamw", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1}
    make = lambda decay, no_decay: torch.optim.AdamW(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lrs[0], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    after, state, steps = torch_trajectory(make, init, grads, lrs,
                                           [("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq")])
    records.append(optim_record("adamw", cfg, lrs, init, grads, after, state, steps))
    for nesterov in (False, True):
        init, grads = optim_inputs(rng)
        lrs = [1.0, 0.5, 2.0, 1.0, 0.3]
        cfg = {"optimizer": "lars", "momentum": 0.9, "nesterov": int(nesterov), "weight_decay": 0.05,
               "trust_coef": 0.001}
        after, state, steps = lars_trajectory(init, grads, lrs, 0.9, 0.05, 0.001, nesterov)
        records.append(optim_record("lars_nesterov" if nesterov else "lars", cfg, lrs,
                                    init, grads, after, state, steps))
    return records


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    write_stream(os.path.join(outdir, "loss.mts"), loss_records())
    write_stream(os.path.join(outdir, "optim.mts"), optim_records())


if __name__ == "__main__":
    main()
