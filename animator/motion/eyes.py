"""The eyes under moving lids: the eyeball stays, the lids slide over it.

Lids move over an eyeball that does not move with them. A warp that stretched the eye's
opening from its edges would squash the iris into a band when a lid comes down and pull it
into a tall oval when a lid goes up — neither is how an eye looks, and the landmark model
reads a stretched iris as an eye of the same openness. So inside each eye's new opening the
field shows the eyeball where it was (:func:`hold_eyeballs`); what a raised lid uncovers —
the top of the iris and the white around it, which the source hid under the lid — is painted
from the eye's own iris and sclera colours and shaded under the lashes, the whole white lit
as the lid's shadow leaves it, and a slit the lids narrow darkens into the lash line, as the lashes hide it
(:func:`paint_eyes`). The paint is as soft as the picture
(:mod:`animator.motion.softness`), measured here at the eyes (:func:`picture_blur`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from animator.motion.mouth import polygon_area
from animator.motion.rig import EYE_CORNERS, IRISES, LOWER_LIDS, UPPER_LID_SKIN, UPPER_LIDS
from animator.motion.softness import Blur, edge_blur, extra_blur, soften
from animator.motion.warp import MotionField

# eye_contour's layout: outer corner, upper lid, inner corner, lower lid back
_LID = len(UPPER_LIDS[0])
CONTOUR_UPPER, CONTOUR_INNER, CONTOUR_LOWER = slice(1, _LID + 1), _LID + 1, slice(_LID + 2, 2 * _LID + 2)

# A closing upper lid brings its margin and lashes, this fraction of the eye's width thick, down
# as one band (animator.motion.move.opening_nodes); the skin above it stretches over the eye.
LASH_BAND = 0.06
LID_SMOOTHING = 0.05          # blur (of the eye's width) of a closed lid's stretched skin, ...
SMOOTH_FROM, SMOOTH_FULL = 0.3, 0.8  # ... from a lid this far down (of the opening) to fully,
STRETCH_FROM, STRETCH_FULL = 1.1, 1.5  # ... or from its skin stretched this many times as tall
LID_TONE_GAIN = 1.4           # a closed lid is lit up to this much towards the skin above its crease
LID_TONE_FEATHER = 0.08       # ... fading out over this fraction of the eye's width
SUPERSAMPLE = 4               # an opening's coverage of a pixel: from 4 x 4 samples
SUBPIXEL = 4                  # fractional bits of the polygons' vertices (cv2.fillPoly's shift)
# a slit this high (of the eye's width) starts to darken into the lash line / is shut: the
# lashes, pointing down as the lid closes, and their shadow hide a slit that narrow
SHUT_FROM, SHUT_FULL = 0.12, 0.03
UNCOVERED_PX = 0.75           # frame px^2 an opening must grow or shrink by to be painted
EYE_STILL = 1e-3              # frame px: an eye contour moved less than this has not moved
OPENS_FROM, OPEN_FADE = 0.1, 1.0  # frame px a lid must move out for the eyeball to be painted; its
                             # paint fades in over this much more (its band past the old margin
                             # would otherwise appear at once)
OLD_MARGIN = 0.04             # paint this fraction of the eye's width past the old lid margin (its shadow)
LID_SHADOW = 0.15             # how much darker the eyeball is right under a lid ...
SHADOW_REACH = 0.04           # ... fading over this fraction of the eye's width
UPPER_SHADOW = 0.5            # how much darker, besides, right under the upper lid's lashes, ...
UPPER_SHADOW_REACH = 0.05     # ... fading over this (pipelines.eye_paint: fitted on real wide eyes)
CORNER_SHADE = 0.15           # how much darker the white is at the eye's corners than by the iris
WHITE_LIGHT = 0.5             # a raised lid lights the eye's white by 1 + this x the share of the
                             # opening it uncovered (pipelines.eye_paint: fitted on real wide eyes)
LIMBUS = 0.2                  # how much darker the iris's rim is than its body
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # brightness of an RGB colour (Rec. 601)
IRIS_FOR_EYE = 0.42           # iris radius / eye width, when the mesh has no iris points


def eye_contour(points: np.ndarray, eye: int) -> np.ndarray:
    """(16, 2) the eye's opening: outer corner, upper lid, inner corner, lower lid back."""
    outer, inner = EYE_CORNERS[eye]
    order = [outer, *UPPER_LIDS[eye], inner, *LOWER_LIDS[eye][::-1]]
    return np.asarray(points, np.float64)[order, :2]


