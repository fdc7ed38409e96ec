#!/usr/bin/python3
"""Per-population figures of a model on the patients `hilum-cli train --seed S` held out, computed
from `hilum-cli classify --json` outside the C++ code that trained it (an independent check of the
model card; README.md beside this file).

  bench/model/population_report.py MODEL_DIR [--shared ../shared/data] [--seed 1] [--cli build/app/hilum-cli]
  bench/model/population_report.py MODEL_DIR:0 FOLD1_DIR:1 ... (cross-validation)

With several MODEL_DIR:FOLD (models trained by `train --fold FOLD`, same seed), each model scores
the patients its own fold held out and the figures are over all of them together: every film is
scored by a model that never saw its labels. Each fold's probabilities are calibrated on that
fold's own films, so the pooled ECE is optimistic; the honest one, cross-fitted within each fold,
is read from each model's training_report.json and printed per fold.

Pediatric: ../shared/data/cxr-pneumonia-224/train (NORMAL vs PNEUMONIA folders). Adult:
../shared/data/cxr-nih-adult-512 (labels.csv): Pneumonia vs the rest, and Pneumonia vs No Finding
(films that are one or the other), No Finding vs any finding. AUROC with 95% intervals by
bootstrap over patients (2,000 resamples), ECE with 10 bins, and beside it the ECE that a perfectly
calibrated model would show on the same films by chance (95th percentile of 2,000 draws of the labels
from the model's own probabilities).
"""
import argparse
import csv
import hashlib
import hmac
import json
import os
import subprocess
import tempfile

import numpy as np


def keyed_hash(secret, domain, key):
    """app's keyed_hash: the first 8 bytes of HMAC-SHA256(secret, domain NUL key), big-endian."""
    digest = hmac.new(secret.encode(), domain.encode() + b"\0" + key.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def in_validation(patient, seed, fold=0, fraction=0.15):
    """app::PatientSplit::holds_out: the fold-th slice of `fraction` of the keyed hash."""
    width = round(fraction * 10000)
    bucket = keyed_hash(f"train-split-{seed}", "patient", patient) % 10000
    return fold * width <= bucket < (fold + 1) * width


def fit_platt(logits, labels):
    """training::fit_platt: Platt scaling with Platt's smoothed targets, Newton steps with halving;
    (1, 0) when it cannot be fitted or would reverse the ranking."""
    z, y = np.asarray(logits, float), np.asarray(labels) != 0
    pos = y.sum()
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return 1.0, 0.0
    t = np.where(y, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    loss = lambda a, b: float(np.sum(np.logaddexp(0.0, a * z + b) - t * (a * z + b)))
    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        d, w = p - t, p * (1.0 - p)
        ga, gb = float(np.sum(d * z)), float(np.sum(d))
        haa, hab, hbb = 1e-9 + float(np.sum(w * z * z)), float(np.sum(w * z)), 1e-9 + float(np.sum(w))
        det = haa * hbb - hab * hab
        if not abs(det) > 0.0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step, moved = 1.0, False
        while step > 1e-8:
            nxt = loss(a - step * da, b - step * db)
            if nxt < current:
                a, b = a - step * da, b - step * db
                moved = current - nxt > 1e-12 * max(1.0, abs(current))
                current = nxt
                break
            step /= 2.0
        if not moved:
            break
    if not (a > 0.0 and np.isfinite(a) and np.isfinite(b)):
        return 1.0, 0.0
    return a, b


def population_scaling(model, population, finding):
    """(a, b) of the Platt scaling `model`'s hilum.json gives `population` for `finding`."""
    extras = json.load(open(os.path.join(model, "hilum.json")))
    for pop in extras["domain"]["populations"]:
        if pop["name"] == population and "calibration" in pop:
            c = pop["calibration"]
            return tuple(c["parameters"][c["labels"].index(finding)])
    c = extras["calibration"]
    return tuple(c["parameters"][c["labels"].index(finding)])


def cross_fit_pooled(items):
    """items: (fold, patient key, shown probability, label, (a, b) of the scaling shown). Within each
    fold, as training's cross_fitted_probabilities: the patients in two halves by keyed hash, each
    half's uncalibrated logits (the shown scaling inverted) recalibrated by a Platt scaling fitted on
    the other half. Returns the cross-fitted probabilities in the order of items."""
    out = [0.0] * len(items)
    for fold in sorted({it[0] for it in items}):
        idx = [i for i, it in enumerate(items) if it[0] == fold]
        raw = {}
        for i in idx:
            _, _, p, _, (a, b) = items[i]
            p = min(max(p, 1e-12), 1.0 - 1e-12)
            raw[i] = (np.log(p / (1.0 - p)) - b) / a
        half = {i: keyed_hash("calibration-halves", "patient", items[i][1]) & 1 for i in idx}
        for h in (0, 1):
            other = [i for i in idx if half[i] != h]
            a, b = fit_platt([raw[i] for i in other], [items[i][3] for i in other])
            for i in idx:
                if half[i] == h:
                    out[i] = 1.0 / (1.0 + np.exp(-(a * raw[i] + b)))
    return out


def patient_from_file_name(stem):
    u = stem.find("_")
    if u > 0:
        return stem[:u]
    d = stem.rfind("-")
    return stem[:d] if d > 0 else stem


def auroc(scores, labels):
    scores, labels = np.asarray(scores), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def bootstrap(scores, labels, patients, rounds=2000, seed=1):
    rng = np.random.default_rng(seed)
    groups = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    keys = list(groups)
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, len(keys), len(keys))
        idx = [i for k in pick for i in groups[keys[k]]]
        a = auroc([scores[i] for i in idx], [labels[i] for i in idx])
        if not np.isnan(a):
            values.append(a)
    return np.percentile(values, 2.5), np.percentile(values, 97.5)


def ece(probabilities, labels, bins=10):
    p, y = np.asarray(probabilities), np.asarray(labels)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        m = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return total


def classify(cli, model, files):
    out = {}
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, HILUM_BUILTIN_MODEL="none")
        for start in range(0, len(files), 200):
            r = subprocess.run([cli, "--db", os.path.join(work, "c.db"), "classify", "--model", model, "--json"] + files[start:start + 200],
                               capture_output=True, text=True, env=env)
            for line in r.stdout.splitlines():
                row = json.loads(line)
                if row.get("ok"):
                    out[row["path"]] = row
    return out


