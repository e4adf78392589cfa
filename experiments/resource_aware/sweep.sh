#!/bin/bash
# A small lambda sweep: NB201 on 1,000 CIFAR-10 images (JPEG copy; 500 train the weights, 500 alpha),
# 8 epochs, alpha from epoch 2, FLOPs of the 16 x 5 retrain network (table from profile.sh). The three
# lambdas run side by side. Each run logs expected and derived FLOPs per epoch.
OUT=${OUT:-experiments/resource_aware}
RUNS=${RUNS:-runs/resource_aware}
mkdir -p $RUNS
for lam in 0 0.5 5; do
  /usr/bin/time -f "lambda $lam: %e s wall, %U s user" \
    nas search --config configs/search/nb201_cifar10_cpu.yaml progress=false \
      data.root=/work/data/cifar10-jpeg data.subset=1000 search.epochs=8 search.arch_start_epoch=2 \
      search.cost.metric=flops search.cost.weight=$lam search.cost.table=$OUT/table_nb201_cpu_b1.json \
      name=lambda_$lam out_dir=$RUNS/lambda_$lam > $RUNS/lambda_$lam.log 2>&1 &
done
wait
