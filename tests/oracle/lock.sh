#!/usr/bin/env bash
# Regenerates requirements.lock from requirements.txt (the human-edited, loose input): exact
# versions of every package and its dependencies, with the sha256 of every wheel of every
# platform (a universal resolution: Linux x86_64/aarch64 and macOS arm64 all install from
# the one file), for Python 3.11 and newer (mlx-lm 0.32.2 needs 3.11).
#
#   tests/oracle/lock.sh             keep the versions already locked where they still fit
#   tests/oracle/lock.sh --upgrade   take the newest versions requirements.txt allows
#
# It uses uv (pinned below), installed into a scratch virtual environment outside the
# repository unless $UV names a uv binary.
set -euo pipefail
cd "$(dirname "$0")"
UV_VERSION=0.13.9
if [ -z "${UV:-}" ]; then
  venv="${TMPDIR:-/tmp}/mlx-oracle-uv-$UV_VERSION"
  if [ ! -x "$venv/bin/uv" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  UV="$venv/bin/uv"
fi
"$UV" pip compile requirements.txt \
  --universal --generate-hashes --python-version 3.11 --no-python-downloads \
  --custom-compile-command "tests/oracle/lock.sh" \
  -o requirements.lock "$@"
