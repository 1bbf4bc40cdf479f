"""Runs `mlflow server` for the tests until its stdin closes (the test process exited, however it
ended: passed, failed, killed), then stops the server's whole process group.

Usage: python supervise.py PORT DIR
"""

import os
import signal
import subprocess
import sys

port, work = sys.argv[1], sys.argv[2]
mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
log = open(os.path.join(work, "server.log"), "wb")
server = subprocess.Popen(
    [mlflow, "server", "--host", "127.0.0.1", "--port", port,
     "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
     "--artifacts-destination", f"{work}/artifacts", "--workers", "2"],
    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
)
try:
    sys.stdin.buffer.read()
finally:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
