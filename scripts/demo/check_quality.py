"""Does the demo ensemble beat its best model? Top-1 accuracy of every model and of the soft vote
on a split of the demo catalogue, computed with the official tools (the fastText and onnxruntime
Python packages), independently of the Rust server.

    .runtime/demo-venv/bin/python scripts/demo/check_quality.py [--split valid] [--json FILE]

Voting, as the server does it (src/combine/mod.rs): every model's probabilities are aligned by
label name (fastText labels through the manifest's rename_file). A label's soft-vote score is the
weighted mean over the models that have that label, so a partial model takes part only for its
own labels. Reported:

  plain     every model weight 1, no temperature, no groups, no rules: the weighted mean of the
            aligned probabilities, nothing else
  manifest  the manifest's weights, temperatures, groups (a soft vote inside each group, then
            across groups) and rules (keyword force; min_confidence abstains, counted as wrong)

Exits 1 when the plain soft vote does not beat the best single model.
"""

import argparse
import json
import os
import re
import sys
import time
import tomllib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from catalogue import join_fields  # noqa: E402


def load_manifest(path):
    with open(path, "rb") as f:
        m = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(path))
    defaults = m.get("defaults", {})
    models = [dict(defaults, **entry) for entry in m["model"]]
    renames = {}
    if "rename_file" in m:
        for line in common.read_lines(os.path.join(base, m["rename_file"])):
            if line.strip():
                old, new = line.split("\t", 1)
                renames[old] = new
    renames.update(m.get("rename", {}))
    labels = common.read_lines(os.path.join(base, m["label_file"]))
    return m, base, models, renames, labels


class Scores:
    """One model's probabilities on the split, over its own labels `ids` (global label ids):
    either a dense (items, len(ids)) block (ONNX) or, per row, the few labels reported (fastText:
    `rows`, `cols` (global ids), `vals`, best first within a row)."""

    def __init__(self, n, ids, dense=None, rows=None, cols=None, vals=None):
        self.n, self.ids = n, np.asarray(ids)
        self.dense, self.rows, self.cols, self.vals = dense, rows, cols, vals

    def top(self):
        if self.dense is not None:
            return self.ids[self.dense.argmax(axis=1)]
        top = np.full(self.n, -1)
        first = np.concatenate(([True], self.rows[1:] != self.rows[:-1])) if len(self.rows) else []
        top[self.rows[first]] = self.cols[first]
        return top

    def tempered(self, t):
        """p^(1/T), rescaled to each row's total (the server's `temperature`)."""
        if t == 1.0:
            return self
        inv = np.float32(1.0 / t)
        if self.dense is not None:
            q = np.power(self.dense, inv)
            q *= self.dense.sum(axis=1, keepdims=True) / np.maximum(
                q.sum(axis=1, keepdims=True), 1e-30)
            return Scores(self.n, self.ids, dense=q)
        q = np.power(self.vals, inv)
        scale = np.bincount(self.rows, self.vals, self.n) / np.maximum(
            np.bincount(self.rows, q, self.n), 1e-30)
        return Scores(self.n, self.ids, rows=self.rows, cols=self.cols,
                      vals=(q * scale[self.rows]).astype(np.float32))

    def add_to(self, acc, w=1.0):
        if self.dense is not None:
            acc[:, self.ids] += np.float32(w) * self.dense
        else:
            acc[self.rows, self.cols] += np.float32(w) * self.vals


def fasttext_scores(path, texts, renames, col, k):
    """What official fastText reports for its k best labels a row (k = -1: every label).
    Uncertain models report thousands of labels a row, which Python reads slowly; the default
    k = 64 leaves out labels worth < 1/64 of a model's mass each, which moves a label's mean over
    50 voters by well under 1e-3 (--fasttext-k -1 gives the exact vote)."""
    import fasttext

    model = fasttext.load_model(path)
    index = {l: col[renames.get(l[len(common.FT_PREFIX):], l[len(common.FT_PREFIX):])]
             for l in model.get_labels()}
    rows, cols, vals = [], [], []
    for i, t in enumerate(texts):
        pairs = model.f.predict(t + "\n", k, 0.0, "strict")
        rows.extend([i] * len(pairs))
        for p, name in pairs:
            vals.append(p)
            cols.append(index[name])
    return Scores(len(texts), sorted(index.values()), rows=np.asarray(rows, np.int64),
                  cols=np.asarray(cols, np.int64), vals=np.asarray(vals, np.float32))


