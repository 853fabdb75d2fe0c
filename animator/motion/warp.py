"""Landmark displacements -> a smooth dense motion field -> the face warped at full resolution.

The field is piecewise-affine over a Delaunay triangulation of the target landmarks plus a
ring of anchors around the face that do not move, so it is continuous, follows every
landmark exactly, and falls linearly to zero between the face's outline and the ring. It is
a *backward* field (for each output pixel, where to sample the source), evaluated on a coarse
grid (``GRID_NODES`` across the face, whatever its size in pixels) and upsampled bilinearly, then applied with ``cv2.remap`` on
the ring's bounding box only. Pixels the field does not move — everything outside the ring,
in particular everything outside the face region — keep their exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

ANCHOR_MARGIN = 0.3   # the still ring lies this fraction beyond the face's half-extents
N_ANCHORS = 32
GRID_NODES = 48       # nodes the field is evaluated on across the region's longer side
MIN_STEP = 2          # ... but at most one every MIN_STEP frame pixels
DETAIL_MOVE = 0.5     # frame pixels a detail group must move to be evaluated exactly

Box = tuple[int, int, int, int]


@dataclass
class MotionField:
    """A backward field on one frame region: output pixel (x, y) of the region shows the source
    at (x + dx, y + dy). ``offsets`` (h, w, 2) float32 covers ``box`` = (x0, y0, x1, y1)."""

    box: Box
    offsets: np.ndarray

    @property
    def moved(self) -> np.ndarray:
        """(h, w) bool: the pixels the field moves."""
        return np.any(self.offsets != 0, axis=-1)


def anchor_ring(points: np.ndarray, margin: float = ANCHOR_MARGIN, n: int = N_ANCHORS) -> np.ndarray:
    """(n, 2) points on an ellipse around ``points`` (N, 2): their bounding box's centre, with
    semi-axes (1 + margin) times its half-extents (which encloses a face's oval outline)."""
    lo, hi = points.min(0), points.max(0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2 * (1 + margin)
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return centre + half * np.column_stack([np.cos(angle), np.sin(angle)])


def region_box(ring: np.ndarray, shape: tuple[int, ...]) -> Box:
    """The frame pixels the ring encloses (its bounding box, clipped to the frame)."""
    h, w = shape[:2]
    x0, y0 = np.clip(np.floor(ring.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(ring.max(0)).astype(int) + 1, 0, [w, h])
    return int(x0), int(y0), int(max(x0, x1)), int(max(y0, y1))


class PiecewiseLinear:
    """Interpolate ``values`` (N, C) given at ``nodes`` (N, 2) linearly inside each Delaunay
    triangle of the nodes; zero outside their convex hull. Built once, queried many times."""

    def __init__(self, nodes: np.ndarray, values: np.ndarray):
        from matplotlib.tri import Triangulation, TrapezoidMapTriFinder  # noqa: PLC0415

        self.nodes, self.values = nodes, values
        self.simplices = Delaunay(nodes).simplices
        # matplotlib's trapezoid map locates points ~5x faster than scipy's first find_simplex
        self._finder = TrapezoidMapTriFinder(Triangulation(nodes[:, 0], nodes[:, 1],
                                                           triangles=self.simplices))

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        """(M, 2) points -> (M, C) values."""
        triangle = self._finder(queries[:, 0], queries[:, 1])
        out = np.zeros((len(queries), self.values.shape[1]), dtype=np.float64)
        inside = triangle >= 0
        corners = self.simplices[triangle[inside]]                 # (M, 3) node indices
        a, b, c = (self.nodes[corners[:, k]] for k in range(3))
        e1, e2, d = b - a, c - a, queries[inside] - a              # barycentric coordinates
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        u = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
        v = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
        weights = np.column_stack([1.0 - u - v, u, v])
        out[inside] = np.einsum("mk,mkc->mc", weights, self.values[corners])
        return out


def pixel_grid(box: Box) -> np.ndarray:
    """(h * w, 2) the pixel centres of ``box``, row by row."""
    x0, y0, x1, y1 = box
    return np.stack(np.meshgrid(np.arange(x0, x1), np.arange(y0, y1)), axis=-1).reshape(-1, 2)


def motion_field(source: np.ndarray, target: np.ndarray, shape: tuple[int, ...],
                 detail: tuple[tuple[int, ...], ...] = (),
                 nodes_across: int = GRID_NODES) -> MotionField | None:
    """The backward field that carries landmarks ``source`` (N, 2, frame px) to ``target``;
    ``shape`` is the frame's. Around each group of landmark indices in ``detail`` (the lids,
    whose contours meet when an eye closes) the field is evaluated at every pixel rather than
    upsampled. None when the face lies outside the frame."""
    source = np.asarray(source, dtype=np.float64)[:, :2]
    target = np.asarray(target, dtype=np.float64)[:, :2]
    ring = anchor_ring(np.vstack([source, target]))
    box = region_box(ring, shape)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 2 or h < 2:
        return None
    step = max(MIN_STEP, max(w, h) / nodes_across)
    # coarse nodes placed where cv2.resize puts the centres of a (gh, gw) image stretched to (h, w)
    gw, gh = max(2, int(np.ceil(w / step))), max(2, int(np.ceil(h / step)))
    xs = x0 + (np.arange(gw) + 0.5) * w / gw - 0.5
    ys = y0 + (np.arange(gh) + 0.5) * h / gh - 0.5
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    field = PiecewiseLinear(np.vstack([target, ring]), np.vstack([source - target, np.zeros_like(ring)]))
    coarse = field(grid).reshape(gh, gw, 2).astype(np.float32)
    offsets = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    for group in detail:
        if np.abs(source[list(group)] - target[list(group)]).max() < DETAIL_MOVE:
            continue
        points = np.vstack([source[list(group)], target[list(group)]])
        pad = 2 * step  # far enough out that the upsampled field agrees with the exact one
        gx0, gy0 = np.clip(np.floor(points.min(0) - pad).astype(int), (x0, y0), (x1, y1))
        gx1, gy1 = np.clip(np.ceil(points.max(0) + pad).astype(int), (x0, y0), (x1, y1))
        if gx1 > gx0 and gy1 > gy0:
            exact = field(pixel_grid((gx0, gy0, gx1, gy1)).astype(np.float64))
            offsets[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0] = exact.reshape(gy1 - gy0, gx1 - gx0, 2)
    return MotionField(box, offsets)


def apply_field(frame: np.ndarray, field: MotionField) -> np.ndarray:
    """A copy of ``frame`` with the field's region warped (bilinear; edges mirrored). Only the
    pixels the field moves change."""
    out = frame.copy()
    x0, y0, x1, y1 = field.box
    h, w = y1 - y0, x1 - x0
    map_x = field.offsets[..., 0] + np.arange(x0, x1, dtype=np.float32)[None, :]
    map_y = field.offsets[..., 1] + np.arange(y0, y1, dtype=np.float32)[:, None]
    warped = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    np.copyto(out[y0:y0 + h, x0:x0 + w], warped, where=field.moved[..., None])
    return out


def frame_offsets(shape: tuple[int, ...], fields: list[MotionField]) -> np.ndarray:
    """(H, W, 2) float32 backward offsets of a whole frame (zero where nothing moves); faces are
    applied in order, so a later face's field wins where two overlap."""
    h, w = shape[:2]
    offsets = np.zeros((h, w, 2), np.float32)
    for field in fields:
        x0, y0, x1, y1 = field.box
        moved = field.moved
        offsets[y0:y1, x0:x1][moved] = field.offsets[moved]
    return offsets
