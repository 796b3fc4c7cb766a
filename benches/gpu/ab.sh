#!/usr/bin/env bash
# A/B of qwen3_5 builds on one machine: each binary once as a warm-up with the same
# arguments, not counted (the first run on a fresh GPU machine compiles every kernel), then
# ROUNDS rounds of every binary in turn with the same bench arguments; prints each run's prefill, decode, host time and graph nodes,
# and keeps each run's --json under OUT_DIR (e.g. $OUT on the device).
#
#   bash benches/gpu/ab.sh OUT_DIR ROUNDS "BIN_A BIN_B ..." BENCH_ARGS...
#   e.g. bash benches/gpu/ab.sh $OUT 2 "/tmp/bin/qwen3_5_main /tmp/bin/qwen3_5_glue" \
#          --config 2b --dtype bfloat16 --device gpu --memory-limit 40 --prompt 2048 --gen 128
#
# Exit status: the number of runs that failed (a failed run prints its last lines).
set -u
if [ $# -lt 4 ]; then
  sed -n '2,11p' "$0"
  exit 2
fi
out=$1 rounds=$2 bins=$3
shift 3
mkdir -p "$out" || exit 2
failed=0
for b in $bins; do
  [ -x "$b" ] || { echo "not an executable: $b"; exit 2; }
done
for b in $bins; do
  timeout 300 "$b" bench "$@" > /dev/null 2>&1 || echo "warm-up of $b failed"
done
for r in $(seq 1 "$rounds"); do
  for b in $bins; do
    name=$(basename "$b")
    log="$out/ab-$name-$r.log"
    if timeout 300 "$b" bench "$@" --json "$out/ab-$name-$r.json" > "$log" 2>&1; then
      printf '%-28s round %s: ' "$name" "$r"
      grep -E "^round 1: ours" "$log" | sed 's/^round 1: ours //'
      grep -E "^graph primitives" "$log" | sed 's/ (ours)//; s/ (.*//; s/^/    /'
    else
      echo "$name round $r FAILED:"
      tail -3 "$log" | sed 's/^/    /'
      failed=$((failed + 1))
    fi
  done
done
exit $failed
