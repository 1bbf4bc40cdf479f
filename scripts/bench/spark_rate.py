"""Rows per second through Spark local mode with 2 executor cores (`local[2]`), for
scripts/bench/batch: `batch_map` (mapInArrow piping each of 2 partitions through a `lastmile
batch` with one compute thread) and `predict_udf` (predict_batch_udf against a running server).
Each run writes to Spark's `noop` sink, so every row is scored and nothing is collected; the
time includes starting the `lastmile batch` processes (each loads the ensemble). Prints one JSON
line: {"batch_map": rows/s, "predict_udf": rows/s}.

Run with the Python of .runtime/spark-venv (PYSPARK_PYTHON set to it).
"""

import argparse
import json
import os
import sys
import time

from pyspark.sql import SparkSession

from lastmile_client.spark import BATCH_SCHEMA, batch_map, predict_udf


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--input", required=True, help="Parquet with id, title, description")
    p.add_argument("--grpc", required=True, help="host:port of a running lastmile serve")
    p.add_argument("--rows", type=int, required=True)
    args = p.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("lastmile-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1024")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(args.input).select("id", "title", "description").repartition(2)
    df.cache().count()
    out = {}

    started = time.time()
    df.mapInArrow(
        batch_map(args.manifest, binary=args.binary, threads=1, env=dict(os.environ)),
        BATCH_SCHEMA,
    ).write.format("noop").mode("overwrite").save()
    out["batch_map"] = args.rows / (time.time() - started)

    score = predict_udf(
        args.grpc, ["title", "description"], batch_size=256, request_items=32, max_in_flight=4
    )
    started = time.time()
    df.withColumn("p", score("title", "description")).write.format("noop").mode(
        "overwrite"
    ).save()
    out["predict_udf"] = args.rows / (time.time() - started)
    spark.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
