#!/usr/bin/env bash
# Issue 18: `hilum-cli classify` end to end (decode, preprocess, forward, catalog) on a ViT-B/16
# against ONNX Runtime's forward on the same weights, interleaved round by round.
#
#   bench/compare/classify_run.sh [--rounds N] [--images N] [--keep]
#
# The marginal cost per image of classify is (T(N films) - T(1 film)) / (N - 1), whole-process wall
# times of `classify --all` on two catalogs (N films and 1 film), so that the process start and the
# model load cancel out. Each round runs, in this order: Hilum with its default batch (8), inputs not
# cached (each film decoded), then cached (the model inputs the first run wrote); Hilum --batch 1
# (cached); then ONNX Runtime (ort_bench.mjs: median of 5 forwards of batch 1 and of batch 8, after
# 2 warm-up). Ratios are taken within a round, then the median over rounds.
#
# Films: copies (new SOP Instance UIDs) of the chest films in ../shared/data/dicom (raw CR/DX and the
# NEMA JPEG 2000 CR RG3_J2KR), cycled. Reuses, when set: MODEL_DIR (a ViT folder written by
# tests/reference/make_vit_reference.py --bench), ONNX (its export_onnx.py export) and
# ORT_NODE_PREFIX (a folder whose node_modules has onnxruntime-node); else makes them in the temp dir.
# Needs build/app/hilum-cli, dcmodify (dcmtk), node + npm, Debian's python3-torch.
set -euo pipefail

