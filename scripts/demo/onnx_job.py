"""Fits one ONNX model of the demo ensemble with numpy and exports it (run by the generator, one
fresh process a model).

    python onnx_job.py '<spec as JSON>'          (spec: an entry of models.MODELS)

The exported graph takes the raw text (string tensor [N], or [N, 1]) and computes its features
itself, so the server needs to know nothing about them:

    StringNormalizer (lower case, locale "C": the default en_US.UTF-8 is often not installed)
    → com.microsoft Tokenizer (words: runs of [a-z0-9]; or single characters)
    → TfIdfVectorizer (a fixed vocabulary of word or character n-grams, IDF weights)
    → L2 normalisation → MatMul + ReLU (hidden layer) → MatMul (one score per label)
    → Softmax (outputs "probabilities") or nothing (outputs "logits")

Fitting, honest and cheap: Adam on minibatches of 512 with a sampled softmax (the batch's own
labels plus 1,024 random ones instead of all 7,200), a few epochs. A temperature fitted on the
calib split is folded into the last layer. Then onnxruntime must reproduce the numpy model on
2,000 calib items (within 1e-4, probability rows summing to 1) and survive odd inputs (empty,
blank, non-ASCII). Writes generated/reports/<name>.json and, when asked, <name>.labels.txt.
"""

import json
import os
import re
import string
import sys
import time
from collections import Counter

import numpy as np
import scipy.sparse as sp

import common
from catalogue import join_fields

OPSET, IR_VERSION = 17, 8
WORD_RE, WORD_TOKENEXP = re.compile(r"[a-z0-9]+"), "[a-z0-9]+"
PAD = "\x01"  # the Tokenizer's padding token: never part of a vocabulary n-gram
LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
BATCH, NEGATIVES = 512, 1024


