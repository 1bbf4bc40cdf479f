"""Writes models/demo/manifest.toml from the model specs and what their jobs reported.

The manifest is committed (it documents the demo ensemble); everything it points at is under
generated/, which is not. Its content depends only on the specs and on the fitted temperatures
(rounded to two decimals, so that a rerun writes the same file).
"""

import json
import os

import common
from catalogue import SPECIAL_DEPT, SPECIAL_CAT, SPECIAL_LEAF
from models import MODELS

HEADER = """\
# The demo ensemble: {n} models ({n_ft} fastText, {n_onnx} ONNX) over a synthetic product taxonomy
# of {labels} leaf categories. Written by scripts/demo/generate (which also makes every file under
# generated/, ignored by git): edit scripts/demo/manifest.py, not this file.
#
#   scripts/demo/generate                                   # ~8 min the first time, then instant
#   cargo run --release -- check models/demo/manifest.toml
#
# The models differ in what they read (title, description or both), how they tokenise, their size
# and loss, their training sample (bagging) and the departments they cover (partial models take
# part only for their own labels). Temperatures were fitted on the generator's calib split.
"""

VOTE = """\
# Two groups, one vote each: the fastText models and the ONNX models each average their
# (temperature-calibrated) probabilities label by label, then the two groups are averaged.
[vote]
strategy = "soft"
agreement_k = 3

[vote.groups.fasttext]
strategy = "soft"
weight = 1.0

[vote.groups.onnx]
strategy = "soft"
weight = 1.0
"""

RULES = """\
# A new leaf that the models have barely seen (4 training items) but whose listings always say
# "eGift" in the title: business knowledge the models could not learn yet.
[[rule]]
type = "keyword"
name = "egift-cards"
field = "title"
keywords = ["egift", "e-gift"]
label = "{special}"
action = "force"

# Listings that say almost nothing (a few generic words, no description) get a flat, low-scoring
# answer: refuse to guess rather than file them anywhere.
[[rule]]
type = "min_confidence"
name = "too-vague"
threshold = {threshold}
"""

MIN_CONFIDENCE = 0.02


def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def toml_list(xs):
    return "[" + ", ".join(toml_str(x) for x in xs) + "]"


def model_entry(spec, report):
    lines = ["[[model]]", f"name = {toml_str(spec['name'])}", f"kind = {toml_str(spec['kind'])}",
             f"path = {toml_str(spec['path'])}"]
    if spec["fields"] != ["title", "description"]:
        lines.append(f"fields = {toml_list(spec['fields'])}")
    if spec["kind"] == "fasttext":
        lines.append('group = "fasttext"')
        if abs(report["temperature"] - 1.0) >= 0.005:
            lines.append(f"temperature = {report['temperature']:.2f}")
    else:
        out = "probabilities" if spec["scores"] == "probabilities" else "logits"
        lines += ['input = "text"', f"output = {toml_str(out)}", f"scores = {toml_str(out)}"]
        if spec["labels"] == "file":
            lines.append(f"labels_file = {toml_str(spec['path'][:-len('.onnx')] + '.labels.txt')}")
        else:
            lines.append('labels_metadata = "labels"')
        lines.append('group = "onnx"')
    return "\n".join(lines) + "\n"


def write(reports, labels):
    n_ft = sum(1 for m in MODELS if m["kind"] == "fasttext")
    parts = [HEADER.format(n=len(MODELS), n_ft=n_ft, n_onnx=len(MODELS) - n_ft, labels=labels),
             'name = "demo"\nversion = "1"\nlabel_file = "generated/labels.txt"\n'
             'rename_file = "generated/renames.tsv"   # fastText slug labels -> taxonomy paths\n',
             '[defaults]\nweight = 1.0\nfields = ["title", "description"]\n']
    parts += [model_entry(spec, reports[spec["name"]]) for spec in MODELS]
    parts.append(VOTE)
    special = f"{SPECIAL_DEPT} > {SPECIAL_CAT} > {SPECIAL_LEAF}"
    parts.append(RULES.format(special=special, threshold=MIN_CONFIDENCE))
    text = "\n".join(parts)
    tmp = common.MANIFEST + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, common.MANIFEST)
