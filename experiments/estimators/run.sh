#!/usr/bin/env bash
# Reproduces experiments/estimators/: a short NB201 search on 4,000 CIFAR-10 images (16 x 16, 8 channels, one
# cell per stage) to get trained weights and alphas, then `nas gradcheck` on it. CPU only, ~8 min CPU time.
# Usage: experiments/estimators/run.sh [DATA_ROOT] [OUT]   (defaults: data/cifar10-jpeg, runs/estimators)
set -euo pipefail
DATA=${1:-data/cifar10-jpeg}
OUT=${2:-runs/estimators}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# 1. weights: 3 epochs with alpha fixed (uniformly sampled cells, gumbel_st runs only the chosen ops), then
#    3 epochs that also move alpha (tau 1). The search's own sampler matters little here: it only has to give
#    the gradient check a trained supernet and a non-uniform alpha.
[ -f "$OUT/search/checkpoints/last.pt" ] || python -m nas search --config configs/search/nb201_cifar10_cpu.yaml progress=false \
  data.root="$DATA" data.subset=4000 data.image_size=16 search.epochs=6 search.arch_start_epoch=3 \
  tau.schedule=constant tau.start=1.0 tau.end=1.0 out_dir="$OUT/search"

# 2. the gradient check: every sampler, tau in {0.1, 0.3, 1, 3, 10}, 50 estimates each, at the run's alphas.
python -m nas gradcheck --config configs/gradcheck/nb201_cifar10_cpu.yaml run="$OUT/search" out_dir="$OUT/gradcheck"
