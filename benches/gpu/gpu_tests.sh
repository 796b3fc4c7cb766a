#!/usr/bin/env bash
# Runs the workspace's GPU tests on the lent CUDA machine, each with a time limit, and
# prints one line per group with its test result (or why it has none). Source
# device_setup.sh first (it unpacks the binaries pack.sh built into /tmp/bin):
#
#   bash benches/gpu/pack.sh lm fused forward rs:io rs:ops_shape rs:threads_models
#   ... then on the device, after stash.sh:
#   source benches/gpu/device_setup.sh && bash benches/gpu/gpu_tests.sh [SECONDS_PER_GROUP]
#
# Groups whose binary was not packed are named as missing, not run. The float32 GPU
# tests of `forward` need MLX_ENABLE_TF32=0 (CUDA's TF32 products are coarser than their
# tolerance); `lm`'s emulator tests are CPU tests that need the oracle's Python and
# network, so they are skipped here. Exit status: the number of groups that did not pass.
set -u
B=${BIN:-/tmp/bin}
LIMIT=${1:-150}
failed=0

group() { # NAME BINARY [ENV=VALUE ...] -- ARGS...
  local name=$1 exe=$B/$2
  shift 2
  local env=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do env+=("$1"); shift; done
  shift
  if [ ! -x "$exe" ]; then
    echo "missing  $name ($exe not packed)"
    failed=$((failed + 1))
    return
  fi
  local t0 out rc
  t0=$(date +%s)
  out=$(env "${env[@]}" timeout "$LIMIT" "$exe" "$@" 2>&1)
  rc=$?
  local line
  line=$(grep -E "^test result" <<<"$out" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "ok       $name: $line ($(( $(date +%s) - t0 )) s)"
  else
    [ $rc -eq 124 ] && line="timed out after $LIMIT s"
    echo "FAILED   $name: ${line:-exit $rc}"
    grep -E "panicked|^---- |FAILED" <<<"$out" | head -6 | sed 's/^/         /'
    failed=$((failed + 1))
  fi
}

group "lm gated delta kernels" lm -- gated_delta --skip emulated
group "lm attention kernels" lm -- --ignored attention_kernel
group "lm small-batch kernel" lm -- --ignored small_batch
group "lm glue kernels" lm -- --ignored glue::
group "lm quantized one-row kernel" lm -- --ignored quantized_gemv
group "qwen3_5 fused" fused -- --ignored
group "qwen3_5 forward (TF32 off)" forward MLX_ENABLE_TF32=0 -- --ignored
for t in io ops_shape threads_models; do
  group "mlx-rs $t" "$t" --
done
exit $failed
