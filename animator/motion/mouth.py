"""The inside of a mouth the warp opened wider than the source's.

A warp can only stretch what the source shows: where the jaw drops further than in the source,
the opening would be filled with stretched lip skin, or a smile's teeth stretched into streaks.
So an opening mouth tears between its lips (:func:`mouth_tear`): what the source shows inside
them goes with its own lip, and the torn part is painted as a mouth (:func:`fill_mouth`), in
the mouth's own frame (:class:`MouthFrame`, so it turns with the head):

- a dark cavity in the lips' hue, deeper towards its middle;
- the upper teeth once the lips part: a row rooted along the upper lip's middle part, longest
  in the middle (the biting edge is an arc, not a copy of the lip's contour, which drops
  steeply at the corners), off-white lit like the lips, with faint gaps between the teeth, in
  the upper lip's shadow at the top and fading into the dark of the cheeks towards the
  corners (the buccal corridor);
- once the jaw drops wide, a shorter row of lower teeth in shadow along the lower lip's bowl,
  and the tongue resting behind them.

The paint is as soft as the picture (:mod:`animator.motion.softness`). Compared, by looking,
with the real open mouths of the expression clips (d9, d3): a band of teeth that copied the
lip's contour drew a grey mouthguard with steep sides, and a bare black cavity read as a hole
rather than a mouth.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from animator.estimate.geometry import MESH
from animator.motion.rig import LOWER_INNER_LIP, MOUTH_CORNERS, UPPER_INNER_LIP, teeth_shown
from animator.motion.softness import Blur, soften

# The inner-lip contour (MediaPipe mesh), right corner -> upper lip -> left corner -> lower lip.
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_INNER = INNER_LIPS[:11]
LIP_POINTS = (0, 17, 37, 267, 84, 314)   # on the red of the lips (their colour)

BARED_FROM = 2.0             # frame px a pair of lips must stand open for what it shows to stay as a lip leaves it
BARED_GROWTH = 1.0           # ... up to this much of its own height bared (stretched) at most,
BARED_ROWS = (2.3, 3.0)      # ... in a mouth open up to this many rows of teeth (fading out):
                             # wider, it shows the mouth's inside more than teeth, and tears
TEARS_FROM = 1.0             # frame px a facing pair of inner-lip points must part beyond the source's
                             # to tear; the paint fades in over as much again
MOSTLY_TORN = 0.5            # a kept inside is painted over fully once this share of the opening tore
KEPT_PIXELS = 4              # the source's inside kept beside the torn part: judged from this many px,
KEPT_SHARE = 0.75            # ... by its bright part (teeth show among dark gaps and corners) ...
TEETH_SHOWN = (0.9, 1.1)     # ... kept, for its teeth, from this brightness against the lips' (from, fully)
CAVITY_SHADE = 0.3           # cavity colour as a fraction of the lips' colour (half in its middle)
TEETH_HEIGHT = 0.1           # the upper teeth's visible height, fraction of the mouth width ...
TEETH_SHARE = 0.6            # ... and at most this fraction of the opening
TEETH_OPACITY = 0.85
TEETH_SPAN = (0.45, 0.85)    # |u| where the upper row fades into the cheeks' dark (from, to)
ROOT_SPAN = 0.7              # |u| of the upper lip's middle part, where the upper row is rooted
EDGE_CURVE = 0.35            # the side teeth show this much shorter than the middle ones
# Gaps between the teeth, at |u| (incisors, lateral incisors, canines, first premolars seen
# from the front), their width (same unit) and how much darker they are.
UPPER_GAPS = (0.0, 0.34, 0.6, 0.84)
LOWER_GAPS = (0.0, 0.2, 0.4, 0.62)
GAP_WIDTH = 0.025
GAP_SHADE = 0.12
LIP_SHADOW = 0.35            # the upper lip's shadow on the top third of the upper teeth
LOWER_FROM = 0.2             # opening (fraction of mouth width) where lower teeth and tongue start ...
LOWER_FULL = 0.4             # ... and are fully visible
LOWER_TEETH = (0.5, 0.65, (0.15, 0.4))  # lower row: height (share of the upper's), brightness, span
# ``u`` sampled for the profiles along the mouth (contours, rows of teeth), looked up per pixel
U_GRID = np.linspace(-1.5, 1.5, 601)
TONGUE = (0.7, 0.45, 0.6)    # tongue: half-width (|u|), height (share of the opening), colour
                             # (share of the lips')


def polygon_area(points: np.ndarray) -> float:
    """The area a closed polygon (N, 2) encloses (shoelace)."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


