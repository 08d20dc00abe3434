#!/usr/bin/env bash
# Every GPU check and benchmark of the training step (issue 20) in one call of the device tool
# (an H100/H200 machine: python3 with torch, Triton, timm; fastai travels as wheels):
#
#   ../shared/device/prepare_wheels.sh          # here, once: the wheels into ./.whl
#   device run: command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 560
#
# 1. the tests that need a GPU: a compiled step (CUDA graphs) gives eager's loss and gradients,
#    the resident loader yields the host loader's batches, the Triton renderer;
# 2. `python -m benchmarks train` (limits eager and compiled, end to end in each variant, the
#    loaders alone, peak memory, a profile of the first model), stopping before a model that
#    would start after DOODLE_BENCH_SECONDS (default 330 s) so the call ends inside its limit.
# Logs and results_train.json go to $OUT (they come back with the call).
set -o pipefail
OUT=${OUT:-benchmarks/_work/gpu_check}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH
fi
export PYTHONUNBUFFERED=1 DOODLE_BENCH_SECONDS=${DOODLE_BENCH_SECONDS:-330}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)" \
  | tee -a "$OUT/gpu.txt"
t0=$(date +%s)
python3 -m pytest -q -p no:cacheprovider tests/test_training_step.py tests/test_resident.py tests/test_render_triton.py \
  2>&1 | tee "$OUT/tests.log"
echo "tests: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/tests.log"
python3 -m benchmarks train 2>&1 | tee "$OUT/bench_train.log"
echo "all: $(( $(date +%s) - t0 )) s"