ROUNDS=3
IMAGES=33
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "classify_run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$ROUNDS$IMAGES" in *[!0-9]*) echo "classify_run.sh: --rounds and --images take numbers" >&2; exit 2 ;; esac
[ "$IMAGES" -ge 2 ] || { echo "classify_run.sh: --images needs at least 2" >&2; exit 2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CLI="${HILUM_CLI:-$ROOT/build/app/hilum-cli}"
DATA="${DATA:-$ROOT/../shared/data/dicom}"
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1 LC_ALL=C
log() { echo "[classify $(date +%H:%M:%S)] $*" >&2; }
die() { echo "classify_run.sh: $*" >&2; exit 1; }
[ -x "$CLI" ] || die "$CLI is missing (cmake --build build --target hilum-cli)"
for tool in dcmodify node npm bc; do command -v $tool >/dev/null || die "needs $tool"; done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/hilum-classify.XXXXXX")"
trap '[ "$KEEP" = 1 ] && log "kept $TMP" || rm -rf "$TMP"' EXIT
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

MODEL_DIR="${MODEL_DIR:-}"
if [ -z "$MODEL_DIR" ]; then
  MODEL_DIR="$TMP/b16"
  log "generating the ViT-B/16 folder"
  (cd "$ROOT" && env -u OPENBLAS_CORETYPE "$PY" tests/reference/make_vit_reference.py --bench "$MODEL_DIR" \
      --variant b16 --batch 2) >"$TMP/generate.log" 2>&1 || { cat "$TMP/generate.log" >&2; die "make_vit_reference.py failed"; }
fi
ONNX="${ONNX:-}"
if [ -z "$ONNX" ]; then
  ONNX="$TMP/b16.onnx"
  log "exporting ONNX"
  OMP_NUM_THREADS=2 "$PY" "$HERE/export_onnx.py" "$MODEL_DIR" "$ONNX" >"$TMP/export.log" 2>&1 \
    || { cat "$TMP/export.log" >&2; die "export_onnx.py failed"; }
fi
ORT_NODE_PREFIX="${ORT_NODE_PREFIX:-}"
if [ -z "$ORT_NODE_PREFIX" ] || [ ! -d "$ORT_NODE_PREFIX/node_modules/onnxruntime-node" ]; then
  ORT_NODE_PREFIX="$TMP/ort"
  log "npm install onnxruntime-node into $ORT_NODE_PREFIX"
  mkdir -p "$ORT_NODE_PREFIX"
  ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save --no-audit --no-fund --loglevel=error \
    --prefix "$ORT_NODE_PREFIX" onnxruntime-node >"$TMP/npm.log" 2>&1 || { cat "$TMP/npm.log" >&2; die "npm install failed"; }
fi
export ORT_NODE_PREFIX
ORT_VERSION="$(node -p "require('$ORT_NODE_PREFIX/node_modules/onnxruntime-node/package.json').version")"

# The films: two catalogs, one with 1 film, one with $IMAGES; the model registered in both.
mkdir -p "$TMP/films1" "$TMP/filmsN"
set -- CR-ModalitySequenceLUT NIH_DX_nofinding_gcp RG3_J2KR RSNA_pneumonia_CR gdcm-CR-MONO1-10-chest
i=0
while [ $i -lt "$IMAGES" ]; do
  src="$DATA/$(eval echo "\${$((i % 5 + 1))}").dcm"
  i=$((i + 1))
  cp "$src" "$TMP/filmsN/$i.dcm"; chmod u+w "$TMP/filmsN/$i.dcm"
  dcmodify -nb -m "(0008,0018)=1.2.826.0.1.3680043.9.1818.$i" "$TMP/filmsN/$i.dcm"
done
cp "$TMP/filmsN/1.dcm" "$TMP/films1/1.dcm"
for c in 1 N; do
  mkdir -p "$TMP/db$c"
  "$CLI" --db "$TMP/db$c/hilum.db" import --no-classify "$TMP/films$c" >"$TMP/import$c.log" 2>&1 || { cat "$TMP/import$c.log" >&2; die "import failed"; }
  "$CLI" --db "$TMP/db$c/hilum.db" models import "$MODEL_DIR" --version b16 >"$TMP/register$c.log" 2>&1 \
    || { cat "$TMP/register$c.log" >&2; die "models import failed"; }
done
log "$IMAGES films; model $MODEL_DIR; ONNX Runtime $ORT_VERSION; load average $LOAD_START"

seconds() { # seconds COMMAND...: wall time of one run (fails the script if the command fails)
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$TMP/last.log" 2>&1 || { cat "$TMP/last.log" >&2; die "failed: $*"; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
# marginal [--batch N]: ms per image of classify --all, marginal over the two catalogs
marginal() {
  local t1 tn
  t1=$(seconds "$CLI" --db "$TMP/db1/hilum.db" classify --all --model b16 "$@")
  tn=$(seconds "$CLI" --db "$TMP/dbN/hilum.db" classify --all --model b16 "$@")
  echo "1000 * ($tn - $t1) / ($IMAGES - 1)" | bc -l
}
nocache() { rm -rf "$TMP/db1/store/model-inputs" "$TMP/dbN/store/model-inputs"; }

printf 'round\tdecode_ms\tcached_ms\tcached_b1_ms\tort_b1_ms\tort_b8_ms\n' >"$TMP/rounds.tsv"
for r in $(seq 1 "$ROUNDS"); do
  nocache
  cold=$(marginal)
  cached=$(marginal)
  b1=$(marginal --batch 1)
  OMP_NUM_THREADS=2 node "$HERE/ort_bench.mjs" "$ONNX" "$MODEL_DIR/reference.safetensors" --runs 5 --warmup 2 \
    >"$TMP/ort$r.log" 2>&1 || { cat "$TMP/ort$r.log" >&2; die "ort_bench.mjs failed"; }
  ort=$(sed -n 's/^RESULT //p' "$TMP/ort$r.log" | "$PY" -c '
import json, sys
r = {int(b["batch"]): b["ms_per_image"] for b in map(json.loads, sys.stdin)}
print(r[1], r[8])')
  printf '%s\t%.1f\t%.1f\t%.1f\t%s\n' "$r" "$cold" "$cached" "$b1" "$(echo "$ort" | tr ' ' '\t')" >>"$TMP/rounds.tsv"
  log "round $r: $(tail -n 1 "$TMP/rounds.tsv")"
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

echo "## hilum-cli classify (ViT-B/16) vs ONNX Runtime $ORT_VERSION ($(date -u '+%Y-%m-%d %H:%M UTC'), $ROUNDS interleaved rounds)"
echo
"$PY" - "$TMP/rounds.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
print('| round | classify, decoding (ms/image) | classify, cached inputs | classify --batch 1, cached | ONNX Runtime batch 1 | ONNX Runtime batch 8 | decoding / ORT b8 | cached / ORT b8 |')
print('|---|---:|---:|---:|---:|---:|---:|---:|')
ratios = {'cold': [], 'cached': []}
for r in rows:
    o = float(r['ort_b8_ms'])
    c, w = float(r['decode_ms']) / o, float(r['cached_ms']) / o
    ratios['cold'].append(c); ratios['cached'].append(w)
    print(f"| {r['round']} | {float(r['decode_ms']):.1f} | {float(r['cached_ms']):.1f} | {float(r['cached_b1_ms']):.1f} | "
          f"{float(r['ort_b1_ms']):.1f} | {o:.1f} | {c:.2f} | {w:.2f} |")
print(f"\nmedian ratio over rounds: decoding {statistics.median(ratios['cold']):.2f}x, cached {statistics.median(ratios['cached']):.2f}x ONNX Runtime (batch 8)")
EOF
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores; load average at start $LOAD_START, at end $LOAD_END."
