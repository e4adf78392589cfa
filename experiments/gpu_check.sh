#!/usr/bin/env bash
# The one prepared script for a lent GPU (issue #5): GPU tests, then the GPU benchmark tables, in < 5 min.
#
#   bash experiments/gpu_check.sh            # results in $OUT if set, else runs/gpu_check/
#
# On a lent machine (no internet, no omegaconf in its image): run `bash experiments/gpu_wheels.sh` here
# first, then the device tool's run with command "bash experiments/gpu_check.sh" and carry [".whl"].
# Works on a fresh machine that has the repository working tree but not its .venv: it uses a Python whose
# torch sees CUDA, and makes a venv on top of it (--system-site-packages) only if packages are missing.
# No CIFAR files and no internet are assumed: the benchmarks use synthetic CIFAR-sized data (50k 3x32x32
# images, so the 25k/25k search split and 390 steps per epoch of CIFAR-10), which costs the same per step.
# Every step has its own time limit; the script always ends and says which steps failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT=${OUT:-$REPO/runs/gpu_check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
GPU_SCRIPT=gpu_check
# shellcheck source=experiments/gpu_env.sh
source "$REPO/experiments/gpu_env.sh"

# --- tests -----------------------------------------------------------------------------------------------
step "GPU tests" 70 "$PY" -m pytest -q -rs -s -p no:cacheprovider tests/test_gpu.py --junitxml="$OUT/test_gpu.xml"

# --- benchmarks ------------------------------------------------------------------------------------------
SEARCH=(--config configs/search/gdas_cifar10.yaml data.name=synthetic data.synthetic.image_size=32
        data.synthetic.train_size=50000 data.synthetic.classes=10)
TRAIN=(--config configs/train/darts_cifar10.yaml data.name=synthetic data.synthetic.image_size=32
       data.synthetic.train_size=50000 data.synthetic.test_size=1000 data.synthetic.classes=10)
bench() {  # bench NAME SECONDS ARGS...
  local name=$1 limit=$2
  shift 2
  step "bench: $name" "$limit" "$PY" -m nas bench "$@" -o "$OUT/bench_$name.json"
}
# the targets: softmax vs gdas, and the static alternative to gdas's one-op path (every op, masked: gumbel_st)
bench samplers 70 "${SEARCH[@]}" amp=bf16 channels_last=true --compare sampler.name=gdas,softmax,gumbel_st \
  --steps 20 --warmup 5 --rounds 2
# what each GPU knob is worth to gdas
bench gdas_knobs 50 "${SEARCH[@]}" --compare amp=none,bf16 --compare channels_last=false,true \
  --steps 40 --warmup 8 --rounds 4
# GPU-resident uint8 data vs a host copy per batch; cudnn.benchmark (deterministic=false) vs deterministic
bench gdas_data_cudnn 40 "${SEARCH[@]}" amp=bf16 channels_last=true \
  --compare data.device_resident=true,false --compare deterministic=false,true --steps 20 --warmup 5 --rounds 2
bench train 40 --train --genotype zoo:GDAS_V1 "${TRAIN[@]}" channels_last=true --compare amp=none,bf16 \
  --steps 20 --warmup 5 --rounds 2

# --- a record for experiments/benchmarks.md ---------------------------------------------------------------
"$PY" - "$OUT" <<'EOF' > "$OUT/benchmarks_gpu.md" || true
import json, pathlib, sys
from nas.bench.report import format_table
out = pathlib.Path(sys.argv[1])
for path in sorted(out.glob("bench_*.json"), key=lambda p: p.stat().st_mtime):  # in the order run
    report = json.loads(path.read_text())
    m = report["machine"]
    print(f"### {path.stem[6:]} ({m['created'][:10]}, {m['gpu']}, torch {m['torch']}, cuda {m['cuda']})\n")
    print(f"`nas {m['command'].split(' ', 1)[1]}`\n\n```\n{format_table(report)}\n```\n")
EOF
log "done in $((SECONDS - START)) s; record: $OUT/benchmarks_gpu.md"
if [ ${#FAILED[@]} -gt 0 ]; then log "failed steps: ${FAILED[*]}"; exit 1; fi
