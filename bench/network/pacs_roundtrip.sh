#!/bin/sh
# C-FIND + C-GET round trip against a real PACS: Debian's Orthanc, started here on loopback with
# its own configuration and storage, holding one patient with 10 studies (one image each, copies
# of SOURCE with new Study/Series/SOP Instance UIDs). Times `hilum-cli pacs find` for the patient
# and `hilum-cli pacs retrieve` of the 10 studies it lists, into a fresh catalog.
#
#   bench/network/pacs_roundtrip.sh [SOURCE.dcm]
#
# Needs Debian's orthanc and dcmtk (storescu, dcmodify) and a built build/app/hilum-cli.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
cli=${HILUM_CLI:-$here/build/app/hilum-cli}
src=${1:-$here/../shared/data/dicom/NIH_DX_nofinding_gcp.dcm}
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
t0=$(now)
"$cli" pacs find --peer ORTHANC@127.0.0.1:$dicom --aet HILUM --patient-id BENCH-10 --json >"$work/found.json"
t1=$(now)
studies=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["study_instance_uid"] for l in open(sys.argv[1])))' "$work/found.json")
HILUM_BUILTIN_MODEL=none "$cli" --db "$work/hilum.db" pacs retrieve --peer ORTHANC@127.0.0.1:$dicom --aet HILUM $studies \
  >"$work/retrieve.out" 2>"$work/retrieve.err"
t2=$(now)
echo "studies found: $(wc -l <"$work/found.json"); $(tail -1 "$work/retrieve.out")"
python3 -c "import sys; a,b,c=map(float,sys.argv[1:]); print(f'find {b-a:.2f} s, retrieve {c-b:.2f} s, round trip {c-a:.2f} s')" "$t0" "$t1" "$t2"
