#!/usr/bin/env bash
# Runs one fuzz target for a while with its committed seeds and dictionary.
# Usage: fuzz/run.sh TARGET [SECONDS]   (from the repository root or fuzz/)
# New inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET (both ignored).
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=${2:-600}
mkdir -p "corpus/$target"
exec cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -dict="dicts/$target.dict" -max_total_time="$secs" -rss_limit_mb=4096 -timeout=30 \
    -max_len="${MAX_LEN:-16384}" -print_final_stats=1
