#!/usr/bin/env bash
# Adds `qwen3_5` binaries of other commits to what pack.sh packed, for an A/B on the lent
# GPU machine (benches/gpu/ab.sh): each NAME=REV is built in a temporary git worktree
# (sharing this checkout's target folder, so dependencies are not built again), stripped,
# compressed and put into .gpu/b or .gpu/a, where device_setup.sh unpacks it to
# /tmp/bin/qwen3_5_NAME. Run after pack.sh (which empties both folders).
#
#   bash benches/gpu/pack.sh lm fused forward
#   bash benches/gpu/pack_ab.sh main=main gemv=1e3b85b
#   ... then on the device: bash benches/gpu/ab.sh $OUT 2 \
#         "/tmp/bin/qwen3_5_main /tmp/bin/qwen3_5_gemv /tmp/bin/qwen3_5" BENCH_ARGS...
#
# A call carries at most 64 MiB with the working tree: a binary that would take .gpu/a
# or .gpu/b past 56 MB goes to .gpu/c, stashed on the device by a call of its own
# (`bash .gpu/c/stash.sh`, carrying [".gpu/c"]); the folders' sizes are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 1 ]; then
  sed -n '2,14p' "$0"
  exit 2
fi
[ -d .gpu/a ] && [ -d .gpu/b ] || { echo "run benches/gpu/pack.sh first"; exit 2; }
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
export CARGO_INCREMENTAL=0
# The builds below write the same target/release/qwen3_5: keep the checkout's own to put
# back at the end.
saved=
if [ -f "$target/release/qwen3_5" ]; then
  saved=$(mktemp "${TMPDIR:-/tmp}/pack-ab-bin-XXXXXX")
  cp -p "$target/release/qwen3_5" "$saved"
fi
for pair in "$@"; do
  name=${pair%%=*}
  rev=${pair#*=}
  if [ -z "$name" ] || [ "$name" = "$pair" ] || ! git rev-parse -q --verify "$rev^{commit}" > /dev/null; then
    echo "not NAME=REV with a commit: $pair"
    exit 2
  fi
done
for pair in "$@"; do
  name=${pair%%=*}
  rev=${pair#*=}
  wt=$(mktemp -d "${TMPDIR:-/tmp}/pack-ab-XXXXXX")
  git worktree add -q --detach "$wt" "$rev"
  echo "building qwen3_5 at $rev ($(git -C "$wt" log --oneline -1 | cut -c1-60)) as qwen3_5_$name"
  (cd "$wt" && CARGO_TARGET_DIR=$target cargo build -q --release -p qwen3_5 --bin qwen3_5)
  git worktree remove --force "$wt"
  strip -o ".gpu/qwen3_5_$name" "$target/release/qwen3_5"
  xz -T2 -6 -c ".gpu/qwen3_5_$name" > ".gpu/qwen3_5_$name.xz"
  rm ".gpu/qwen3_5_$name"
  # The smaller of .gpu/a and .gpu/b takes it while it fits a call; else .gpu/c, a third
  # folder stashed by a call of its own.
  new=$(stat -c %s ".gpu/qwen3_5_$name.xz")
  a=$(du -sb .gpu/a | cut -f1)
  b=$(du -sb .gpu/b | cut -f1)
  [ "$a" -lt "$b" ] && half=a small=$a || half=b small=$b
  if [ $((small + new)) -gt 56000000 ]; then
    half=c
    mkdir -p .gpu/c
    echo 'mkdir -p /tmp/stash && cp .gpu/c/* /tmp/stash/ && ls /tmp/stash' > .gpu/c/stash.sh
  fi
  mv ".gpu/qwen3_5_$name.xz" ".gpu/$half/"
done
if [ -n "$saved" ]; then
  mv "$saved" "$target/release/qwen3_5"
fi
status=0
for half in a b c; do
  [ -d ".gpu/$half" ] || continue
  size=$(du -sb ".gpu/$half" | cut -f1)
  echo ".gpu/$half: $((size / 1000000)) MB"
  if [ "$size" -gt 56000000 ]; then
    echo ".gpu/$half is past 56 MB: with the working tree it would not fit a call"
    status=1
  fi
done
if [ -d .gpu/c ]; then
  echo "carry .gpu/c in a call of its own (bash .gpu/c/stash.sh) after .gpu/a's, before .gpu/b's"
fi
exit $status
