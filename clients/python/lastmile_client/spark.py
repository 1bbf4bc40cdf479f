"""Scoring Spark DataFrames with lastmile, two ways.

**A running server** (``predict_udf``): a ``pyspark.ml.functions.predict_batch_udf`` whose
predict function sends each batch to a lastmile server over the own gRPC API or the Open
Inference Protocol (V2, through ``tritonclient``), with one client per Python worker, a bounded
number of requests in flight and retries with back-off when the server says it is overloaded::

    from lastmile_client.spark import predict_udf
    score = predict_udf("lastmile:8001", fields=["title", "description"], top_k=5)
    df.withColumn("p", score("title", "description")).select("id", "p.label", "p.score")

The result is a struct column ``label, score, top_k (array<struct<label, score>>), error``.

**No server** (``batch_map``): a ``mapInArrow`` function that pipes each partition, as Arrow
record batches, through a local ``lastmile batch`` process (the binary and the models must be on
every executor)::

    from lastmile_client.spark import batch_map, BATCH_SCHEMA
    df.mapInArrow(batch_map("models/manifest.toml"), BATCH_SCHEMA)

Each partition starts one process, which loads the ensemble: prefer few large partitions, and
give each process as many compute threads as a task has cores (``threads``).
"""

from __future__ import annotations

import inspect
import math
import subprocess
import threading
from typing import Iterable, Iterator, Optional, Sequence

from .clients import Options, client

#: ``predict_udf``'s result, as a Spark DDL type.
RESULT_DDL = (
    "struct<label:string,score:float,top_k:array<struct<label:string,score:float>>,"
    "error:string>"
)

#: ``lastmile batch``'s output columns (``batch_map``'s schema), as Spark DDL.
BATCH_SCHEMA = (
    "id string, row long, label string, score float, "
    "top_k array<struct<label:string,score:float>>, agreement int, abstained string, "
    "rules_fired array<string>, error string, ensemble string, version string, digest string"
)

#: With ``explain=True``, ``batch_map`` adds this column.
MODELS_DDL = (
    "models array<struct<name:string,weight:float,"
    "predictions:array<struct<label:string,score:float>>,"
    "contributions:array<struct<label:string,score:float>>>>"
)


def result_type():
    """``predict_udf``'s result type (a ``StructType``)."""
    from pyspark.sql.types import (
        ArrayType,
        FloatType,
        StringType,
        StructField,
        StructType,
    )

    label_score = StructType(
        [StructField("label", StringType(), False), StructField("score", FloatType(), False)]
    )
    return StructType(
        [
            StructField("label", StringType(), True),
            StructField("score", FloatType(), True),
            StructField("top_k", ArrayType(label_score, False), True),
            StructField("error", StringType(), True),
        ]
    )