@dataclass(frozen=True)
class MouthTear:
    """How a mouth moved from one set of landmarks to another tears (:func:`mouth_tear`): the
    field's nodes inside it (``sources``, ``targets``: each (K, 2) frame px), the part of the
    opening they tear open (``torn``: a polygon (M, 2), target frame px) and how far the lips
    part beyond the source's (``parting``: frame px, the widest of the facing pairs). Worked out
    once per face, for the field and for :func:`fill_mouth`."""

    sources: np.ndarray
    targets: np.ndarray
    torn: np.ndarray
    parting: float


def mouth_tear(source: np.ndarray, target: np.ndarray) -> MouthTear:
    """The :class:`MouthTear` of a mouth moved from landmarks ``source`` to ``target`` (frame px).

    Between each facing pair of inner-lip points sits a node: at their midpoint, or, in a wide
    open mouth, a row of upper teeth (:data:`TEETH_HEIGHT`) below the upper lip. Where the pair
    parts further than in the source (by :data:`TEARS_FROM`), the mouth tears there instead of
    stretching: the node splits in two, one moving with the upper lip and one with the lower,
    so what the source shows inside its lips keeps its shape, carried by its own lip (the upper
    teeth by the upper lip; the tongue and lower teeth by the jaw); between the two lies the
    torn part, which :func:`fill_mouth` paints. (Stretched, a smile's teeth drew long grey
    streaks down an opened mouth; split at the middle, a wide open mouth's tongue tore in two.)
    The teeth sit in the skull and the jaw, though: where the source's lips stand open on them
    (from :data:`BARED_FROM`, fully a row of teeth wider, in a mouth open at most about
    :data:`BARED_ROWS` rows of teeth), an upper lip that rises leaves the upper node where it
    was, and a lower lip that drops further than the jaw (the menton) leaves the lower node with
    the jaw; each bares more of what it showed, up to :data:`BARED_GROWTH` of the strip it
    showed. Carried with the lips, the teeth's halves tore apart (AU10 or AU25 over a toothy
    smile drew a dark band across the teeth). A wider open mouth shows its inside more than its
    teeth, and still tears, its upper teeth painted under the raised lip."""
    source, target = np.asarray(source, np.float64)[:, :2], np.asarray(target, np.float64)[:, :2]
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    # the upper lip carries at most a row of upper teeth; below them (the tongue, the lower
    # teeth) the inside sits on the jaw
    teeth = TEETH_HEIGHT * float(np.linalg.norm(np.subtract(*source[list(MOUTH_CORNERS)])))
    gap = np.linalg.norm(source[low] - source[up], axis=1)
    share = np.minimum(0.5, teeth / np.maximum(gap, 1e-9))[:, None]
    middle = source[up] + share * (source[low] - source[up])
    _, across = mouth_axes(*target[list(MOUTH_CORNERS)])
    # how far each lip leaves what it shows (the upper rising, the lower dropping past the
    # jaw), as far as it may bare it, and where the lips stand open on teeth at all
    rows = float(gap.max()) / teeth
    on_teeth = (np.clip((gap - BARED_FROM) / teeth, 0, 1)
                * np.clip((BARED_ROWS[1] - rows) / (BARED_ROWS[1] - BARED_ROWS[0]), 0, 1))
    lift, drop = target[up] - source[up], target[low] - source[low]
    jaw = (target[MESH.chin[0]] - source[MESH.chin[0]]) @ across
    rise = np.minimum(-(lift @ across), BARED_GROWTH * share[:, 0] * gap).clip(0, None)
    sinks = np.minimum(drop @ across - jaw, BARED_GROWTH * (1 - share[:, 0]) * gap).clip(0, None)
    with_upper = middle + lift + (on_teeth * rise)[:, None] * across
    with_lower = middle + drop - (on_teeth * sinks)[:, None] * across
    parting = (with_lower - with_upper) @ across
    tears = parting > TEARS_FROM
    midway = (with_upper + with_lower) / 2
    top, bottom = np.where(tears[:, None], with_upper, midway), np.where(tears[:, None], with_lower, midway)
    sources, targets = np.vstack([middle, middle[tears]]), np.vstack([top, with_lower[tears]])
    torn = np.vstack([target[INNER_LIPS[0]], top, target[INNER_LIPS[len(UPPER_INNER) - 1]], bottom[::-1]])
    return MouthTear(sources, targets, torn, float(parting.max()))