def ece_if_calibrated(probabilities, rounds=2000, seed=1):
    """The ECE a perfectly calibrated model shows on these films by chance alone: labels drawn as
    Bernoulli(p) from the model's own probabilities, the 95th percentile over the draws. On a few
    dozen films this floor is itself several hundredths, so an ECE below it says no more than
    "no miscalibration detectable at this size"."""
    rng = np.random.default_rng(seed)
    p = np.asarray(probabilities)
    draws = [ece(p, (rng.random(len(p)) < p).astype(float)) for _ in range(rounds)]
    return np.percentile(draws, 95)


def line(name, scores, labels, patients):
    a = auroc(scores, labels)
    lo, hi = bootstrap(scores, labels, patients)
    n_pos = int(sum(labels))
    return (f"| {name} | {n_pos} / {len(labels) - n_pos} | {a:.3f} ({lo:.3f}-{hi:.3f}) | {ece(scores, labels):.3f} | "
            f"{ece_if_calibrated(scores):.3f} |")


def model_and_fold(text):
    model, sep, fold = text.rpartition(":")
    if sep and fold.isdigit():
        return model, int(fold)
    return text, 0


def classify_folds(cli, models, files_of_fold):
    """{path: row} of each fold's files classified by that fold's model."""
    rows = {}
    for model, fold in models:
        rows.update(classify(cli, model, files_of_fold(fold)))
    return rows


