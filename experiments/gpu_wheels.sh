#!/usr/bin/env bash
# Run HERE (a machine with a package index) before experiments/gpu_check.sh on a lent GPU machine, which
# has no internet. Its image holds torch, torchvision, timm, tensorboard, numpy, tqdm, matplotlib, pytest
# and PyYAML but not omegaconf; this fetches omegaconf's wheel (pure Python, needs only PyYAML) into .whl/,
# which git ignores through .git/info/exclude. Then carry it:  run(command="bash experiments/gpu_check.sh",
# carry=[".whl"]). gpu_check.sh installs whatever .whl/ holds before it looks for missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "omegaconf>=2.4"  # 2.4 needs only PyYAML (2.3 also antlr4)
ls -l .whl
