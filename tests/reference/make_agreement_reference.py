#!/usr/bin/python3
"""Writes golden_agreement/agreement.json: a small several-reader rating table and its agreement
statistics computed independently of Hilum's C++ (training/agreement.hpp):
  - Cohen's kappa of every reader pair by scikit-learn's cohen_kappa_score (items both rated);
  - Fleiss' kappa by the textbook formula (Fleiss 1971) over the items every reader rated;
  - Krippendorff's alpha (nominal) by enumerating every pair of values within each item
    (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"), not the coincidence shortcut;
  - each reader's Cohen's kappa (scikit-learn) against the consensus of the *other* readers
    (leave-one-out), under the catalog's default policy "adjudicated > unanimous > majority (at least
    1 reader)": another person's adjudication decides; an adjudication by the reader themself does not
    count, and the others' readings decide (all agree: that value; else more than half of them); items
    where no other reader rated the finding, or the others reach no consensus, are left out and counted.
    That part adds two single-reader items and four adjudications ("reader_vs_others_consensus"), which
    change none of the statistics above (an item with one rating counts in none of them).
Categories: 0 absent, 1 present, 2 uncertain; -1 = not rated. Run with Debian's /usr/bin/python3
(python3-sklearn, python3-numpy):  /usr/bin/python3 tests/reference/make_agreement_reference.py
"""
import itertools
import json
import os

import numpy as np
from sklearn.metrics import cohen_kappa_score

MISSING = -1


def table(seed=15, items=40, readers=4):
    rng = np.random.default_rng(seed)
    truth = rng.choice([0, 1], size=items, p=[0.6, 0.4])
    ratings = np.empty((items, readers), dtype=int)
    for r in range(readers):
        flip = rng.random(items) < 0.15 + 0.05 * r
        values = np.where(flip, 1 - truth, truth)
        unsure = rng.random(items) < 0.08
        values = np.where(unsure, 2, values)
        missing = rng.random(items) < 0.1
        ratings[:, r] = np.where(missing, MISSING, values)
    patients = [i // 2 for i in range(items)]  # two images per patient
    return ratings, patients


def cohen(a, b):
    keep = (a != MISSING) & (b != MISSING)
    return float(cohen_kappa_score(a[keep], b[keep]))


def fleiss(ratings):
    complete = ratings[(ratings != MISSING).all(axis=1)]
    n_items, n = complete.shape
    categories = sorted(set(complete.flatten().tolist()))
    counts = np.array([[np.sum(row == c) for c in categories] for row in complete], dtype=float)
    p_i = (np.sum(counts ** 2, axis=1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_j = counts.sum(axis=0) / (n_items * n)
    pe = np.sum(p_j ** 2)
    return float((p_bar - pe) / (1 - pe)), int(n_items)


def krippendorff_nominal(ratings):
    # Do and De from explicit pairs: within each unit with m >= 2 values, every ordered pair (i, j),
    # i != j, of its values weighs 1 / (m - 1).
    values_all = []
    disagree_observed = 0.0
    for row in ratings:
        values = [v for v in row if v != MISSING]
        m = len(values)
        if m < 2:
            continue
        values_all.extend(values)
        for i, j in itertools.permutations(range(m), 2):
            if values[i] != values[j]:
                disagree_observed += 1.0 / (m - 1)
    n = len(values_all)
    disagree_expected = 0.0
    for i, j in itertools.permutations(range(n), 2):
        if values_all[i] != values_all[j]:
            disagree_expected += 1.0
    do = disagree_observed / n
    de = disagree_expected / (n * (n - 1))
    return float(1.0 - do / de)


# Items rated by one reader only, on a 21st patient, and adjudications (item, adjudicator, value):
# reader1 adjudicates an item they read differently, reader0 one they read, "chief" (no reader) two.
EXTRA_RATINGS = [[MISSING, 1, MISSING, MISSING], [0, MISSING, MISSING, MISSING]]
EXTRA_PATIENTS = [20, 20]
ADJUDICATIONS = [(2, "reader1", 1), (9, "chief", 1), (14, "reader0", 1), (41, "chief", 0)]


def others_consensus(row, reader, adjudication, readers):
    """The consensus of the readers other than `reader` (a name) on one item: (value, why not)."""
    if adjudication is not None and adjudication[0] != reader:
        return adjudication[1], None
    others = [v for name, v in zip(readers, row) if name != reader and v != MISSING]
    if not others:
        return None, "no_other_reader"
    for value in sorted(set(others)):
        if len(set(others)) == 1 or 2 * others.count(value) > len(others):
            return value, None
    return None, "no_consensus"


def vs_others_consensus(ratings, readers, adjudications):
    out = []
    for r, name in enumerate(readers):
        mine, theirs = [], []
        left_out = {"no_other_reader": 0, "no_consensus": 0}
        for i, row in enumerate(ratings):
            if row[r] == MISSING:
                continue
            adj = adjudications.get(i)
            value, why = others_consensus(row, name, adj, readers)
            if value is None:
                left_out[why] += 1
                continue
            mine.append(int(row[r]))
            theirs.append(int(value))
        out.append({"reader": name, "cohen_kappa": float(cohen_kappa_score(mine, theirs)), "images": len(mine),
                    "left_out": left_out})
    return out


def main():
    ratings, patients = table()
    readers = ["reader%d" % r for r in range(ratings.shape[1])]
    pairs = []
    for a, b in itertools.combinations(range(len(readers)), 2):
        pairs.append({"readers": [readers[a], readers[b]], "cohen_kappa": cohen(ratings[:, a], ratings[:, b])})
    fk, complete = fleiss(ratings)
    out = {
        "generator": "tests/reference/make_agreement_reference.py (scikit-learn cohen_kappa_score; NumPy)",
        "categories": {"0": "absent", "1": "present", "2": "uncertain", "-1": "not rated"},
        "readers": readers,
        "ratings": ratings.tolist(),
        "patients": patients,
        "cohen_kappa": pairs,
        "fleiss_kappa": fk,
        "fleiss_complete_items": complete,
        "krippendorff_alpha": krippendorff_nominal(ratings),
    }
    all_ratings = np.vstack([ratings, np.array(EXTRA_RATINGS)])
    adjudications = {i: (who, value) for i, who, value in ADJUDICATIONS}
    out["reader_vs_others_consensus"] = {
        "policy": "adjudicated > unanimous > majority (at least 1 reader)",
        "extra_ratings": EXTRA_RATINGS,
        "extra_patients": EXTRA_PATIENTS,
        "adjudications": [{"item": i, "adjudicator": who, "value": value} for i, who, value in ADJUDICATIONS],
        "readers": vs_others_consensus(all_ratings, readers, adjudications),
    }
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_agreement")
    os.makedirs(here, exist_ok=True)
    with open(os.path.join(here, "agreement.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
