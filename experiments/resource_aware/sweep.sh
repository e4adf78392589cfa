#!/bin/bash
# A small lambda sweep: NB201 on 4,000 CIFAR-10 images (JPEG copy), 10 epochs (alpha from epoch 4), FLOPs of
# the 16 x 5 retrain network (table from profile.sh). Each run logs expected and derived FLOPs per epoch.
set -e
OUT=${OUT:-experiments/resource_aware}
RUNS=${RUNS:-runs/resource_aware}
for lam in 0 0.5 5; do
  /usr/bin/time -f "lambda $lam: %e s wall, %U s user" \
    nas search --config configs/search/nb201_cifar10_cpu.yaml progress=false \
      data.root=/work/data/cifar10-jpeg data.subset=4000 search.epochs=10 search.arch_start_epoch=4 \
      search.cost.metric=flops search.cost.weight=$lam search.cost.table=$OUT/table_nb201_cpu_b1.json \
      name=lambda_$lam out_dir=$RUNS/lambda_$lam
done
