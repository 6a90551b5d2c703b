#!/usr/bin/env python3
"""Fit the 16-level QK_Q4C codebook (Sources/Kernels/pack.c: qk_q4c_codebook) by Lloyd iterations.

Groups of 32 standard-normal weights; each group is quantized at its own scale d (chosen, as pack.c
does, from candidates that put the group's extreme on either end level, refined by least squares),
each weight goes to its nearest level, and each level moves to the least-squares value of the weights
assigned to it (sum of w*d over sum of d^2). The levels are then scaled so the lowest one is -127 and
rounded to integers. The fit is not unique (it depends on the start and the sample); the committed
codebook came from this procedure, and this script prints how far its own fit is from it, together with
the weight error of both on a fresh sample (the number that matters).

    python3 benchmarks/scripts/q4c_codebook.py [--groups 20000] [--iterations 40] [--seed 1]
"""
import argparse

import numpy as np

COMMITTED = [-127, -100, -79, -63, -48, -34, -22, -9, 2, 14, 25, 37, 50, 65, 83, 108]
GRID = [1.0, 1.05, 0.967, 0.933, 0.9, 0.867, 0.833]


def nearest(u, cb):
    """Index of the level of sorted cb nearest to each u."""
    mid = 0.5 * (cb[1:] + cb[:-1])
    return np.searchsorted(mid, u)


def quantize(w, cb):
    """Per group (rows of w): the scale with the lowest squared error, the level indices and the error."""
    idx_max = np.argmax(np.abs(w), axis=1)
    smax = w[np.arange(len(w)), idx_max][:, None]
    best_err = np.full((len(w), 1), np.inf)
    best_d = np.zeros((len(w), 1))
    for end in (cb[0], cb[-1]):
        for f in GRID:
            d = f * smax / end
            d2 = d.copy()
            for _ in range(3):   # the candidate, then least-squares steps from it
                q = cb[nearest(w / d2, cb)]
                err = ((w - q * d2) ** 2).sum(axis=1, keepdims=True)
                better = err < best_err
                best_err = np.where(better, err, best_err)
                best_d = np.where(better, d2, best_d)
                sqq = (q * q).sum(axis=1, keepdims=True)
                d2 = np.where(sqq > 0, (w * q).sum(axis=1, keepdims=True) / np.maximum(sqq, 1e-30), d2)
    return best_d, nearest(w / best_d, cb), best_err


def rel_rmse(w, cb):
    d, _, err = quantize(w, cb)
    return float(np.sqrt(err.sum() / (w ** 2).sum()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=20000)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    w = rng.standard_normal((a.groups, 32))
    cb = np.linspace(-127.0, 127.0, 16)          # start: uniform levels
    for _ in range(a.iterations):
        d, idx, _ = quantize(w, cb)
        dd = np.broadcast_to(d, w.shape)
        num = np.bincount(idx.ravel(), weights=(w * dd).ravel(), minlength=16)
        den = np.bincount(idx.ravel(), weights=(dd * dd).ravel(), minlength=16)
        new = np.where(den > 0, num / np.maximum(den, 1e-30), cb)
        new = np.sort(new)
        cb = new * (-127.0 / new[0]) if new[0] < 0 else new
    fit = np.round(cb).astype(int)
    test = np.random.default_rng(a.seed + 1000).standard_normal((a.groups, 32))
    committed = np.array(COMMITTED, dtype=float)
    uniform = np.arange(-8, 8, dtype=float) * 127 / 8   # q4's levels, for scale
    print("fitted   :", fit.tolist())
    print("committed:", COMMITTED)
    print("largest level difference:", int(np.max(np.abs(fit - committed))))
    print(f"weight rel RMSE on a fresh sample: fitted {rel_rmse(test, fit.astype(float)):.5f}, "
          f"committed {rel_rmse(test, committed):.5f}, uniform [-8, 7] {rel_rmse(test, uniform):.5f}")


if __name__ == "__main__":
    main()
