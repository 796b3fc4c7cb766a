#!/usr/bin/env bash
# The issue's rows on the lent GPU machine: `qwen3_5 bench --compare mlx-lm` (ours and
# mlx-lm in one process tree) for each named run, each run's --json and log written under
# OUT_DIR as CARD-PROMPT-GEN-DTYPE[-N]-DATE.{json,log} (the names
# examples/qwen3_5/benches/results/ keeps), its headline lines printed.
#
#   source benches/gpu/device_setup.sh
#   bash benches/gpu/compare.sh OUT_DIR BINARY RUN...
#   e.g. bash benches/gpu/compare.sh $OUT/c /tmp/bin/qwen3_5 bf2k-1 bf2k-2 q2k bf16k bf64k
#
# Runs: bf2k[-N] (2048 / 128, bf16), q2k[-N] (the same, --quantize 4), bf16k (16384 / 64),
# bf64k (65536 / 64, ours only: mlx-lm's prefill alone would take minutes). The 2B's
# shapes, random weights, --memory-limit 40. Exit status: the number of runs that failed.
set -u
if [ $# -lt 3 ]; then
  sed -n '2,14p' "$0"
  exit 2
fi
out=$1 bin=$2
shift 2
[ -x "$bin" ] || { echo "not an executable: $bin"; exit 2; }
mkdir -p "$out" || exit 2
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
case "$gpu" in *H200*) card=h200 ;; *H100*) card=h100 ;; *) card=gpu ;; esac
day=$(date -u +%F)
args="--config 2b --dtype bfloat16 --device gpu --memory-limit 40"
failed=0
for run in "$@"; do
  n=${run#*-}
  [ "$n" = "$run" ] && n= || n=-$n
  case ${run%%-*} in
    bf2k) name=2048-128-bf16$n limit=150 extra="--prompt 2048 --gen 128 --compare mlx-lm" ;;
    q2k) name=2048-128-q4$n limit=170 extra="--prompt 2048 --gen 128 --quantize 4 --compare mlx-lm" ;;
    bf16k) name=16384-64-bf16$n limit=200 extra="--prompt 16384 --gen 64 --compare mlx-lm" ;;
    bf64k) name=65536-64-bf16-ours$n limit=100 extra="--prompt 65536 --gen 64" ;;
    *) echo "unknown run: $run"; failed=$((failed + 1)); continue ;;
  esac
  file=$out/$card-$name-$day
  # shellcheck disable=SC2086
  if ! timeout "$limit" "$bin" bench $args $extra --json "$file.json" > "$file.log" 2>&1; then
    echo "$run FAILED:"
    tail -3 "$file.log" | sed 's/^/    /'
    failed=$((failed + 1))
    continue
  fi
  echo "== $run ($gpu)"
  grep -E "^round|prefill tok/s|decode tok/s|peak memory|primitives|agree" "$file.log" | head -12
done
exit $failed
