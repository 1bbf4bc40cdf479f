"""Clients of a running lastmile server, for scoring many rows from one process (a Spark Python
worker): the own gRPC API (``lastmile.v1.Lastmile/Predict``) or the Open Inference Protocol over
gRPC (KServe V2, through Triton's ``tritonclient``).

Both take rows as dicts of field name -> text (None or a missing key: the row lacks the field)
and answer one result per row, in order::

    {"label": str | None, "score": float | None,
     "top_k": [{"label": str, "score": float}, ...], "error": str | None}

They send a batch of rows as several requests of ``request_items`` rows, at most
``max_in_flight`` at once; a request refused because the server is overloaded
(RESOURCE_EXHAUSTED, or UNAVAILABLE while it restarts) is sent again after an exponential
back-off with jitter (split in two after a few refusals, and a single row up to ``retries``
times); a request refused for one of its rows
(INVALID_ARGUMENT: a row with none of the ensemble's fields, say) is split until the rows at
fault are alone, and those get an ``error``, the others their answers.

One client per process is enough (``client()`` keeps one per configuration): its gRPC channel
multiplexes every request in flight over one connection.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

Row = Mapping[str, Optional[str]]
Result = Dict[str, Any]

#: gRPC status names retried with back-off.
RETRIED = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")

#: Overload refusals of a request of several rows before it is split in two.
SPLIT_AFTER = 3


@dataclass(frozen=True)
class Options:
    """How a client talks to the server."""

    #: ``host:port`` of the server's gRPC listener.
    url: str
    #: ``"grpc"`` (the own API) or ``"v2"`` (the Open Inference Protocol over gRPC).
    api: str = "grpc"
    #: The ensemble fields sent, in order (the V2 API needs them all as inputs).
    fields: tuple = ("title", "description")
    top_k: int = 5
    #: Labels (or label prefixes) every answer may use.
    candidates: Optional[tuple] = None
    #: The V2 model name (the ensemble's name); None: asked of the server.
    model: Optional[str] = None
    request_items: int = 64
    max_in_flight: int = 4
    retries: int = 8
    #: First back-off, in seconds; doubled at each retry, with full jitter.
    backoff: float = 0.05
    #: Deadline of one request, in seconds.
    timeout: float = 60.0


class RequestRefused(Exception):
    """A request the server refused; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _result(predictions: Sequence[tuple]) -> Result:
    top = [{"label": label, "score": float(score)} for label, score in predictions]
    return {
        "label": top[0]["label"] if top else None,
        "score": top[0]["score"] if top else None,
        "top_k": top,
        "error": None,
    }


def _error(message: str) -> Result:
    return {"label": None, "score": None, "top_k": [], "error": message}


