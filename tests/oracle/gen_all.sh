#!/usr/bin/env bash
# Regenerates every oracle fixture with Python MLX and the other locked oracles
# (requirements.lock). It runs the generators with the packages that the `oracle` crate
# provisions under target/oracle-python/ (any test run that uses them installs them, or
# `cargo test -p oracle`), unless PYTHONPATH is already set.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${MLX_SYS_PYTHON:-python3}"
if [ -z "${PYTHONPATH:-}" ]; then
  if [ -n "${MLX_ORACLE_PYTHONPATH:-}" ]; then
    site="$MLX_ORACLE_PYTHONPATH"
  else
    hash=$("$PYTHON" -c 'import hashlib; print(hashlib.sha256(open("requirements.lock", "rb").read()).hexdigest()[:16])')
    ver=$("$PYTHON" -c 'import sys; print("%d%d" % sys.version_info[:2])')
    site="${MLX_ORACLE_CACHE_DIR:-${CARGO_TARGET_DIR:-../../target}/oracle-python}/$hash-py$ver"
    if [ ! -f "$site/.complete" ]; then
      echo "no provisioned oracle at $site: run \`cargo test -p oracle\` first" >&2
      exit 1
    fi
  fi
  export PYTHONPATH="$site" PYTHONNOUSERSITE=1
fi
# gen_lora.py makes its adapters on the models gen_qwen3.py and gen_qwen.py write: last.
for g in gen_*.py; do
  [ "$g" = gen_lora.py ] || "$PYTHON" "$g"
done
"$PYTHON" gen_lora.py
