#!/usr/bin/env bash
# Installs what lastmile needs at run and test time, idempotently:
#   - the ONNX Runtime shared library, taken from the official onnxruntime wheel on PyPI
#     (never committed; lives in .runtime/, which git ignores);
#   - a Python virtual environment with the tools the tests talk to the server with;
#   - then each part in scripts/setup.d/ (one file per component the tests start for real),
#     in name order.
# `scripts/setup.sh --onnxruntime-only` stops after the first step (the Dockerfile's builder
# stage runs it so: the image needs the library, not the test tools).
# Safe to run any number of times: each step checks what is already there first.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
RUNTIME_DIR=.runtime
ORT_DIR="$RUNTIME_DIR/onnxruntime"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

mkdir -p "$ORT_DIR"
if [ ! -s "$ORT_LIB" ]; then
  echo "setup: fetching ONNX Runtime $ORT_VERSION from the official PyPI wheel" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 \
    -d "$tmp" "onnxruntime==$ORT_VERSION"
  wheel=$(ls "$tmp"/onnxruntime-*.whl)
  python3 - "$wheel" "$ORT_LIB" <<'PY'
import sys, zipfile, shutil
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("capi/libonnxruntime.so." + dest.rsplit(".so.", 1)[1]))
    with z.open(name) as src, open(dest + ".part", "wb") as out:
        shutil.copyfileobj(src, out)
PY
  mv "$ORT_LIB.part" "$ORT_LIB"
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so"
if [ "${1:-}" = "--onnxruntime-only" ]; then
  exit 0
fi

# Triton's own Python client, which tests/it/serve/tritonclient.rs drives the server with.
TEST_VENV="$RUNTIME_DIR/test-venv"
TRITONCLIENT="tritonclient[grpc,http]==2.73.0"
if [ ! -x "$TEST_VENV/bin/python" ] || ! "$TEST_VENV/bin/python" -c "import tritonclient.grpc, tritonclient.http" 2>/dev/null; then
  echo "setup: installing $TRITONCLIENT into $TEST_VENV" >&2
  python3 -m venv "$TEST_VENV"
  "$TEST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TRITONCLIENT" "numpy==2.4.6"
fi

for part in scripts/setup.d/*.sh; do
  [ -e "$part" ] || continue
  "$part"
done