def eye_width(points: np.ndarray, eye: int) -> float:
    outer, inner = EYE_CORNERS[eye]
    return float(np.linalg.norm(np.asarray(points)[outer, :2] - np.asarray(points)[inner, :2]))


def polygon_coverage(polygon: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 in [0, 1]: the share of each pixel of the box at ``origin`` (x, y) that
    the polygon (frame px) covers, from a SUPERSAMPLE times finer rasterisation."""
    fine = np.zeros((shape[0] * SUPERSAMPLE, shape[1] * SUPERSAMPLE), np.uint8)
    # pixel (i, j) covers [j - 0.5, j + 0.5): fine pixel k of it has its centre at j - 0.5 + (k + 0.5) / S
    vertices = np.rint(((polygon - origin + 0.5) * SUPERSAMPLE - 0.5) * (1 << SUBPIXEL)).astype(np.int32)
    cv2.fillPoly(fine, [vertices], 1, cv2.LINE_8, shift=SUBPIXEL)
    return cv2.resize(fine.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def hold_eyeballs(field: MotionField, source: np.ndarray, target: np.ndarray) -> MotionField:
    """``field`` with each eye's new opening showing the eyeball where it was: the eyeball sits
    in the skull, and the rig moves only the soft tissue around it (an eye whose contour does
    not move is left as the field has it; one that moves at all is held, or the eyeball would
    jump from following the lids to staying as they cross a threshold). ``source`` and
    ``target`` are the face's landmarks (>= 468, frame px) before and after the move."""
    offsets = field.offsets.copy()
    x0, y0, x1, y1 = field.box
    for eye in range(2):
        contour = [*EYE_CORNERS[eye], *UPPER_LIDS[eye], *LOWER_LIDS[eye]]
        if np.abs(target[contour, :2] - source[contour, :2]).max() < EYE_STILL:
            continue
        opening = eye_contour(target, eye)
        ex0, ey0 = np.clip(np.floor(opening.min(0)).astype(int) - 1, (x0, y0), (x1, y1))
        ex1, ey1 = np.clip(np.ceil(opening.max(0)).astype(int) + 2, (x0, y0), (x1, y1))
        if ex1 <= ex0 or ey1 <= ey0:
            continue
        coverage = polygon_coverage(opening, (ex0, ey0), (ey1 - ey0, ex1 - ex0))[..., None]
        inside = offsets[ey0 - y0:ey1 - y0, ex0 - x0:ex1 - x0]
        inside *= 1 - coverage
    return MotionField(field.box, offsets)


def picture_blur(frame: np.ndarray, mesh: np.ndarray) -> float:
    """The blur (sigma, px) a paint on this face lacks (:func:`animator.motion.softness.extra_blur`),
    measured around its wider eye (mesh: >= 468 landmarks, frame px): the iris's rim and the
    lid margins are the face's sharpest, highest-contrast edges, where the lips' measure wavers."""
    eye = max(range(2), key=lambda e: eye_width(mesh, e))
    return extra_blur(edge_blur(frame, eye_contour(mesh, eye), eye_width(mesh, eye)))


def paint_eyes(frame: np.ndarray, warped: np.ndarray, source: np.ndarray, target: np.ndarray,
               blur: Blur) -> np.ndarray:
    """``warped`` (``frame`` moved from landmarks ``source`` to ``target``, frame px; ``source``
    with its 10 iris points when it has 478) with what the lids' move shows painted in: the
    eyeball a raised lid uncovered (:func:`eyeball`) with the eye's white lit by ``WHITE_LIGHT``
    times the share of the opening it uncovered (a wide eye's white, out of the lids' shadow,
    is brighter than the same eye's at rest), the lash line over a slit the lids narrow
    (a shut eye's would otherwise show flecks of the eye squeezed between the margins), and a
    closing lid's skin smoothed (:func:`smooth_lid`); eyeball and lash line blurred by
    ``blur()`` px (:func:`picture_blur`).
    ``warped`` (the warp's own new frame) is painted in place and returned."""
    h, w = frame.shape[:2]
    for eye in range(2):
        before = eye_contour(source, eye)
        after = eye_contour(target, eye)
        width = eye_width(target, eye)
        area_now, area_then = polygon_area(after), polygon_area(before)
        shut = (area_now < area_then - UNCOVERED_PX) * np.clip(
            (SHUT_FROM * width - area_now / width) / ((SHUT_FROM - SHUT_FULL) * width), 0, 1)
        lid_moves = (after - before) @ towards_lower_lid(before)     # frame px, + towards the lower lid
        outwards = max(-lid_moves[CONTOUR_UPPER].min(), lid_moves[CONTOUR_LOWER].max())
        opened = area_now > area_then and outwards >= OPENS_FROM
        # how far the upper lid came down, as a share of the eye's old opening, and how far that
        # stretched its skin (a smile's narrowed eye brings its fold down with the lid: not at all)
        closed = float(np.clip(lid_moves[CONTOUR_UPPER].mean() * width / max(area_then, 1e-9), 0, 1))
        amount = 0.0 if closed == 0 else max(
            np.clip((closed - SMOOTH_FROM) / (SMOOTH_FULL - SMOOTH_FROM), 0, 1),
            np.clip((lid_stretch(source, target, eye, width) - STRETCH_FROM) / (STRETCH_FULL - STRETCH_FROM), 0, 1))
        if width >= 6 and amount > 0:
            fold = np.asarray(target, np.float64)[list(UPPER_LID_SKIN[eye][0]), :2]
            smooth_lid(warped, after, fold, width, amount, lid_skin_colour(frame, source, eye))
        if width < 4 or not (shut or opened):
            continue                                    # neither shut nor opened beyond the old opening
        sigma = blur()
        pad = 2 * int(round(OLD_MARGIN * width)) + 3 + math.ceil(3 * sigma)  # the old margin's shadow, the blurs
        x0, y0 = np.clip(np.floor(np.minimum(before.min(0), after.min(0))).astype(int) - pad, 0, [w, h])
        x1, y1 = np.clip(np.ceil(np.maximum(before.max(0), after.max(0))).astype(int) + pad, 0, [w, h])
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        shape = (y1 - y0, x1 - x0)
        now = polygon_coverage(after, (x0, y0), shape)
        local = frame[y0:y1, x0:x1].astype(np.float32)
        light = np.zeros(shape, np.float32)
        if shut > 0:
            # the slit and the pixel row above it (the upper margin's own row still shows the
            # eye's edge), anti-aliased
            lashes = after.copy()
            lashes[CONTOUR_UPPER] -= towards_lower_lid(after)
            slit = np.minimum(1, 2 * polygon_coverage(lashes, (x0, y0), shape))
            colour, alpha = soften(np.broadcast_to(lash_colour(frame, source, eye), local.shape), shut * slit, sigma)
            alpha = np.maximum(alpha, shut * slit)  # a slit thinner than the blur stays hidden: only its edges soften
        else:
            old_lids = before.copy()           # at the new corners: where the lids meet uncovers nothing
            old_lids[[0, CONTOUR_INNER]] = after[[0, CONTOUR_INNER]]
            then = polygon_coverage(old_lids, (x0, y0), shape)
            uncovered = np.clip(now - then, 0, 1)
            if uncovered.sum() < UNCOVERED_PX:
                continue
            centre, radius = iris_circle(source, eye, width)
            upper = after[:CONTOUR_INNER + 1] - (x0, y0)
            ball, alpha, white = eyeball(local, now, then, uncovered, centre - (x0, y0), radius, width, upper)
            colour, alpha = soften(ball, alpha, sigma)
            fade = min(1.0, (outwards - OPENS_FROM) / OPEN_FADE)
            alpha = alpha * fade
            if sigma > 0:
                white = cv2.GaussianBlur(white, (0, 0), sigma)
            light = WHITE_LIGHT * fade * (1 - area_then / area_now) * white
        changed = np.maximum(alpha, light) > 0
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        if not len(rows):
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        a = alpha[r0:r1, c0:c1, None]
        region = warped[y0 + r0:y0 + r1, x0 + c0:x0 + c1]
        painted = (region * (1 - a) + colour[r0:r1, c0:c1] * a) * (1 + light[r0:r1, c0:c1, None])
        region[:] = np.clip(np.rint(painted), 0, 255).astype(warped.dtype)
    return warped


def lid_stretch(source: np.ndarray, target: np.ndarray, eye: int, width: float) -> float:
    """How many times as tall the upper lid's skin between its lash band and its fold is after
    the move (``source`` to ``target``, frame px; ``width``: the eye's) as before, on average
    along the lid: the open lid's narrow strip that a closing lid stretches over the eye."""
    upper, fold = list(UPPER_LIDS[eye]), list(UPPER_LID_SKIN[eye][0])

    def skin(points: np.ndarray) -> float:
        return float(np.linalg.norm(points[upper, :2] - points[fold, :2], axis=1).mean()) - LASH_BAND * width

    return skin(np.asarray(target, np.float64)) / max(skin(np.asarray(source, np.float64)), LASH_BAND * width)


def towards_lower_lid(contour: np.ndarray) -> np.ndarray:
    """The unit normal of an eye's corner line that points from its upper lid to its lower
    (``contour`` in :func:`eye_contour`'s layout)."""
    along = contour[CONTOUR_INNER] - contour[0]
    down = np.array([-along[1], along[0]]) / max(float(np.linalg.norm(along)), 1e-9)
    if (contour[CONTOUR_LOWER].mean(0) - contour[CONTOUR_UPPER].mean(0)) @ down < 0:
        down = -down
    return down


def smooth_lid(warped: np.ndarray, contour: np.ndarray, fold: np.ndarray, width: float,
               amount: float, tone: np.ndarray) -> None:
    """In place: the upper lid's skin between its lash band and its ``fold`` (the eye's moved
    ``contour``, :func:`eye_contour`'s layout, and the fold's points, frame px; ``width``: the
    eye's), blended with its blur by ``amount`` (0-1: how far the lid came down) and lit by
    as much towards the brightness of ``tone`` (RGB, :func:`lid_skin_colour`). The open lid's
    narrow skin, lashes and crease, stretched over the eye, would streak it, and that strip
    lies in the fold's shadow; a closed lid is smooth, its skin unfolded from under the fold
    and lit like the skin above the crease."""
    h, w = warped.shape[:2]
    skin = lid_skin(contour, fold, width)
    pad = int(np.ceil(3 * LID_SMOOTHING * width)) + 2
    x0, y0 = np.clip(np.floor(skin.min(0)).astype(int) - pad, 0, [w, h])
    x1, y1 = np.clip(np.ceil(skin.max(0)).astype(int) + pad, 0, [w, h])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    coverage = polygon_coverage(skin, (x0, y0), (y1 - y0, x1 - x0))
    alpha = (amount * cv2.GaussianBlur(coverage, (0, 0), max(0.7, 0.02 * width)))[..., None]
    region = warped[y0:y1, x0:x1].astype(np.float32)
    smooth = cv2.GaussianBlur(region, (0, 0), max(1.0, LID_SMOOTHING * width))
    blended = region * (1 - alpha) + smooth * alpha
    inside = coverage > 0.5
    if inside.any():
        gain = np.clip(float(tone @ LUMA) / max(float(smooth[inside].mean(0) @ LUMA), 1.0), 1.0, LID_TONE_GAIN)
        feather = cv2.GaussianBlur(coverage, (0, 0), max(1.0, LID_TONE_FEATHER * width))
        blended *= (1 + (gain - 1) * amount * feather)[..., None]
    warped[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(warped.dtype)


def lid_skin(contour: np.ndarray, fold: np.ndarray, width: float) -> np.ndarray:
    """The polygon (frame px) of an upper lid's skin between its lash band and its ``fold``
    (``contour``: the eye's, :func:`eye_contour`'s layout; ``width``: the eye's): what a
    closing lid stretches over the eye, and :func:`smooth_lid` smooths and lights."""
    lash_top = contour[CONTOUR_UPPER] - LASH_BAND * width * towards_lower_lid(contour)
    return np.vstack([contour[0], lash_top, contour[CONTOUR_INNER], fold[::-1]])


def eyeball(local: np.ndarray, now: np.ndarray, then: np.ndarray, uncovered: np.ndarray,
            centre: np.ndarray, radius: float, width: float,
            upper: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The eyeball's colour over a region of the source (``local``, (h, w, 3)), where to
    paint it, and where its white lies out of the lids' shadow (0-1, what a raised lid lights):
    the iris where the iris's circle (centre in region px) reaches, the white around it,
    shaded under the lids, under the upper lid's lashes (``upper``: its line, region px) and
    towards the corners, over the ``uncovered`` part of the opening ``now`` (coverages) and
    the old margin's shadow just inside the old one."""
    reach = max(1, int(round(OLD_MARGIN * width)))
    grown = cv2.dilate(uncovered, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    alpha = np.minimum(cv2.GaussianBlur(grown, (0, 0), max(0.5, reach / 2)), now)
    xs = np.arange(local.shape[1], dtype=np.float32)[None, :] - np.float32(centre[0])
    ys = np.arange(local.shape[0], dtype=np.float32)[:, None] - np.float32(centre[1])
    distance = np.sqrt(xs * xs + ys * ys)
    iris_colour, sclera_colour = eyeball_colours(local, then, distance, radius)
    in_iris = np.clip(radius + 0.5 - distance, 0, 1)[..., None]      # anti-aliased rim
    rim = np.clip((distance - 0.75 * radius) / (0.25 * radius), 0, 1)[..., None]
    across = np.minimum(np.abs(xs) / (width / 2), 1)[..., None]
    ball = (in_iris * iris_colour * (1 - LIMBUS * rim)
            + (1 - in_iris) * sclera_colour * (1 - CORNER_SHADE * across ** 2))  # the eyeball turns away
    under_lid = cv2.distanceTransform((now > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
    shadow = np.exp(-under_lid / max(1.0, SHADOW_REACH * width))
    ball *= (1 - LID_SHADOW * shadow)[..., None]
    lashes = np.exp(-below(upper, now.shape) / max(1.0, UPPER_SHADOW_REACH * width))
    ball *= (1 - UPPER_SHADOW * lashes)[..., None]
    return ball, alpha, (1 - in_iris[..., 0]) * (1 - shadow)


def below(line: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32: each pixel's distance (px) below a polyline (region px; an eye's upper
    lid, corner to corner); 0 on it and above it between its ends."""
    above = np.vstack([line, (line[-1, 0], -1.0), (line[0, 0], -1.0)])     # up to the region's top
    mask = np.ones(shape, np.uint8)
    cv2.fillPoly(mask, [np.rint(above * (1 << SUBPIXEL)).astype(np.int32)], 0, cv2.LINE_8, shift=SUBPIXEL)
    return cv2.distanceTransform(mask, cv2.DIST_L2, 3)


def lash_colour(frame: np.ndarray, source: np.ndarray, eye: int) -> np.ndarray:
    """The upper lid's lash line as the source shows it: the darkest quarter of the pixels on
    its margin and the lash band just above it (RGB float)."""
    return colour_above(frame, source, eye, UPPER_LIDS[eye], (0.0, 0.03, 0.06), 0.0, 0.25)


def lid_skin_colour(frame: np.ndarray, source: np.ndarray, eye: int) -> np.ndarray:
    """The lid's skin above its crease as the source shows it (RGB float): the middle half, by
    brightness, of the pixels on and just above the crease points."""
    return colour_above(frame, source, eye, UPPER_LID_SKIN[eye][1], (0.0, 0.05, 0.1), 0.25, 0.75)


def colour_above(frame: np.ndarray, source: np.ndarray, eye: int, points: tuple[int, ...],
                 lifts: tuple[float, ...], lo: float, hi: float) -> np.ndarray:
    """:func:`mean_by_brightness` (``lo``-``hi``) of the frame's pixels at the mesh ``points``
    of ``source`` (frame px) and at each of ``lifts`` (of the eye's width) above them, along
    the eye's normal (a rolled head's lids are not level)."""
    h, w = frame.shape[:2]
    base = np.asarray(source, np.float64)[list(points), :2]
    up = -towards_lower_lid(eye_contour(source, eye)) * eye_width(source, eye)
    band = np.vstack([base + lift * up for lift in lifts])
    xs = np.clip(np.rint(band[:, 0]).astype(int), 0, w - 1)
    ys = np.clip(np.rint(band[:, 1]).astype(int), 0, h - 1)
    return mean_by_brightness(frame[ys, xs].astype(np.float32), lo, hi)


def iris_circle(mesh: np.ndarray, eye: int, width: float) -> tuple[np.ndarray, float]:
    """The iris's centre (frame px) and radius: from the landmark model's iris points, or, for
    a mesh without them, the eye's centre and a typical iris size."""
    mesh = np.asarray(mesh, np.float64)
    if len(mesh) >= 478:
        centre_index, rim = IRISES[eye]
        centre = mesh[centre_index, :2]
        return centre, float(np.linalg.norm(mesh[list(rim), :2] - centre, axis=1).mean())
    contour = eye_contour(mesh, eye)
    return contour.mean(0), IRIS_FOR_EYE * width / 2


def eyeball_colours(local: np.ndarray, opening: np.ndarray, distance: np.ndarray,
                    radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The iris's and the sclera's colours (RGB float) as the source shows them: the middle
    half, by brightness, of the iris's body (between its pupil and its rim) and the brightest
    tenth of the white outside it (what a lid uncovers is lit like the best-lit white; the
    rest is under the lids' shadow or mixed with their margins in small eyes), both inside
    the visible ``opening`` (coverage; ``distance``: each pixel's from the iris centre). An
    eye too small to show either falls back to its darkest and brightest pixels."""
    inside = opening > 0.75
    seen = local[inside] if inside.any() else local.reshape(-1, 3)
    body = local[inside & (distance > 0.45 * radius) & (distance < 0.85 * radius)]
    iris = mean_by_brightness(body, 0.25, 0.75) if len(body) >= 4 else mean_by_brightness(seen, 0.0, 0.25)
    white = local[inside & (distance > 1.15 * radius)]
    sclera = mean_by_brightness(white if len(white) >= 6 else seen, 0.9, 1.0)
    return iris.astype(np.float32), sclera.astype(np.float32)


def mean_by_brightness(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The mean colour of ``pixels`` (N, 3) whose brightness ranks between the fractions
    ``lo`` and ``hi`` of them (0: the darkest)."""
    order = np.argsort(pixels @ LUMA)
    n = len(order)
    return pixels[order[min(int(lo * n), n - 1):max(int(hi * n), int(lo * n) + 1)]].mean(0)
