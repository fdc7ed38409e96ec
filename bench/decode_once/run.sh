#!/bin/sh
# Issue 18: real JPEG 2000 CR/DX films through Hilum's import + classification (built-in model),
# side by side with the peers' decoders on the same files, and where Hilum's time goes per film.
#   bench/decode_once/run.sh [COPIES]          (from the source tree, after building hilum-cli and bench_films)
# Needs Debian's libgdcm-tools (gdcmconv, gdcmraw), dcmtk (dcmconv, dcmodify, dcmj2pnm),
# libopenjp2-tools (opj_decompress) and bc. Films: ../shared/data/dicom (the NEMA WG04 CR RG3_J2KR, JPEG
# 2000 lossless, and the CR/DX films there, converted to JPEG 2000 lossless by gdcmconv --j2k), each
# copied COPIES times (default 6) with a new SOP Instance UID, so that import sees distinct films.
# Every figure is a whole-process wall time, the median of 3 rounds, on 2 cores.
set -eu
COPIES=${1:-6}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CLI=${HILUM_CLI:-$SRC/build/app/hilum-cli}
FILMS=${BENCH_FILMS:-$SRC/build/bench/bench_films}
DATA=${DATA:-$SRC/../shared/data/dicom}
MODEL=${MODEL:-$SRC/resources/models/hilum-cxr-v6}
for tool in gdcmconv gdcmraw dcmconv dcmodify dcmj2pnm opj_decompress bc; do
  command -v $tool >/dev/null || { echo "needs $tool (libgdcm-tools, dcmtk, libopenjp2-tools)" >&2; exit 2; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/films" "$WORK/j2k" "$WORK/raw" "$WORK/pgm"
n=0
for f in RG3_J2KR CR-ModalitySequenceLUT NIH_DX_nofinding_gcp RSNA_pneumonia_CR gdcm-CR-MONO1-10-chest; do
  # (the implicit-VR NIH file through dcmconv +te first: gdcmconv alone turns its UIDs into UN elements)
  case $f in
    RG3_J2KR) cp "$DATA/$f.dcm" "$WORK/base.dcm" ;;
    NIH_*) dcmconv +te "$DATA/$f.dcm" "$WORK/explicit.dcm"; gdcmconv --j2k "$WORK/explicit.dcm" "$WORK/base.dcm" ;;
    *) gdcmconv --j2k "$DATA/$f.dcm" "$WORK/base.dcm" ;;
  esac
  chmod u+w "$WORK/base.dcm"
  i=0
  while [ $i -lt "$COPIES" ]; do
    n=$((n + 1)); i=$((i + 1))
    cp "$WORK/base.dcm" "$WORK/films/$f-$i.dcm"
    dcmodify -nb -m "(0008,0018)=1.2.826.0.1.3680043.9.18.$n" "$WORK/films/$f-$i.dcm"
    gdcmraw -i "$WORK/films/$f-$i.dcm" -t 7fe0,0010 -o "$WORK/j2k/$f-$i.j2k"
  done
done
echo "films: $n JPEG 2000 lossless files ($COPIES copies of 5 films) in $WORK/films"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { # seconds COMMAND...: wall time of one run
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l
}
rate() { echo "scale=2; $n / $1" | bc -l; }
run3() { # run3 SETUP COMMAND...: median of 3 rounds, SETUP (a shell snippet) run before each
  setup=$1; shift
  for r in 1 2 3; do sh -c "$setup"; seconds "$@"; done | median
}

export HILUM_BUILTIN_MODEL="$MODEL" OMP_NUM_THREADS=2
fresh="rm -rf '$WORK/db'; mkdir -p '$WORK/db'"
t_import=$(run3 "$fresh" "$CLI" --db "$WORK/db/hilum.db" import "$WORK/films")
t_import_only=$(run3 "$fresh" "$CLI" --db "$WORK/db/hilum.db" import --no-classify "$WORK/films")
# classify --all after an import that cached the inputs (reads the cache), and with the cache gone
# (decodes again, at the reduced level).
rm -rf "$WORK/db"; mkdir -p "$WORK/db"
"$CLI" --db "$WORK/db/hilum.db" import "$WORK/films" 2>/dev/null || true   # what the import says (once more)
t_classify_cold=$(run3 "rm -rf '$WORK/db/store'" "$CLI" --db "$WORK/db/hilum.db" classify --all)
t_classify_cached=$(run3 ":" "$CLI" --db "$WORK/db/hilum.db" classify --all)
# The peers: gdcmconv --raw two processes at once; opj_decompress (full and -r 2) two at once;
# dcmj2pnm (DCMTK's decoder and display chain: VOI window to 8-bit PGM) on the raw files, two at once.
t_gdcm=$(run3 "rm -f '$WORK'/raw/*" sh -c "ls '$WORK/films' | xargs -P 2 -I{} gdcmconv --raw '$WORK/films/{}' '$WORK/raw/{}'")
t_opj=$(run3 ":" sh -c "ls '$WORK/j2k' | xargs -P 2 -I{} opj_decompress -quiet -i '$WORK/j2k/{}' -o '$WORK/pgm/{}.pgm'")
t_opj_r2=$(run3 ":" sh -c "ls '$WORK/j2k' | xargs -P 2 -I{} opj_decompress -quiet -r 2 -i '$WORK/j2k/{}' -o '$WORK/pgm/{}.pgm'")
t_dcmj2pnm=$(run3 ":" sh -c "ls '$WORK/raw' | xargs -P 2 -I{} dcmj2pnm +Wm --write-8-bit-pnm '$WORK/raw/{}' '$WORK/pgm/{}.dcm.pgm'")

printf '| what | seconds for %d films | films/s |\n|---|---:|---:|\n' "$n"
printf '| Hilum import + classification (built-in model) | %.2f | %s |\n' "$t_import" "$(rate "$t_import")"
printf '| Hilum import --no-classify | %.2f | %s |\n' "$t_import_only" "$(rate "$t_import_only")"
printf '| Hilum classify --all, inputs cached by the import | %.2f | %s |\n' "$t_classify_cached" "$(rate "$t_classify_cached")"
printf '| Hilum classify --all, no cache (decodes, reduced level) | %.2f | %s |\n' "$t_classify_cold" "$(rate "$t_classify_cold")"
printf '| gdcmconv --raw, 2 processes | %.2f | %s |\n' "$t_gdcm" "$(rate "$t_gdcm")"
printf '| opj_decompress, 2 processes | %.2f | %s |\n' "$t_opj" "$(rate "$t_opj")"
printf '| opj_decompress -r 2, 2 processes | %.2f | %s |\n' "$t_opj_r2" "$(rate "$t_opj_r2")"
printf '| dcmj2pnm +Wm (raw files: display chain to 8 bits), 2 processes | %.2f | %s |\n' "$t_dcmj2pnm" "$(rate "$t_dcmj2pnm")"
echo
echo "Hilum per film, one thread (ms, median of 3):"
OMP_NUM_THREADS=1 "$FILMS" --model "$MODEL" "$WORK"/films/*-1.dcm
