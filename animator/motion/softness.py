"""How soft the picture is, so that what the motion stage paints is no sharper than it.

The eyes' and the mouth's paint (:mod:`animator.motion.eyes`, :mod:`animator.motion.mouth`) is
drawn with one-pixel edges. On a soft picture — a small or upscaled photo, a video out of focus
or heavily compressed — a crisp eyeball or row of teeth looks stuck on. :func:`edge_blur`
measures the picture's blur where it is most reliable (around an eye: the iris's rim and the
lid margins are the face's sharpest, highest-contrast edges), :func:`extra_blur` turns it into
what the paint lacks, and :func:`soften` blurs a paint layer by that much.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

# the blur a sharp (one-pixel) edge measures as in edge_blur: what the paint's own
# anti-aliased edges already have
SHARP_EDGE = 0.85
EDGE_REACH = 0.15             # edge_blur looks this far (of the feature's width) around it
# px of blur the paint lacks (extra_blur): up to SOFTEN_FROM the paint stays sharp (video at
# its own resolution: a frame's estimate wavers there, and the paint must not flicker with
# it); by SOFTEN_FULL it is blurred to match; a blur under SOFTEN_MIN is not worth the cost
SOFTEN_FROM, SOFTEN_FULL, SOFTEN_MIN = 0.75, 1.25, 0.3

# The blur (sigma, px) a face's paint lacks, measured when a painter first asks for it: most
# moves paint nothing, and measuring costs ~0.1 ms a face.
Blur = Callable[[], float]


def edge_blur(frame: np.ndarray, contour: np.ndarray, width: float) -> float:
    """How blurred ``frame`` (RGB) is around a feature (``contour`` (K, 2), frame px;
    ``width``: the feature's), as the sigma (px) of a Gaussian: an edge of contrast c blurred
    by sigma rises at most c / (sigma sqrt(2 pi)) per pixel. c is the 5-95 % brightness range
    inside the contour and just around it, the rise there its 98th-percentile gradient (for
    an eye: the iris's rim, the lid margins). A sharp edge measures :data:`SHARP_EDGE`."""
    h, w = frame.shape[:2]
    reach = EDGE_REACH * width
    (lo_x, lo_y), (hi_x, hi_y) = contour.min(0), contour.max(0)
    x0, y0 = max(0, math.floor(lo_x - reach)), max(0, math.floor(lo_y - reach))
    x1, y1 = min(w, math.ceil(hi_x + reach)), min(h, math.ceil(hi_y + reach))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return SHARP_EDGE
    brightness = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    rise = cv2.magnitude(cv2.Sobel(brightness, cv2.CV_32F, 1, 0, ksize=1, scale=0.5),
                         cv2.Sobel(brightness, cv2.CV_32F, 0, 1, ksize=1, scale=0.5))
    near = np.zeros(brightness.shape, np.uint8)
    cv2.fillPoly(near, [np.rint(contour - (x0, y0)).astype(np.int32)], 1)
    near = cv2.dilate(near, np.ones((3, 3), np.uint8)).astype(bool)
    if near.sum() < 9:
        return SHARP_EDGE
    dark, bright = ranked(brightness[near], (0.05, 0.95))
    (rise,) = ranked(rise[near], (0.98,))
    return float(max(SHARP_EDGE, (bright - dark) / (math.sqrt(2 * math.pi) * max(rise, 1e-6))))


def ranked(values: np.ndarray, shares: tuple[float, ...]) -> np.ndarray:
    """The values at these ``shares`` (0-1) of their sorted order (np.percentile's lower
    neighbours, without its overhead on a few hundred values)."""
    ranks = [int(share * (len(values) - 1)) for share in shares]
    return np.partition(values, ranks)[ranks]


def extra_blur(sigma: float) -> float:
    """The blur (sigma, px) that makes the paint's sharp edges as soft as the source's
    (``sigma``, :func:`edge_blur`; blurs add in quadrature), phased in between
    :data:`SOFTEN_FROM` and :data:`SOFTEN_FULL`; zero below :data:`SOFTEN_MIN`."""
    extra = math.sqrt(max(sigma * sigma - SHARP_EDGE * SHARP_EDGE, 0.0))
    extra *= min(max((extra - SOFTEN_FROM) / (SOFTEN_FULL - SOFTEN_FROM), 0.0), 1.0)
    return extra if extra >= SOFTEN_MIN else 0.0


def soften(colour: np.ndarray, alpha: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The paint (``colour`` (h, w, 3), ``alpha`` (h, w)) blurred by ``sigma`` px as one
    layer (premultiplied), so its edges fade into what is around it as the picture's own do."""
    if sigma <= 0:
        return colour, alpha
    alpha = np.asarray(alpha, np.float32)
    carried = cv2.GaussianBlur(np.ascontiguousarray(colour * alpha[..., None], np.float32), (0, 0), sigma)
    soft = cv2.GaussianBlur(alpha, (0, 0), sigma)
    return carried / np.maximum(soft, 1e-6)[..., None], soft
