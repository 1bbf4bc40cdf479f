"""The Spark helpers of clients/python (lastmile_client.spark) in a local PySpark session.

Scores one DataFrame three ways, in one Spark session: `predict_udf` over the own gRPC API and
over the Open Inference Protocol (V2, tritonclient) against a running `lastmile serve`, and
`batch_map` (mapInArrow through a local `lastmile batch`); checks every row's answer against
`lastmile predict`'s for the same item (labels, and scores equal as float32), and that rows the
ensemble cannot read get an error while the others are scored.

    python tests/python/spark_check.py --grpc 127.0.0.1:8001 --binary target/debug/lastmile \
        --manifest models/starter/manifest.toml --items items.jsonl --expected expected.jsonl \
        --top-k 3

`--items`: JSON Lines of {"id", "title", "description"}; `--expected`: `lastmile predict`'s
answers, line for line. Prints one line per check and `N passed, M failed`; exits 1 on failure.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from pyspark.sql import SparkSession

from lastmile_client.spark import BATCH_SCHEMA, batch_map, predict_udf


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {name} {detail}", flush=True)


def ulps(a, b):
    """How many float32 steps apart two scores are."""
    a, b = np.float32(a), np.float32(b)
    return abs(int(a.view(np.int32)) - int(b.view(np.int32)))


def distance(got_top, want):
    """None if the labels differ; else how many float32 steps the scores are apart, at most."""
    want_top = [(p["label"], p["score"]) for p in want.get("predictions", [])]
    got = [(p["label"], p["score"]) for p in got_top]
    if [l for l, _ in got] != [l for l, _ in want_top]:
        return None
    return max((ulps(g, w) for (_, g), (_, w) in zip(got, want_top)), default=0)


def compare(c, name, rows, expected, label_of, top_of, error_of, ulp=0):
    """rows: Spark rows with an `id`; expected: predict's answers by id. `ulp`: how far apart
    (in float32 steps) a score may be; 0 asks for equal scores."""
    bad = []
    errors = 0
    off = 0
    for r in rows:
        want = expected[r["id"]]
        if "error" in want:
            errors += 1
            if error_of(r) is None or label_of(r) is not None:
                bad.append((r["id"], "expected an error", r))
            continue
        apart = distance(top_of(r), want) if error_of(r) is None else None
        if apart is None or apart > ulp:
            bad.append((r["id"], want, r))
        elif top_of(r) and label_of(r) != top_of(r)[0]["label"]:
            bad.append((r["id"], "label is not the top prediction", r))
        elif apart:
            off += 1
    exact = "equal" if ulp == 0 else f"equal (scores of {off} within {ulp} float32 step)"
    c.check(
        f"{name}: {len(rows)} rows {exact} lastmile predict's ({errors} errors)",
        not bad and len(rows) == len(expected),
        bad[:3],
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--binary", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--items", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    c = Checks()
    # The Python workers run this interpreter (where lastmile_client is installed).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    items = [json.loads(l) for l in open(args.items)]
    expected = {}
    for item, line in zip(items, open(args.expected)):
        expected[item["id"]] = json.loads(line)

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("lastmile-spark-check")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.pyspark.udf.simplifiedTraceback.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "500")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.createDataFrame(
        [(i["id"], i.get("title"), i.get("description")) for i in items],
        "id string, title string, description string",
    ).repartition(2)
    df.cache().count()

    for api in ("grpc", "v2"):
        try:
            score_with(c, df, api, args, expected)
        except Exception as e:  # one helper's failure must not hide the others'
            c.check(f"predict_udf over {api}", False, repr(e)[-2000:])
    try:
        map_through_batch(c, df, args, expected)
    except Exception as e:
        c.check("batch_map", False, repr(e)[-2000:])
    spark.stop()
    print(f"{c.passed} passed, {c.failed} failed", flush=True)
    return 1 if c.failed else 0


def score_with(c, df, api, args, expected):
    started = time.time()
    score = predict_udf(
        args.grpc,
        ["title", "description"],
        api=api,
        top_k=args.top_k,
        batch_size=200,
        request_items=32,
        max_in_flight=4,
        retries=30,
        backoff=0.01,
    )
    rows = df.withColumn("p", score("title", "description")).select("id", "p").collect()
    compare(
        c,
        f"predict_udf over {api}",
        rows,
        expected,
        lambda r: r["p"]["label"],
        lambda r: [p.asDict() for p in r["p"]["top_k"]],
        lambda r: r["p"]["error"],
        # A row the server runs alone through an ONNX model (a request split to isolate a
        # bad row, or after overload refusals) can differ in the last bit: ONNX Runtime's
        # one-row kernels round differently from its batched ones.
        ulp=1,
    )
    print(f"      ({len(rows) / (time.time() - started):.0f} rows/s)", flush=True)


def map_through_batch(c, df, args, expected):
    env = dict(os.environ)
    started = time.time()
    mapped = df.mapInArrow(
        batch_map(args.manifest, binary=args.binary, top_k=args.top_k, threads=1, env=env),
        BATCH_SCHEMA,
    )
    rows = mapped.collect()
    compare(
        c,
        "batch_map (mapInArrow through lastmile batch)",
        rows,
        expected,
        lambda r: r["label"],
        lambda r: [p.asDict() for p in r["top_k"]],
        lambda r: r["error"],
    )
    print(f"      ({len(rows) / (time.time() - started):.0f} rows/s)", flush=True)
    c.check(
        "batch_map rows say which ensemble answered",
        all(r["ensemble"] and r["version"] and r["digest"].startswith("sha256:") for r in rows),
    )


if __name__ == "__main__":
    sys.exit(main())
