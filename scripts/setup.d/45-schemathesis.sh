#!/usr/bin/env bash
# schemathesis, for tests/it/fuzz/openapi.rs: it runs against the served /openapi.json and
# checks that every request the document allows is served (no 5xx) and every answer conforms to
# it. Installs schemathesis into .runtime/schemathesis-venv (idempotent: instant when it is
# there); exits non-zero if it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=4.32.5
VENV=.runtime/schemathesis-venv
if [ -x "$VENV/bin/schemathesis" ] && [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" = "schemathesis, version $VERSION" ]; then
  exit 0
fi
echo "setup: installing schemathesis==$VERSION into $VENV" >&2
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$VENV/bin/schemathesis" --version