def cross_fitted(models, population, finding):
    out = []
    for model, fold in models:
        try:
            report = json.load(open(os.path.join(model, "training_report.json")))
        except (OSError, ValueError):
            continue
        for pop in report.get("populations", []):
            if pop.get("population") != population:
                continue
            for f in pop["findings"]:
                if f["finding"] == finding and "ece_cross_fitted" in f:
                    out.append((fold, f["ece_cross_fitted"], f.get("auroc")))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="MODEL_DIR, or MODEL_DIR:FOLD for each fold of a cross-validation")
    ap.add_argument("--shared", default="../shared/data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cli", default="build/app/hilum-cli")
    a = ap.parse_args()
    models = [model_and_fold(m) for m in a.models]
    if len({f for _, f in models}) != len(models):
        ap.error("each fold once")
    print("| population, output | positives / negatives | AUROC (95% CI, bootstrap by patient) | ECE | ECE a calibrated model shows by chance (95th pct.) |")
    print("|---|---:|---:|---:|---:|")
    # Pediatric.
    root = os.path.join(a.shared, "cxr-pneumonia-224", "train")
    films = []  # (file, truth, patient)
    for cls in ("NORMAL", "PNEUMONIA"):
        for name in sorted(os.listdir(os.path.join(root, cls))):
            films.append((os.path.join(root, cls, name), 1 if cls == "PNEUMONIA" else 0, patient_from_file_name(os.path.splitext(name)[0])))
    held = lambda fold: [f for f in films if in_validation(f[2], a.seed, fold)]
    rows = classify_folds(a.cli, models, lambda fold: [f[0] for f in held(fold)])
    kept = [f for _, fold in models for f in held(fold) if f[0] in rows]
    pn = [rows[f[0]]["probabilities"]["Pneumonia"] for f in kept]
    print(line("pediatric, Pneumonia", pn, [f[1] for f in kept], [f[2] for f in kept]))
    if "No Finding" in rows[kept[0][0]]["probabilities"]:
        nf = [rows[f[0]]["probabilities"]["No Finding"] for f in kept]
        print(line("pediatric, No Finding", nf, [1 - f[1] for f in kept], [f[2] for f in kept]))
    ped_flagged = sum(1 for f in kept if not rows[f[0]].get("in_domain", True))
    ped_own = sum(1 for f in kept if rows[f[0]].get("population") == "pediatric")
    ped_named = any(rows[f[0]].get("population") is not None for f in kept)
    ped_auroc = {}
    for _, fold in models:
        own = [f for f in held(fold) if f[0] in rows]
        ped_auroc[fold] = (len(own), auroc([rows[f[0]]["probabilities"]["Pneumonia"] for f in own], [f[1] for f in own]))
    # Adult.
    root = os.path.join(a.shared, "cxr-nih-adult-512")
    table = list(csv.DictReader(open(os.path.join(root, "labels.csv"))))
    held_adult = lambda fold: [r for r in table if in_validation("cxr-nih-adult-512/" + r["patient_id"], a.seed, fold)]
    rows = classify_folds(a.cli, models, lambda fold: [os.path.join(root, r["image"]) for r in held_adult(fold)])
    chosen = [r for _, fold in models for r in held_adult(fold) if os.path.join(root, r["image"]) in rows]
    files = [os.path.join(root, r["image"]) for r in chosen]
    pats = [r["patient_id"] for r in chosen]
    prob = lambda f, k: rows[f]["probabilities"].get(k)
    print(line("adult, Pneumonia (vs every other film)", [prob(f, "Pneumonia") for f in files], [int(r["Pneumonia"]) for r in chosen], pats))
    pair = [i for i, r in enumerate(chosen) if r["Pneumonia"] == "1" or r["No Finding"] == "1"]
    print(line("adult, Pneumonia vs No Finding", [prob(files[i], "Pneumonia") for i in pair], [int(chosen[i]["Pneumonia"]) for i in pair],
               [pats[i] for i in pair]))
    if prob(files[0], "No Finding") is not None:
        print(line("adult, No Finding (normal vs abnormal)", [prob(f, "No Finding") for f in files], [int(r["No Finding"]) for r in chosen], pats))
    for k in ("Infiltration", "Atelectasis", "Edema", "Effusion"):
        if prob(files[0], k) is not None:
            y = [int(r[k]) for r in chosen]
            if 0 < sum(y) < len(y):
                print(line(f"adult, {k}", [prob(f, k) for f in files], y, pats))
    adult_flagged = sum(1 for f in files if not rows[f].get("in_domain", True))
    print()
    print(f"held-out films flagged out of domain: pediatric {ped_flagged} of {len(kept)}, adult {adult_flagged} of {len(files)}")
    if ped_named:
        # These PNG/JPEG films carry no age: the embedding chooses whose calibration they get.
        adult_own = sum(1 for f in files if rows[f].get("population") == "adult")
        print(f"held-out films given their own population's calibration (chosen by the embedding: no age in these files): "
              f"pediatric {ped_own} of {len(kept)}, adult {adult_own} of {len(files)}")
    if len(models) > 1:
        print()
        print(f"{len(models)} folds: pediatric {len(kept)} films of {len(set(f[2] for f in kept))} patients, "
              f"adult {len(files)} films of {len(set(pats))} patients, each scored by the model given for its fold")
        if len({os.path.realpath(m) for m, _ in models}) < len(models):
            print("NOTE: one model scores several folds: at most one of them was held out of its training, so these are "
                  "not held-out figures (a fit to its own training films, on purpose or not)")
        print()
        print("| fold | model | pediatric films | pediatric Pneumonia AUROC | adult films | adult Pneumonia vs No Finding AUROC | adult No Finding AUROC |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for model, fold in models:
            ad = [r for r in held_adult(fold) if os.path.join(root, r["image"]) in rows]
            af = [os.path.join(root, r["image"]) for r in ad]
            pr = [i for i, r in enumerate(ad) if r["Pneumonia"] == "1" or r["No Finding"] == "1"]
            print(f"| {fold} | {os.path.basename(os.path.normpath(model))} | {ped_auroc[fold][0]} | {ped_auroc[fold][1]:.3f} | {len(ad)} | "
                  f"{auroc([prob(af[i], 'Pneumonia') for i in pr], [int(ad[i]['Pneumonia']) for i in pr]):.3f} | "
                  f"{auroc([prob(f, 'No Finding') for f in af], [int(r['No Finding']) for r in ad]):.3f} |")
        print()
        print("Each fold's probabilities are calibrated on its own films, so the ECE above is optimistic. Cross-fitted here, over all")
        print("folds' adult films together (each fold's patients in two halves as training does; each half recalibrated from the")
        print("model's uncalibrated logits, the scaling it was shown with inverted, by an adult Platt scaling fitted on the other half):")
        print()
        print("| population, output | films | ECE cross-fitted, pooled | a calibrated model by chance, up to (95th pct.) | per fold |")
        print("|---|---:|---:|---:|---|")
        fold_of = {}
        for _, fold in models:
            for r in held_adult(fold):
                fold_of[os.path.join(root, r["image"])] = fold
        model_of = {fold: model for model, fold in models}
        for k in ("Pneumonia", "No Finding"):
            if prob(files[0], k) is None:
                continue
            # The scaling each film was shown with (classify --json names its population; older
            # binaries do not, and then the adult one is assumed).
            scaling = {(fold, pop): population_scaling(model_of[fold], pop, k) for fold in model_of for pop in ("adult", "pediatric")}
            items = [(fold_of[f], "cxr-nih-adult-512/" + r["patient_id"], prob(f, k), int(r[k]),
                      scaling[(fold_of[f], rows[f].get("population") or "adult")]) for f, r in zip(files, chosen)]
            crossed = cross_fit_pooled(items)
            per = ", ".join(f"{fold}: {ece([c for c, it in zip(crossed, items) if it[0] == fold], [it[3] for it in items if it[0] == fold]):.3f}"
                            for _, fold in models)
            print(f"| adult, {k} | {len(items)} | {ece(crossed, [it[3] for it in items]):.3f} | {ece_if_calibrated(crossed):.3f} | {per} |")
        print()
        print("Cross-fitted ECE of each fold (training_report.json: calibration fitted on the other half of the fold's patients):")
        for population, finding in (("pediatric", "Pneumonia"), ("pediatric", "No Finding"), ("adult", "Pneumonia"), ("adult", "No Finding")):
            values = cross_fitted(models, population, finding)
            if values:
                listed = ", ".join(f"fold {f}: {e:.3f}" for f, e, _ in values)
                print(f"- {population}, {finding}: {listed}; mean {np.mean([e for _, e, _ in values]):.3f}")


if __name__ == "__main__":
    main()
