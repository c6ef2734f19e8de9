#!/usr/bin/env bash
# Every GPU check in one call (3-4 minutes on one H100, 2026-11-26), one table at the end:
#   1. step_speed on CUDA: ResNet-20 (batch 512, 32x32) and torchvision ResNet-50 (batch 128,
#      224x224), with peak memory per step
#   2. a 4-trial study on CIFAR-size synthetic data (the real trial path: data on the GPU, bf16,
#      channels_last, warm-up, SQLite storage)
#   3. the CUDA tests (tests/objectives/test_cuda.py: no host sync per step, memory, learning)
#   4. compile: true, reused across a worker's trials: trials per hour eager against compiled
#      and reused (graphs built per trial, recompilations), and compiled steps
#   5. loader wait: the share of full and reduced steps at 128 px spent waiting for data, from
#      device memory and streamed from pinned host memory
# The GPU machines have torch but no registry access: `make gpu-wheels` downloads the missing
# wheels into benchmarks/wheels beforehand (carry that folder); they are installed into /tmp/site.
# Each part has its own time limit, so one that fails or hangs does not cost the others.
# GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 runs the same script in miniature on a CPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
device=${GPU_CHECK_DEVICE:-cuda}
if ! python3 -c "import optuna, pydantic, sqlalchemy, plotly" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site benchmarks/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${GPU_CHECK_QUICK:-}" ]; then  # miniature sizes for a dry run
  r20="--batch 32 --rounds 1 --steps 2"; r50="--batch 2 --size 64 --rounds 1 --steps 1"
  study="subset: 600, image_size: 16, epochs: 2, batch_size: 64"; cc="--batch 64 --subset 600 --epochs 2 --size 16"
  lw="--size 32 --batch 16 --steps 3"
else
  r20="--batch 512 --rounds 5 --steps 20"; r50="--batch 128 --size 224 --rounds 3 --steps 10"
  study="subset: 20000, epochs: 4, batch_size: 512"; cc="--batch 512 --subset 20000 --epochs 3"
  lw="--size 128 --batch 256 --steps 30"
fi
budget=${GPU_CHECK_BUDGET:-540}  # seconds for all parts; what is left over is skipped
part() {  # part NAME SECONDS COMMAND...: run, keep its output, note a failure
  local name=$1 limit=$2; shift 2
  local left=$((budget - SECONDS - 10))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 0 ]; then echo "SKIPPED: time budget spent" > "$out/$name.txt"; return; fi
  echo "=== $name (${SECONDS}s)" >&2
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1 || echo "FAILED (exit $?, limit ${limit}s)" >> "$out/$name.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU
  python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"
} > "$out/env.txt" 2>&1
part cuda_tests 90 python3 -m pytest -q -p no:cacheprovider tests/objectives/test_cuda.py
part step_resnet20 60 python3 benchmarks/step_speed.py --model resnet20 $r20 --size 32 --device "$device"
part step_resnet50 120 python3 benchmarks/step_speed.py --model resnet50 $r50 --device "$device"
cat > "$out/gpu-study.yaml" <<SPEC
name: gpu-check
storage: sqlite:///$out/gpu-check.db
train: {model: resnet20, data: synthetic, $study, lr: 0.2, device: $device}
baseline: {fractions: [0.5, 1.0]}
space: {frequency: {low: 0.3, high: 0.9}, scale: {choices: [2.0]}, kernel_pool: {choices: [true, false]}}
n_trials: 4
SPEC
part study 120 python3 -m searcher study run "$out/gpu-study.yaml"
part compile_check 150 python3 benchmarks/compile_check.py --device "$device" $cc --mode reduce-overhead
part loader_wait 60 python3 benchmarks/loader_wait.py --data synthetic --model resnet18 $lw \
  --device "$device"
part step_resnet20_compiled 120 python3 benchmarks/step_speed.py --model resnet20 $r20 --size 32 \
  --device "$device" --compile --compile-mode reduce-overhead --variants "full,input-only x2,pooled x2"
rm -f "$out/gpu-check.db"
echo
echo "================ GPU check: $(tr '\n' ' ' < "$out/env.txt") ================"
tail -n 3 "$out/cuda_tests.txt"; echo
for name in step_resnet20 step_resnet50; do grep -v '^[VWI][0-9]' "$out/$name.txt"; echo; done
sed -n '/baseline budget curve/,$p' "$out/study.txt"; grep FAILED "$out/study.txt"; echo
for name in compile_check loader_wait step_resnet20_compiled; do
  grep -q SKIPPED "$out/$name.txt" && echo "$name: skipped, time budget spent"
  grep -v '^[VWI][0-9]\|^  recompile:.*\[__' "$out/$name.txt" | grep -v '^\s*-\|triggered by'; echo
done
