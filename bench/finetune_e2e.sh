#!/bin/bash
# End-to-end `hilum-cli finetune --strategy last-k` over N catalogued real radiographs (issue 5):
# N chest films of ../shared/data/cxr-pneumonia-224/train (half NORMAL, half PNEUMONIA) become
# greyscale JPEG-baseline DICOM files (PIL + DCMTK's img2dcm, patient key as PatientID), are
# imported, labelled from a CSV (Pneumonia present/absent), and fine-tuned from MODEL_DIR.
#
#   bench/finetune_e2e.sh HILUM_CLI MODEL_DIR [N=1000] [EPOCHS=1] [K=2] [PRECISION=bf16|f32]
#
# Prints the wall time of each stage; the work folder is removed at the end.
set -euo pipefail
cli=$(realpath "$1"); model=$(realpath "$2"); n=${3:-1000}; epochs=${4:-1}; k=${5:-2}; precision=${6:-bf16}
data=$(realpath "$(dirname "$0")/../../shared/data/cxr-pneumonia-224/train")
work=$(mktemp -d /tmp/hilum-finetune-e2e.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HILUM_BUILTIN_MODEL=none
db="$work/hilum.db"

/usr/bin/python3 - "$data" "$work" "$n" <<'PY'
import os, sys
from PIL import Image
data, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(os.path.join(work, "jpeg"))
rows = []
for cls in ("NORMAL", "PNEUMONIA"):
    for name in sorted(os.listdir(os.path.join(data, cls)))[: n // 2]:
        stem = os.path.splitext(name)[0]
        patient = stem.split("_")[0] if "_" in stem else stem.rsplit("-", 1)[0]
        out = os.path.join(work, "jpeg", stem + ".jpg")
        Image.open(os.path.join(data, cls, name)).convert("L").save(out, quality=95)
        rows.append((stem, patient, "present" if cls == "PNEUMONIA" else "absent"))
with open(os.path.join(work, "list.tsv"), "w") as f:
    for r in rows:
        f.write("\t".join(r) + "\n")
PY
mkdir -p "$work/dicom"
t0=$(date +%s.%N)
while IFS=$'\t' read -r stem patient value; do
  img2dcm -q -i JPEG "$work/jpeg/$stem.jpg" "$work/dicom/$stem.dcm" -k "PatientID=$patient" -k "Modality=CR" -k "PatientName=$patient"
done < "$work/list.tsv"
t1=$(date +%s.%N)
"$cli" --db "$db" import "$work/dicom" > "$work/import.log"
t2=$(date +%s.%N)
{ echo "image,Pneumonia"; while IFS=$'\t' read -r stem patient value; do echo "$work/dicom/$stem.dcm,$value"; done < "$work/list.tsv"; } > "$work/labels.csv"
"$cli" --db "$db" label --from-csv "$work/labels.csv" --author bench > /dev/null
"$cli" --db "$db" models import "$model" --version base --activate > /dev/null
t3=$(date +%s.%N)
/usr/bin/time -f "peak RSS %M KiB" "$cli" --db "$db" finetune --strategy last-k --k "$k" --epochs "$epochs" --precision "$precision" 2>&1 | tail -n 40
t4=$(date +%s.%N)
tail -n 1 "$work/import.log"
printf 'images %d: to DICOM %.1f s, import %.1f s, label + register %.1f s, finetune last-k (k=%d, %d epoch(s), %s) %.1f s\n' \
  "$n" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" "$k" "$epochs" "$precision" "$(echo "$t4 - $t3" | bc)"