def _text(value) -> Optional[str]:
    """A cell as text: None for a null (Spark hands nulls over as None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


class _Ragged(list):
    """Rows of different lengths (each row's ranked labels) where predict_batch_udf expects a
    2-d array for an array field: it reads ``shape`` to tell a 2-d result, then takes the rows."""

    @property
    def shape(self):
        return (len(self), max((len(r) for r in self), default=0))


def make_predict_fn(
    url: str,
    fields: Sequence[str] = ("title", "description"),
    *,
    api: str = "grpc",
    top_k: int = 5,
    candidates: Optional[Sequence[str]] = None,
    model: Optional[str] = None,
    request_items: int = 64,
    max_in_flight: int = 4,
    retries: int = 8,
    backoff: float = 0.05,
    timeout: float = 60.0,
):
    """The ``make_predict_fn`` of ``predict_batch_udf``: called once per Python worker, it makes
    (or reuses) that worker's client and returns the predict function, which takes the input
    columns (``fields``, in order) and returns one result per row."""
    options = Options(
        url=url,
        api=api,
        fields=tuple(fields),
        top_k=top_k,
        candidates=tuple(candidates) if candidates else None,
        model=model,
        request_items=request_items,
        max_in_flight=max_in_flight,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
    )

    def make():
        import numpy as np

        worker_client = client(options)
        names = options.fields

        def predict(*columns):
            # One 1-d array of texts per field, in order.
            rows = [
                {name: _text(cell) for name, cell in zip(names, row)} for row in zip(*columns)
            ]
            results = worker_client.predict(rows)
            # Columns, as predict_batch_udf takes a struct: object arrays keep None as null
            # (a list of row dicts would not: a batch whose `error` is None in every row would
            # become a float column of NaN, which Spark cannot turn into strings).
            return {
                "label": np.array([r["label"] for r in results], dtype=object),
                "score": np.array(
                    [np.nan if r["score"] is None else r["score"] for r in results],
                    dtype=np.float32,
                ),
                "top_k": _Ragged([(p["label"], p["score"]) for p in r["top_k"]] for r in results),
                "error": np.array([r["error"] for r in results], dtype=object),
            }

        # predict_batch_udf passes one array per input column when the function takes as many
        # parameters as there are columns: say how many.
        predict.__signature__ = inspect.Signature(
            [
                inspect.Parameter(f"column_{i}", inspect.Parameter.POSITIONAL_ONLY)
                for i in range(len(names))
            ]
        )
        return predict

    return make


def predict_udf(
    url: str,
    fields: Sequence[str] = ("title", "description"),
    *,
    batch_size: int = 256,
    **options,
):
    """A Spark UDF scoring its input columns (one per field of ``fields``, in that order)
    against the lastmile server at ``url`` (``host:port`` of its gRPC listener). ``options``
    are ``make_predict_fn``'s: ``api`` ("grpc" or "v2"), ``top_k``, ``candidates``, ``model``,
    ``request_items``, ``max_in_flight``, ``retries``, ``backoff``, ``timeout``.

    Each Python worker keeps one client; each batch of ``batch_size`` rows goes out as requests
    of ``request_items`` rows, at most ``max_in_flight`` at once (so concurrency against the
    server is workers x max_in_flight, whatever the number of partitions)."""
    from pyspark.ml.functions import predict_batch_udf

    return predict_batch_udf(
        make_predict_fn(url, fields, **options),
        return_type=result_type(),
        batch_size=batch_size,
    )


def batch_map(
    manifest: str,
    *,
    binary: str = "lastmile",
    fields: Optional[dict] = None,
    id_column: Optional[str] = None,
    top_k: int = 5,
    candidates: Optional[Sequence[str]] = None,
    explain: bool = False,
    threads: int = 1,
    extra_args: Sequence[str] = (),
    env: Optional[dict] = None,
):
    """A ``mapInArrow`` function piping each partition through ``lastmile batch --manifest
    manifest`` (Arrow IPC on its standard input and output). ``fields`` maps ensemble fields to
    columns (``{"title": "product_name"}``); ``id_column`` is echoed as ``id``. Use
    ``BATCH_SCHEMA`` (plus ``MODELS_DDL`` with ``explain``) as the schema."""
    args = [
        binary,
        "batch",
        "--manifest",
        manifest,
        "--input",
        "-",
        "--output",
        "-",
        "--format",
        "arrow",
        "--quiet",
        "--threads",
        str(threads),
        "--top-k",
        str(top_k),
    ]
    if fields:
        args += ["--fields", ",".join(f"{k}={v}" for k, v in fields.items())]
    if id_column:
        args += ["--id-column", id_column]
    if candidates:
        args += ["--candidates", ",".join(candidates)]
    if explain:
        args.append("--explain")
    args += list(extra_args)

    def run(batches: Iterable) -> Iterator:
        import pyarrow as pa

        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return
        process = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        stderr: list = []
        drain = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
        drain.start()
        failure: list = []

        def feed():
            try:
                with pa.ipc.new_stream(process.stdin, first.schema) as writer:
                    writer.write_batch(first)
                    for b in batches:
                        writer.write_batch(b)
            except BaseException as e:  # a broken pipe: the process failed, said below
                failure.append(e)
            finally:
                try:
                    process.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            reader = pa.ipc.open_stream(process.stdout)
            for b in reader:
                yield b
        except pa.ArrowInvalid:
            pass  # no stream at all: the process failed, said below
        finally:
            feeder.join()
            code = process.wait()
            drain.join()
        # Exit 3: some rows could not be scored; their errors are in their rows.
        if code not in (0, 3):
            message = b"".join(stderr).decode("utf-8", "replace").strip()
            raise RuntimeError(f"lastmile batch exited with {code}: {message}")
        if failure and not isinstance(failure[0], (BrokenPipeError, OSError)):
            raise failure[0]

    return run
