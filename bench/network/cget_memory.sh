#!/bin/sh
# Peak resident memory of `hilum-cli pacs retrieve` of one 16 MiB DX that a 2 MiB cap refuses,
# against a retrieve that brings nothing (an unknown study, which the PACS refuses: the same
# process, catalog and association, no instance). Debian's Orthanc, started here on loopback with
# its own configuration and storage.
#
#   bench/network/cget_memory.sh [HILUM_CLI]
#
# Needs Debian's orthanc, dcmtk (storescu, dump2dcm), /usr/bin/time and a built build/app/hilum-cli.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
cli=${1:-$here/build/app/hilum-cli}
work=$(mktemp -d /tmp/hilum-bench-cget.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
head -c $((4096 * 2048 * 2)) /dev/urandom >"$work/px.raw"
cat >"$work/huge.dump" <<DUMP
(0002,0002) UI =DigitalXRayImageStorageForPresentation
(0002,0003) UI [1.2.826.0.1.3680043.9.7777.55.1.1]
(0002,0010) UI =LittleEndianExplicit
(0008,0016) UI =DigitalXRayImageStorageForPresentation
(0008,0018) UI [1.2.826.0.1.3680043.9.7777.55.1.1]
(0008,0060) CS [DX]
(0010,0010) PN [Bench]
(0010,0020) LO [BENCH-MEM]
(0020,000d) UI [1.2.826.0.1.3680043.9.7777.55]
(0020,000e) UI [1.2.826.0.1.3680043.9.7777.55.1]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0010) US 4096
(0028,0011) US 2048
(0028,0100) US 16
(0028,0101) US 16
(0028,0102) US 15
(0028,0103) US 0
(7fe0,0010) OW =$work/px.raw
DUMP
dump2dcm +E -q "$work/huge.dump" "$work/huge.dcm"
. "$(dirname "$0")/orthanc.sh"
start_orthanc "$work" "$cli"
storescu -aet HILUM -aec ORTHANC 127.0.0.1 $dicom "$work/huge.dcm"
for what in nothing:1.2.826.0.1.3680043.9.7777.999 refused-16MiB:1.2.826.0.1.3680043.9.7777.55; do
  HILUM_BUILTIN_MODEL=none /usr/bin/time -o "$work/peak" -f "%M" "$cli" --db "$work/${what%%:*}.db" pacs retrieve \
    --peer ORTHANC@127.0.0.1:$dicom --aet HILUM --max-size-mb 2 "${what#*:}" >/dev/null 2>&1 || true
  echo "${what%%:*}: peak $(tail -1 "$work/peak") KiB"
done
