#!/usr/bin/python3
"""Writes the score streams that tests/tools/auc.sh feeds to auc(1), and the
values scikit-learn computes for them.

    /usr/bin/python3 tests/sklearn/make_auc_fixtures.py [outdir]

needs scikit-learn, numpy and msgpack (Debian's python3-sklearn, python3-numpy,
python3-msgpack) and writes into outdir (default tests/fixtures/):

  auc_multiclass.mts         5 classes, "probs", header with "task" and "classes";
                             scores drawn from a pool of 24 vectors: many ties
  auc_multiclass_logits.mts  5 classes, "logits" only, no "task" in the header
                             (auc applies softmax, as sklearn would be given)
  auc_multilabel.mts         5 labels, "probs" on a 0.05 grid: many ties
  auc_multilabel_logits.mts  5 labels, "logits", some above 37 (where sigmoid
                             rounds to 1 in double: auc ranks the logits, except
                             with --per-case mean, which averages sigmoids)
  auc_per_image.mts          5 classes, 1 to 3 records per case, cases interleaved
  auc_undefined_mc.mts       4 classes, class 2 never the label
  auc_undefined_ml.mts       3 labels, label 1 on every record
  auc_bad_*.mts              one defect each (label out of range, K mismatch,
                             NaN score, mixed label types, a header that
                             contradicts the labels, a case with two labels)
  auc_expected.txt           lines "RUN KEY VALUE": per class AUC (auc.K), the
                             mean (mean_auc), top-1/top-3 accuracy, undefined
                             classes (undefined.K), and the byte offset of the
                             bad record of each auc_bad_* stream (offset)

Every stream is a header map then one record map per score vector (see
mts(5)).  The inputs come from a fixed seed, so running the script again
writes the same bytes; `make check` compares against auc_expected.txt without
needing scikit-learn.
"""
import math
import os
import sys

import msgpack
import numpy as np
from sklearn.metrics import roc_auc_score, top_k_accuracy_score

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures")
CLASSES = ["melanoma", "nevus", "basal cell carcinoma", "seborrheic keratosis", "eczema"]
FINDINGS = ["atelectasis", "cardiomegaly", "consolidation", "edema", "pleural effusion"]
expected = []


def tensor(a, dtype=np.float32):
    a = np.ascontiguousarray(a, dtype=dtype)
    name = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}[a.dtype]
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def write_stream(name, records, **header):
    """Writes the stream; returns the byte offset of every record."""
    offsets = []
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(msgpack.packb({"mts": 1, "tool": "make_auc_fixtures.py", "args": [], **header}, use_bin_type=True))
        for r in records:
            offsets.append(f.tell())
            f.write(msgpack.packb(r, use_bin_type=True))
    print(f"{name}: {len(records)} records, {os.path.getsize(os.path.join(OUT, name))} bytes")
    return offsets


def note(run, key, value):
    expected.append(f"{run} {key} {value!r}" if isinstance(value, float) else f"{run} {key} {value}")


def softmax(row):
    """As auc computes it: in double, the maximum subtracted, summed in index order."""
    m = max(row)
    e = [math.exp(x - m) for x in row]
    s = 0.0
    for v in e:
        s += v
    return [v / s for v in e]


def expect_multiclass(run, y, p):
    """sklearn's numbers for multi-class labels y (n,) and scores p (n, K) in float64."""
    k = p.shape[1]
    aucs = []
    for c in range(k):
        if 0 < (y == c).sum() < len(y):
            aucs.append(roc_auc_score(y == c, p[:, c]))
            note(run, f"auc.{c}", aucs[-1])
        else:
            note(run, f"undefined.{c}", "no_positives" if (y == c).sum() == 0 else "no_negatives")
    if len(aucs) == k:
        # sklearn's one-vs-rest macro average (it checks that rows sum to 1)
        mean = roc_auc_score(y, p, multi_class="ovr", average="macro")
        assert abs(mean - np.mean(aucs)) < 1e-12
    else:
        mean = float(np.mean(aucs))
    note(run, "mean_auc", mean)
    labels = list(range(k))
    note(run, "top1", top_k_accuracy_score(y, p, k=1, labels=labels))
    note(run, "top3", top_k_accuracy_score(y, p, k=3, labels=labels))


