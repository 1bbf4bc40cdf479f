"""Python clients of the lastmile ensemble inference server.

- ``lastmile_client.clients``: score batches of rows against a running server over the own gRPC
  API or the Open Inference Protocol (V2), with bounded requests in flight and retries on
  overload;
- ``lastmile_client.spark``: Spark helpers, ``predict_udf`` (``predict_batch_udf`` over a
  server) and ``batch_map`` (``mapInArrow`` through a local ``lastmile batch``).
"""

from .clients import Client, Options, RequestRefused, client

__all__ = ["Client", "Options", "RequestRefused", "client"]
__version__ = "0.1.0"