class _OwnApi:
    """``lastmile.v1.Lastmile/Predict`` over grpcio, with the project's generated messages."""

    def __init__(self, options: Options):
        import grpc

        from . import lastmile_pb2 as pb

        self._grpc = grpc
        self._pb = pb
        self._options = options
        self._channel = grpc.insecure_channel(
            options.url,
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        self._predict = self._channel.unary_unary(
            "/lastmile.v1.Lastmile/Predict",
            request_serializer=pb.PredictRequest.SerializeToString,
            response_deserializer=pb.PredictResponse.FromString,
        )
        self._ensemble = self._channel.unary_unary(
            "/lastmile.v1.Lastmile/GetEnsemble",
            request_serializer=pb.GetEnsembleRequest.SerializeToString,
            response_deserializer=pb.EnsembleInfo.FromString,
        )

    def ensemble_name(self) -> str:
        return self._call(self._ensemble, self._pb.GetEnsembleRequest()).name

    def _call(self, method, request):
        try:
            return method(request, timeout=self._options.timeout)
        except self._grpc.RpcError as e:
            raise RequestRefused(e.code().name, e.details() or "") from None

    def send(self, rows: Sequence[Row]) -> List[Result]:
        o = self._options
        request = self._pb.PredictRequest(
            items=[
                self._pb.Item(fields={k: v for k, v in row.items() if v is not None})
                for row in rows
            ],
            top_k=o.top_k,
            candidates=list(o.candidates or ()),
        )
        reply = self._call(self._predict, request)
        return [_result([(p.label, p.score) for p in a.predictions]) for a in reply.items]


class _V2Api:
    """The Open Inference Protocol over gRPC with Triton's client: one BYTES input ``[N, 1]`` per
    field (an empty text: the row lacks it), outputs ``labels`` and ``scores`` ``[N, k]`` padded
    with empty labels."""

    def __init__(self, options: Options):
        import numpy as np
        import tritonclient.grpc as grpcclient

        self._np = np
        self._client_module = grpcclient
        self._options = options
        self._client = grpcclient.InferenceServerClient(url=options.url)
        self._model = options.model or _OwnApi(options).ensemble_name()

    def send(self, rows: Sequence[Row]) -> List[Result]:
        from tritonclient.utils import InferenceServerException

        np, grpcclient, o = self._np, self._client_module, self._options
        inputs = []
        for field in o.fields:
            data = np.array(
                [[(row.get(field) or "").encode("utf-8")] for row in rows], dtype=np.object_
            )
            tensor = grpcclient.InferInput(field, [len(rows), 1], "BYTES")
            tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        parameters = {"top_k": o.top_k}
        if o.candidates:
            parameters["candidates"] = json.dumps(list(o.candidates))
        try:
            result = self._client.infer(
                self._model, inputs, parameters=parameters, client_timeout=o.timeout
            )
        except InferenceServerException as e:
            status = (e.status() or "").rsplit(".", 1)[-1] or "UNKNOWN"
            raise RequestRefused(status, e.message()) from None
        labels = result.as_numpy("labels")
        scores = result.as_numpy("scores")
        out = []
        for row_labels, row_scores in zip(labels, scores):
            pairs = []
            for label, score in zip(row_labels, row_scores):
                label = label.decode("utf-8") if isinstance(label, bytes) else str(label)
                if label:
                    pairs.append((label, score))
            out.append(_result(pairs))
        return out


class Client:
    """Scores batches of rows against a running server (see the module's docs)."""

    def __init__(self, options: Options):
        if options.api not in ("grpc", "v2"):
            raise ValueError(f"api must be 'grpc' or 'v2', not {options.api!r}")
        self.options = options
        self._api = _OwnApi(options) if options.api == "grpc" else _V2Api(options)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, options.max_in_flight), thread_name_prefix="lastmile-client"
        )
        #: Requests sent again after an overload refusal (for tests and logs).
        self.retried = 0
        self._lock = threading.Lock()

    def predict(self, rows: Sequence[Row]) -> List[Result]:
        """One result per row, in order."""
        n = max(1, self.options.request_items)
        parts = [rows[i : i + n] for i in range(0, len(rows), n)]
        out: List[Result] = []
        for answers in self._pool.map(self._isolating, parts):
            out.extend(answers)
        return out

    def _isolating(self, rows: Sequence[Row]) -> List[Result]:
        """The rows' results. A request refused for one of its rows is split until the rows at
        fault are alone; one refused as overload again and again is split too (smaller requests
        find places among the items in flight where a large one does not)."""
        try:
            return self._retrying(rows, self.options.retries if len(rows) == 1 else SPLIT_AFTER)
        except RequestRefused as e:
            if e.code not in RETRIED + ("INVALID_ARGUMENT",):
                raise
            if len(rows) == 1:
                if e.code == "INVALID_ARGUMENT":
                    return [_error(e.message)]
                raise
            half = len(rows) // 2
            return self._isolating(rows[:half]) + self._isolating(rows[half:])

    def _retrying(self, rows: Sequence[Row], retries: int) -> List[Result]:
        o = self.options
        for attempt in range(retries + 1):
            try:
                return self._api.send(rows)
            except RequestRefused as e:
                if e.code not in RETRIED or attempt == retries:
                    raise
                with self._lock:
                    self.retried += 1
                time.sleep(random.uniform(0, o.backoff * (2**attempt)))
        raise AssertionError("unreachable")


_CLIENTS: Dict[Options, Client] = {}
_CLIENTS_LOCK = threading.Lock()


def client(options: Options) -> Client:
    """The process's client for ``options`` (made once, then shared)."""
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(options)
        if found is None:
            found = _CLIENTS[options] = Client(options)
        return found
