#!/usr/bin/env bash
# Hilum's training step vs PyTorch's, F32 and BF16 mixed precision, interleaved in rounds.
#
#   bench/compare/train_run.sh [--rounds N] [--variants "ti16 b16"] [--steps N] [--keep]
#
# Each round runs, per variant, four processes back to back: Hilum F32, PyTorch F32, Hilum BF16,
# PyTorch BF16 (torch.autocast), each a batch of 8 random 224 x 224 images, 1 warm-up step and
# --steps timed steps (forward + BCE + backward, no optimizer), 2 threads.  The table gives the
# median over the rounds of each process's median images/s, and the ratios of Hilum to PyTorch in
# the same round.  Needs build/bench/bench_train (BENCH_TRAIN=... for another binary), Debian's
# python3-torch, g++.  Temp files go to one mktemp -d folder, removed unless --keep.
set -euo pipefail

ROUNDS=3
VARIANTS="ti16 b16"
STEPS=5
KEEP=0
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --variants) VARIANTS="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "train_run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$ROUNDS" "$STEPS"; do
  case "$n" in ''|*[!0-9]*|0) echo "train_run.sh: --rounds and --steps take positive integers" >&2; exit 2 ;; esac
done
for v in $VARIANTS; do
  case "$v" in ti16|b16) ;; *) echo "train_run.sh: unknown variant $v (ti16, b16)" >&2; exit 2 ;; esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BENCH_TRAIN="${BENCH_TRAIN:-$ROOT/build/bench/bench_train}"
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1

log() { echo "[train $(date +%H:%M:%S)] $*" >&2; }
die() { echo "train_run.sh: $*" >&2; exit 1; }
[ -x "$BENCH_TRAIN" ] || die "$BENCH_TRAIN is missing: build it first (cmake --build build --target bench_train)"
"$PY" -c 'import torch' 2>/dev/null || die "$PY cannot import torch (apt-get install python3-torch)"
command -v g++ >/dev/null || die "g++ is missing"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/hilum-train-compare.XXXXXX")"
cleanup() { if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

log "peak_flops (F32 and BF16)"
g++ -O3 -march=native -std=c++17 -pthread "$HERE/peak_flops.cpp" -o "$TMP/peak_flops"
"$TMP/peak_flops" 2 >"$TMP/peak.log"
cat "$TMP/peak.log" >&2

# shellcheck source=openblas.sh
. "$HERE/openblas.sh"
TORCH_ENV=(env -u OPENBLAS_CORETYPE OMP_NUM_THREADS=2)
TORCH_LABEL="PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"
if fetch_openblas "$TMP/openblas"; then
  TORCH_ENV+=(LD_LIBRARY_PATH="$OPENBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  TORCH_LABEL="$TORCH_LABEL + $OPENBLAS_LABEL"
else
  log "WARNING: could not fetch libopenblas0-openmp; PyTorch runs on the system libblas (slow)"
  TORCH_LABEL="$TORCH_LABEL + system libblas"
fi

# One process; its RESULT line goes to results.txt with the round and engine in front.
run() {
  local round="$1" engine="$2" log_file="$TMP/$3.log"; shift 3
  if ! "$@" >"$log_file" 2>&1; then
    tail -n 15 "$log_file" >&2
    die "failed: $*"
  fi
  local line
  line="$(grep '^RESULT ' "$log_file" | tail -n 1)"
  [ -n "$line" ] || die "no RESULT line in $log_file"
  echo "round=$round engine=$engine ${line#RESULT }" >>"$TMP/results.txt"
  log "round $round $engine: ${line#RESULT }"
}

for r in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    for prec in f32 bf16; do
      run "$r" hilum "$v.hilum.$prec.$r" env OMP_NUM_THREADS=2 "$BENCH_TRAIN" --variant "$v" --steps "$STEPS" --warmup 1 --precision "$prec"
      run "$r" torch "$v.torch.$prec.$r" "${TORCH_ENV[@]}" "$PY" "$HERE/torch_train_bench.py" --variant "$v" --steps "$STEPS" \
        --warmup 1 --precision "$prec"
    done
  done
done
grep -h '^torch ' "$TMP"/*.torch.f32.1.log | head -n 1 >&2 || true

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Training step, Hilum vs PyTorch ($(date -u +%Y-%m-%d), $ROUNDS rounds, batch 8, $STEPS timed steps each)"
echo
"$PY" "$HERE/train_report.py" "$TMP" --torch-label "$TORCH_LABEL"
cat <<EOF
CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' ')), $(nproc) cores; load average at start $LOAD_START, at end $LOAD_END.
$(grep -h '^torch ' "$TMP"/*.torch.f32.1.log | head -n 1)
EOF
