# Sourced by the scripts for a lent GPU machine (experiments/gpu_check.sh,
# experiments/search_vs_random/darts/gpu_proxy.sh), after they set REPO (the working tree), OUT (the results
# folder) and GPU_SCRIPT (the name their log lines carry). Gives them `log`, `step NAME SECONDS CMD...` (a
# time limit per step; failures collected in FAILED) and PY: a Python whose torch sees CUDA, with the
# project importable from the tree and the carried wheels (experiments/gpu_wheels.sh) installed, on top of
# which it makes a venv only where packages are missing. Records the card and versions in
# $OUT/environment.txt and $OUT/nvidia-smi.txt; exits where no Python sees a GPU, unless NAS_GPU_ALLOW_CPU=1
# (a smoke test of a script on a machine without one).
START=$SECONDS
FAILED=()
log() { printf '[%s %4ds] %s\n' "$GPU_SCRIPT" $((SECONDS - START)) "$*"; }
step() {  # step NAME SECONDS CMD...: run with a time limit, remember failures
  local name=$1 limit=$2
  shift 2
  log "$name"
  timeout --signal=INT --kill-after=10 "$limit" "$@" || { log "FAILED: $name (exit $?)"; FAILED+=("$name"); }
}

# --- Python -----------------------------------------------------------------------------------------------
has_cuda_torch() {
  "$1" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() or '${NAS_GPU_ALLOW_CPU:-}' == '1' else 1)" 2>/dev/null
}
PY=
for candidate in "$REPO/.venv/bin/python" python3 python; do
  if command -v "$candidate" >/dev/null 2>&1 && has_cuda_torch "$candidate"; then PY=$(command -v "$candidate"); break; fi
done
if [ -z "$PY" ]; then
  log "no Python with a CUDA-enabled torch found"; nvidia-smi || true; exit 1
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # nas and search_spaces import from the tree as they are
if compgen -G "$REPO/.whl/*.whl" >/dev/null; then  # carried wheels (experiments/gpu_wheels.sh): no index there
  SITE=${TMPDIR:-/tmp}/nas-gpu-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$REPO"/.whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:$SITE" && log "installed carried wheels: $(ls "$REPO/.whl" | tr '\n' ' ')"
fi
NEEDED="torch torchvision timm omegaconf tensorboard numpy tqdm matplotlib pytest"
missing() { "$1" - $NEEDED <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
}
MISSING=$(missing "$PY")
if [ -n "$MISSING" ]; then
  log "missing in $PY: $MISSING; making a venv on top of it"
  VENV=${TMPDIR:-/tmp}/nas-gpu-venv
  "$PY" -m venv --system-site-packages "$VENV" && PY=$VENV/bin/python
  PIP=("$PY" -m pip install -q --retries 0 --timeout 10)  # fail fast where there is no package index
  timeout 60 "${PIP[@]}" --no-build-isolation --no-deps -e "$REPO[dev]" || log "editable install failed; using PYTHONPATH"
  MISSING=$(missing "$PY")
  # shellcheck disable=SC2086
  [ -n "$MISSING" ] && { timeout 60 "${PIP[@]}" $MISSING || log "could not install: $MISSING"; }
fi
log "python: $PY"
"$PY" - <<'EOF' | tee "$OUT/environment.txt"
import platform, torch
if torch.cuda.is_available():
    print(f"gpu: {torch.cuda.get_device_name(0)}  ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)")
    print(f"torch {torch.__version__}, cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, "
          f"bf16 {torch.cuda.is_bf16_supported()}, python {platform.python_version()}")
else:
    print(f"no gpu (NAS_GPU_ALLOW_CPU=1): {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
EOF
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
