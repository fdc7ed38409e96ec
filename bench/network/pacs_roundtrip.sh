#!/bin/sh
# C-FIND + C-GET round trip against a real PACS: Debian's Orthanc, started here on loopback with
# its own configuration and storage, holding one patient with 10 studies (one image each, copies
# of SOURCE with new Study/Series/SOP Instance UIDs). Times `hilum-cli pacs find` for the patient
# and `hilum-cli pacs retrieve` of the 10 studies it lists, into a fresh catalog; then DCMTK's
# `findscu` + `getscu` doing the same against the same Orthanc (the 10 studies by C-GET on one
# association, written as files), ROUNDS times, interleaved; HILUM_CLI_B=OTHER adds another
# hilum-cli (an A/B) to each round.
#
#   [ROUNDS=N] [HILUM_CLI_B=OTHER] bench/network/pacs_roundtrip.sh [SOURCE.dcm]
#
# Needs Debian's orthanc and dcmtk (storescu, dcmodify, findscu, getscu, dump2dcm) and a built
# build/app/hilum-cli.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
cli=${HILUM_CLI:-$here/build/app/hilum-cli}
src=${1:-$here/../shared/data/dicom/NIH_DX_nofinding_gcp.dcm}
rounds=${ROUNDS:-1}
command -v Orthanc >/dev/null || [ -x /usr/sbin/Orthanc ] || { echo "needs Orthanc (Debian package orthanc)" >&2; exit 2; }
work=$(mktemp -d /tmp/hilum-bench-pacs.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
. "$(dirname "$0")/orthanc.sh"
start_orthanc "$work" "$cli"
mkdir -p "$work/in"
for i in 1 2 3 4 5 6 7 8 9 10; do
  cp "$src" "$work/in/$i.dcm"
  dcmodify -q -nb -gst -gse -gin -i "PatientID=BENCH-10" "$work/in/$i.dcm"
done
storescu -aet HILUM -aec ORTHANC +sd 127.0.0.1 $dicom "$work/in"
now() { date +%s.%N; }
report() { python3 -c "import sys; a,b,c=map(float,sys.argv[2:]); print(f'{sys.argv[1]:<18} find {b-a:.2f} s, retrieve {c-b:.2f} s, round trip {c-a:.2f} s')" "$@"; }
# DCMTK's tools, the same queries: findscu for the patient's studies, getscu of each (one query
# file per study, all on one association); $1: the row's name, $2: TCP_NODELAY for their
# environment (empty: unset; 1: DCMTK turns Nagle's algorithm off, as Hilum does).
dcmtk_round() {
  rm -rf "$work/getscu" "$work/q"
  mkdir -p "$work/getscu" "$work/q"
  if [ -n "$2" ]; then export TCP_NODELAY=$2; else unset TCP_NODELAY; fi
  t0=$(now)
  findscu -S -aet HILUM -aec ORTHANC -k QueryRetrieveLevel=STUDY -k PatientID=BENCH-10 -k StudyInstanceUID -X \
    -od "$work/q" 127.0.0.1 $dicom 2>/dev/null
  t1=$(now)
  i=0
  for f in "$work"/q/rsp*.dcm; do
    uid=$(dcmdump +P StudyInstanceUID "$f" | sed 's/.*\[\(.*\)\].*/\1/')
    printf '(0008,0052) CS [STUDY]\n(0020,000d) UI [%s]\n' "$uid" >"$work/q/get$i.txt"
    dump2dcm -q +te "$work/q/get$i.txt" "$work/q/get$i.dcm"
    i=$((i + 1))
  done
  t1b=$(now)
  # getscu 3.6.7 crashes on its way out after the last C-GET of several query files (every file
  # written by then): its exit status is not used, the 10 files are checked.
  getscu -S -aet HILUM -aec ORTHANC -od "$work/getscu" 127.0.0.1 $dicom "$work"/q/get*.dcm 2>/dev/null || true
  t2=$(now)
  unset TCP_NODELAY
  [ "$(ls "$work/getscu" | wc -l)" -eq 10 ] || { echo "getscu did not write 10 files" >&2; exit 1; }
  # (the query files are made between the two, outside the clock)
  report "$1" "$t0" "$t1" "$(python3 -c "import sys; print(float(sys.argv[1]) - (float(sys.argv[2]) - float(sys.argv[3])))" "$t2" "$t1b" "$t1")"
}

round=1
while [ $round -le "$rounds" ]; do
  for which in A B; do
    if [ $which = A ]; then exe=$cli; name=hilum-cli; else exe=${HILUM_CLI_B:-}; name="B: hilum-cli"; fi
    [ -n "$exe" ] || continue
    rm -rf "$work/hilum.db" "$work/hilum.db"-* "$work/store"
    t0=$(now)
    "$exe" pacs find --peer ORTHANC@127.0.0.1:$dicom --aet HILUM --patient-id BENCH-10 --json >"$work/found.json"
    t1=$(now)
    studies=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["study_instance_uid"] for l in open(sys.argv[1])))' "$work/found.json")
    HILUM_BUILTIN_MODEL=none "$exe" --db "$work/hilum.db" pacs retrieve --peer ORTHANC@127.0.0.1:$dicom --aet HILUM $studies \
      >"$work/retrieve.out" 2>"$work/retrieve.err"
    t2=$(now)
    [ $round -eq 1 ] && echo "studies found: $(wc -l <"$work/found.json"); $(tail -1 "$work/retrieve.out")"
    report "$name" "$t0" "$t1" "$t2"
  done

  dcmtk_round "findscu + getscu" ""
  dcmtk_round "  TCP_NODELAY=1" 1
  round=$((round + 1))
done
