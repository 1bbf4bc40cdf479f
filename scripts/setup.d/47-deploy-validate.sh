#!/usr/bin/env bash
# The validators of deploy/ (tests/it/deploy.rs): kubernetes-validate for the built-in kinds of
# deploy/k8s/ (offline: it ships the Kubernetes schemas), and the KServe SDK's model classes with
# the Kubernetes client for deploy/kserve/ (deploy/kserve/check-schema.py). The KServe SDK goes in
# without its dependencies: only its generated models are used, and they need six. Installs into
# .runtime/deploy-venv (idempotent: instant when it is there); exits non-zero if it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."

K8S_VALIDATE=1.37.0
KUBERNETES=37.0.2
KSERVE=0.21.0
SIX=1.17.0
VENV=.runtime/deploy-venv
STAMP="$VENV/.versions"
WANT="kubernetes-validate==$K8S_VALIDATE kubernetes==$KUBERNETES kserve==$KSERVE six==$SIX"
if [ -x "$VENV/bin/kubernetes-validate" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
echo "setup: installing $WANT into $VENV" >&2
python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "kubernetes-validate==$K8S_VALIDATE" "kubernetes==$KUBERNETES" "six==$SIX"
"${pip[@]}" --no-deps "kserve==$KSERVE"
"$VENV/bin/kubernetes-validate" --version
echo "$WANT" > "$STAMP"
