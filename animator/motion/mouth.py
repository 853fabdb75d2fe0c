"""The inside of a mouth the warp opened wider than the source's.

A warp can only stretch what the source shows: where the jaw drops further than in the source,
the opened inner-lip region would be filled with stretched lip skin. This paints it as a mouth
instead — a dark cavity, shaded deeper towards its middle, with the upper teeth showing under
the upper lip once the lips part wide — in proportion to how much of the opening is new (a
mouth already open in the source keeps its own inside). The generator then refines it.
"""

from __future__ import annotations

import cv2
import numpy as np

# The inner-lip contour (MediaPipe mesh), right corner -> upper lip -> left corner -> lower lip.
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_INNER = INNER_LIPS[:11]
MOUTH_CORNERS = (61, 291)
LIP_POINTS = (0, 17, 37, 267, 84, 314)   # on the red of the lips (their colour)

OPENS_FULLY = 0.08           # an opening grown by this fraction of the mouth width is all new
CAVITY_SHADE = 0.22          # cavity colour as a fraction of the lips' colour
TEETH_FROM = 0.02            # lips' opening (fraction of mouth width) where teeth start to show
TEETH_FULL = 0.08            # ... and are fully visible
TEETH_HEIGHT = 0.1           # the upper teeth's visible height, fraction of the mouth width ...
TEETH_SHARE = 0.6            # ... and at most this fraction of the opening
TEETH_OPACITY = 0.85


def polygon_area(points: np.ndarray) -> float:
    """The area a closed polygon (N, 2) encloses (shoelace)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


def fill_mouth(frame: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``frame`` (already warped from landmarks ``source`` to ``target``, frame px) with the newly
    opened part of the mouth painted as a mouth; a copy, or ``frame`` itself if nothing opened."""
    lips_src = np.asarray(source, np.float64)[list(INNER_LIPS), :2]
    lips_tgt = np.asarray(target, np.float64)[list(INNER_LIPS), :2]
    width = float(np.linalg.norm(np.subtract(*np.asarray(target)[list(MOUTH_CORNERS), :2])))
    if width < 4:
        return frame
    # openings as mean heights (area / mouth width): a smile widens the lips' sliver, not this.
    # Painted: how far the opening grew (against the mouth's width), times the share of the
    # opening that is new (the warp stretches a source's own open mouth over the rest).
    opening, before = polygon_area(lips_tgt) / width, polygon_area(lips_src) / width
    new = np.clip((opening - before) / (OPENS_FULLY * width), 0, 1) * np.clip(1 - before / max(opening, 1e-6), 0, 1)
    if new <= 0.02:
        return frame
    h, w = frame.shape[:2]
    pad = int(np.ceil(0.1 * width)) + 2
    x0, y0 = np.clip(np.floor(lips_tgt.min(0)).astype(int) - pad, 0, [w, h])
    x1, y1 = np.clip(np.ceil(lips_tgt.max(0)).astype(int) + pad, 0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame
    local = (lips_tgt - (x0, y0)).astype(np.float32)
    alpha, depth = _cavity(local, (y1 - y0, x1 - x0), width)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    lips = frame[np.clip(np.rint(target[list(LIP_POINTS), 1]).astype(int), 0, h - 1),
                 np.clip(np.rint(target[list(LIP_POINTS), 0]).astype(int), 0, w - 1)]
    cavity = lips.astype(np.float32).mean(0) * CAVITY_SHADE * (1.0 - 0.5 * depth[..., None])
    paint = cavity
    show_teeth = np.clip((opening / width - TEETH_FROM) / (TEETH_FULL - TEETH_FROM), 0, 1)
    if show_teeth > 0:
        height = min(TEETH_HEIGHT * width, TEETH_SHARE * opening)
        teeth_alpha, teeth_colour = _upper_teeth(local, region.shape[:2], width, height, lips)
        t = (show_teeth * teeth_alpha)[..., None]
        paint = cavity * (1 - t) + teeth_colour * t
    a = (new * alpha)[..., None]
    out = frame.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(region * (1 - a) + paint * a), 0, 255).astype(np.uint8)
    return out


def _cavity(polygon: np.ndarray, shape: tuple[int, int], width: float) -> tuple[np.ndarray, np.ndarray]:
    """Feathered inside-the-lips mask and depth (0 at the lips, 1 in the middle)."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    inside = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 3)
    depth = np.clip(inside / max(float(inside.max()), 1.0), 0, 1)
    feather = max(0.6, 0.02 * width)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), feather)
    return alpha * (mask > 0), depth


def _upper_teeth(polygon: np.ndarray, shape: tuple[int, int], width: float, height: float,
                 lips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A soft band of upper teeth hanging from the upper inner lip, lit like the lips."""
    upper = polygon[: len(UPPER_INNER)]
    lower_edge = upper + (0, height)
    band = np.vstack([upper, lower_edge[::-1]])
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(band * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.6, 0.02 * width))
    # off-white in the mouth's shade: as bright as the lips' brightest channel, a little warm,
    # darker towards the corners where the cheeks shade them
    level = min(215.0, 1.3 * float(lips.astype(np.float32).max(1).mean()))
    x = np.arange(shape[1], dtype=np.float32)
    centre, half = (upper[0, 0] + upper[-1, 0]) / 2, max(abs(upper[-1, 0] - upper[0, 0]) / 2, 1.0)
    shade = 1.0 - 0.45 * np.clip(np.abs(x - centre) / half, 0, 1) ** 2
    teeth = level * np.array([1.0, 0.93, 0.8], np.float32)[None, None] * shade[None, :, None]
    return TEETH_OPACITY * alpha, np.broadcast_to(teeth, shape + (3,)).astype(np.float32)