def mouth_axes(right: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along the line from the ``right`` mouth corner to the ``left`` one, and
    across it towards the chin (frame px, y down)."""
    along = (left - right) / max(float(np.linalg.norm(left - right)), 1e-9)
    return along, np.array([-along[1], along[0]])


def fill_mouth(frame: np.ndarray, target: np.ndarray, tear: MouthTear, blur: Blur) -> np.ndarray:
    """``frame`` (the warp's own new frame, its landmarks moved to ``target``, frame px) with the
    mouth the warp tore open (``tear``, :func:`mouth_tear`) painted, in place, as the inside
    of a mouth, blurred by ``blur()`` px (:func:`animator.motion.eyes.picture_blur`); returned.

    The torn part is always painted. What the tear kept of the source's inside beside it stays
    when it shows teeth (brighter than the lips); a dark inside (lips parted on the dark of the
    mouth) is painted over with the rest, teeth included, since teeth sit behind the lips
    whatever the source showed, as far as the tear is most of the opening. Both blend in
    gradually, so a talking mouth does not flicker, and the paint fades in as the lips part
    from :data:`TEARS_FROM` to twice that beyond the source's: a tear starts a pixel wide, and
    painted at once, an opening jaw drew a dark band across a smile's teeth from one frame to
    the next."""
    target = np.asarray(target, np.float64)
    torn, parting = tear.torn, tear.parting
    lips_tgt = target[list(INNER_LIPS), :2]
    width = float(np.linalg.norm(np.subtract(*target[list(MOUTH_CORNERS), :2])))
    torn_area, opening_area = polygon_area(torn), polygon_area(lips_tgt)
    if width < 4 or torn_area < 1.0:
        return frame
    h, w = frame.shape[:2]
    sigma = blur()
    pad = math.ceil(3 * sigma)  # the paint stays inside the lips, but for its blur
    x0, y0 = np.clip(np.floor(lips_tgt.min(0)).astype(int) - 1 - pad, 0, [w, h])
    x1, y1 = np.clip(np.ceil(lips_tgt.max(0)).astype(int) + 2 + pad, 0, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame
    box = (y1 - y0, x1 - x0)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    lips = frame[np.clip(np.rint(target[list(LIP_POINTS), 1]).astype(int), 0, h - 1),
                 np.clip(np.rint(target[list(LIP_POINTS), 0]).astype(int), 0, w - 1)].astype(np.float32).mean(0)
    opening_alpha, torn_alpha = _feathered(lips_tgt - (x0, y0), box, width), _feathered(torn - (x0, y0), box, width)
    # how far the kept inside is painted over (and teeth painted in it): as far as the opening tore ...
    over_kept = float(np.clip(torn_area / max(opening_area, 1.0) / MOSTLY_TORN, 0, 1))
    kept = (opening_alpha > 0.5) & (torn_alpha < 0.5)
    if over_kept > 0 and kept.sum() >= KEPT_PIXELS:  # ... unless it shows teeth, brighter than the lips
        luma = cv2.cvtColor(np.vstack([region[kept], lips[None]])[None], cv2.COLOR_RGB2GRAY)[0]
        rank = int(KEPT_SHARE * (len(luma) - 2))
        brightness = float(np.partition(luma[:-1], rank)[rank]) / max(float(luma[-1]), 1.0)
        over_kept *= 1 - float(np.clip((brightness - TEETH_SHOWN[0]) / (TEETH_SHOWN[1] - TEETH_SHOWN[0]), 0, 1))
    alpha = (torn_alpha + (opening_alpha - torn_alpha) * over_kept) * float(np.clip(parting / TEARS_FROM - 1, 0, 1))
    mouth = MouthFrame.of(lips_tgt - (x0, y0), target[list(MOUTH_CORNERS), :2] - (x0, y0), box)
    # the opening as a mean height (area / mouth width): a smile widens the lips' sliver, not this
    paint = _inside(mouth, _depth(lips_tgt - (x0, y0), box), lips, width, opening_area / width, teeth=over_kept)
    paint, alpha = soften(paint, alpha, sigma)
    blended = region + (paint - region) * alpha[..., None]
    frame[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return frame


@dataclass
class MouthFrame:
    """Every pixel of a box in the mouth's frame: ``u`` along the line through the mouth's
    corners from its middle, in units of half the inner lips' extent along it (``at``: its
    index in :data:`U_GRID`, for profiles along the mouth); ``v`` across it, in pixels towards
    the chin; ``upper`` and ``lower`` the inner lips' ``v`` at the pixel's ``u``; ``top`` that
    of a straight line through the upper lip's middle part, where the upper teeth are rooted
    (the lower ones and the tongue follow the lower lip's bowl); ``gap`` the opening in the
    middle, in pixels."""

    u: np.ndarray
    at: np.ndarray
    v: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    top: np.ndarray
    gap: float

    @classmethod
    def of(cls, lips: np.ndarray, corners: np.ndarray, shape: tuple[int, int]) -> MouthFrame:
        """``lips``: the inner-lip contour (:data:`INNER_LIPS` order), ``corners`` the outer
        mouth corners (:data:`MOUTH_CORNERS`), in box pixels. The axis runs through the outer
        corners, which a jaw drop barely moves (the inner corners follow the lower lip)."""
        right, left = corners
        middle = (left + right) / 2
        along, across = mouth_axes(right, left)
        half = max(float(np.ptp(lips @ along)) / 2, 1.0)
        xs = (np.arange(shape[1], dtype=np.float32) - np.float32(middle[0]))[None, :]
        ys = (np.arange(shape[0], dtype=np.float32) - np.float32(middle[1]))[:, None]
        u = xs * np.float32(along[0] / half) + ys * np.float32(along[1] / half)
        v = xs * np.float32(across[0]) + ys * np.float32(across[1])
        step = U_GRID[1] - U_GRID[0]
        at = np.clip(np.rint((u - U_GRID[0]) / step), 0, len(U_GRID) - 1).astype(np.intp)
        lip_u, lip_v = (lips - middle) @ along / half, (lips - middle) @ across
        upper, lower = list(range(len(UPPER_INNER))), list(range(len(UPPER_INNER) - 1, len(lips))) + [0]

        def contour(points: list[int]) -> np.ndarray:
            order = np.argsort(lip_u[points])
            return np.interp(U_GRID, lip_u[points][order], lip_v[points][order]).astype(np.float32)

        # the upper lip's middle part as a straight line (a mouth opened unevenly tilts it)
        middle_part = [i for i in upper if abs(lip_u[i]) < ROOT_SPAN] or upper
        pu, pv = lip_u[middle_part], lip_v[middle_part]
        slope = float(((pu - pu.mean()) * (pv - pv.mean())).sum() / max(((pu - pu.mean()) ** 2).sum(), 1e-9))
        offset = float(pv.mean() - slope * pu.mean())
        below = contour(lower)
        gap = float(below[len(U_GRID) // 2]) - offset
        return cls(u, at, v, contour(upper)[at], below[at], offset + np.float32(slope) * u, max(gap, 1.0))


def _inside(mouth: MouthFrame, depth: np.ndarray, lips: np.ndarray, width: float, opening: float,
            teeth: float) -> np.ndarray:
    """(h, w, 3) the inside of the mouth: cavity, tongue, lower and upper teeth (``teeth``: how
    much of their length to paint)."""
    paint = lips * CAVITY_SHADE * (1.0 - 0.5 * depth[..., None])
    soft = max(1.0, 0.02 * width)
    lower = float(np.clip((opening / width - LOWER_FROM) / (LOWER_FULL - LOWER_FROM), 0, 1))
    if lower > 0:  # the tongue: an oval resting on the floor of the mouth, behind the lower teeth
        height = TONGUE[1] * mouth.gap
        oval = 1 - (mouth.u / TONGUE[0]) ** 2 - ((mouth.v - (mouth.lower - height)) / height) ** 2
        tongue = lower * np.clip(2 * oval, 0, 1) * (mouth.v < mouth.lower)
        tongue = cv2.GaussianBlur(tongue.astype(np.float32), (0, 0), 2 * soft)[..., None]  # no edge
        paint = paint + (lips * TONGUE[2] * (1.0 - 0.3 * depth[..., None]) - paint) * tongue
    upper_h = teeth * min(TEETH_HEIGHT * width, TEETH_SHARE * opening)
    show = teeth_shown(opening / width)
    if show <= 0 or upper_h < 0.5:
        return paint
    level = min(210.0, 1.2 * float(lips.max()))  # as bright as the lips' brightest channel, capped
    white = level * np.array([1.0, 0.95, 0.85], np.float32)
    if lower > 0:  # standing on the lower lip, measured upwards from it
        above_lip = mouth.lower - mouth.v
        alpha, shade = _teeth(above_lip, above_lip, LOWER_TEETH[0] * upper_h, mouth.at,
                              _row_profile(LOWER_GAPS, LOWER_TEETH[2]), soft, lip_shadow=0.0)
        paint = paint + (white * (LOWER_TEETH[1] * shade) - paint) * (lower * TEETH_OPACITY * alpha)
    alpha, shade = _teeth(mouth.v - mouth.upper, mouth.v - mouth.top, upper_h, mouth.at,
                          _row_profile(UPPER_GAPS, TEETH_SPAN), soft, lip_shadow=LIP_SHADOW)
    return paint + (white * shade - paint) * (show * TEETH_OPACITY * alpha)


def _teeth(past_lip: np.ndarray, from_root: np.ndarray, height: float, at: np.ndarray,
           profile: tuple[np.ndarray, np.ndarray], soft: float, lip_shadow: float) -> tuple[np.ndarray, np.ndarray]:
    """A row of teeth ``height`` pixels long in the middle, rooted where the lip's middle is:
    (h, w, 1) coverage and shade. ``past_lip``: how far a pixel lies past the lip (into the
    mouth) at its own ``u``; ``from_root``: how far past the lip's middle; ``at``: the pixels'
    ``u`` in :data:`U_GRID`; ``profile``: :func:`_row_profile`. The biting edge is an arc (the
    side teeth shorter); the lip hides more of the row towards the corners, where it fades
    into the cheeks' dark; gaps between the teeth are darker, and so is the top of the row
    under the lip's shadow. The edges ramp over ``soft`` pixels."""
    reach, shade = profile
    inside = np.minimum(np.minimum(past_lip, reach[at] * height - from_root) / soft + 0.5, 1.0)
    shadow = 1 - lip_shadow * np.clip(1 - past_lip / max(height / 3, 1.0), 0, 1)
    return np.maximum(inside, 0.0)[..., None], (shade[at] * shadow)[..., None]


@functools.cache
def _row_profile(gaps: tuple[float, ...], span: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A row of teeth along :data:`U_GRID`: how far it reaches (a share of its middle's; zero
    where it has faded into the cheeks) and its shade, darker in the gaps between the teeth
    and towards the corners."""
    u = U_GRID
    sides = 1 - np.clip((np.abs(u) - span[0]) / (span[1] - span[0]), 0, 1)
    reach = (1 - EDGE_CURVE * np.clip(u, -1, 1) ** 2) * sides
    centres = np.array([side * g for g in gaps for side in ((1.0,) if g == 0 else (1.0, -1.0))])
    between = np.exp(-(((u[:, None] - centres[None]) / GAP_WIDTH) ** 2)).max(1)
    shade = (1 - GAP_SHADE * between) * (1 - 0.45 * np.clip(np.abs(u), 0, 1) ** 2)
    return reach.astype(np.float32), shade.astype(np.float32)


def _feathered(polygon: np.ndarray, shape: tuple[int, int], width: float) -> np.ndarray:
    """(h, w) the polygon's inside, feathered inwards over 2 % of the mouth's width."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.6, 0.02 * width))
    return alpha * (mask > 0)


def _depth(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) how deep in the opening each pixel is: 0 at the lips, 1 in the middle."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon * 4).astype(np.int32)], 1, shift=2)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    return np.clip(inside / max(float(inside.max()), 1.0), 0, 1)
