#!/usr/bin/env bash
# Headless Chromium (Debian's `chromium` package), which tests/it/monitor/report.rs opens the HTML
# report in: it checks the page renders without console errors, that its plots are there, and
# takes a screenshot. Installed with apt-get (the machine's own package manager: Chromium cannot
# live under .runtime/, it needs the system's libraries); a marker under .runtime/chromium/ records
# the binary the tests use. Idempotent: nothing is done when the binary already runs.
set -euo pipefail
cd "$(dirname "$0")/../.."

MARK_DIR=.runtime/chromium
mkdir -p "$MARK_DIR"

runs() {
  command -v chromium >/dev/null 2>&1 && chromium --version >/dev/null 2>&1
}

if ! runs; then
  echo "setup: installing Debian's chromium with apt-get (headless browser for the report test)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
if ! runs; then
  echo "setup: chromium is not runnable after installing it" >&2
  exit 1
fi
command -v chromium >"$MARK_DIR/path"
