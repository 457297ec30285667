#!/usr/bin/python3
"""Glass-box fit times on Adult: candor's students next to scikit-learn's comparable models,
in the same run on the same rows, plus candor's MLP training throughput (rows/s).

usage: bench/distill_vs_sklearn.py BUILD_DIR [--glassbox-only]   (needs ../shared;
python3-sklearn for the scikit-learn side, which is skipped without it; --glassbox-only: the
glass-box students and scikit-learn only, no MLP or transformer runs)

Also: the transformer student's training throughput (rows/s, one thread) trained on labels
(`candor train --model transformer`) and distilled from the fastText teacher
(`candor distill --student transformer`) on sentiment_labelled_sentences.csv.

candor: `candor distill --teacher-column income` (fit time = featurising + fitting, as the
report's fit_seconds; every student's strength chosen by 5-fold cross-validation on the training
rows, the default). scikit-learn: LogisticRegressionCV() (10 strengths, 5 folds: the
cross-validated counterpart), LogisticRegression(penalty='l1', solver='liblinear') and
DecisionTreeClassifier(max_depth=4) on the one-hot encoding of the same columns (numeric
columns standardised), timed around fit() only.
"""
import csv, json, os, subprocess, sys, tempfile, time

try:
    import numpy as np
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.tree import DecisionTreeClassifier
except ImportError:
    np = LogisticRegression = LogisticRegressionCV = DecisionTreeClassifier = None

args = [a for a in sys.argv[1:] if not a.startswith("--")]
glassbox_only = "--glassbox-only" in sys.argv[1:]
build = args[0] if args else "build"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("CANDOR_SHARED", os.path.join(root, "..", "shared"))
data = os.path.join(shared, "data/fairness/adult_train.csv")
cli = os.path.join(build, "candor")

def candor_fit(student):
    out = tempfile.mkdtemp()
    subprocess.run([cli, "distill", "--teacher-column", "income", "--data", data, "--student",
                    student, "--out", out, "--seed", "1"], check=True, capture_output=True)
    rep = json.load(open(os.path.join(out, "report.json")))
    cv = rep["student"].get("cv")
    if cv:
        print(f"  candor {student}: {cv['parameter']} = {cv['chosen']:.4g} by {cv['folds']}-fold "
              f"CV over {len(cv['grid'])} values")
    return rep["fit_seconds"], rep["fidelity"]["test"]["agreement"]

rows = list(csv.DictReader(open(data)))
n_train = int(0.8 * len(rows))
if np is not None:
    y = np.array([r["income"] == ">50K" for r in rows])
    cols = [c for c in rows[0] if c != "income"]
    numeric = [c for c in cols if all(r[c] == "" or r[c].replace(".", "", 1).lstrip("-").isdigit() for r in rows)]
    blocks = []
    for c in cols:
        if c in numeric:
            blocks.append(np.array([[float(r[c] or 0)] for r in rows]))
        else:
            cats = sorted({r[c] for r in rows})
            idx = {k: i for i, k in enumerate(cats)}
            m = np.zeros((len(rows), len(cats)))
            for i, r in enumerate(rows):
                m[i, idx[r[c]]] = 1
            blocks.append(m)
    X = np.hstack(blocks)
    X = (X - X.mean(0)) / (X.std(0) + 1e-9)

def sk(model):
    t = time.perf_counter()
    model.fit(X[:n_train], y[:n_train])
    return time.perf_counter() - t, model.score(X[n_train:], y[n_train:])

results = {}
for name, student in [("linear", "linear"), ("tree", "tree:max_depth=4"), ("gam", "gam"),
                      ("linear, lambda given (no CV)", "linear:lambda=0.0001")]:
    results["candor " + name] = candor_fit(student)
if LogisticRegression is not None:
    results["sklearn LogisticRegressionCV()"] = sk(LogisticRegressionCV(max_iter=1000))
    results["sklearn LogisticRegression(l1, liblinear)"] = sk(
        LogisticRegression(penalty="l1", solver="liblinear", C=1.0))
    results["sklearn DecisionTreeClassifier(max_depth=4)"] = sk(DecisionTreeClassifier(max_depth=4))
print(f"Adult ({len(rows)} rows, {n_train} fitted)")
for k, (secs, score) in results.items():
    print(f"  {k:48s} fit {secs * 1000:8.1f} ms   held-out {score:.3f}")
if LogisticRegression is not None:
    ratio = results["sklearn LogisticRegressionCV()"][0] / results["candor linear"][0]
    print(f"  linear (both cross-validated): sklearn LogisticRegressionCV / candor fit time = {ratio:.2f}")
    ratio = results["sklearn LogisticRegressionCV()"][0] / results["candor gam"][0]
    print(f"  sklearn LogisticRegressionCV / candor gam (cross-validated) fit time = {ratio:.2f}")
    ratio = results["sklearn LogisticRegression(l1, liblinear)"][0] / results["candor linear, lambda given (no CV)"][0]
    print(f"  linear: sklearn / candor fit time = {ratio:.2f}")
    ratio = results["sklearn DecisionTreeClassifier(max_depth=4)"][0] / results["candor tree"][0]
    print(f"  tree:   sklearn / candor fit time = {ratio:.2f}")
else:
    print("  (python3-sklearn is not installed: scikit-learn side skipped)")
if glassbox_only:
    sys.exit(0)
out = tempfile.mkdtemp()
subprocess.run([cli, "train", "--data", data, "--label", "income", "--out", out, "--epochs", "3",
                "--seed", "1"], check=True, capture_output=True)
summary = json.load(open(os.path.join(out, "summary.json")))
print(f"  candor MLP training: {summary['rows_per_second']:.0f} rows/s "
      f"(held-out accuracy {summary['test_accuracy']:.3f})")

# The transformer student: training throughput, one thread.
sentences = os.path.join(shared, "data/text/sentiment_labelled_sentences.csv")
spec = "transformer:dim=64,layers=2,heads=4,hidden=128,max_len=64,vocab=3000"
out = tempfile.mkdtemp()
subprocess.run([cli, "train", "--model", spec, "--data", sentences, "--label", "label", "--out",
                out, "--epochs", "2", "--seed", "1", "--threads", "1"], check=True,
               capture_output=True)
summary = json.load(open(os.path.join(out, "summary.json")))
print(f"sentiment_labelled_sentences ({summary['train_rows']} training rows), {spec}, 1 thread")
print(f"  candor train (labels):        {summary['rows_per_second']:.0f} rows/s")
out = tempfile.mkdtemp()
subprocess.run([cli, "distill", "--teacher",
                os.path.join(shared, "models/fasttext_amazon/amazon_review_polarity.ftz"),
                "--normalise", "--data", sentences, "--label", "label", "--label-map",
                "1=__label__2,0=__label__1", "--student", spec + ",epochs=2", "--seed", "1",
                "--threads", "1", "--out", out], check=True, capture_output=True)
student = json.load(open(os.path.join(out, "report.json")))["student"]
print(f"  candor distill (fastText KD): {student['rows_per_second']:.0f} rows/s")
