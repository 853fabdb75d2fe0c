"""Keyframes + timestamps -> AU targets (N, 17): per-AU splines, sampled wherever frames fall.

Sampling at the frames' own timestamps (not at ``i / fps``) is what makes variable frame rate
work: every output row depends only on its own time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.interpolate import Akima1DInterpolator, CubicSpline, PchipInterpolator

from animator import aus
from animator.errors import AnimatorError
from animator.keyframes import Channel, Keyframes


def sample_trajectory(keyframes: Keyframes, times: np.ndarray, fps: float | None = None) -> np.ndarray:
    """AU values at ``times`` (seconds, any order): (N, 17) float32.

    Each AU follows its own keys with its interpolation; before its first key and after its last
    the value holds; AUs no key sets are 0. Absolute values are clamped to 0-5; in relative mode
    the result is the offsets to add to the actor's AUs, clamped to -5..5. ``fps`` counts the
    file's frame keys when the file has no fps of its own.
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise AnimatorError(f"sample times: expected a 1-D array, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise AnimatorError("sample times: contain NaN or infinity")
    out = np.zeros((t.size, aus.N_AUS), dtype=np.float64)
    for au, channel in keyframes.channels(fps).items():
        out[:, aus.au_index(au)] = sample_channel(channel, t, keyframes.interpolation_for(au))
    low, high = keyframes.value_range
    return np.clip(out, low, high).astype(np.float32)


def sample_channel(channel: Channel, t: np.ndarray, method: str) -> np.ndarray:
    """One AU's curve at ``t`` (float64), unclamped."""
    kt, kv = channel.times, channel.values
    if kt.size == 1:
        return np.full(t.shape, kv[0])
    held = np.clip(t, kt[0], kt[-1])
    if method == "step":
        return kv[np.searchsorted(kt, held, side="right") - 1]
    segment = np.clip(np.searchsorted(kt, held, side="right") - 1, 0, kt.size - 2)
    if channel.ease_out.any() or channel.ease_in.any():
        held = _ease(held, kt, segment, channel.ease_out[segment], channel.ease_in[segment + 1])
    with np.errstate(over="ignore", divide="ignore"):  # pchip on keys a denormal apart
        return _interpolator(method, kt, kv)(held)


def _ease(t: np.ndarray, kt: np.ndarray, segment: np.ndarray, out_of_start: np.ndarray,
          into_end: np.ndarray) -> np.ndarray:
    """Remap time within each segment by a cubic g(u) on [0, 1] with g(0)=0, g(1)=1, and slope 0
    at an eased end (1 otherwise): the curve's values stay the same set, only their timing slows
    near eased keys. Both ends eased is smoothstep 3u^2 - 2u^3."""
    start, end = kt[segment], kt[segment + 1]
    u = (t - start) / (end - start)
    m0 = np.where(out_of_start, 0.0, 1.0)
    m1 = np.where(into_end, 0.0, 1.0)
    u2, u3 = u * u, u * u * u
    g = (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) + (u3 - u2) * m1  # cubic Hermite basis
    return np.clip(start + (end - start) * g, start, end)


def _interpolator(method: str, kt: np.ndarray, kv: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    if method == "linear":
        return lambda x: np.interp(x, kt, kv)
    if method == "pchip":
        return PchipInterpolator(kt, kv)
    if method == "cubic":
        # Zero slope at the first and last key, so the spline meets the holds without a kink.
        return CubicSpline(kt, kv, bc_type="clamped")
    if method == "akima":
        return Akima1DInterpolator(kt, kv)
    raise AnimatorError(f"unknown interpolation {method!r}")
