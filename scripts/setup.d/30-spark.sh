#!/usr/bin/env bash
# Spark for the Spark helpers' test (tests/it/batch/spark.rs): a Python virtual environment in
# .runtime/spark-venv with pyspark 4.3.0 (its wheel bundles Spark's jars; Java 17 runs it),
# pyarrow and pandas (pyspark's Arrow paths), Triton's gRPC client, and the project's own package
# clients/python (reinstalled whenever its files change).
#
# pandas stays on 2.x: with pandas 3, pyspark 4.3 cannot return a struct holding strings from a
# pandas UDF when a batch's string column is all null (it builds a chunked Arrow array there).
# Idempotent: checks what is there first; exits non-zero when an installation fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=.runtime/spark-venv
PACKAGES=(
  "pyspark==4.3.0"
  "pyarrow==26.0.1"
  "pandas==2.3.3"
  "numpy==2.4.6"
  "tritonclient[grpc]==2.73.0"
  "grpcio==1.85.1"
  "protobuf==6.33.6"
)
STAMP="$VENV/.lastmile-installed"
client_hash=$(find clients/python/lastmile_client clients/python/pyproject.toml -type f -name '*.py' \
  -o -type f -name '*.toml' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
WANT="${PACKAGES[*]} lastmile-client:$client_hash"

if ! command -v java >/dev/null 2>&1; then
  echo "setup: Spark needs Java 17 or later on PATH (Debian: apt-get install -y openjdk-17-jre-headless)" >&2
  exit 1
fi
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
echo "setup: installing pyspark 4.3.0 and the lastmile Python client into $VENV" >&2
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall ./clients/python
"$VENV/bin/python" -c "import pyspark, pyarrow, pandas, tritonclient.grpc, lastmile_client.spark"
echo "$WANT" > "$STAMP"
