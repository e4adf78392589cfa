#!/usr/bin/env bash
# Issue 24 on a lent GPU: retrain every cell of the DARTS-space comparison (the 12 random cells, the 5
# published ones and the searches' own, listed from the retrains committed under this folder) with the GPU
# proxy (configs/train/darts_cifar10_proxy_gpu.yaml), several at once, then judge that proxy against the
# committed 4-epoch CPU one: proxy_length.py's table, its Kendall taus (accuracy vs parameter-free normal
# edges, GPU vs CPU proxy) and the check the comparison needs (published and searched cells against the
# random ones: percentile, median, one-sided Mann-Whitney). Cells are interleaved (random, published,
# searched, random, ...) so that a run cut short by LIMIT still judges something.
#
#   here:   bash experiments/gpu_wheels.sh && cp ../shared/data/cifar10-jpeg.tar.gz data/
#   there:  the device tool's run, command "bash experiments/search_vs_random/darts/gpu_proxy.sh",
#           carry [".whl", "data/cifar10-jpeg.tar.gz"], timeout_s 560
#   on any machine with the data extracted: OUT=runs/gpu_proxy bash experiments/search_vs_random/darts/gpu_proxy.sh
#
# Settings (environment): PARALLEL retrains at once (default 4), LIMIT seconds for all retrains (default 400;
# a retrain still running then is stopped and left out), EXTRA overrides for every retrain (e.g.
# "train.epochs=6 data.subset=25000"), CELLS a space-separated subset of cell names (default: all).
# Writes into $OUT: one `nas train` run directory per cell under gpu/, its log under logs/, judge.md
# (the tables) and curves.csv (one row per cell, proxy and epoch). NAS_GPU_ALLOW_CPU=1 runs it without a GPU
# (a smoke test of the script, e.g. with EXTRA="train.epochs=1 data.subset=500 amp=none" CELLS="zoo-DARTS_V2 random-00").
set -uo pipefail

REPO=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$REPO"
OUT=${OUT:-$REPO/runs/gpu_proxy}
mkdir -p "$OUT/gpu" "$OUT/logs"
exec > >(tee -a "$OUT/gpu_proxy.log") 2>&1
GPU_SCRIPT=gpu_proxy
# shellcheck source=experiments/gpu_env.sh
source "$REPO/experiments/gpu_env.sh"
PARALLEL=${PARALLEL:-4}
LIMIT=${LIMIT:-400}
EXTRA=${EXTRA:-}
DARTS=experiments/search_vs_random/darts
CONFIG=configs/train/darts_cifar10_proxy_gpu.yaml

# --- data: CIFAR-10 as the JPEG folder, decoded once (parallel retrains would each decode it) ------------
if [ ! -d data/cifar10-jpeg ]; then
  [ -f data/cifar10-jpeg.tar.gz ] || { log "no data/cifar10-jpeg and no data/cifar10-jpeg.tar.gz to extract"; exit 2; }
  step "extract CIFAR-10" 120 tar xzf data/cifar10-jpeg.tar.gz -C data
fi
step "decode CIFAR-10 into its cache" 180 "$PY" -c "
from nas.config import load_config
from nas.config.schema import TrainRunConfig
from nas.data.loaders import load_dataset
cfg = load_config(TrainRunConfig, '$CONFIG')
print('train', tuple(load_dataset(cfg.data, True).images.shape), 'test', tuple(load_dataset(cfg.data, False).images.shape))"

# --- the cells: name -> genotype file, interleaved ------------------------------------------------------
declare -A GENOTYPE
RANDOM_CELLS=() ZOO_CELLS=() SEARCHED_CELLS=()
for dir in "$DARTS"/proxy_check/retrains/*/; do
  name=$(basename "$dir")
  [[ $name == *.seed-* ]] && continue  # a repeat retrain of a cell, not another cell
  GENOTYPE[$name]=$dir/genotype.json
  case $name in random-*) RANDOM_CELLS+=("$name") ;; zoo-*) ZOO_CELLS+=("$name") ;; esac
done
for dir in "$DARTS"/searches/seed-*/; do
  name=$(basename "$dir")
  GENOTYPE[$name]=$dir/search/genotype.json
  SEARCHED_CELLS+=("$name")
