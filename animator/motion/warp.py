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
        return (self.offsets[..., 0] != 0) | (self.offsets[..., 1] != 0)


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


def delaunay_triangles(nodes: np.ndarray) -> np.ndarray:
    """(T, 3) node indices of the Delaunay triangles of ``nodes`` (N, 2). OpenCV's incremental
    Subdiv2D builds them in about half of Qhull's time for a face's ~500 nodes; it leaves out
    the slivers along the convex hull (three nearly collinear anchors of the still ring, where
    the field is zero anyway). Coincident nodes count once."""
    points = np.ascontiguousarray(nodes, np.float32)
    lo = np.floor(points.min(0)) - 1
    size = np.ceil(points.max(0) - lo) + 2
    subdiv = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(size[0]), int(size[1])))
    subdiv.insert(points)
    corners = np.ascontiguousarray(subdiv.getTriangleList(), np.float32)      # (T, 6): x, y per corner
    # a corner is a node when its float32 coordinates are one node's exactly: match them as int64 keys
    keys = points.view(np.int64).ravel()
    order = np.argsort(keys, kind="stable")
    wanted = corners.view(np.int64).reshape(-1, 3)
    at = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    real = (keys[order][at] == wanted).all(1)       # not one of Subdiv2D's outer virtual corners
    return order[at[real]]


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
    all triangles at once (a point locator costs several times more to build and query).
    What each point needs of its triangle is worked out once per triangle: the triangle is
    the affine map p -> (s, t) = (p - a) @ inverse of its edge matrix, and its values are
    affine in p too, so a point costs a few multiply-adds."""

    def __init__(self, nodes: np.ndarray, values: np.ndarray):
        self.channels = values.shape[1]
        simplices = delaunay_triangles(nodes)
        # a triangle whose corners are all zero is zero inside, as the grid starts: left out
        # (a blink leaves half of the face's triangles still, a jaw drop more than a third)
        simplices = simplices[(values != 0).any(1)[simplices].any(1)]
        corners = nodes[simplices]                                  # (T, 3, 2)
        edges = corners[:, 1:] - corners[:, :1]                     # (T, 2, 2): rows b - a, c - a
        det = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]
        flat = det != 0                                             # degenerate: never inside
        corners, edges, det, simplices = corners[flat], edges[flat], det[flat], simplices[flat]
        inverse = np.stack([np.stack([edges[:, 1, 1], -edges[:, 0, 1]], -1),
                            np.stack([-edges[:, 1, 0], edges[:, 0, 0]], -1)], 1) / det[:, None, None]
        at = values[simplices]                                      # (T, 3, C)
        gradient = inverse @ (at[:, 1:] - at[:, :1])                # (T, 2, C): d value / d (x, y)
        self.lo = np.minimum(np.minimum(corners[:, 0], corners[:, 1]), corners[:, 2])  # bounding boxes
        self.hi = np.maximum(np.maximum(corners[:, 0], corners[:, 1]), corners[:, 2])
        # per triangle: a (2), inverse (4, row-major), value at a (C), gradient (2C)
        self.affine = np.hstack([corners[:, 0], inverse.reshape(-1, 4), at[:, 0], gradient.reshape(len(at), 2 * self.channels)])

    def sample(self, grid: Grid) -> np.ndarray:
        """(ny, nx, C) values at the grid's points."""
        c = self.channels
        out = np.zeros((grid.ny * grid.nx, c))
        origin, spacing, size = np.array([grid.x0, grid.y0]), np.array([grid.dx, grid.dy]), np.array([grid.nx, grid.ny])
        first = np.maximum(np.ceil((self.lo - origin) / spacing), 0).astype(np.int32)   # (T, 2) grid index
        last = np.minimum(np.floor((self.hi - origin) / spacing), size - 1).astype(np.int32)
        extent = np.maximum(last - first + 1, 0)
        counts = extent[:, 0] * extent[:, 1]
        touching = np.flatnonzero(counts)                           # triangles over some grid point
        if not len(touching):
            return out.reshape(grid.ny, grid.nx, c)
        counts, first, width = counts[touching], first[touching], extent[touching, 0]
        row = np.repeat(np.arange(len(counts), dtype=np.int32), counts)   # per candidate point: its row
        rank = np.arange(len(row), dtype=np.int32) - np.repeat(np.cumsum(counts, dtype=np.int32) - counts, counts)
        across = width[row]
        i = first[row, 0] + rank % across
        j = first[row, 1] + rank // across
        affine = self.affine[touching][row]                         # each candidate's triangle, one gather
        dx, dy = grid.x0 + i * grid.dx - affine[:, 0], grid.y0 + j * grid.dy - affine[:, 1]
        s = dx * affine[:, 2] + dy * affine[:, 4]                   # barycentric coordinates
        t = dx * affine[:, 3] + dy * affine[:, 5]
        inside = np.flatnonzero((s >= -1e-9) & (t >= -1e-9) & (s + t <= 1 + 1e-9))
        dx, dy, value = dx[inside, None], dy[inside, None], affine[inside, 6:]
        out[j[inside] * grid.nx + i[inside]] = value[:, :c] + dx * value[:, c:2 * c] + dy * value[:, 2 * c:]
        return out.reshape(grid.ny, grid.nx, c)