def distinct(a):
    """Sorted distinct values (numpy's hash-based np.unique is several times slower here)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


def unique_counts(a):
    a = np.sort(a)
    if not len(a):
        return a, np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate(([True], a[1:] != a[:-1])))
    return a[starts], np.diff(np.append(starts, len(a)))


def lower(text):
    """What StringNormalizer LOWER does with locale "C": ASCII letters only."""
    return text.translate(LOWER)


class Features:
    """TF-IDF over word or character n-grams, exactly as the exported graph computes it."""

    def __init__(self, kind, ngram_min, ngram_max, max_vocab, min_df):
        self.kind, self.lo, self.hi = kind, ngram_min, ngram_max
        self.max_vocab, self.min_df = max_vocab, min_df

    def _word_grams(self, texts):
        """Per text, its word n-grams as strings ("a" or "a b")."""
        out = []
        for t in texts:
            toks = WORD_RE.findall(lower(t))
            out.append([" ".join(toks[j:j + n]) for n in range(self.lo, self.hi + 1)
                        for j in range(len(toks) - n + 1)])
        return out

    def _char_grams(self, texts):
        """(row, key) of every character n-gram, key = the n bytes | n << 40; vectorised over the
        whole corpus, which is why it needs ASCII (the catalogue is, and it is checked here)."""
        blob = "".join(lower(t) for t in texts)
        assert blob.isascii() and "\n" not in blob, "the demo catalogue is ASCII without newlines"
        data = np.frombuffer(blob.encode("ascii"), dtype=np.uint8).astype(np.int64)
        lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        ends = np.cumsum(lens)
        row_of = np.repeat(np.arange(len(texts)), lens)
        rows, keys = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for n in range(self.lo, self.hi + 1):
            m = len(data) - n + 1
            if m <= 0:
                continue
            code = np.zeros(m, dtype=np.int64)
            for k in range(n):
                code = (code << 8) | data[k:k + m]
            r = row_of[:m]
            ok = np.arange(m) + n <= ends[r]
            rows.append(r[ok])
            keys.append(code[ok] | (n << 40))
        return np.concatenate(rows), np.concatenate(keys)

    def fit(self, texts):
        """The vocabulary: n-grams in at least `min_df` texts, the `max_vocab` most frequent."""
        if self.kind == "word":
            df = Counter()
            for grams in self._word_grams(texts):
                df.update(set(grams))
            ranked = sorted((g for g, c in df.items() if c >= self.min_df),
                            key=lambda g: (-df[g], g))[: self.max_vocab]
            grams, counts = ranked, [df[g] for g in ranked]
        else:
            rows, keys = self._char_grams_cached(texts)
            k, counts = unique_counts(distinct(rows << 44 | keys) & ((1 << 44) - 1))
            keep = counts >= self.min_df
            k, counts = k[keep], counts[keep]
            order = np.lexsort((k, -counts))[: self.max_vocab]
            grams, counts = [self._decode(int(c)) for c in k[order]], counts[order].tolist()
        # The pool is grouped by n-gram length; the output columns follow the pool.
        order = sorted(range(len(grams)), key=lambda i: (len(self._tokens(grams[i])), i))
        self.grams = [grams[i] for i in order]
        self.index = {g: i for i, g in enumerate(self.grams)}
        df = np.array([counts[i] for i in order], dtype=np.float64)
        self.idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
        return self

    @staticmethod
    def _decode(key):
        n, code = int(key >> 40), int(key & ((1 << 40) - 1))
        return tuple(chr((code >> (8 * (n - 1 - j))) & 0xFF) for j in range(n))

    def _tokens(self, gram):
        return gram.split(" ") if self.kind == "word" else list(gram)

    def fit_transform(self, texts):
        self._cache = (texts, self._char_grams(texts) if self.kind == "char" else None)
        try:
            return self.fit(texts).transform(texts)
        finally:
            self._cache = None

    def _char_grams_cached(self, texts):
        cache = getattr(self, "_cache", None)
        if cache is not None and cache[0] is texts:
            return cache[1]
        return self._char_grams(texts)

    def transform(self, texts):
        """(n, V) CSR: counts × IDF, each row scaled to unit L2 norm (zero rows stay zero)."""
        if self.kind == "word":
            rows, cols = [], []
            for i, grams in enumerate(self._word_grams(texts)):
                ids = [self.index[g] for g in grams if g in self.index]
                cols.extend(ids)
                rows.extend([i] * len(ids))
            rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        else:
            rows, keys = self._char_grams_cached(texts)
            vocab = np.array([self._encode(g) for g in self.grams], dtype=np.int64)
            order = np.argsort(vocab)
            pos = np.minimum(np.searchsorted(vocab[order], keys), len(vocab) - 1)
            hit = vocab[order][pos] == keys
            rows, cols = rows[hit], order[pos[hit]]
        x = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                          shape=(len(texts), len(self.grams)), dtype=np.float32)
        x.sum_duplicates()
        x = sp.csr_matrix(x.multiply(self.idf[None, :]), dtype=np.float32)
        norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float32).ravel())
        scale = (1.0 / np.maximum(norm, 1e-6)).astype(np.float32)
        return sp.csr_matrix(sp.diags(scale) @ x, dtype=np.float32)

    @staticmethod
    def _encode(gram):
        code = 0
        for ch in gram:
            code = (code << 8) | ord(ch)
        return code | (len(gram) << 40)

    def onnx_nodes(self, text_in, out):
        from onnx import helper

        pool, counts = [], []
        for n in range(1, self.hi + 1):
            counts.append(len(pool))
            for g in self.grams:
                toks = self._tokens(g)
                if len(toks) == n:
                    pool.extend(toks)
        return [
            helper.make_node("StringNormalizer", [text_in], ["lowered"], case_change_action="LOWER",
                             is_case_sensitive=0, locale="C", name="lowercase"),
            helper.make_node("Tokenizer", ["lowered"], ["tokens"], domain="com.microsoft", mark=0,
                             pad_value=PAD, mincharnum=1,
                             tokenexp=WORD_TOKENEXP if self.kind == "word" else ".",
                             name="tokenize"),
            helper.make_node("TfIdfVectorizer", ["tokens"], [out], mode="TFIDF",
                             min_gram_length=self.lo, max_gram_length=self.hi, max_skip_count=0,
                             ngram_counts=counts, ngram_indexes=list(range(len(self.grams))),
                             pool_strings=pool, weights=[float(w) for w in self.idf],
                             name="tfidf"),
        ]


class Adam:
    """Adam whose updates can touch only some rows (the lazy variant, for sparse gradients)."""

    def __init__(self, param, lr):
        self.p, self.lr = param, lr
        self.m, self.v = np.zeros_like(param), np.zeros_like(param)

    def step(self, grad, rows=None, b1=0.9, b2=0.999, eps=1e-7):
        if rows is None:
            self.m *= b1
            self.m += (1 - b1) * grad
            self.v *= b2
            self.v += (1 - b2) * grad * grad
            self.p -= self.lr * self.m / (np.sqrt(self.v) + eps)
            return
        m = self.m[rows] * b1 + (1 - b1) * grad
        v = self.v[rows] * b2 + (1 - b2) * grad * grad
        self.m[rows], self.v[rows] = m, v
        self.p[rows] -= self.lr * m / (np.sqrt(v) + eps)


def fit(x, y, classes, hidden, epochs, lr, seed):
    """x (n, V) CSR, y label ids → W1 (V, H), b1, W2 (H, C), b2 by sampled-softmax Adam."""
    rng = np.random.default_rng(seed)
    vocab = x.shape[1]
    w1 = (rng.standard_normal((vocab, hidden)) * 0.5).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2t = np.zeros((classes, hidden), np.float32)  # rows = labels: sampled rows are gathered
    b2 = np.zeros(classes, np.float32)
    opt = [Adam(p, lr) for p in (w1, b1, w2t, b2)]
    n = x.shape[0]
    for _ in range(epochs):
        perm = rng.permutation(n)
        for s in range(0, n, BATCH):
            idx = perm[s:s + BATCH]
            xb, yb = x[idx], y[idx]
            pre = xb @ w1 + b1
            h = np.maximum(pre, 0)
            cand = distinct(np.concatenate([yb, rng.integers(0, classes, NEGATIVES)]))
            pos = np.searchsorted(cand, yb)
            w2s = w2t[cand]
            z = h @ w2s.T + b2[cand]
            z -= z.max(axis=1, keepdims=True)
            g = np.exp(z)
            g /= g.sum(axis=1, keepdims=True)
            g[np.arange(len(yb)), pos] -= 1.0
            g /= len(yb)
            dh = (g @ w2s) * (pre > 0)
            opt[2].step(g.T @ h, cand)
            opt[3].step(g.sum(axis=0), cand)
            opt[1].step(dh.sum(axis=0))
            # dW1 = xb.T @ dh, only on the vocabulary rows this batch touched
            touched = distinct(xb.indices)
            small = sp.csr_matrix((xb.data, np.searchsorted(touched, xb.indices), xb.indptr),
                                  shape=(len(idx), len(touched)))
            opt[0].step(np.asarray(small.T @ dh), touched)
    return w1, b1, np.ascontiguousarray(w2t.T), b2


def forward(x, w1, b1, w2, b2):
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def export(spec, feats, w1, b1, w2, b2, labels, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_shape = ["N", 1] if spec["input_2d"] else ["N"]
    nodes = []
    text = "text"
    if spec["input_2d"]:
        nodes.append(helper.make_node("Reshape", ["text", "flat_shape"], ["text_flat"],
                                      name="flatten"))
        text = "text_flat"
    nodes += feats.onnx_nodes(text, "tfidf")
    out = "probabilities" if spec["scores"] == "probabilities" else "logits"
    nodes += [
        helper.make_node("Mul", ["tfidf", "tfidf"], ["squares"], name="square"),
        helper.make_node("ReduceSum", ["squares", "axis1"], ["sum_squares"], keepdims=1,
                         name="sum_squares"),
        helper.make_node("Sqrt", ["sum_squares"], ["norm"], name="norm"),
        helper.make_node("Max", ["norm", "eps"], ["safe_norm"], name="safe_norm"),
        helper.make_node("Div", ["tfidf", "safe_norm"], ["features"], name="l2_normalise"),
        helper.make_node("MatMul", ["features", "w1"], ["hidden_mm"], name="hidden_matmul"),
        helper.make_node("Add", ["hidden_mm", "b1"], ["hidden_pre"], name="hidden_bias"),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"], name="relu"),
        helper.make_node("MatMul", ["hidden", "w2"], ["out_mm"], name="output_matmul"),
        helper.make_node("Add", ["out_mm", "b2"], ["logits" if out == "logits" else "scores"],
                         name="output_bias"),
    ]
    if out == "probabilities":
        nodes.append(helper.make_node("Softmax", ["scores"], ["probabilities"], axis=-1,
                                      name="softmax"))
    inits = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "eps"),
        numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2"),
    ]
    if spec["input_2d"]:
        inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
    graph = helper.make_graph(
        nodes, spec["name"].replace("-", "_"),
        [helper.make_tensor_value_info("text", TensorProto.STRING, n_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", len(labels)])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="lastmile-demo", opset_imports=[
        helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = IR_VERSION
    meta = {"fields": json.dumps(spec["fields"]), "features": json.dumps(spec["features"])}
    if spec["labels"] == "metadata":
        meta["labels"] = json.dumps(labels, ensure_ascii=False)
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def ort_check(spec, path, texts, expected):
    """onnxruntime must load the model and give what numpy gives; odd inputs must not break it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()

    def run(batch):
        arr = np.array(batch, dtype=object)
        if spec["input_2d"]:
            arr = arr.reshape(-1, 1)
        (out,) = sess.run(None, {inp.name: arr})
        return out

    got = np.concatenate([run(texts[i:i + 1024]) for i in range(0, len(texts), 1024)])
    diff = float(np.abs(got - expected).max())
    assert diff < 1e-4 * max(1.0, float(np.abs(expected).max())), f"onnxruntime differs by {diff}"
    odd = run(["", "   ", "\u00c4\u00d6\u00dc \u2615 \u65e5\u672c\u8a9e", "a"])
    assert np.isfinite(odd).all()
    if spec["scores"] == "probabilities":
        sums = np.concatenate([got.sum(axis=1), odd.sum(axis=1)])
        assert np.abs(sums - 1).max() < 1e-4, "probability rows must sum to 1"
    return diff


