#!/usr/bin/env bash
# Hilum's ViT engine vs ONNX Runtime (onnxruntime-node) vs PyTorch, on random-weight ViT folders.
#
#   bench/compare/run.sh [--runs N] [--variants "ti16 b16"] [--keep] [--torch-blas openmp|system]
#
# Everything generated (models, ONNX files, node_modules, OpenBLAS, logs) goes to one temp dir,
# removed at the end unless --keep.  Needs build/bench/bench_vit (built already), Debian's
# python3-torch and python3-numpy, node + npm, g++, /usr/bin/time; python3-onnx is optional.
# See README.md beside this file.
set -euo pipefail

RUNS=10
WARMUP=3
VARIANTS="ti16 b16"
KEEP=0
TORCH_BLAS=openmp

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --variants) VARIANTS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --torch-blas) TORCH_BLAS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$RUNS" in ''|*[!0-9]*|0) echo "run.sh: --runs needs a positive integer" >&2; exit 2 ;; esac
case "$TORCH_BLAS" in openmp|system) ;; *) echo "run.sh: --torch-blas openmp|system" >&2; exit 2 ;; esac
for v in $VARIANTS; do
  case "$v" in ti16|b16) ;; *) echo "run.sh: unknown variant $v (ti16, b16)" >&2; exit 2 ;; esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BENCH_VIT="${BENCH_VIT:-$ROOT/build/bench/bench_vit}"
PY=/usr/bin/python3            # Debian's python3 with python3-torch (not a pyenv one)
TIME=/usr/bin/time
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ under the repository

log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

