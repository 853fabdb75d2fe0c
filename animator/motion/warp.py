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


@dataclass(frozen=True)
class Grid:
    """Regular sample points: x = x0 + i * dx (i < nx), y = y0 + j * dy (j < ny)."""

    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int


class PiecewiseLinear:
    """Interpolate ``values`` (N, C) given at ``nodes`` (N, 2) linearly inside each Delaunay
    triangle of the nodes; zero outside their convex hull. Sampled on regular grids by
    rasterising the triangles: every grid point inside a triangle's bounding box is tested,
    all triangles at once (a point locator costs several times more to build and query)."""

    def __init__(self, nodes: np.ndarray, values: np.ndarray):
        self.values = values
        self.simplices = Delaunay(nodes).simplices
        self.corners = nodes[self.simplices]                        # (T, 3, 2)

    def sample(self, grid: Grid) -> np.ndarray:
        """(ny, nx, C) values at the grid's points."""
        out = np.zeros((grid.ny, grid.nx, self.values.shape[1]))
        u = (self.corners[..., 0] - grid.x0) / grid.dx            # triangle corners in grid units
        v = (self.corners[..., 1] - grid.y0) / grid.dy
        i0 = np.clip(np.ceil(u.min(1)), 0, grid.nx).astype(int)
        i1 = np.clip(np.floor(u.max(1)), -1, grid.nx - 1).astype(int)
        j0 = np.clip(np.ceil(v.min(1)), 0, grid.ny).astype(int)
        j1 = np.clip(np.floor(v.max(1)), -1, grid.ny - 1).astype(int)
        width, height = np.maximum(i1 - i0 + 1, 0), np.maximum(j1 - j0 + 1, 0)
        counts = width * height
        if not counts.any():
            return out
        triangle = np.repeat(np.arange(len(counts)), counts)       # one row per candidate point
        rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        i = i0[triangle] + rank % width[triangle]
        j = j0[triangle] + rank // width[triangle]
        a, b, c = (self.corners[triangle, k] for k in range(3))
        e1, e2 = b - a, c - a
        dx, dy = grid.x0 + i * grid.dx - a[:, 0], grid.y0 + j * grid.dy - a[:, 1]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        det = np.where(det == 0, np.inf, det)                       # degenerate: never inside
        s = (dx * e2[:, 1] - dy * e2[:, 0]) / det                   # barycentric coordinates
        t = (e1[:, 0] * dy - e1[:, 1] * dx) / det
        inside = (s >= -1e-9) & (t >= -1e-9) & (s + t <= 1 + 1e-9)
        weights = np.column_stack([1.0 - s - t, s, t])[inside]
        vertices = self.simplices[triangle[inside]]
        out[j[inside], i[inside]] = np.einsum("mk,mkc->mc", weights, self.values[vertices])
        return out


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
    coarse_grid = Grid(x0 + 0.5 * w / gw - 0.5, y0 + 0.5 * h / gh - 0.5, w / gw, h / gh, gw, gh)
    field = PiecewiseLinear(np.vstack([target, ring]), np.vstack([source - target, np.zeros_like(ring)]))
    coarse = field.sample(coarse_grid).astype(np.float32)
    offsets = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    for group in detail:
        if np.abs(source[list(group)] - target[list(group)]).max() < DETAIL_MOVE:
            continue
        points = np.vstack([source[list(group)], target[list(group)]])
        pad = 2 * step  # far enough out that the upsampled field agrees with the exact one
        gx0, gy0 = np.clip(np.floor(points.min(0) - pad).astype(int), (x0, y0), (x1, y1))
        gx1, gy1 = np.clip(np.ceil(points.max(0) + pad).astype(int), (x0, y0), (x1, y1))
        if gx1 > gx0 and gy1 > gy0:
            pixels = Grid(gx0, gy0, 1.0, 1.0, gx1 - gx0, gy1 - gy0)
            offsets[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0] = field.sample(pixels)
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
