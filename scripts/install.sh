#!/usr/bin/env bash
# Installs what labctl and its tests need on a fresh Debian/Ubuntu machine (run as root):
# system packages for the local lab, then a venv in .venv with labctl installed in it, and a
# PyPy venv in .venv-pypy (pytest + hypothesis) in which the engine's unit tests also run
# (tests/unit/test_engine_pypy.py). This is the operator's/CI machine: labctl itself never
# installs anything on a lab host.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(openssh-server nginx iptables iproute2 tcpdump conntrack libpcap0.8 wrk ethtool
      redis-server redis-tools procps python3-venv curl
      sudo  # tests/integration/test_sudo.py: a non-root lab user with password-less sudo
      pypy3 pypy3-venv  # the engine's unit tests also run under PyPy 3.9 (.venv-pypy)
      chromium)  # chromium: the report tests render the HTML reports headless
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# apt may start services on hosts with an init system; the lab runs its own copies.
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[dev]'
echo "labctl installed in $(pwd)/.venv"
# The engine is stdlib-only: the pypy venv needs just the test tools (not labctl's deps).
if [ ! -x .venv-pypy/bin/python ]; then pypy3 -m venv .venv-pypy; fi
.venv-pypy/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv-pypy/bin/pip install -q 'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6'
echo "pypy venv for the engine's unit tests in $(pwd)/.venv-pypy"
