"""Trains one fastText model of the demo ensemble (run by the generator, one fresh process a model).

    python fasttext_job.py '<spec as JSON>'      (spec: an entry of models.MODELS)

Why a process per model, `thread=1` and `MALLOC_PERTURB_=255` (set by the generator): official
fastText 0.9.3 fills a new input matrix in ten blocks, one per training thread, and leaves the
rest as malloc returned it; reused heap memory then gives "Encountered NaN" on a second training in
one process, and hogwild training with several threads is not reproducible. One thread per model,
two models at a time, keeps both cores busy and every file byte-identical from run to run.

After training: the model is reloaded, its labels checked against the taxonomy, and a temperature
fitted on the calib split (written into the manifest; the server applies it). Writes
generated/reports/<name>.json.
"""

import json
import os
import random
import sys
import tempfile
import time

import numpy as np

import common
from catalogue import join_fields as join, slug


def train(spec, rows, out_path):
    import fasttext

    fd, txt = tempfile.mkstemp(prefix=spec["name"] + ".", suffix=".txt", dir=common.GEN)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(common.FT_PREFIX + slug(r["label"]) + " " + join(r, spec["fields"]) + "\n")
    params = dict(spec["params"])
    tries = []
    try:
        for attempt in range(3):
            try:
                model = fasttext.train_supervised(input=txt, thread=1, seed=spec["seed"],
                                                  verbose=0, **params)
                break
            except RuntimeError as e:  # "Encountered NaN": a learning rate too high for the data
                if "NaN" not in str(e) or attempt == 2:
                    raise
                tries.append(params["lr"])
                params["lr"] = round(params["lr"] / 2, 4)
        if spec.get("quantize"):
            q = spec["quantize"]
            model.quantize(input=txt, qnorm=q["qnorm"], cutoff=q["cutoff"], retrain=q["retrain"],
                           dsub=q["dsub"], thread=1, verbose=0)
        model.save_model(out_path)
    finally:
        os.remove(txt)
    return params, tries


def main():
    spec = json.loads(sys.argv[1])
    import fasttext

    out = common.demo_path(spec["path"])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    labels = common.read_lines(common.LABELS)
    rng = random.Random(spec["seed"])
    rows = common.training_rows(spec, common.read_jsonl(common.split_path("train")), rng)

    start = time.monotonic()
    params, nan_retries = train(spec, rows, out)
    seconds = time.monotonic() - start

    model = fasttext.load_model(out)
    by_slug = {slug(l): l for l in labels}
    own = [l[len(common.FT_PREFIX):] for l in model.get_labels()]
    unknown = [l for l in own if l not in by_slug]
    assert not unknown, f"{spec['name']}: labels outside the taxonomy: {unknown[:3]}"
    expected = set(common.model_labels(spec, labels))
    got = {by_slug[l] for l in own}
    assert got == expected, f"{spec['name']}: covers {len(got)} labels, expected {len(expected)}"

    # Calibration on the calib split (items the model covers only; as many as the fit uses).
    col = {l: i for i, l in enumerate(own)}
    calib = [r for r in common.read_jsonl(common.split_path("calib")) if r["label"] in expected]
    calib = calib[: common.CALIB_ROWS]
    probs = np.zeros((len(calib), len(own)), dtype=np.float32)
    for i, r in enumerate(calib):
        for p, l in model.f.predict(join(r, spec["fields"]) + "\n", -1, 0.0, "strict"):
            probs[i, col[l[len(common.FT_PREFIX):]]] = p
    truth = np.array([col[slug(r["label"])] for r in calib])
    top1 = float((probs.argmax(axis=1) == truth).mean())
    truth = np.where(probs[np.arange(len(truth)), truth] > 0, truth, -1)
    temperature, nll, nll_t1 = common.fit_temperature(probs, truth)

    common.write_json(os.path.join(common.REPORTS, spec["name"] + ".json"), {
        "spec": spec,
        "params": params,
        "nan_retries": nan_retries,
        "train_items": len(rows),
        "labels": len(own),
        "words": len(model.get_words()),
        "bytes": os.path.getsize(out),
        "seconds": round(time.monotonic() - start, 2),
        "train_seconds": round(seconds, 2),
        "temperature": round(temperature, 2),
        "calib": {"items": len(calib), "top1": round(top1, 4), "nll": round(nll, 4),
                  "nll_at_t1": round(nll_t1, 4)},
    })


if __name__ == "__main__":
    main()
