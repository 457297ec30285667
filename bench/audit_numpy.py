#!/usr/bin/env python3
"""The audits of bench_audit written with numpy, timed on the same files: group fairness with a
stratified bootstrap (per-group confusion metrics, ECE, the between-group gaps and the selection
ratio for each group column, every resample), and calibration (accuracy, NLL, Brier, ECE equal
width and equal mass, MCE, temperature fitted by golden-section search on a seeded half, the
held-out figures before and after, risk-coverage AURC) with split conformal sets (LAC and APS).
Prints one JSON object of seconds. Usage: audit_numpy.py FAIRNESS_CSV CALIBRATION_CSV N_BOOT"""
import csv
import json
import sys
import time

import numpy as np


def read(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def fairness(path, n_boot, bins=10):
    t0 = time.perf_counter()
    head, rows = read(path)
    col = {h: i for i, h in enumerate(head)}
    y = np.array([r[col["label"]] == "1" for r in rows], dtype=np.int64)
    yhat = np.array([r[col["pred"]] == "1" for r in rows], dtype=np.int64)
    s = np.array([float(r[col["prob"]]) for r in rows], dtype=np.float32)
    gcols = [c for c in head if c.startswith("g")]
    codes = []
    for c in gcols:
        vals, inv = np.unique([r[col[c]] for r in rows], return_inverse=True)
        codes.append(inv)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    sb = np.minimum((s * np.float32(bins)).astype(np.int64), bins - 1)
    s64 = s.astype(np.float64)
    cell = y * 2 + yhat
    strata = np.zeros(len(y), dtype=np.int64)
    for c in codes:
        strata = strata * (c.max() + 1) + c
    order = np.argsort(strata, kind="stable")
    st_sorted = strata[order]
    starts = np.searchsorted(st_sorted, np.unique(st_sorted))
    sizes = np.diff(np.append(starts, len(y)))

    def evaluate(idx):
        out = []
        for c in codes:
            G = c.max() + 1
            g = c[idx]
            cnt = np.bincount(g * 4 + cell[idx], minlength=G * 4).reshape(G, 4).astype(np.float64)
            tn, fp, fn, tp = cnt[:, 0], cnt[:, 1], cnt[:, 2], cnt[:, 3]
            n = cnt.sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                m = {"base_rate": (tp + fn) / n, "selection_rate": (tp + fp) / n, "tpr": tp / (tp + fn),
                     "fpr": fp / (fp + tn), "fnr": fn / (tp + fn), "tnr": tn / (fp + tn),
                     "precision": tp / (tp + fp), "npv": tn / (tn + fn), "accuracy": (tp + tn) / n,
                     "mean_score": np.bincount(g, weights=s64[idx], minlength=G) / n}
                key = g * bins + sb[idx]
                pos = np.bincount(key, weights=y[idx], minlength=G * bins).reshape(G, bins)
                sc = np.bincount(key, weights=s64[idx], minlength=G * bins).reshape(G, bins)
                m["ece"] = np.abs(pos - sc).sum(1) / n
                gaps = {k: np.nanmax(v) - np.nanmin(v) for k, v in m.items()}
                gaps["dp_ratio"] = np.nanmin(m["selection_rate"]) / np.nanmax(m["selection_rate"])
                gaps["eo"] = max(gaps["tpr"], gaps["fpr"])
            out.append((m, gaps))
        return out

    point = evaluate(np.arange(len(y)))
    rng = np.random.default_rng(1)
    boots = []
    for b in range(n_boot):
        idx = np.concatenate([order[st + rng.integers(0, sz, sz)] for st, sz in zip(starts, sizes)])
        boots.append(evaluate(idx))
    # percentile intervals of every figure
    flat = [np.concatenate([np.concatenate([np.ravel(v) for v in m.values()] + [np.array(list(gp.values()))])
                            for m, gp in e]) for e in boots]
    if flat:
        np.nanpercentile(np.array(flat), [2.5, 97.5], axis=0)
    return t_read, time.perf_counter() - t0, point


def calibration_conformal(path, bins=15, alpha=0.1):
    t0 = time.perf_counter()
    head, rows = read(path)
    k = len(head) - 1
    p = np.array([[float(x) for x in r[1:]] for r in rows], dtype=np.float32).astype(np.float64)
    y = np.array([int(r[0]) for r in rows])
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = len(y)

    def scaled(rows_, t):
        z = np.log(np.clip(p[rows_], 1e-12, 1)) / t
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def metrics(q, yy):
        conf = q.max(1)
        pred = q.argmax(1)
        correct = (pred == yy).astype(np.float64)
        nll = -np.log(np.clip(q[np.arange(len(yy)), yy], 1e-12, 1)).mean()
        onehot = np.eye(k)[yy]
        brier = ((q - onehot) ** 2).sum(1).mean()
        b = np.minimum((conf * bins).astype(np.int64), bins - 1)
        cnt = np.bincount(b, minlength=bins)
        gap = np.abs(np.bincount(b, weights=correct, minlength=bins) - np.bincount(b, weights=conf, minlength=bins))
        ece = gap.sum() / len(yy)
        with np.errstate(invalid="ignore", divide="ignore"):
            mce = np.nanmax(np.where(cnt > 0, gap / cnt, np.nan))
        o = np.argsort(conf, kind="stable")
        chunks = np.array_split(o, bins)
        ece_mass = sum(abs(correct[c].sum() - conf[c].sum()) for c in chunks) / len(yy)
        # risk-coverage
        o = np.argsort(-conf, kind="stable")
        err = np.cumsum(1 - correct[o]) / np.arange(1, len(yy) + 1)
        return correct.mean(), nll, brier, ece, ece_mass, mce, err.mean()

    all_rows = np.arange(n)
    metrics(p, y)
    rng = np.random.default_rng(1)
    perm = rng.permutation(n)
    cal, held = np.sort(perm[: n // 2]), np.sort(perm[n // 2:])
    lo, hi = np.log(0.05), np.log(20)
    g = (np.sqrt(5) - 1) / 2
    nll = lambda lt: metrics(scaled(cal, np.exp(lt)), y[cal])[1]
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    t = np.exp((lo + hi) / 2)
    metrics(p[held], y[held])
    metrics(scaled(held, t), y[held])
    # conformal
    perm = rng.permutation(n)
    cal, held = np.sort(perm[: n // 2]), np.sort(perm[n // 2:])
    q_level = int(np.ceil((len(cal) + 1) * (1 - alpha)))
    lac = 1 - p[cal, y[cal]]
    qh = np.sort(lac)[q_level - 1]
    sets_lac = (1 - p[held]) <= qh
    cov_lac = sets_lac[np.arange(len(held)), y[held]].mean()
    o = np.argsort(-p, axis=1, kind="stable")
    ps = np.take_along_axis(p, o, 1)
    cum = np.cumsum(ps, 1)
    rank = np.argsort(o, axis=1)
    aps = cum[np.arange(n), rank[np.arange(n), y]]
    qa = np.sort(aps[cal])[q_level - 1]
    inset = cum[held] <= qa
    inset[:, 0] = True
    cov_aps = np.take_along_axis(inset, rank[held], 1)[np.arange(len(held)), y[held]].mean()
    return t_read, time.perf_counter() - t0, (cov_lac, cov_aps, sets_lac.sum(1).mean(), inset.sum(1).mean())


if __name__ == "__main__":
    fr, fc, _ = fairness(sys.argv[1], int(sys.argv[3]))
    cr, cc, cov = calibration_conformal(sys.argv[2])
    print(json.dumps({"fairness_read_s": fr, "fairness_compute_s": fc, "calibration_read_s": cr,
                      "calibration_compute_s": cc, "coverage": [float(x) for x in cov]}))
