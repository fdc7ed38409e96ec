#!/bin/sh
# Issue 18: lossy (baseline, 8-bit) JPEG films through Hilum's import + classification (built-in
# model), with and without the DCT-scaled decode, side by side with DCMTK's dcmj2pnm on the same files.
#   bench/jpeg_scale/run.sh [COPIES]        (from the source tree, after building hilum-cli and bench_films)
# HILUM_CLI_BEFORE=PATH adds a second hilum-cli (e.g. one built before the change), run in the same
# rounds, interleaved. The films: each chest film in ../shared/data/dicom rendered by DCMTK to 8 bits
# (dcmj2pnm +Wm +oj: its VOI window, baseline JPEG, quality 90) and wrapped as DICOM JPEG Baseline
# without re-encoding (img2dcm), COPIES copies each (default 6) with new SOP Instance UIDs.
# Whole-process wall times, the median of 3 rounds, 2 cores. Needs dcmtk (dcmj2pnm, img2dcm,
# dcmodify), libgdcm-tools (gdcmconv) and bc.
set -eu
COPIES=${1:-6}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CLI=${HILUM_CLI:-$SRC/build/app/hilum-cli}
BEFORE=${HILUM_CLI_BEFORE:-}
FILMS=${BENCH_FILMS:-$SRC/build/bench/bench_films}
DATA=${DATA:-$SRC/../shared/data/dicom}
MODEL=${MODEL:-$SRC/resources/models/hilum-cxr-v3}
for tool in dcmj2pnm img2dcm dcmodify gdcmconv bc; do
  command -v $tool >/dev/null || { echo "needs $tool (dcmtk, libgdcm-tools, bc)" >&2; exit 2; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/films" "$WORK/pgm"
n=0
for f in RG3_J2KR CR-ModalitySequenceLUT NIH_DX_nofinding_gcp RSNA_pneumonia_CR gdcm-CR-MONO1-10-chest; do
  gdcmconv --raw "$DATA/$f.dcm" "$WORK/raw.dcm"   # (DCMTK 3.6.7 cannot read the JPEG 2000 one)
  dcmj2pnm +Wm +oj "$WORK/raw.dcm" "$WORK/$f.jpg" 2>/dev/null
  img2dcm "$WORK/$f.jpg" "$WORK/base.dcm" -k "Modality=CR" -k "PatientID=JPEG-$f" -k "PatientName=Bench^$f"
  i=0
  while [ $i -lt "$COPIES" ]; do
    n=$((n + 1)); i=$((i + 1))
    cp "$WORK/base.dcm" "$WORK/films/$f-$i.dcm"
    dcmodify -nb -m "(0008,0018)=1.2.826.0.1.3680043.9.1820.$n" "$WORK/films/$f-$i.dcm"
  done
done
echo "films: $n baseline JPEG files ($COPIES copies of 5 films); $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
rate() { echo "scale=1; $n / $1" | bc -l; }
export HILUM_BUILTIN_MODEL="$MODEL" OMP_NUM_THREADS=2
set -- "after:$CLI"
[ -z "$BEFORE" ] || set -- "before:$BEFORE" "after:$CLI"
for r in 1 2 3; do
  for entry in "$@"; do
    name=${entry%%:*}; cli=${entry#*:}
    rm -rf "$WORK/db"; mkdir -p "$WORK/db"
    seconds "$cli" --db "$WORK/db/hilum.db" import "$WORK/films" >>"$WORK/$name.import"
    rm -rf "$WORK/db/store/model-inputs"
    seconds "$cli" --db "$WORK/db/hilum.db" classify --all >>"$WORK/$name.classify"
    rm -rf "$WORK/db"; mkdir -p "$WORK/db"
    seconds "$cli" --db "$WORK/db/hilum.db" import --no-classify "$WORK/films" >>"$WORK/$name.import_only"
  done
  rm -f "$WORK"/pgm/*
  seconds sh -c "ls '$WORK/films' | xargs -P 2 -I{} dcmj2pnm +Wm --write-8-bit-pnm '$WORK/films/{}' '$WORK/pgm/{}.pgm'" >>"$WORK/dcmj2pnm"
done
printf '| what | seconds for %d films | films/s |\n|---|---:|---:|\n' "$n"
for entry in "$@"; do
  name=${entry%%:*}
  t=$(median <"$WORK/$name.import"); printf '| Hilum (%s) import + classification (built-in model) | %.2f | %s |\n' "$name" "$t" "$(rate "$t")"
  t=$(median <"$WORK/$name.import_only"); printf '| Hilum (%s) import --no-classify | %.2f | %s |\n' "$name" "$t" "$(rate "$t")"
  t=$(median <"$WORK/$name.classify"); printf '| Hilum (%s) classify --all, no cached inputs (decodes) | %.2f | %s |\n' "$name" "$t" "$(rate "$t")"
done
t=$(median <"$WORK/dcmj2pnm"); printf '| dcmj2pnm +Wm --write-8-bit-pnm, 2 processes at once | %.2f | %s |\n' "$t" "$(rate "$t")"
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -x "$FILMS" ]; then
  echo
  echo "Hilum per film, one thread (ms, median of 3):"
  OMP_NUM_THREADS=1 "$FILMS" --model "$MODEL" "$WORK"/films/*-1.dcm
fi