[ -x "$BENCH_VIT" ] || die "$BENCH_VIT is missing: build it first (cmake --build build --target bench_vit)"
[ -x "$TIME" ] || die "$TIME is missing (apt-get install time)"
"$PY" -c 'import torch, numpy' 2>/dev/null || die "$PY cannot import torch/numpy (apt-get install python3-torch)"
command -v node >/dev/null || die "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm is missing (apt-get install npm)"
command -v g++ >/dev/null || die "g++ is missing"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/hilum-compare.XXXXXX")"
cleanup() {
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
log "temp dir $TMP; variants: $VARIANTS; $WARMUP warm-up + $RUNS timed runs per batch"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# Runs "$@" under /usr/bin/time; stdout+stderr to $TMP/$1.log ... see callers.
# usage: timed NAME cmd...   -> $TMP/NAME.log, $TMP/NAME.rss (max RSS in KB); never fails the script
FAILED=0
timed() {
  local name="$1"; shift
  if ! "$TIME" -f %M -o "$TMP/$name.rss" "$@" >"$TMP/$name.log" 2>&1; then
    FAILED=1
    log "FAILED: $name (last lines of $TMP/$name.log):"
    tail -n 15 "$TMP/$name.log" >&2
  fi
}

# 1. Measured F32 peak of this machine.
log "peak_flops: g++ -O3 -march=native"
g++ -O3 -march=native -std=c++17 -pthread "$HERE/peak_flops.cpp" -o "$TMP/peak_flops"
"$TMP/peak_flops" 2 >"$TMP/peak.log"
cat "$TMP/peak.log" >&2

# 2. onnxruntime-node from the npm registry, into the temp dir.  The npm tarball ships the CPU
#    libonnxruntime.so; ONNXRUNTIME_NODE_INSTALL=skip keeps its postinstall from fetching anything.
log "npm install onnxruntime-node into $TMP/ort"
mkdir -p "$TMP/ort"
if ! ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save --no-audit --no-fund --loglevel=error \
      --prefix "$TMP/ort" "${ORT_NODE_SPEC:-onnxruntime-node}" >"$TMP/npm.log" 2>&1; then
  cat "$TMP/npm.log" >&2
  die "npm install onnxruntime-node failed"
fi
ORT_VERSION="$(node -p "require('$TMP/ort/node_modules/onnxruntime-node/package.json').version")"

# 3. BLAS for PyTorch (openblas.sh): unless --torch-blas system, Debian's OpenBLAS (OpenMP build)
#    unpacked into the temp dir and put first on LD_LIBRARY_PATH for the PyTorch processes only.
TORCH_LD=""
TORCH_LABEL="PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"
if [ "$TORCH_BLAS" = openmp ]; then
  # shellcheck source=openblas.sh
  . "$HERE/openblas.sh"
  if fetch_openblas "$TMP/openblas"; then
    TORCH_LD="$OPENBLAS_LIB"
    TORCH_LABEL="$TORCH_LABEL + $OPENBLAS_LABEL"
  else
    log "WARNING: could not fetch libopenblas0-openmp; PyTorch runs on the system libblas (slow)"
  fi
fi
[ -n "$TORCH_LD" ] || TORCH_LABEL="$TORCH_LABEL + system libblas"
# The PyTorch processes' environment (an array, so /usr/bin/time can run it).
TORCH_ENV=(env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=2)
[ -z "$TORCH_LD" ] || TORCH_ENV+=(LD_LIBRARY_PATH="$TORCH_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

# 4. Per variant: model folder (reference batch of 2, computed with the system BLAS on one
#    thread like every reference), ONNX export, then the three engines one after another.
for v in $VARIANTS; do
  log "$v: generating the model folder"
  (cd "$ROOT" && env -u OPENBLAS_CORETYPE "$PY" tests/reference/make_vit_reference.py \
      --bench "$TMP/$v" --variant "$v" --batch 2) >"$TMP/$v.generate.log" 2>&1 \
    || { cat "$TMP/$v.generate.log" >&2; die "$v: make_vit_reference.py failed"; }
  log "$v: exporting ONNX"
  "${TORCH_ENV[@]}" "$PY" "$HERE/export_onnx.py" "$TMP/$v" "$TMP/$v.onnx" >"$TMP/$v.export.log" 2>&1 \
    || { cat "$TMP/$v.export.log" >&2; die "$v: export_onnx.py failed"; }
  tail -n 1 "$TMP/$v.export.log" >&2

  # Hilum twice: F32 (the reference arithmetic) and BF16 (the default where the CPU has AVX512_BF16),
  # each in its own process so that its peak RSS and memory line are its own.
  for prec in f32 bf16; do
    key=hilum; [ "$prec" = f32 ] || key=hilum_$prec
    log "$v: Hilum $prec ($BENCH_VIT)"
    # One iteration per repetition (min_time 0), $WARMUP + $RUNS repetitions; report.py drops the
    # first $WARMUP of each batch and takes the median of the rest, like the other two engines.
    timed "$v.$key" env OMP_NUM_THREADS=2 "$BENCH_VIT" --model "$TMP/$v" --precision "$prec" \
      --benchmark_repetitions=$((WARMUP + RUNS)) --benchmark_min_time=0 \
      --benchmark_display_aggregates_only=true \
      --benchmark_out="$TMP/$v.$key.json" --benchmark_out_format=json
    grep -E '^check:|^memory:' "$TMP/$v.$key.log" >&2 || true
  done

  log "$v: ONNX Runtime $ORT_VERSION"
  timed "$v.ort" env ORT_NODE_PREFIX="$TMP/ort" node "$HERE/ort_bench.mjs" "$TMP/$v.onnx" \
    "$TMP/$v/reference.safetensors" --runs "$RUNS" --warmup "$WARMUP"
  grep -E '^batch' "$TMP/$v.ort.log" >&2 || true

  log "$v: $TORCH_LABEL"
  timed "$v.torch" "${TORCH_ENV[@]}" "$PY" "$HERE/torch_bench.py" "$TMP/$v" --runs "$RUNS" --warmup "$WARMUP"
  grep -E '^batch|^torch' "$TMP/$v.torch.log" >&2 || true
done

# 5. The table.
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Hilum vs ONNX Runtime vs PyTorch ($(date -u +%Y-%m-%d), $RUNS timed runs after $WARMUP warm-up, median)"
echo
labels="{\"hilum\": \"Hilum F32\", \"hilum_bf16\": \"Hilum BF16\", \"ort\": \"ONNX Runtime $ORT_VERSION\", \"torch\": \"$TORCH_LABEL\"}"
report_rc=0
"$PY" "$HERE/report.py" "$TMP" --variants "$VARIANTS" --warmup "$WARMUP" --labels "$labels" || report_rc=$?
cat <<EOF
CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load average at start $LOAD_START, at end $LOAD_END.
All engines: 2 threads, F32 (Hilum also BF16), wall time of one forward of the whole batch; inputs are the reference's
images (batch 8 = the 2 images repeated). Hilum's Δp is its bench_vit \`check:\` line (the 2
reference images); the others compare every image of the batch. Peak RSS is /usr/bin/time's max RSS
of the engine's whole process (both batches, model load included).
EOF
[ "$FAILED" = 0 ] && [ "$report_rc" = 0 ] || exit 1
