#!/bin/sh
# Receive throughput on loopback, side by side in one run: DCMTK's storescp writing files
# against `hilum-cli listen` (each instance written, checked, hashed and queued before the C-STORE
# response; synced in batches, then decoded, thumbnailed, linked into the store and committed to
# the catalog by the filing worker; the clock stops when the last one is catalogued). The same N
# instances (copies of one file with new SOP Instance UIDs) are sent by DCMTK's storescu on one
# association in both runs.
#
#   bench/network/run.sh [SOURCE.dcm] [N]
#
# Needs Debian's dcmtk (storescu, storescp, dcmodify) and a built build/app/hilum-cli.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
cli=${HILUM_CLI:-$here/build/app/hilum-cli}
src=${1:-$here/../shared/data/dicom/NIH_DX_nofinding_gcp.dcm}
n=${2:-100}
for tool in storescu storescp dcmodify; do
  command -v $tool >/dev/null || { echo "needs $tool (Debian package dcmtk)" >&2; exit 2; }
done
[ -x "$cli" ] || { echo "no $cli: build first" >&2; exit 2; }
work=$(mktemp -d /tmp/hilum-bench-net.XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/in" "$work/storescp"
i=0
while [ $i -lt "$n" ]; do
  cp "$src" "$work/in/$i.dcm"
  i=$((i + 1))
done
dcmodify -q -nb -gin "$work"/in/*.dcm
bytes=$(du -sb "$work/in" | cut -f1)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

now() { date +%s.%N; }
report() {  # name seconds
  python3 -c "import sys; n=int(sys.argv[2]); s=float(sys.argv[3]); b=int(sys.argv[4]); print(f'{sys.argv[1]:<28} {n} instances in {s:.2f} s: {n/s:7.1f} instances/s, {b/s/1e6:7.1f} MB/s')" "$1" "$n" "$2" "$bytes"
}

# 1. storescp writing files (its defaults: no fsync).
storescp -aet BENCH --output-directory "$work/storescp" "$port" 2>"$work/storescp.log" &
pid=$!
sleep 1
t0=$(now)
storescu -aet SENDER -aec BENCH +sd 127.0.0.1 "$port" "$work/in"
t1=$(now)
kill $pid; wait $pid 2>/dev/null || true
[ "$(ls "$work/storescp" | wc -l)" -eq "$n" ] || { echo "storescp did not write $n files" >&2; exit 1; }
report "storescp (files)" "$(echo "$t1 - $t0" | bc)"

# 2. hilum-cli listen, cataloguing included.
HILUM_BUILTIN_MODEL=none "$cli" --db "$work/hilum.db" listen --port "$port" --aet BENCH --allow SENDER@localhost \
  >"$work/listen.out" 2>"$work/listen.err" &
pid=$!
until grep -q listening "$work/listen.err" 2>/dev/null; do sleep 0.1; done
t0=$(now)
storescu -aet SENDER -aec BENCH +sd 127.0.0.1 "$port" "$work/in"
# Acknowledged instances are filed by a worker: the clock stops when the last one is catalogued.
until [ "$(grep -c '^imported' "$work/listen.out")" -ge "$n" ]; do sleep 0.01; done
t1=$(now)
kill -INT $pid; wait $pid 2>/dev/null || true
[ "$(grep -c '^imported' "$work/listen.out")" -eq "$n" ] || { echo "hilum did not catalogue $n instances" >&2; cat "$work/listen.err" >&2; exit 1; }
report "hilum-cli listen (catalog)" "$(echo "$t1 - $t0" | bc)"
