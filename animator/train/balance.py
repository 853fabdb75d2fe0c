"""Balanced sampling: most faces are near neutral with a smile or not, so plain sampling asks
the generator for raised brows, wide eyes, an open jaw or a blink only rarely. Each face gets
a weight so that every AU is clearly present in a fair share of the draws; faces and target
AUs are drawn by weight.
"""

from __future__ import annotations

import numpy as np

from animator.aus import AU_NAMES

# Intensity bins on the 0-5 scale: absent, trace, clear, strong.
BIN_EDGES = (0.5, 1.5, 2.5)


def intensity_bins(aus: np.ndarray) -> np.ndarray:
    """(N, 17) int bin index of every AU value (0 = absent ... 3 = strong)."""
    return np.digitize(np.asarray(aus, np.float32), BIN_EDGES)


def balance_weights(aus: np.ndarray, floor: float = 0.15, cap: float = 30.0,
                    rounds: int = 30) -> np.ndarray:
    """(N,) sampling weights, mean 1, under which every AU that any face shows clearly
    (>= 1.5) is shown clearly by at least ``floor`` of the draws where the cap allows.

    Raking: each round scales up the faces of every AU still under the floor by the missing
    factor; a face never weighs more than ``cap`` times the lightest, so a handful of frames
    cannot take over the set."""
    aus = np.asarray(aus, np.float32)
    if not len(aus):
        return np.zeros(0, np.float64)
    clear = aus >= BIN_EDGES[1]
    weights = np.ones(len(aus))
    for _ in range(rounds):
        shares = (weights @ clear) / weights.sum()
        short = clear.any(0) & (shares < floor)
        if not short.any():
            break
        for a in np.flatnonzero(short):
            weights[clear[:, a]] *= floor / max(shares[a], 1e-12)
        weights = np.minimum(weights, cap * weights.min())
    return weights / weights.mean()


def label_distribution(aus: np.ndarray, weights: np.ndarray | None = None) -> dict[str, dict]:
    """Per AU: mean, share of faces at >= 1 and >= 2, and the share in each intensity bin,
    as drawn with ``weights`` (plain counts when None)."""
    aus = np.asarray(aus, np.float32)
    w = np.ones(len(aus)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    bins = intensity_bins(aus)
    out = {}
    for a, name in enumerate(AU_NAMES):
        share = np.bincount(bins[:, a], weights=w, minlength=len(BIN_EDGES) + 1)
        out[name] = {"mean": round(float(w @ aus[:, a]), 4),
                     "at_least_1": round(float(w @ (aus[:, a] >= 1)), 4),
                     "at_least_2": round(float(w @ (aus[:, a] >= 2)), 4),
                     "bins": [round(float(s), 4) for s in share]}
    return out
