#!/bin/bash
# CPU latency and FLOPs tables of the NB201 (16 x 5) and DARTS (36 x 20) CIFAR retrain networks, batch 1.
set -e
OUT=${OUT:-experiments/resource_aware}
for space in nb201 darts; do
  /usr/bin/time -f "$space profile: %e s wall, %U s user" \
    nas cost profile --space $space --device cpu --batch 1 --warmup 5 --repeats 20 \
      --cache $OUT/latency_cache.json -o $OUT/table_${space}_cpu_b1.json
done
