#!/bin/sh
# 8 processes x 2,000 labels (mixed readers) into one catalog: SQLite, then PostgreSQL on a throwaway
# server (initdb into a temporary folder, socket only; as the postgres user when run as root).
#   bench/catalog/run.sh [BUILD_DIR] [PROCESSES] [LABELS]
set -eu
build=${1:-build}
processes=${2:-8}
labels=${3:-2000}
bench=$(realpath "$build/bench/bench_catalog")
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
tmp=$(mktemp -d /tmp/hilum-bench-catalog-XXXXXX)
as=""
if [ "$(id -u)" = 0 ]; then chown postgres "$tmp"; as="runuser -u postgres --"; fi
cleanup() { $as "$bindir/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

"$bench" "$tmp/hilum.db" --processes "$processes" --labels "$labels"
$as "$bindir/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
$as "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -o "-k $tmp -h '' -p 5432" start >/dev/null
$as "$bindir/createdb" -h "$tmp" -p 5432 -U postgres hilum
"$bench" "postgresql:///hilum?host=$tmp&port=5432&user=postgres" --processes "$processes" --labels "$labels"
