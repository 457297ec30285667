#!/usr/bin/python3
"""scikit-learn's comparable models fitted on a teacher's labels, for the glass-box students' test
(tests/distill/sklearn_compare_test.cpp).

usage: sklearn_agreement.py DATA.csv LABEL_COLUMN TEACHER.csv MAX_DEPTH

DATA.csv: the table (header row; an empty field is missing). LABEL_COLUMN: the true labels,
never an input. TEACHER.csv: one row per row of DATA.csv with columns teacher_S and split_S per
seeded split S (teacher_S: the teacher's class index; split_S: train or test).

For each split: LogisticRegression() (default C = 1) on the standardised columns (numeric
columns with missing values mean-imputed plus a missing indicator, other columns one-hot), and
DecisionTreeClassifier(max_depth=MAX_DEPTH) on the same columns unscaled, both fitted on the
training rows' teacher labels. Prints JSON: {"splits": [...], "logistic": [...], "tree": [...]}
with the held-out agreement with the teacher per split.

With --gam, also the additive models a GAM compares with: "additive_boosting",
HistGradientBoostingClassifier with every column in its own interaction group (a sum of one
boosted shape per input column: scikit-learn's nearest GAM), and "boosting", the same without
the constraint (a black box, for the ceiling).
"""
import csv
import json
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def encode(rows, label):
    """The inputs as a float matrix: numeric columns as they are (NaN: missing), others one-hot."""
    cols = [c for c in rows[0] if c != label]
    blocks = []
    for c in cols:
        values = [r[c] for r in rows]
        if all(v == "" or number(v) is not None for v in values):
            blocks.append(np.array([[np.nan if v == "" else float(v)] for v in values]))
        else:
            levels = sorted(set(values))
            index = {v: i for i, v in enumerate(levels)}
            m = np.zeros((len(rows), len(levels)))
            for i, v in enumerate(values):
                m[i, index[v]] = 1.0
            blocks.append(m)
    return np.hstack(blocks)


def main():
    gam = "--gam" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--gam"]
    data, label, teacher_path, depth = args[0], args[1], args[2], int(args[3])
    rows = list(csv.DictReader(open(data, newline="")))
    teacher = list(csv.DictReader(open(teacher_path, newline="")))
    if len(rows) != len(teacher):
        sys.exit(f"{teacher_path}: {len(teacher)} rows for {len(rows)} rows of {data}")
    X = encode(rows, label)
    splits = sorted(int(c[len("split_"):]) for c in teacher[0] if c.startswith("split_"))
    out = {"splits": splits, "logistic": [], "tree": []}
    if gam:
        out["additive_boosting"] = []
        out["boosting"] = []
    for s in splits:
        y = np.array([int(t[f"teacher_{s}"]) for t in teacher])
        train = np.array([t[f"split_{s}"] == "train" for t in teacher])
        test = ~train
        logistic = make_pipeline(SimpleImputer(strategy="mean", add_indicator=True),
                                 StandardScaler(), LogisticRegression(max_iter=1000))
        logistic.fit(X[train], y[train])
        out["logistic"].append(float(np.mean(logistic.predict(X[test]) == y[test])))
        tree = make_pipeline(SimpleImputer(strategy="mean", add_indicator=True),
                             DecisionTreeClassifier(max_depth=depth, random_state=0))
        tree.fit(X[train], y[train])
        out["tree"].append(float(np.mean(tree.predict(X[test]) == y[test])))
        if gam:
            # One interaction group per input column (its one-hot block counts as one column
            # there only approximately: each level is its own group).
            additive = HistGradientBoostingClassifier(
                interaction_cst=[[j] for j in range(X.shape[1])], random_state=0)
            additive.fit(X[train], y[train])
            out["additive_boosting"].append(float(np.mean(additive.predict(X[test]) == y[test])))
            boosting = HistGradientBoostingClassifier(random_state=0)
            boosting.fit(X[train], y[train])
            out["boosting"].append(float(np.mean(boosting.predict(X[test]) == y[test])))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
