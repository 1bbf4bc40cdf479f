"""Triton's own Python client (tritonclient) against a running `lastmile serve`.

Talks the Open Inference Protocol over HTTP (JSON tensors and binary tensors) and gRPC: liveness,
readiness, server and model metadata, model configuration, and inference with BYTES inputs; checks
that every answer equals lastmile's own API answer (POST /v1/predict) for the same items.

    python tests/python/tritonclient_check.py --http 127.0.0.1:8000 --grpc 127.0.0.1:8001

Needs `tritonclient[grpc,http]` (and numpy). Prints one line per check and `N passed, M failed`;
exits 1 if anything failed.
"""

import argparse
import json
import sys
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ITEMS = [
    ("steel chef knife", "forged blade for the kitchen"),
    ("running shoes", "lightweight trainers"),
    ("garden hose", "30 m with spray nozzle"),
    ("wireless headphones", "noise cancelling"),
]
TOP_K = 3


def own_api(http, model_fields):
    """Labels and scores, [N][k], from lastmile's own REST API."""
    items = [dict(zip(model_fields, pair)) for pair in ITEMS]
    body = json.dumps({"items": items, "top_k": TOP_K}).encode()
    request = urllib.request.Request(
        f"http://{http}/v1/predict", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        reply = json.load(response)
    labels = [[p["label"] for p in a["predictions"]] for a in reply["items"]]
    scores = [[p["score"] for p in a["predictions"]] for a in reply["items"]]
    return reply["ensemble"]["name"], labels, scores


def texts(column):
    return np.array([[pair[column].encode()] for pair in ITEMS], dtype=np.object_)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name} {detail}")


def same_answers(result, labels, scores):
    # JSON outputs come back as str, binary ones as bytes.
    got_labels = [
        [x.decode() if isinstance(x, bytes) else x for x in row]
        for row in result.as_numpy("labels")
    ]
    got_scores = result.as_numpy("scores")
    return got_labels == labels and np.allclose(got_scores, np.array(scores), rtol=0, atol=1e-6)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True, help="host:port of the HTTP server")
    parser.add_argument("--grpc", required=True, help="host:port of the gRPC server")
    args = parser.parse_args()
    c = Checks()

    http = httpclient.InferenceServerClient(url=args.http)
    grpc = grpcclient.InferenceServerClient(url=args.grpc)

    c.check("http live", http.is_server_live())
    c.check("http ready", http.is_server_ready())
    c.check("grpc live", grpc.is_server_live())
    c.check("grpc ready", grpc.is_server_ready())

    server = http.get_server_metadata()
    c.check("http server metadata", server["name"] == "lastmile", server)
    c.check(
        "grpc server metadata",
        "binary_tensor_data" in grpc.get_server_metadata().extensions,
    )

    name = json.load(urllib.request.urlopen(f"http://{args.http}/v1/ensemble"))["name"]
    meta = http.get_model_metadata(name)
    fields = [i["name"] for i in meta["inputs"]]
    c.check("http model metadata", [o["name"] for o in meta["outputs"]] == ["labels", "scores", "explanation"], meta)
    gmeta = grpc.get_model_metadata(name)
    c.check("grpc model metadata", [i.name for i in gmeta.inputs] == fields, gmeta)
    c.check("http model ready", http.is_model_ready(name))
    c.check("grpc model ready", grpc.is_model_ready(name))
    config = http.get_model_config(name)
    c.check("http model config", config["max_batch_size"] > 0 and config["input"][0]["data_type"] == "TYPE_STRING", config)
    gconfig = grpc.get_model_config(name).config
    c.check("grpc model config", gconfig.max_batch_size == config["max_batch_size"] and gconfig.input[0].data_type == 13, gconfig)

    own_name, labels, scores = own_api(args.http, fields[:2])
    c.check("own API names the same model", own_name == name)

    for binary in (False, True):
        inputs = []
        for column, field in enumerate(fields[:2]):
            tensor = httpclient.InferInput(field, [len(ITEMS), 1], "BYTES")
            tensor.set_data_from_numpy(texts(column), binary_data=binary)
            inputs.append(tensor)
        outputs = [
            httpclient.InferRequestedOutput("labels", binary_data=binary),
            httpclient.InferRequestedOutput("scores", binary_data=binary),
        ]
        result = http.infer(name, inputs, outputs=outputs, parameters={"top_k": TOP_K})
        kind = "binary" if binary else "JSON"
        c.check(f"http infer ({kind} tensors) equals the own API", same_answers(result, labels, scores))

    inputs = []
    for column, field in enumerate(fields[:2]):
        tensor = grpcclient.InferInput(field, [len(ITEMS), 1], "BYTES")
        tensor.set_data_from_numpy(texts(column))
        inputs.append(tensor)
    result = grpc.infer(name, inputs, parameters={"top_k": TOP_K})
    c.check("grpc infer equals the own API", same_answers(result, labels, scores))
    result = grpc.infer(name, inputs, parameters={"top_k": TOP_K, "explain": True})
    explained = [json.loads(e[0]) for e in result.as_numpy("explanation")]
    c.check(
        "grpc explanation holds each answer and its models",
        [[p["label"] for p in e["predictions"]] for e in explained] == labels
        and all(e["models"] for e in explained),
        explained,
    )

    try:
        bad = httpclient.InferInput(fields[0], [1], "INT32")
        bad.set_data_from_numpy(np.array([7], dtype=np.int32))
        http.infer(name, [bad])
        c.check("http infer refuses a wrong datatype", False, "no error")
    except Exception as e:  # tritonclient raises InferenceServerException
        c.check("http infer refuses a wrong datatype", "INT32" in str(e), e)

    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
