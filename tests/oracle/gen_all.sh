#!/usr/bin/env bash
# Regenerates every oracle fixture with Python MLX (see requirements.txt beside this).
set -euo pipefail
cd "$(dirname "$0")"
for g in gen_*.py; do
  python3 "$g"
done
