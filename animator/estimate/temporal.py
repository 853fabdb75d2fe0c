"""Zero-lag smoothing of per-frame AU series (an actor's own AUs in relative keyframe mode).

A Gaussian kernel in time, applied centred, has no phase lag (a blink stays where it was),
copes with variable frame rates (it weights by real time differences) and with frames where
no face was found (NaN rows are skipped and filled from their neighbours).
"""

from __future__ import annotations

import numpy as np

from animator.aus import AU_MAX, AU_MIN
from animator.errors import AnimatorError

# A Gaussian's response falls to 1/sqrt(2) at f = sqrt(ln 2) / (2 pi sigma).
_HALF_POWER = np.sqrt(np.log(2.0)) / (2.0 * np.pi)
_CHUNK = 4096


def smooth_au_series(times: np.ndarray, aus: np.ndarray, cutoff_hz: float = 4.0) -> np.ndarray:
    """(N,) seconds, (N, 17) AUs -> (N, 17) float32 smoothed, clamped to 0-5.

    ``cutoff_hz`` is the half-power frequency: 4 Hz removes landmark jitter at video rates
    while keeping a blink (~0.2-0.3 s). Rows that are all NaN (no face) are filled from the
    neighbours within the kernel; rows with no valid neighbour stay NaN.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    values = np.asarray(aus, dtype=np.float64)
    if values.ndim != 2 or len(values) != len(times):
        raise AnimatorError(f"smooth_au_series: {values.shape} AUs do not match {times.shape} times")
    if not cutoff_hz > 0:
        raise AnimatorError(f"smooth_au_series: cutoff_hz must be > 0, got {cutoff_hz}")
    if len(times) > 1 and np.any(np.diff(times) < 0):
        raise AnimatorError("smooth_au_series: times must not decrease")
    if len(times) == 0:
        return values.astype(np.float32)
    sigma = _HALF_POWER / cutoff_hz
    out = np.empty(values.shape, dtype=np.float32)
    for start in range(0, len(times), _CHUNK):  # bounds memory to _CHUNK x window x 17
        rows = np.arange(start, min(start + _CHUNK, len(times)))
        out[rows] = _smooth_rows(times, values, rows, sigma)
    return out


def _smooth_rows(times: np.ndarray, values: np.ndarray, rows: np.ndarray, sigma: float) -> np.ndarray:
    centre = times[rows]
    lo = np.searchsorted(times, centre - 4 * sigma, side="left")
    hi = np.searchsorted(times, centre + 4 * sigma, side="right")
    width = int((hi - lo).max())
    index = lo[:, None] + np.arange(width)[None, :]                  # (R, W) neighbours
    inside = index < hi[:, None]
    index = np.minimum(index, len(times) - 1)
    valid = np.isfinite(values)                                      # (N, 17)
    weight = np.exp(-0.5 * ((times[index] - centre[:, None]) / sigma) ** 2) * inside
    w = weight[:, :, None] * valid[index]                            # (R, W, 17)
    total = w.sum(1)
    smoothed = (w * np.nan_to_num(values)[index]).sum(1) / np.where(total > 0, total, 1.0)
    smoothed[total == 0] = np.nan
    return np.clip(smoothed, AU_MIN, AU_MAX)
