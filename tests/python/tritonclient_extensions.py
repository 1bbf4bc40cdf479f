"""Triton's own Python client (tritonclient) calling the V2 extensions lastmile serves: the model
repository index and the inference statistics, over HTTP and gRPC.

    python tests/python/tritonclient_extensions.py --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 \
        --model starter --http-requests 3 --grpc-requests 2 --items 2

Sends that many inference requests of that many items over each transport, then prints one JSON
object: each transport's repository index and statistics as tritonclient returns them (gRPC
messages as JSON with tritonclient's `as_json=True`). The caller checks the numbers.
"""

import argparse
import json

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def titles(n):
    return np.array([[f"steel chef knife {i}".encode()] for i in range(n)], dtype=np.object_)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--grpc", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--http-requests", type=int, default=3)
    p.add_argument("--grpc-requests", type=int, default=2)
    p.add_argument("--items", type=int, default=2)
    a = p.parse_args()

    http = httpclient.InferenceServerClient(url=a.http)
    grpc = grpcclient.InferenceServerClient(url=a.grpc)
    for _ in range(a.http_requests):
        x = httpclient.InferInput("title", [a.items, 1], "BYTES")
        x.set_data_from_numpy(titles(a.items))
        http.infer(a.model, [x])
    for _ in range(a.grpc_requests):
        x = grpcclient.InferInput("title", [a.items, 1], "BYTES")
        x.set_data_from_numpy(titles(a.items))
        grpc.infer(a.model, [x])
    out = {
        "http_index": http.get_model_repository_index(),
        "grpc_index": grpc.get_model_repository_index(as_json=True),
        "http_stats": http.get_inference_statistics(a.model),
        "grpc_stats": grpc.get_inference_statistics(a.model, as_json=True),
        "http_all": http.get_inference_statistics(),
        "extensions": http.get_server_metadata()["extensions"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
