"""Spectacles stay put while the face moves behind them.

Glasses sit on the skull, not on the skin the rig moves: warped with the face, a raised brow
bent the rim above it into an arch and a blink dragged it down into the eye. So a face that
wears glasses is moved behind its rims:

1. :class:`RimFinder` cuts the face's eye region (:func:`eye_region`: the eye line level, a fixed
   scale per inter-ocular distance) and its net (:mod:`animator.model.rim_net`) marks the
   pixels of rims, bridge and temples; a face is said to wear glasses when they cover at
   least :data:`GLASSES_FROM` of the crop and :data:`EACH_LENS_FROM` of each of its halves.
   The result, :class:`Rims`, lives in the crop's frame, which follows the eyes; a video
   decides once per face whether it wears glasses and follows its rims from frame to frame
   (:class:`TrackRims`).
2. Before the warp, the rims are filled in from the skin around them (:func:`fill_holes`), so
   that the warp moves skin, not rims; after the warp and the paint, the source's rims are
   put back where they were (:func:`behind_rims`). Pixels the field does not move keep their
   exact values, rims included.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from animator.model.rim_net import RIM_NET_PATH, RimNet, as_input, load_rim_net
from animator.motion.rig import EYE_CORNERS

# The eye-region crop: CROP_W x CROP_H pixels, CROP_SCALE of them per inter-ocular distance
# (between the eyes' centres), the eye line CROP_TOP of it below the crop's top edge.
CROP_W, CROP_H, CROP_SCALE, CROP_TOP = 144, 80, 56.0, 0.8
RIM_FROM = 0.5        # a crop pixel is rim from this probability
GLASSES_FROM = 0.02   # ... and a face wears glasses when this share of the crop is rim,
EACH_LENS_FROM = 0.0075  # ... and this share of each half (a pair has two lenses; one brow is no pair)
SPECK = 30            # crop px: rim pieces smaller than this are dropped (a dark fleck is no rim)
GROW = 0.02           # the rims are widened by this much of the inter-ocular distance (their soft edges)
SOLID = 0.5           # ... and are put back whole from this cover, feathered below it
FILL_MARGIN = 8       # frame px of skin around the rims that their fill draws on
SETTLE = 0.5          # in a video, a frame's rim probabilities are averaged with this much of the frames' before

Box = tuple[int, int, int, int]


def eye_region(mesh: np.ndarray) -> np.ndarray:
    """(2, 3) affine from frame px to the eye-region crop's px: a similarity that puts the
    eyes' centres (the middles of their corners; mesh: >= 468 landmarks, frame px) level,
    :data:`CROP_SCALE` px apart, centred, :data:`CROP_TOP` of that below the top edge."""
    points = np.asarray(mesh, np.float64)[:, :2]
    right, left = (points[list(corners)].mean(0) for corners in EYE_CORNERS)
    along = left - right
    scale = CROP_SCALE / max(float(np.linalg.norm(along)), 1e-9)
    cos, sin = along / max(float(np.linalg.norm(along)), 1e-9)
    rotation = scale * np.array([[cos, sin], [-sin, cos]])
    shift = np.array([CROP_W / 2, CROP_TOP * CROP_SCALE]) - rotation @ ((right + left) / 2)
    return np.hstack([rotation, shift[:, None]])


@dataclass(frozen=True)
class Rims:
    """A face's spectacle rims: ``cover`` (CROP_H, CROP_W) float32 in [0, 1], in the eye-region
    crop's frame (:func:`eye_region`)."""

    cover: np.ndarray

    def in_frame(self, mesh: np.ndarray, box: Box) -> tuple[np.ndarray, Box] | None:
        """The rims' cover (h, w) float32 over the frame pixels they reach inside ``box``
        (x0, y0, x1, y1), widened by :data:`GROW`, and those pixels' box, for the face whose
        landmarks are ``mesh`` (frame px); None when they reach none."""
        to_crop = eye_region(mesh)
        per_px = float(np.sqrt(abs(np.linalg.det(to_crop[:, :2]))))       # crop px per frame px
        grow = max(1, round(GROW * CROP_SCALE / per_px))
        rows, cols = np.flatnonzero(self.cover.any(1)), np.flatnonzero(self.cover.any(0))
        if not len(rows):
            return None
        corners = np.array([[c, r] for r in (rows[0], rows[-1]) for c in (cols[0], cols[-1])], float)
        inverse = cv2.invertAffineTransform(to_crop)
        reach = corners @ inverse[:, :2].T + inverse[:, 2]
        x0, y0 = np.maximum(np.floor(reach.min(0)).astype(int) - grow - 1, box[:2])
        x1, y1 = np.minimum(np.ceil(reach.max(0)).astype(int) + grow + 2, box[2:])
        if x1 <= x0 or y1 <= y0:
            return None
        to_crop[:, 2] += to_crop[:, :2] @ np.array([x0, y0], np.float64)   # from the reached box's px
        cover = cv2.warpAffine(self.cover, to_crop, (int(x1 - x0), int(y1 - y0)),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0)
        cover = cv2.dilate(cover, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
        return cover, (int(x0), int(y0), int(x1), int(y1))


def eye_crop(rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(CROP_H, CROP_W, 3) uint8: the eye region (:func:`eye_region`) of the face with
    landmarks ``mesh`` in ``rgb``."""
    return cv2.warpAffine(rgb, eye_region(mesh), (CROP_W, CROP_H), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


def rim_cover(probabilities: np.ndarray) -> np.ndarray:
    """(CROP_H, CROP_W) float32 0/1: the crop pixels an eye-region crop's rim probabilities mark
    (from :data:`RIM_FROM`), pieces smaller than :data:`SPECK` dropped."""
    rim = (probabilities >= RIM_FROM).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(rim, connectivity=8)
    pieces = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= SPECK)
    return np.isin(labels, pieces[pieces > 0]).astype(np.float32)


def rims_of(probabilities: np.ndarray) -> Rims | None:
    """The rims an eye-region crop's rim probabilities mark (:func:`rim_cover`); None when they
    cover less than :data:`GLASSES_FROM` of it, or less than :data:`EACH_LENS_FROM` of either
    half (no glasses)."""
    cover = rim_cover(probabilities)
    halves = cover[:, : CROP_W // 2].mean(), cover[:, CROP_W // 2:].mean()
    return Rims(cover) if cover.mean() >= GLASSES_FROM and min(halves) >= EACH_LENS_FROM else None


class RimFinder:
    """Finds a face's spectacle rims with the shipped net (or another one)."""

    def __init__(self, net: RimNet | None = None):
        self.net = net if net is not None else load_rim_net(RIM_NET_PATH)

    def probabilities(self, crop: np.ndarray) -> np.ndarray:
        """(CROP_H, CROP_W) float32: each pixel's probability of being rim in an eye-region
        ``crop`` (:func:`eye_crop`)."""
        with torch.no_grad():
            return torch.sigmoid(self.net(as_input(crop[None])))[0].numpy()

    def find(self, rgb: np.ndarray, mesh: np.ndarray) -> Rims | None:
        """The rims of the face with landmarks ``mesh`` (frame px) in ``rgb``; None: no glasses."""
        return rims_of(self.probabilities(eye_crop(rgb, mesh)))


class TrackRims:
    """Each face track's rims in a video. Whether a face wears glasses is decided once, on the
    first frame it is asked for with its landmarks (the first frame that moves it): glasses do
    not come and go, and a frame the net misreads cannot switch them on or off. Where the rims
    are is found on every frame of a face that wears them, since the crop follows the eyes and
    the eyes move against the glasses (a look down, a squint, a head that nods or turns), and
    each frame's probabilities are averaged with the frames' before (:data:`SETTLE`), so their
    outline does not flicker."""

    def __init__(self, finder: RimFinder | None = None):
        self.finder = finder or RimFinder()
        self._settled: dict[int, np.ndarray | None] = {}   # per track: its probabilities so far; None: no glasses

    def of(self, track_id: int, rgb: np.ndarray, mesh: np.ndarray | None) -> Rims | None:
        if mesh is None or (track_id in self._settled and self._settled[track_id] is None):
            return None
        now = self.finder.probabilities(eye_crop(rgb, mesh))
        if track_id not in self._settled:
            self._settled[track_id] = now if rims_of(now) is not None else None
        before = self._settled[track_id]
        if before is None:
            return None
        self._settled[track_id] = SETTLE * before + (1 - SETTLE) * now
        return Rims(rim_cover(self._settled[track_id]))


def fill_holes(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """``image`` (h, w, 3) uint8 with the ``holes`` (h, w) bool pixels filled smoothly from the
    pixels around them (pull-push: averages over a pyramid of ever coarser levels, each hole
    taking the finest level that reaches it). A thin rim's fill is the skin on either side."""
    known = (~holes).astype(np.float32)
    levels = [(image.astype(np.float32) * known[..., None], known)]
    while min(levels[-1][1].shape) > 2 and levels[-1][1].min() < 1e-3:
        colour, weight = levels[-1]
        levels.append((cv2.pyrDown(colour), cv2.pyrDown(weight)))
    filled = None
    for colour, weight in reversed(levels):
        here = colour / np.maximum(weight, 1e-6)[..., None]
        if filled is not None:
            coarse = cv2.pyrUp(filled, dstsize=weight.shape[::-1])
            share = np.clip(weight * 4, 0, 1)[..., None]   # a level's own average once it has enough weight
            here = coarse + (here - coarse) * share
        filled = here
    out = image.copy()
    out[holes] = np.clip(filled[holes] + 0.5, 0, 255).astype(np.uint8)
    return out


def without_rims(frame: np.ndarray, box: Box, cover: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` whose rims (their ``cover`` over ``box``, :meth:`Rims.in_frame`;
    filled where it reaches :data:`SOLID`) are filled with the skin around them: what the warp moves."""
    x0, y0, x1, y1 = box
    holes = cover >= SOLID
    out = frame.copy()
    if holes.any():
        rows, cols = np.flatnonzero(holes.any(1)), np.flatnonzero(holes.any(0))
        r0, r1 = max(rows[0] - FILL_MARGIN, 0), min(rows[-1] + FILL_MARGIN + 1, y1 - y0)
        c0, c1 = max(cols[0] - FILL_MARGIN, 0), min(cols[-1] + FILL_MARGIN + 1, x1 - x0)
        patch = out[y0 + r0:y0 + r1, x0 + c0:x0 + c1]
        patch[...] = fill_holes(patch, holes[r0:r1, c0:c1])
    return out


def behind_rims(frame: np.ndarray, moved: np.ndarray, box: Box, cover: np.ndarray) -> np.ndarray:
    """``moved`` (the face moved from :func:`without_rims`' frame) with the rims of ``frame``
    put back over the ``box``: solid where :func:`without_rims` filled them, feathered beyond
    (there nothing was filled, so a pixel the field left alone keeps its value); in place,
    returned."""
    x0, y0, x1, y1 = box
    alpha = np.minimum(cover / SOLID, 1.0)[..., None]
    region = moved[y0:y1, x0:x1].astype(np.float32)
    moved[y0:y1, x0:x1] = np.clip(region + (frame[y0:y1, x0:x1] - region) * alpha + 0.5, 0, 255).astype(np.uint8)
    return moved
