"""Paths and small helpers shared by the generator, its jobs and the quality check."""

import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEMO = os.path.join(REPO, "models", "demo")  # the manifest's folder: manifest paths start here
GEN = os.path.join(DEMO, "generated")
DATA = os.path.join(GEN, "data")
REPORTS = os.path.join(GEN, "reports")
LABELS = os.path.join(GEN, "labels.txt")
RENAMES = os.path.join(GEN, "renames.tsv")
MANIFEST = os.path.join(DEMO, "manifest.toml")
FT_PREFIX = "__label__"


def demo_path(rel):
    """A manifest-relative path (`generated/...`) as a real path."""
    return os.path.join(DEMO, rel)


def split_path(split):
    return os.path.join(DATA, f"{split}.jsonl")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def write_json(path, obj):
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def department(label):
    return label.split(" > ", 1)[0]


def model_labels(spec, all_labels):
    """The labels a model covers, in label-file order (all of them unless `depts` is set)."""
    if not spec.get("depts"):
        return list(all_labels)
    keep = set(spec["depts"])
    return [l for l in all_labels if department(l) in keep]


def training_rows(spec, rows, rng):
    """The training items a model sees: its departments, then its bagging sample."""
    if spec.get("depts"):
        keep = set(spec["depts"])
        rows = [r for r in rows if department(r["label"]) in keep]
    if spec.get("sample"):
        k = int(len(rows) * spec["sample"])
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), k))]
    return rows


CALIB_ROWS = 2000  # enough for one scalar; more only costs time


def fit_temperature(probs, truth):
    """The temperature T that minimises the negative log-likelihood of the truth under
    p^(1/T) rescaled to the row's total, which is what the server does with `temperature`.

    `probs`: (items, k) what the model reported for each item (0 where it reported nothing);
    `truth`: the column of each item's true label, -1 where the model did not report it (counts
    as p = 1e-9). Only items whose true label the model covers belong here. Golden-section search
    on log T in [0.2, 5]; returns (T, NLL at T, NLL at T = 1).
    """
    import numpy as np

    probs = np.asarray(probs, dtype=np.float32)[:CALIB_ROWS]
    truth = np.asarray(truth)[:CALIB_ROWS]
    rows = np.arange(len(truth))
    hit = truth >= 0
    total = probs.sum(axis=1)
    with np.errstate(divide="ignore"):
        logp = np.log(probs)  # -inf where nothing was reported: exp(-inf) = 0 below

    def nll(log_t):
        z = logp / math.exp(log_t)
        m = z.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
        lp = np.full(len(truth), math.log(1e-9))
        lp[hit] = z[rows[hit], truth[hit]] - lse[hit] + np.log(total[hit])
        return float(-np.minimum(lp, 0.0).mean())

    a, b = math.log(0.2), math.log(5.0)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(20):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(d)
    log_t = (a + b) / 2
    return math.exp(log_t), nll(log_t), nll(0.0)
