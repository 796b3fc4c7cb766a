#!/usr/bin/env bash
# GPU time per decode step by kernel, on the lent CUDA machine: writes a random-weight
# Qwen 3.5 2B checkpoint (bf16, real shapes; once), generates TOKENS greedy tokens from it
# with BIN under Nsight Compute (every kernel, CUDA graph nodes one by one, only their
# durations; caches and clocks left alone, as in a real run), then prints
# benches/gpu/kernel_times.py's table over the last decode steps. Loading a checkpoint
# keeps the profile short: `bench`'s random weights are made by thousands of kernels that
# ncu would replay one by one (session 24's first try ran out of time there).
#
#   source benches/gpu/device_setup.sh
#   bash benches/gpu/kernel_times.sh OUT_DIR [BIN] [TOKENS]    # e.g. $OUT /tmp/bin/qwen3_5 16
#
# Leaves OUT_DIR/kernels.csv.xz (the raw ncu CSV), kernels.txt (the table), kernels.json.
set -u
if [ $# -lt 1 ]; then
  sed -n '2,13p' "$0"
  exit 2
fi
out=$1 bin=${2:-/tmp/bin/qwen3_5} tokens=${3:-16}
model=/tmp/q2b
mkdir -p "$out" || exit 2
[ -x "$bin" ] || { echo "not an executable: $bin"; exit 2; }
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$ncu" ] || { echo "no ncu on this machine"; exit 2; }
if [ ! -f "$model/config.json" ]; then
  python3 examples/qwen3_5/tests/kernel_emulation/gen_random_model.py "$model" --shape 2b || exit 1
  cp /tmp/tok/tokenizer.json "$model/" || exit 1
  cp examples/qwen3_5/tests/fixtures/qwen3_5_chat_template.jinja "$model/chat_template.jinja"
fi
case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
  *H200*) gbps=4800 ;;
  *H100*) gbps=3350 ;;
  *) gbps= ;;
esac
# ncu's table goes to stdout with the generated text; kernel_times.py reads only the
# table's quoted lines.
"$ncu" --graph-profiling node --cache-control none --clock-control none \
  --metrics gpu__time_duration.sum --csv \
  "$bin" generate --model "$model" --prompt "The quick brown fox" --raw --temp 0 \
  --max-tokens "$tokens" > "$out/kernels.csv" 2> "$out/ncu.err"
rc=$?
[ $rc -eq 0 ] || { echo "ncu exited with $rc:"; tail -5 "$out/ncu.err"; }
python3 benches/gpu/kernel_times.py "$out/kernels.csv" --steps $((tokens > 6 ? tokens - 4 : 1)) \
  ${gbps:+--weights-gb 3.764 --gbps $gbps} --json "$out/kernels.json" | tee "$out/kernels.txt"
xz -f -9 "$out/kernels.csv"
