#!/bin/sh
# Issue 18: opening a real JPEG 2000 CR in the GUI (offscreen, the real main window and workers):
# time to the first pixels against the decode alone, and from the first pixels to the predictions
# of the built-in model. The NEMA WG04 CR RG3_J2KR (1760 x 1760, JPEG 2000 lossless) copied COPIES
# times as new studies (new UIDs, patient IDs; each copy is opened once, so its predictions are computed).
#   bench/ui_open/run.sh [COPIES]        (from the source tree, after building bench_ui)
#   bench/ui_open/run.sh [COPIES] [ROUNDS]
# Each round runs bench_ui twice on the same copies: first with HILUM_VIEWER_REDUCED=0 (the full decode
# shown first, as before issue 18), then as built (the reduced JPEG 2000 level first); ROUNDS: default 1.
# Needs dcmodify (dcmtk) and ../shared/data/dicom/RG3_J2KR.dcm.
set -eu
COPIES=${1:-9}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${BENCH_UI:-$SRC/build/bench/bench_ui}
FILM=${FILM:-$SRC/../shared/data/dicom/RG3_J2KR.dcm}
command -v dcmodify >/dev/null || { echo "needs dcmodify (dcmtk)" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "$BENCH is missing (cmake --build build --target bench_ui)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
i=0
while [ $i -lt "$COPIES" ]; do
  i=$((i + 1))
  cp "$FILM" "$WORK/film-$i.dcm"
  chmod u+w "$WORK/film-$i.dcm"
  dcmodify -nb -m "(0008,0018)=1.2.826.0.1.3680043.9.1819.$i.1.1" -m "(0020,000d)=1.2.826.0.1.3680043.9.1819.$i" \
    -m "(0020,000e)=1.2.826.0.1.3680043.9.1819.$i.1" -m "(0010,0020)=UI-OPEN-$i" "$WORK/film-$i.dcm"
done
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
ROUNDS=${2:-1}
r=0
while [ $r -lt "$ROUNDS" ]; do
  r=$((r + 1))
  echo "=== round $r: full decode first (HILUM_VIEWER_REDUCED=0)"
  HILUM_VIEWER_REDUCED=0 QT_QPA_PLATFORM=offscreen "$BENCH" "$COPIES" "$WORK"
  echo "=== round $r: reduced level first"
  QT_QPA_PLATFORM=offscreen "$BENCH" "$COPIES" "$WORK"
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
