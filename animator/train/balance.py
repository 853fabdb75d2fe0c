"""Balanced sampling: most faces are near neutral with a smile or not, so plain sampling asks
the generator for raised brows, wide eyes, an open jaw or a blink only rarely. Each face gets
a weight from how rare its AU intensities are; faces and target AUs are drawn by weight.
"""

from __future__ import annotations

import numpy as np

from animator.aus import AU_NAMES

# Intensity bins on the 0-5 scale: absent, trace, clear, strong.
BIN_EDGES = (0.5, 1.5, 2.5)


def intensity_bins(aus: np.ndarray) -> np.ndarray:
    """(N, 17) int bin index of every AU value (0 = absent ... 3 = strong)."""
    return np.digitize(np.asarray(aus, np.float32), BIN_EDGES)


def balance_weights(aus: np.ndarray, cap: float = 20.0) -> np.ndarray:
    """(N,) sampling weights, mean 1: a face weighs as much as its rarest present AU bin.

    For each AU, a bin's weight is how much rarer it is than that AU's absent bin (1 for
    absent); a face takes the largest over its AUs, capped at ``cap``, so one frame with a
    strong, rare AU is drawn up to ``cap`` times as often as a neutral one."""
    aus = np.asarray(aus, np.float32)
    if not len(aus):
        return np.zeros(0, np.float64)
    bins = intensity_bins(aus)
    weights = np.ones(len(aus))
    for a in range(aus.shape[1]):
        counts = np.bincount(bins[:, a], minlength=len(BIN_EDGES) + 1).astype(np.float64)
        rarity = np.where(counts > 0, counts[0] / np.maximum(counts, 1), 1.0)
        rarity[0] = 1.0
        weights = np.maximum(weights, np.clip(rarity[bins[:, a]], 1.0, cap))
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