def main():
    spec = json.loads(sys.argv[1])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.monotonic()
    import random

    all_labels = common.read_lines(common.LABELS)
    labels = common.model_labels(spec, all_labels)
    col = {l: i for i, l in enumerate(labels)}
    rows = common.training_rows(spec, common.read_jsonl(common.split_path("train")),
                                random.Random(spec["seed"]))
    texts = [join_fields(r, spec["fields"]) for r in rows]
    feats = Features(**spec["features"])
    x = feats.fit_transform(texts)
    y = np.array([col[r["label"]] for r in rows])
    t_feat = time.monotonic() - start
    cpu = {"features": time.process_time()}

    w1, b1, w2, b2 = fit(x, y, len(labels), spec["hidden"], spec["epochs"], spec["lr"],
                         spec["seed"])
    t_fit = time.monotonic() - start - t_feat
    cpu["fit"] = time.process_time()

    calib = [r for r in common.read_jsonl(common.split_path("calib")) if r["label"] in col]
    ctexts = [join_fields(r, spec["fields"]) for r in calib]
    cy = np.array([col[r["label"]] for r in calib])
    logits = forward(feats.transform(ctexts), w1, b1, w2, b2)
    probs = softmax(logits)
    top1 = float((probs.argmax(axis=1) == cy).mean())
    temperature, nll, nll_t1 = common.fit_temperature(probs, cy)
    w2, b2 = w2 / np.float32(temperature), b2 / np.float32(temperature)
    logits = logits / np.float32(temperature)
    expected = softmax(logits) if spec["scores"] == "probabilities" else logits

    t_calib = time.monotonic() - start - t_feat - t_fit
    cpu["calib"] = time.process_time()
    path = common.demo_path(spec["path"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    export(spec, feats, w1, b1, w2.astype(np.float32), b2.astype(np.float32), labels, path)
    if spec["labels"] == "file":
        with open(path[: -len(".onnx")] + ".labels.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
    t_export = time.monotonic() - start - t_feat - t_fit - t_calib
    cpu["export"] = time.process_time()
    n = common.CALIB_ROWS  # as many as the temperature saw: enough to catch any mismatch
    diff = ort_check(spec, path, ctexts[:n], expected[:n].astype(np.float32))

    common.write_json(os.path.join(common.REPORTS, spec["name"] + ".json"), {
        "spec": spec,
        "train_items": len(rows),
        "labels": len(labels),
        "vocabulary": len(feats.grams),
        "nnz_per_item": round(x.nnz / max(1, x.shape[0]), 1),
        "bytes": os.path.getsize(path),
        "seconds": round(time.monotonic() - start, 2),
        "features_seconds": round(t_feat, 2),
        "fit_seconds": round(t_fit, 2),
        "calib_seconds": round(t_calib, 2),
        "export_seconds": round(t_export, 2),
        "temperature": round(temperature, 3),
        "ort_max_abs_diff": diff,
        "cpu": {k: round(v, 1) for k, v in cpu.items()} | {"check": round(time.process_time(), 1)},
        "calib": {"items": len(calib), "top1": round(top1, 4), "nll": round(nll, 4),
                  "nll_at_t1": round(nll_t1, 4)},
    })


if __name__ == "__main__":
    main()
