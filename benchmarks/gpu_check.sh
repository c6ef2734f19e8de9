#!/usr/bin/env bash
# Every GPU check in one call (under 8 minutes on one H100), one table at the end:
#   1. step_speed on CUDA: ResNet-20 (batch 512, 32x32) and torchvision ResNet-50 (batch 128, 224x224)
#   2. a 4-trial study on CIFAR-size synthetic data (the real trial path: data on the GPU, bf16,
#      channels_last, warm-up, SQLite storage)
# The GPU machines have torch but no registry access: `make gpu-wheels` downloads the other wheels
# into benchmarks/wheels beforehand; this script installs them into a venv that sees the system torch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
if ! python3 -c "import optuna, click, pydantic" 2>/dev/null; then
  python3 -m venv --system-site-packages /tmp/dikd-gpu-venv
  /tmp/dikd-gpu-venv/bin/pip install -q --no-index --find-links benchmarks/wheels \
    optuna sqlalchemy pydantic pyyaml click tqdm plotly
  /tmp/dikd-gpu-venv/bin/pip install -q --no-deps --no-build-isolation -e .
  PY=/tmp/dikd-gpu-venv/bin/python
else
  PY=python3
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
$PY benchmarks/step_speed.py --model resnet20 --batch 512 --size 32 --device cuda \
  --rounds 5 --steps 20 | tee "$out/step_resnet20.txt"
$PY benchmarks/step_speed.py --model resnet50 --batch 128 --size 224 --device cuda \
  --rounds 3 --steps 10 | tee "$out/step_resnet50.txt"
cat > "$out/gpu-study.yaml" <<SPEC
name: gpu-check
storage: sqlite:///$out/gpu-check.db
train: {model: resnet20, data: synthetic, subset: 20000, epochs: 4, batch_size: 512, lr: 0.4}
baseline: {fractions: [0.5, 1.0]}
space: {frequency: {low: 0.3, high: 0.9}, scale: {choices: [2.0]}, kernel_pool: {choices: [true, false]}}
n_trials: 4
SPEC
$PY -m searcher study run "$out/gpu-study.yaml" > "$out/study.txt" 2>&1
echo
echo "================ GPU check: $(cat "$out/gpu.txt") ================"
cat "$out/step_resnet20.txt" "$out/step_resnet50.txt"
sed -n '/baseline budget curve/,$p' "$out/study.txt"
