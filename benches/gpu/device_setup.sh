# Sourced on the lent GPU machine (see pack.sh): the MLX CUDA wheel joined from its two
# halves and installed with MLX and mlx-lm for Python under /tmp/site, the carried binaries
# unpacked into /tmp/bin, the tokenizer into /tmp/tok; PYTHONPATH and LD_LIBRARY_PATH set
# (MLX's CUDA libmlx.so, the machine's NVIDIA runtime libraries). Done once per machine.
if [ ! -d /tmp/site ]; then
  W=/tmp/mlx_cuda_13-0.32.2-py3-none-manylinux_2_35_x86_64.whl
  cat /tmp/stash/part.00 .gpu/b/part.01 > $W
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $W .gpu/b/*.whl
  mkdir -p /tmp/bin /tmp/tok
  for f in /tmp/stash/*.xz .gpu/b/*.xz; do
    n=$(basename "$f" .xz)
    xz -dc "$f" > "/tmp/bin/$n" && chmod +x "/tmp/bin/$n"
  done
  mv /tmp/bin/tokenizer.json /tmp/tok/ 2>/dev/null || true
fi
NV=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export PYTHONPATH=/tmp/site
LD_LIBRARY_PATH=/tmp/site/mlx/lib:$(find $NV -name lib -type d | tr '\n' ':')
export LD_LIBRARY_PATH
export PYTHONUNBUFFERED=1
