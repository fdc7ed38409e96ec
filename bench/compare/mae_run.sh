#!/usr/bin/env bash
# Hilum's masked-autoencoder pre-training step vs PyTorch's, interleaved in rounds.
#
#   bench/compare/mae_run.sh [--rounds N] [--variant ti16|s16] [--image-size N] [--batch N]
#                            [--mask-ratio R] [--steps N] [--precisions "f32 bf16"] [--threads N] [--keep]
#
# Each round runs, per precision, two processes back to back: Hilum (build/bench/bench_mae) and
# PyTorch (torch_mae_bench.py, eager, torch.autocast for bf16): the same ViT encoder, decoder (128
# wide, 2 blocks), mask ratio and batch of random images; 1 warm-up step and --steps timed steps of
# forward + masked norm-pix loss + backward + AdamW on encoder and decoder, 2 threads (--threads:
# both engines; 1 is steadier on a loaded machine). Prints the median over the rounds of each
# process's median images/s and Hilum / PyTorch in the same round.
# Needs build/bench/bench_mae (BENCH_MAE=... for another binary) and Debian's python3-torch.
set -euo pipefail

ROUNDS=3
VARIANT=ti16
SIZE=224
BATCH=32
MASK=0.9
STEPS=5
PRECISIONS="f32 bf16"
THREADS=2
KEEP=0
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --variant) VARIANT="$2"; shift 2 ;;
    --image-size) SIZE="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --mask-ratio) MASK="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --precisions) PRECISIONS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "mae_run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$ROUNDS" "$STEPS" "$BATCH" "$SIZE" "$THREADS"; do
  case "$n" in ''|*[!0-9]*|0) echo "mae_run.sh: --rounds, --steps, --batch, --image-size and --threads take positive integers" >&2; exit 2 ;; esac
done
case "$VARIANT" in ti16|s16) ;; *) echo "mae_run.sh: unknown variant $VARIANT (ti16, s16)" >&2; exit 2 ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BENCH_MAE="${BENCH_MAE:-$ROOT/build/bench/bench_mae}"
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1

log() { echo "[mae $(date +%H:%M:%S)] $*" >&2; }
die() { echo "mae_run.sh: $*" >&2; exit 1; }
[ -x "$BENCH_MAE" ] || die "$BENCH_MAE is missing: build it first (cmake --build build --target bench_mae)"
"$PY" -c 'import torch' 2>/dev/null || die "$PY cannot import torch (apt-get install python3-torch)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/hilum-mae-compare.XXXXXX")"
cleanup() { if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck source=openblas.sh
. "$HERE/openblas.sh"
TORCH_ENV=(env -u OPENBLAS_CORETYPE OMP_NUM_THREADS="$THREADS")
TORCH_LABEL="PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"
if fetch_openblas "$TMP/openblas"; then
  TORCH_ENV+=(LD_LIBRARY_PATH="$OPENBLAS_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  TORCH_LABEL="$TORCH_LABEL + $OPENBLAS_LABEL"
else
  log "WARNING: could not fetch libopenblas0-openmp; PyTorch runs on the system libblas (slow)"
  TORCH_LABEL="$TORCH_LABEL + system libblas"
fi

run() {
  local round="$1" engine="$2" requested="$3" log_file="$TMP/$4.log"; shift 4
  if ! "$@" >"$log_file" 2>&1; then
    tail -n 15 "$log_file" >&2
    die "failed: $*"
  fi
  local line
  line="$(grep '^RESULT ' "$log_file" | tail -n 1)"
  [ -n "$line" ] || die "no RESULT line in $log_file"
  echo "round=$round engine=$engine requested=$requested ${line#RESULT }" >>"$TMP/results.txt"
  log "round $round $engine: ${line#RESULT }"
}

COMMON=(--variant "$VARIANT" --image-size "$SIZE" --batch "$BATCH" --mask-ratio "$MASK" --steps "$STEPS" --warmup 1)
for r in $(seq 1 "$ROUNDS"); do
  for prec in $PRECISIONS; do
    run "$r" hilum "$prec" "hilum.$prec.$r" env OMP_NUM_THREADS="$THREADS" "$BENCH_MAE" "${COMMON[@]}" --precision "$prec"
    run "$r" torch "$prec" "torch.$prec.$r" "${TORCH_ENV[@]}" "$PY" "$HERE/torch_mae_bench.py" "${COMMON[@]}" --threads "$THREADS" --precision "$prec"
  done
done

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## MAE pre-training step, Hilum vs PyTorch ($(date -u +%Y-%m-%d), $VARIANT at $SIZE, batch $BATCH, mask $MASK, $THREADS threads, $ROUNDS rounds, $STEPS timed steps each)"
echo
"$PY" - "$TMP/results.txt" "$TORCH_LABEL" <<'PYEOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    rows.append(dict(kv.split("=", 1) for kv in line.split()))
print("| precision (requested -> ran) | Hilum images/s | PyTorch images/s | Hilum / PyTorch (median of rounds) | peak RSS Hilum / PyTorch (MiB) |")
print("|---|---|---|---|---|")
for prec in sorted({r["requested"] for r in rows}, key=lambda p: p != "f32"):
    h = {r["round"]: r for r in rows if r["engine"] == "hilum" and r["requested"] == prec}
    t = {r["round"]: r for r in rows if r["engine"] == "torch" and r["requested"] == prec}
    rounds = sorted(set(t) & set(h))
    hv = [float(h[k]["images_per_s_median"]) for k in rounds]
    tv = [float(t[k]["images_per_s_median"]) for k in rounds]
    ratio = [a / b for a, b in zip(hv, tv)]
    ran = "/".join(sorted({h[k]["precision"] for k in rounds}))  # Hilum runs F32 on a CPU without AVX512_BF16
    print(f"| {prec} -> {ran} | {statistics.median(hv):.1f} ({min(hv):.1f}-{max(hv):.1f}) | {statistics.median(tv):.1f} "
          f"({min(tv):.1f}-{max(tv):.1f}) | {statistics.median(ratio):.2f}x | "
          f"{max(float(h[k]['peak_rss_mib']) for k in rounds):.0f} / {max(float(t[k]['peak_rss_mib']) for k in rounds):.0f} |")
print(f"\nPyTorch: {sys.argv[2]}")
PYEOF
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load average at start $LOAD_START, at end $LOAD_END."