def motion_field(source: np.ndarray, target: np.ndarray, shape: tuple[int, ...],
                 detail: tuple[tuple[int, ...], ...] = (),
                 nodes_across: int = GRID_NODES) -> MotionField | None:
    """The backward field that carries landmarks ``source`` (N, 2, frame px) to ``target``;
    ``shape`` is the frame's. Around each group of landmark indices in ``detail`` (the lids,
    whose contours meet when an eye closes) the field is evaluated at every pixel rather than
    upsampled (:func:`detail_box`), blending into the upsampled field towards the patch's
    edges. None when the face lies outside the frame."""
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
        gx0, gy0, gx1, gy1 = detail_box(np.vstack([source[list(group)], target[list(group)]]), step, box)
        if gx1 > gx0 and gy1 > gy0:
            exact = field.sample(Grid(gx0, gy0, 1.0, 1.0, gx1 - gx0, gy1 - gy0)).astype(np.float32)
            upsampled = offsets[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0]
            upsampled += feather((gy1 - gy0, gx1 - gx0), step)[..., None] * (exact - upsampled)
    return MotionField(box, offsets)


def detail_box(points: np.ndarray, step: float, box: Box) -> Box:
    """The pixels around ``points`` (frame px) where the field is evaluated exactly: two coarse
    steps beyond them (the inner one exact, the outer one blending into the upsampled field,
    :func:`feather`), within the field's ``box``."""
    x0, y0, x1, y1 = box
    gx0, gy0 = np.clip(np.floor(points.min(0) - 2 * step).astype(int), (x0, y0), (x1, y1))
    gx1, gy1 = np.clip(np.ceil(points.max(0) + 2 * step).astype(int), (x0, y0), (x1, y1))
    return int(gx0), int(gy0), int(gx1), int(gy1)


def feather(shape: tuple[int, int], ramp: float) -> np.ndarray:
    """(h, w) float32 weights: 1 from ``ramp`` pixels inside the edges on, falling linearly to
    0 at them. The upsampled field is off the exact one by up to about a pixel around the lids
    (more on large faces); pasted without it, the exact patch would shift the picture by that
    much along its edges."""
    def along(n: int) -> np.ndarray:
        inside = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n))
        return np.clip(inside / max(ramp, 1.0), 0.0, 1.0).astype(np.float32)

    return np.minimum(along(shape[0])[:, None], along(shape[1])[None, :])


def apply_field(frame: np.ndarray, field: MotionField) -> np.ndarray:
    """A copy of ``frame`` with the field's region warped (bilinear; edges mirrored). Only the
    pixels the field moves change."""
    out = frame.copy()
    x0, y0, x1, y1 = field.box
    map_x = field.offsets[..., 0] + np.arange(x0, x1, dtype=np.float32)[None, :]
    map_y = field.offsets[..., 1] + np.arange(y0, y1, dtype=np.float32)[:, None]
    # bilinear sampling at a whole pixel returns that pixel exactly: no mask needed
    out[y0:y1, x0:x1] = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
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
