#!/usr/bin/env bash
# The issue-17 goal on real films: the same training set (../shared/data/cxr-nih-adult-512, 492 adult
# NIH films of 328 patients, wrapped as DICOM and labelled in a fresh catalog whose active model is
# the built-in model, a ViT-Ti; hilum-cxr-v2, then hilum-cxr-v4 when measured) trained once by cluster/train.py (torchrun, 2 CPU processes)
# and once by `hilum-cli finetune --strategy full`, with the same epochs, learning rate and batch,
# both judged by the gate on the same validation patients (AUROC with DeLong 95% intervals).
#   bench/cluster/compare.sh [WORKDIR] [EPOCHS]
# Needs dcmtk (img2dcm), python3-torch, python3-numpy, python3-pil, and a built build/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/hilum-cluster-bench}
epochs=${2:-1}
data="$repo/../shared/data/cxr-nih-adult-512"
cli=${HILUM_CLI:-"$repo/build/app/hilum-cli"}
rm -rf "$work" && mkdir -p "$work/dicom"
db="$work/hilum.db"

# JPEG -> DICOM (one study per film, the patient from labels.csv), and the label CSV by path.
/usr/bin/python3 - "$data" "$work" <<'PY'
import csv, os, subprocess, sys
data, work = sys.argv[1:3]
rows = list(csv.DictReader(open(os.path.join(data, "labels.csv"))))
findings = [k for k in rows[0] if k not in ("image", "patient_id", "age", "sex", "view")]
with open(os.path.join(work, "labels.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image"] + findings)
    for r in rows:
        out = os.path.join(work, "dicom", r["image"].replace(".jpg", ".dcm"))
        subprocess.run(["img2dcm", os.path.join(data, r["image"]), out, "-k", f"PatientID=NIH{r['patient_id']}",
                        "-k", f"PatientSex={r['sex']}", "-k", f"PatientAge={int(r['age']):03d}Y", "-k", "BurnedInAnnotation=NO",
                        "-k", "Modality=DX", "-k", "BodyPartExamined=CHEST", "-k", f"ViewPosition={r['view']}"], check=True)
        w.writerow([out] + [r[k] for k in findings])
PY
"$cli" --db "$db" import "$work/dicom" --jobs 2 > /dev/null
"$cli" --db "$db" label --from-csv "$work/labels.csv" --author nih > /dev/null
"$cli" --db "$db" export --format dataset --out "$work/set"

start=$(date +%s)
/usr/bin/python3 -m torch.distributed.run --standalone --nproc_per_node 2 --redirects 1 --tee 1 \
    "$repo/cluster/train.py" --export "$work/set" --out "$work/trained" --epochs "$epochs" --lr 1e-4 --batch 8
echo "cluster training: $(( $(date +%s) - start )) s"
"$cli" --db "$db" models import "$work/trained" --no-promote
start=$(date +%s)
"$cli" --db "$db" finetune --strategy full --epochs "$epochs" --lr 1e-4 --batch 8 --no-promote
echo "local fine-tune: $(( $(date +%s) - start )) s"

# Both versions' gate metrics, side by side.
"$cli" --db "$db" models list --json > "$work/models.jsonl"
/usr/bin/python3 - "$work/models.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m["strategy"] not in ("cluster", "full"):
        continue
    metrics = m["metrics"]
    print("%s (%s): mean AUROC %.3f on %d validation images" % (m["version"], m["trained_on"], metrics["mean_auroc"], metrics["images"]))
    for f in metrics["findings"]:
        if f.get("auroc") is not None:
            lo, hi = f["auroc_ci"]
            print("  %-20s %.3f [%.3f, %.3f]  (%d+ / %d-)" % (f["finding"], f["auroc"], lo, hi, f["positives"], f["negatives"]))
PY

# The same two versions on the export's validation films, compared pairwise (paired.py): A is the
# cluster's, B the local fine-tune's.
mapfile -t versions < <("$cli" --db "$db" models list --json | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin]
for strategy in ("cluster", "full"):
    print([m["version"] for m in rows if m["strategy"] == strategy][-1])')
for version in "${versions[@]}"; do
  "$cli" --db "$db" classify --model "$version" --json "$work"/set/images/*.png > "$work/$version.jsonl" 2> /dev/null
done
/usr/bin/python3 "$repo/bench/cluster/paired.py" "$work/set" "$work/${versions[0]}.jsonl" "$work/${versions[1]}.jsonl"