def expect_multilabel(run, y, p):
    aucs = []
    for c in range(y.shape[1]):
        if 0 < y[:, c].sum() < len(y):
            aucs.append(roc_auc_score(y[:, c], p[:, c]))
            note(run, f"auc.{c}", aucs[-1])
        else:
            note(run, f"undefined.{c}", "no_positives" if y[:, c].sum() == 0 else "no_negatives")
    if len(aucs) == y.shape[1]:
        mean = roc_auc_score(y, p, average="macro")
        assert abs(mean - np.mean(aucs)) < 1e-12
    else:
        mean = float(np.mean(aucs))
    note(run, "mean_auc", mean)


def distinct_pool(rng, count, k, make):
    """count score vectors with k distinct entries each (no ties within a row,
    so that top-k does not depend on how ties are broken)."""
    pool = []
    while len(pool) < count:
        v = make()
        if len(set(v.tolist())) == k:
            pool.append(v)
    return np.array(pool)


def draw_rows(rng, pool, n, k, hit):
    """Labels and pool rows: with chance `hit` a row whose top class is the label."""
    y = rng.integers(0, k, n)
    rows = np.empty(n, int)
    for i in range(n):
        own = np.flatnonzero(pool.argmax(1) == y[i])
        rows[i] = rng.choice(own) if len(own) and rng.random() < hit else rng.integers(len(pool))
    return y, rows


def multiclass(rng):
    k = 5
    pool = distinct_pool(rng, 24, k, lambda: rng.dirichlet(np.ones(k)).astype(np.float32))
    y, rows = draw_rows(rng, pool, 300, k, 0.55)
    p = pool[rows]
    write_stream("auc_multiclass.mts",
                 [{"case": f"mc{i:04d}", "label": int(y[i]), "probs": tensor(p[i])} for i in range(len(y))],
                 task="multiclass", classes=CLASSES)
    expect_multiclass("multiclass", y, p.astype(np.float64))


def multiclass_logits(rng):
    k = 5
    pool = distinct_pool(rng, 20, k, lambda: (np.round(rng.normal(0, 1.5, k) * 4) / 4).astype(np.float32))
    y, rows = draw_rows(rng, pool, 300, k, 0.5)
    logits = pool[rows]
    write_stream("auc_multiclass_logits.mts",
                 [{"case": f"lg{i:04d}", "inst": 0, "label": int(y[i]), "logits": tensor(logits[i])}
                  for i in range(len(y))])
    p = np.array([softmax([float(x) for x in row]) for row in logits])
    expect_multiclass("multiclass_logits", y, p)


def multilabel_labels(rng, n, k, prevalence):
    return (rng.random((n, k)) < prevalence).astype(np.int64)


def multilabel(rng):
    n, k = 300, 5
    y = multilabel_labels(rng, n, k, np.array([0.1, 0.2, 0.3, 0.15, 0.4]))
    p = np.clip(0.3 + 0.25 * y + rng.normal(0, 0.2, (n, k)), 0, 1)
    p = (np.round(p * 20) / 20).astype(np.float32)  # a 0.05 grid: about 21 values per label
    write_stream("auc_multilabel.mts",
                 [{"case": f"ml{i:04d}", "label": [int(v) for v in y[i]], "probs": tensor(p[i])} for i in range(n)],
                 task="multilabel", classes=FINDINGS)
    expect_multilabel("multilabel", y, p.astype(np.float64))


def multilabel_logits(rng):
    n, k = 300, 5
    y = multilabel_labels(rng, n, k, np.array([0.3, 0.2, 0.25, 0.35, 0.5]))
    logits = np.round((-1 + 2 * y + rng.normal(0, 1.5, (n, k))) * 2) / 2
    # Confident rows: sigmoid(38) and sigmoid(45) are both 1.0 in double.
    big = rng.random((n, k)) < 0.05
    logits[big] = 37.5 + 0.5 * rng.integers(0, 16, big.sum())
    logits = logits.astype(np.float32)
    write_stream("auc_multilabel_logits.mts",
                 [{"case": f"ll{i:04d}", "label": [int(v) for v in y[i]], "logits": tensor(logits[i])}
                  for i in range(n)],
                 task="multilabel")
    expect_multilabel("multilabel_logits", y, logits.astype(np.float64))
    # --per-case mean averages probabilities, so it applies the sigmoid first
    # (one record per case here: the mean is the sigmoid itself, ties and all).
    sigmoid = np.array([[1 / (1 + math.exp(-float(x))) for x in row] for row in logits])
    expect_multilabel("multilabel_logits_mean", y, sigmoid)


