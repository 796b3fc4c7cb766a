#!/usr/bin/env bash
# A kernel-level A/B on the lent CUDA machine: runs `bench` of each build under Nsight
# Compute, profiling only the kernels whose names match REGEX (COUNT launches after the
# first SKIP matching ones; every other kernel runs unprofiled, so a whole bench takes
# about a minute), then prints benches/gpu/kernel_ab.py's table: each kernel's mean and
# fastest GPU time per launch, the builds side by side. Where the host's noise hides a
# kernel's gain in `ab.sh`'s tokens per second, this measures the kernel itself.
#
#   source benches/gpu/device_setup.sh
#   bash benches/gpu/kernel_ab.sh OUT_DIR REGEX SKIP COUNT "BIN_A BIN_B ..." BENCH_ARGS...
#   e.g. bash benches/gpu/kernel_ab.sh $OUT "gated_delta_decode|attn_decode" 90 120 \
#          "/tmp/bin/qwen3_5_main /tmp/bin/qwen3_5" --config 2b --dtype bfloat16 \
#          --device gpu --memory-limit 40 --prompt 16384 --gen 16
#
# With --decode instead of REGEX SKIP COUNT, every kernel of the first timed decode is
# profiled (`bench --cuda-profile-decode` starts and stops the collection around it), and
# the table is per decode step, counted by the greedy argmax: where a step's GPU time goes.
# Keep --gen small (8: each profiled launch costs ncu milliseconds).
#
#   bash benches/gpu/kernel_ab.sh $OUT --decode "/tmp/bin/qwen3_5" --config 2b \
#          --dtype bfloat16 --device gpu --memory-limit 40 --prompt 2048 --gen 8
#
# With --detail REGEX SKIP instead, one launch of each kernel named by REGEX's
# alternatives (each after SKIP launches of it; one bench run per alternative) is profiled
# in depth (speed of light, occupancy, launch, warp states and
# their stall reasons, memory; ncu replays it a few dozen times) and ncu's report is kept
# as OUT_DIR/NAME-detail.txt; the lines that say where the time goes are printed.
#
#   bash benches/gpu/kernel_ab.sh $OUT --detail "gated_delta_decode|attn_decode_split|gemv" \
#          40 "/tmp/bin/qwen3_5" --config 2b --dtype bfloat16 --device gpu \
#          --memory-limit 40 --prompt 2048 --gen 4
#
# (Session 25: two builds at 16k, named kernels, took 94 s; profiling every kernel of a
# whole run instead timed out after 420 s; session 27: five builds at 2k, three named
# kernels, 108 launches, ~65 s each.) NCU_TIMEOUT (seconds, default 300) bounds each
# build's run, so that one stuck build does not take the call's whole time. Leaves
# OUT_DIR/NAME.csv per build and kernels.json.
set -u
if [ $# -ge 5 ] && [ "$2" = --detail ]; then
  out=$1 regex=$3 skip=$4 bins=$5
  shift 5
  mkdir -p "$out" || exit 2
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  IFS='|' read -r -a patterns <<< "$regex"
  for b in $bins; do
    [ -x "$b" ] || { echo "not an executable: $b"; exit 2; }
    for k in "${patterns[@]}"; do
      name=$(basename "$b")-$k
      timeout 300 "$ncu" --graph-profiling node -k "regex:$k" --launch-skip "$skip" \
        --launch-count 1 --section SpeedOfLight --section LaunchStats --section Occupancy \
        --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
        "$b" bench "$@" > "$out/$name-detail.txt" 2>&1 ||
        echo "$name: ncu exited with $?"
      echo "== $name"
      grep -E "^  [a-z_:A-Z]|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per Thread|Block Limit|Warp Cycles Per Issued|Issued Warp Per Scheduler|No Eligible|stall|Grid Size|Block Size" \
        "$out/$name-detail.txt" | cut -c1-200
    done
  done
  exit 0
elif [ $# -ge 3 ] && [ "$2" = --decode ]; then
  out=$1 bins=$3
  shift 3
  select=(--profile-from-start off)
  extra=(--cuda-profile-decode)
  steps=(--step-kernel arg_reduce)
elif [ $# -ge 6 ]; then
  out=$1 regex=$2 skip=$3 count=$4 bins=$5
  shift 5
  select=(-k "regex:$regex" --launch-skip "$skip" --launch-count "$count")
  extra=()
  steps=()
else
  sed -n '2,34p' "$0"
  exit 2
fi
mkdir -p "$out" || exit 2
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$ncu" ] || { echo "no ncu on this machine"; exit 2; }
csvs=()
for b in $bins; do
  [ -x "$b" ] || { echo "not an executable: $b"; exit 2; }
done
for b in $bins; do
  name=$(basename "$b")
  timeout "${NCU_TIMEOUT:-300}" "$ncu" --graph-profiling node --cache-control none --clock-control none \
    "${select[@]}" --metrics gpu__time_duration.sum --csv "$b" bench "$@" "${extra[@]}" \
    > "$out/$name.csv" 2> "$out/$name.err" ||
    { echo "$name: ncu exited with $?:"; tail -3 "$out/$name.err"; }
  csvs+=("$out/$name.csv")
done
python3 "$(dirname "$0")/kernel_ab.py" "${csvs[@]}" "${steps[@]}" --json "$out/kernels.json"
