#!/usr/bin/env bash
# MLflow, for the provenance tests (tests/it/provenance/): they start `mlflow server` with a
# sqlite backend and local artifacts on loopback, register the fixture models with MLflow's own
# Python client, and resolve them through its REST API. Installs mlflow into
# .runtime/mlflow-venv (idempotent: instant when it is there); exits non-zero if it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=3.18.0
VENV=.runtime/mlflow-venv
PY="$VENV/bin/python"
if [ -x "$VENV/bin/mlflow" ] && [ "$("$PY" -c 'import mlflow; print(mlflow.__version__)' 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
echo "setup: installing mlflow==$VERSION into $VENV" >&2
python3 -m venv "$VENV"
pip=("$PY" -m pip install --quiet --disable-pip-version-check)
if ! "${pip[@]}" "mlflow==$VERSION" 2>"$VENV/pip-error.txt"; then
  # mlflow pins mlflow-tracing to its own version, which the index may not hold yet; that package
  # is a subset of mlflow-skinny (every one of its files is in skinny), so install mlflow without
  # it: skinny, then mlflow itself without dependencies, then mlflow's other requirements.
  grep -q "mlflow-tracing==$VERSION" "$VENV/pip-error.txt" || { cat "$VENV/pip-error.txt" >&2; exit 1; }
  echo "setup: mlflow-tracing==$VERSION is not on the index; installing mlflow-skinny in its place" >&2
  "${pip[@]}" "mlflow-skinny==$VERSION"
  "${pip[@]}" --no-deps "mlflow==$VERSION"
  mapfile -t rest < <("$PY" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
for r in requires("mlflow") or []:
    req = Requirement(r)
    if req.name in ("mlflow-skinny", "mlflow-tracing"):
        continue
    if req.marker is None or req.marker.evaluate({"extra": ""}):
        print(str(req).split(";")[0])
PY
)
  "${pip[@]}" "${rest[@]}"
fi
rm -f "$VENV/pip-error.txt"
"$PY" -c 'import mlflow, mlflow.server; assert mlflow.__version__ == "'"$VERSION"'", mlflow.__version__'