done
ORDER=()
for ((i = 0; i < ${#RANDOM_CELLS[@]}; i++)); do  # two random cells per published and searched one
  ORDER+=("${RANDOM_CELLS[$i]}")
  if ((i % 2 == 1)); then
    j=$((i / 2))
    [ $j -lt ${#ZOO_CELLS[@]} ] && ORDER+=("${ZOO_CELLS[$j]}")
    [ $j -lt ${#SEARCHED_CELLS[@]} ] && ORDER+=("${SEARCHED_CELLS[$j]}")
  fi
done
for ((j = ${#RANDOM_CELLS[@]} / 2; j < ${#ZOO_CELLS[@]} || j < ${#SEARCHED_CELLS[@]}; j++)); do
  [ $j -lt ${#ZOO_CELLS[@]} ] && ORDER+=("${ZOO_CELLS[$j]}")
  [ $j -lt ${#SEARCHED_CELLS[@]} ] && ORDER+=("${SEARCHED_CELLS[$j]}")
done
if [ -n "${CELLS:-}" ]; then
  for name in $CELLS; do [ -n "${GENOTYPE[$name]:-}" ] || { log "unknown cell $name"; exit 2; }; done
  # shellcheck disable=SC2206
  ORDER=($CELLS)
fi
log "${#ORDER[@]} cells, $PARALLEL at a time, ${LIMIT}s in all: ${ORDER[*]}"

# --- the retrains -----------------------------------------------------------------------------------------
DEADLINE=$(($(date +%s) + LIMIT))
retrain() {  # retrain CELL GENOTYPE: one `nas train`, stopped at the deadline
  local name=$1 genotype=$2 left=$((DEADLINE - $(date +%s)))
  if ((left < 10)); then echo "$name: no time left, skipped"; return 0; fi
  # shellcheck disable=SC2086
  timeout --signal=INT --kill-after=10 "$left" "$PY" -m nas train --genotype "$genotype" --config "$CONFIG" \
    progress=false out_dir="$OUT/gpu/$name" $EXTRA > "$OUT/logs/$name.log" 2>&1
  echo "$name: exit $?, $(tail -n 1 "$OUT/logs/$name.log")"
}
export -f retrain
export PY CONFIG OUT EXTRA DEADLINE
log "retrains started"
for name in "${ORDER[@]}"; do echo "$name ${GENOTYPE[$name]}"; done |
  xargs -P "$PARALLEL" -L 1 bash -c 'retrain "$1" "$2"' _
log "retrains ended: $(find "$OUT/gpu" -name metrics.json | wc -l) of ${#ORDER[@]} finished"

# --- the judge: this proxy against the committed 4-epoch CPU one --------------------------------------------
E4=${TMPDIR:-/tmp}/gpu_proxy_e4
rm -rf "$E4" && mkdir -p "$E4"
for dir in "$DARTS"/proxy_check/retrains/*/; do cp -r "$dir" "$E4/"; done
for dir in "$DARTS"/searches/seed-*/; do cp -r "$dir/proxy" "$E4/$(basename "$dir")"; done
: > "$OUT/judge.md"
# the cells both proxies finished (and the csv of both), then every cell the GPU proxy finished
for proxies in "cpu_e4=$E4 gpu=$OUT/gpu -o $OUT/curves.csv" "gpu=$OUT/gpu"; do
  log "judge: $proxies"
  # shellcheck disable=SC2086
  "$PY" experiments/search_vs_random/proxy_length.py $proxies | tee -a "$OUT/judge.md" \
    || { log "FAILED: judge $proxies"; FAILED+=("judge"); }
  echo >> "$OUT/judge.md"
done
log "done in $((SECONDS - START)) s"
if [ ${#FAILED[@]} -gt 0 ]; then log "failed steps: ${FAILED[*]}"; exit 1; fi