def per_image(rng):
    k, cases = 5, 120
    def make():
        v = np.round(rng.dirichlet(np.ones(k)) * 40) + 1
        return (v / v.sum()).astype(np.float32)

    pool = distinct_pool(rng, 12, k, make)
    y = rng.integers(0, k, cases)
    records = []
    for c in range(cases):
        for inst in range(int(rng.integers(1, 4))):
            own = np.flatnonzero(pool.argmax(1) == y[c])
            row = rng.choice(own) if len(own) and rng.random() < 0.5 else rng.integers(len(pool))
            records.append((c, inst, pool[row]))
    order = rng.permutation(len(records))  # cases interleaved, not one after another
    records = [records[i] for i in order]
    write_stream("auc_per_image.mts",
                 [{"case": f"pc{c:04d}", "inst": inst, "label": int(y[c]), "probs": tensor(p)}
                  for c, inst, p in records],
                 task="multiclass", classes=CLASSES)
    expect_multiclass("per_image", np.array([y[c] for c, _, _ in records]),
                      np.array([p for _, _, p in records], dtype=np.float64))
    # --per-case mean: as auc averages, summed in record order, then divided.
    sums = [[0.0] * k for _ in range(cases)]
    counts = [0] * cases
    first_seen = []
    for c, _, p in records:
        if counts[c] == 0:
            first_seen.append(c)
        counts[c] += 1
        for j in range(k):
            sums[c][j] += float(p[j])
    mean = np.array([[s / counts[c] for s in sums[c]] for c in first_seen])
    expect_multiclass("per_image_mean", y[first_seen], mean)


def undefined(rng):
    n, k = 60, 4
    y = rng.choice([0, 1, 3], n)
    p = rng.dirichlet(np.ones(k), n).astype(np.float32)
    write_stream("auc_undefined_mc.mts",
                 [{"case": f"u{i:03d}", "label": int(y[i]), "probs": tensor(p[i])} for i in range(n)],
                 task="multiclass")
    expect_multiclass("undefined_mc", y, p.astype(np.float64))
    y = multilabel_labels(rng, n, 3, 0.4)
    y[:, 1] = 1
    p = rng.random((n, 3)).astype(np.float32)
    write_stream("auc_undefined_ml.mts",
                 [{"case": f"v{i:03d}", "label": [int(v) for v in y[i]], "probs": tensor(p[i])} for i in range(n)])
    expect_multilabel("undefined_ml", y, p.astype(np.float64))


def bad(rng):
    k = 5

    def good(i):
        return {"case": f"b{i}", "label": int(rng.integers(0, k)), "probs": tensor(rng.dirichlet(np.ones(k)))}

    def write_bad(name, bad_record, at=3, **header):
        """bad_record: the record, or a function making it from the good ones."""
        records = [good(i) for i in range(6)]
        records[at] = bad_record(records) if callable(bad_record) else bad_record
        offsets = write_stream(f"auc_bad_{name}.mts", records, **header)
        note(f"bad_{name}", "offset", offsets[at])

    write_bad("label_range", {"case": "b3", "label": 5, "probs": tensor(rng.dirichlet(np.ones(k)))})
    write_bad("k_mismatch", {"case": "b3", "label": 1, "probs": tensor(rng.dirichlet(np.ones(k - 1)))})
    write_bad("nan", {"case": "b3", "label": 1, "probs": tensor([0.1, 0.2, float("nan"), 0.3, 0.4])})
    write_bad("mixed", {"case": "b3", "label": [0, 1, 0, 0, 1], "probs": tensor(rng.dirichlet(np.ones(k)))})
    write_bad("task", {"case": "b0", "label": 1, "probs": tensor(rng.dirichlet(np.ones(k)))}, at=0,
              task="multilabel")
    write_bad("case_labels", lambda records: {"case": "b0", "label": (records[0]["label"] + 1) % k,
                                              "probs": records[0]["probs"]})


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261121)
    multiclass(rng)
    multiclass_logits(rng)
    multilabel(rng)
    multilabel_logits(rng)
    per_image(rng)
    undefined(rng)
    bad(rng)
    with open(os.path.join(OUT, "auc_expected.txt"), "w") as f:
        f.write("# written by tests/sklearn/make_auc_fixtures.py (scikit-learn roc_auc_score,\n"
                "# top_k_accuracy_score); lines: RUN KEY VALUE\n")
        f.write("\n".join(expected) + "\n")
    print(f"auc_expected.txt: {len(expected)} values")


main()