def onnx_scores(spec, base, texts, col):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(os.path.join(base, spec["path"]), opts,
                                providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    inp = next(i for i in inputs if i.name == spec["input"]) if spec.get("input") else inputs[0]
    if "labels_file" in spec:
        own = common.read_lines(os.path.join(base, spec["labels_file"]))
    else:
        own = json.loads(sess.get_modelmeta().custom_metadata_map[spec["labels_metadata"]])
    out = np.zeros((len(texts), len(own)), dtype=np.float32)
    two_d = len(inp.shape) == 2
    for s in range(0, len(texts), 1024):
        arr = np.array(texts[s:s + 1024], dtype=object)
        (z,) = sess.run([spec.get("output")] if spec.get("output") else None,
                        {inp.name: arr.reshape(-1, 1) if two_d else arr})
        if spec.get("scores", "probabilities") == "logits":
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
        out[s:s + len(z)] = z
    return Scores(len(texts), [col[l] for l in own], dense=out)


def mean_over_coverage(total, weight):
    """Per label, the weighted mean over the voters that have it; -inf where none has it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.maximum(weight, 1e-30), -np.inf)


def apply_rules(manifest, items, scores, labels):
    """Top-1 after the manifest's keyword and min_confidence rules (-1: abstained)."""
    top = scores.argmax(axis=1)
    best = scores[np.arange(len(top)), top]
    lid = {l: i for i, l in enumerate(labels)}
    for rule in manifest.get("rule", []):
        if rule["type"] == "keyword" and rule.get("action") == "force":
            alt = "|".join(re.escape(k.strip()) for k in rule["keywords"])
            rx = re.compile(rf"(?i)(?:^|\W)(?:{alt})(?:\W|$)")
            for i, it in enumerate(items):
                if top[i] >= 0 and rx.search(it.get(rule["field"], "")):
                    top[i], best[i] = lid[rule["label"]], 1.0
        elif rule["type"] == "min_confidence" and "fallback" not in rule:
            top = np.where(best < rule["threshold"], -1, top)
    return top


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default=common.MANIFEST)
    ap.add_argument("--split", default="valid", help="valid (default), test, calib or a .jsonl")
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--fasttext-k", type=int, default=64,
                    help="labels read from each fastText model a row (-1: all; slower)")
    ap.add_argument("--limit", type=int, help="only the first N items of the split")
    args = ap.parse_args()

    manifest, base, models, renames, labels = load_manifest(args.manifest)
    col = {l: i for i, l in enumerate(labels)}
    path = args.split if args.split.endswith(".jsonl") else common.split_path(args.split)
    items = common.read_jsonl(path)[: args.limit]
    truth = np.array([col[it["label"]] for it in items])
    n, c = len(items), len(labels)

    plain_sum, plain_w = np.zeros((n, c), np.float32), np.zeros(c, np.float32)
    groups = {}  # group (or ungrouped model) -> [weighted sum, weight per label, outer weight]
    rows, started = [], time.monotonic()
    for spec in models:
        t = time.monotonic()
        texts = [join_fields(it, spec["fields"]) for it in items]
        if spec["kind"] == "fasttext":
            p = fasttext_scores(os.path.join(base, spec["path"]), texts, renames, col,
                                     args.fasttext_k)
        else:
            p = onnx_scores(spec, base, texts, col)
        mask = np.zeros(c, bool)
        mask[p.ids] = True
        top = p.top()
        top1 = float((top == truth).mean())
        covered = mask[truth]
        top1_cov = float((top[covered] == truth[covered]).mean())
        p.add_to(plain_sum)
        plain_w[mask] += 1.0
        w = float(spec.get("weight", 1.0))
        if w > 0:
            q = p.tempered(float(spec.get("temperature", 1.0)))
            name = spec.get("group") or "model " + spec["name"]  # ungrouped: a voter of its own
            g = groups.setdefault(name, [np.zeros((n, c), np.float32), np.zeros(c, np.float32),
                                         1.0 if spec.get("group") else w])
            q.add_to(g[0], w)
            g[1][mask] += w
        rows.append({"model": spec["name"], "kind": spec["kind"], "labels": len(p.ids),
                     "fields": "+".join(spec["fields"]), "top1": top1, "top1_covered": top1_cov,
                     "seconds": round(time.monotonic() - t, 1)})
        print(f"{spec['name']:<40} {spec['kind']:<8} {len(p.ids):>5} labels  top-1 {top1:.4f}"
              f"  (on its labels {top1_cov:.4f})  {rows[-1]['seconds']:>5.1f}s", flush=True)

    plain = mean_over_coverage(plain_sum, plain_w)
    plain_top1 = float((plain.argmax(axis=1) == truth).mean())
    # The manifest's vote: groups first, then across groups (+ ungrouped models).
    cfg = manifest.get("vote", {}).get("groups", {})
    outer_sum, outer_w = np.zeros((n, c), np.float32), np.zeros((n, c), np.float32)
    for name, (s, wl, w) in groups.items():
        gw = float(cfg.get(name, {}).get("weight", 1.0)) * w
        gp = mean_over_coverage(s, wl)
        has = np.isfinite(gp)
        outer_sum += np.where(has, gw * gp, 0)
        outer_w += np.where(has, gw, 0)
    voted = mean_over_coverage(outer_sum, outer_w)
    voted_top1 = float((voted.argmax(axis=1) == truth).mean())
    ruled = apply_rules(manifest, items, voted, labels)
    ruled_top1 = float((ruled == truth).mean())
    abstained = float((ruled < 0).mean())

    best = max(rows, key=lambda r: r["top1"])
    by_kind = {k: max((r for r in rows if r["kind"] == k), key=lambda r: r["top1"])
               for k in ("fasttext", "onnx")}
    print()
    print(f"split {args.split}: {n} items, {c} labels, {len(models)} models "
          f"({time.monotonic() - started:.0f}s)")
    for k, r in by_kind.items():
        print(f"  best {k:<9} {r['top1']:.4f}  {r['model']}")
    print(f"  best single     {best['top1']:.4f}  {best['model']}")
    print(f"  plain soft vote {plain_top1:.4f}  ({plain_top1 - best['top1']:+.4f} over the best)")
    print(f"  manifest vote   {voted_top1:.4f}  (groups, weights, temperatures)")
    print(f"  + rules         {ruled_top1:.4f}  (abstained on {abstained:.2%})")
    result = {"split": args.split, "items": n, "labels": c, "models": rows,
              "best_single": best, "plain_soft_vote_top1": plain_top1,
              "manifest_vote_top1": voted_top1, "manifest_vote_with_rules_top1": ruled_top1,
              "abstained": abstained}
    if args.json:
        common.write_json(args.json, result)
    if plain_top1 <= best["top1"]:
        print("FAIL: the plain soft vote does not beat the best single model", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
