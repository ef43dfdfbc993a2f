#!/usr/bin/env bash
# Set up everything rollbot's demo and tests need on a fresh Debian machine:
# redis-server, npm and prometheus-alertmanager (apt, only when missing), a virtualenv with the locked dependencies, and the real
# helm and kubectl binaries (scripts/setup-tools.sh; fetched, never committed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v make >/dev/null 2>&1 || need_apt+=(make)
# A real Alertmanager for the webhook tests (tests/webhooks); Debian ships it as prometheus-alertmanager.
need_alertmanager=""
command -v prometheus-alertmanager >/dev/null 2>&1 || need_alertmanager=yes
if [ "${#need_apt[@]}" -gt 0 ] || [ -n "$need_alertmanager" ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # Only where the distribution packages it; elsewhere its tests skip (and fail under CI=true).
  # Read the policy into a variable first: `grep -q` closing the pipe early fails the pipeline under pipefail.
  alertmanager_policy="$(apt-cache policy prometheus-alertmanager 2>/dev/null || true)"
  if [ -n "$need_alertmanager" ] && [[ "$alertmanager_policy" == *"Candidate: "[0-9]* ]]; then
    need_apt+=(prometheus-alertmanager)
  fi
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The lock pins every transitive version so the resolver never backtracks through old boto3 releases.
.venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
scripts/setup-tools.sh
