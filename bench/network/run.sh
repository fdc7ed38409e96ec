#!/bin/sh
# Receive throughput on loopback, side by side in one run: DCMTK's storescp writing files
# against `hilum-cli listen` (each instance written, checked, hashed and queued before the C-STORE
# response; synced in batches, then decoded, thumbnailed, linked into the store and committed to
# the catalog by the filing worker; the clock stops when the last one is catalogued). The same N
# instances (copies of one file with new SOP Instance UIDs) are sent by DCMTK's storescu on one
# association in every run. storescp runs twice: with its defaults, and with TCP_NODELAY=1 in its
# environment (DCMTK then turns Nagle's algorithm off on its sockets, as Hilum does on its own:
# without it each C-STORE response waits ~40 ms for the sender's delayed ACK). ROUNDS=N repeats
# the three, interleaved; HILUM_CLI_B=OTHER adds a fourth row with another hilum-cli (an A/B).
#
#   [ROUNDS=N] [HILUM_CLI_B=OTHER] bench/network/run.sh [SOURCE.dcm] [N]
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
mkdir -p "$work/in"
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

# storescp writing files (no fsync); $1: its name, $2: TCP_NODELAY for its environment (empty: unset).
run_storescp() {
  rm -rf "$work/storescp"; mkdir -p "$work/storescp"
  if [ -n "$2" ]; then
    TCP_NODELAY=$2 storescp -aet BENCH --output-directory "$work/storescp" "$port" 2>"$work/storescp.log" &
  else
    storescp -aet BENCH --output-directory "$work/storescp" "$port" 2>"$work/storescp.log" &
  fi
  pid=$!
  sleep 1
  t0=$(now)
  storescu -aet SENDER -aec BENCH +sd 127.0.0.1 "$port" "$work/in"
  t1=$(now)
  kill $pid; wait $pid 2>/dev/null || true
  [ "$(ls "$work/storescp" | wc -l)" -eq "$n" ] || { echo "storescp did not write $n files" >&2; exit 1; }
  report "$1" "$(echo "$t1 - $t0" | bc)"
}

# hilum-cli listen ($2), cataloguing included; $1: its name.
run_hilum() {
  rm -rf "$work/hilum.db" "$work/hilum.db"-* "$work/store" "$work/listen.out" "$work/listen.err"  # no earlier run's "listening"
  HILUM_BUILTIN_MODEL=none "$2" --db "$work/hilum.db" listen --port "$port" --aet BENCH --allow SENDER@localhost \
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
  report "$1" "$(echo "$t1 - $t0" | bc)"
}

round=1
while [ $round -le "${ROUNDS:-1}" ]; do
  run_storescp "storescp (files)" ""
  run_storescp "storescp TCP_NODELAY=1" 1
  run_hilum "hilum-cli listen (catalog)" "$cli"
  [ -n "${HILUM_CLI_B:-}" ] && run_hilum "B: listen (catalog)" "$HILUM_CLI_B"
  round=$((round + 1))
done
