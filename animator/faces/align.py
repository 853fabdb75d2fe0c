"""Crop policies: how a face is cut out of a frame for the model, as a 2x3 affine transform.

Two kinds, stored in every model's config so training and inference cut faces the same way:

- ``aligned``: the similarity transform (rotation, uniform scale, shift) that best maps the
  5 face points onto a canonical template. The template leaves the whole face inside the
  crop: forehead above the brows, the chin (mouth open included), both cheeks.
- ``box``: an unaligned square around the detector box, as the official GANimation crops
  were made (a face detector's box, resized). ``scale`` enlarges the square.

Transforms map frame pixels to crop pixels (``cv2.warpAffine`` convention, pixel centres at
integer coordinates); ``cv2.invertAffineTransform`` of one pastes back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from animator.errors import AnimatorError

CROP_KINDS = ("aligned", "box")
BORDER = cv2.BORDER_REFLECT_101

# Canonical 5 points (YuNet order: right eye, left eye, nose tip, right and left mouth
# corner) on a unit crop at scale 1. Proportions of an average frontal face in units of
# the eye distance D (nose 0.57 D and mouth 1.155 D below the eye line, mouth 0.83 D wide),
# with D = 1/3 of the crop and the eye line at 0.34: brows and about 1 D of forehead above,
# the chin (about 1.75 D below the eyes) near 0.92 of the crop height, both cheeks inside.
# That is a little looser than GANimation's face-box crops and about as tight as UTKFace's
# aligned 200x200 faces (whose tops are then slightly outside the picture; see warp_crop).
_EYE_DISTANCE = 1.0 / 3.0
_EYE_LINE = 0.34
UNIT_TEMPLATE = np.array([
    [0.5 - 0.5 * _EYE_DISTANCE, _EYE_LINE],
    [0.5 + 0.5 * _EYE_DISTANCE, _EYE_LINE],
    [0.5, _EYE_LINE + 0.57 * _EYE_DISTANCE],
    [0.5 - 0.415 * _EYE_DISTANCE, _EYE_LINE + 1.155 * _EYE_DISTANCE],
    [0.5 + 0.415 * _EYE_DISTANCE, _EYE_LINE + 1.155 * _EYE_DISTANCE],
], dtype=np.float64)


@dataclass
class CropPolicy:
    """How faces are cropped for a model. ``scale`` > 1 shows more context around the face
    (for ``aligned`` it shrinks the template about the crop centre; for ``box`` it is the
    square's side as a multiple of the detector box's long side)."""

    kind: str = "aligned"
    size: int = 128
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CROP_KINDS:
            raise AnimatorError(f"crop policy: kind {self.kind!r} is not one of {', '.join(CROP_KINDS)}")
        if not (isinstance(self.size, (int, np.integer)) and 16 <= self.size <= 4096):
            raise AnimatorError(f"crop policy: size {self.size!r} is not an integer in 16..4096")
        if (isinstance(self.scale, bool) or not isinstance(self.scale, (int, float, np.floating))
                or not 0.25 <= self.scale <= 4.0):  # NaN fails the comparison too
            raise AnimatorError(f"crop policy: scale {self.scale!r} is not in 0.25..4")
        self.size = int(self.size)
        self.scale = float(self.scale)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CropPolicy":
        if not isinstance(data, dict):
            raise AnimatorError(f"crop policy: expected an object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"kind", "size", "scale"})
        if unknown:
            raise AnimatorError(f"crop policy: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def template_points(policy: CropPolicy) -> np.ndarray:
    """The 5 canonical points in crop pixels for an ``aligned`` policy, (5, 2) float64."""
    unit = 0.5 + (UNIT_TEMPLATE - 0.5) / policy.scale
    # pixel centres: unit square [0, 1] spans [-0.5, size - 0.5] in pixel coordinates
    return unit * policy.size - 0.5


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping ``src`` points onto ``dst``: (2, 3)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    # x' = a x - b y + tx ; y' = b x + a y + ty  -> linear in (a, b, tx, ty)
    n = len(src)
    rows = np.zeros((2 * n, 4))
    rows[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)])
    rows[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)


def square_transform(center: np.ndarray, side: float, angle: float, size: int) -> np.ndarray:
    """Frame -> crop transform of a ``side``-pixel square at ``center`` rotated by ``angle``
    (radians, the direction of the crop's x axis in the frame) onto a ``size`` crop."""
    k = size / max(float(side), 1e-6)
    c, s = np.cos(angle), np.sin(angle)
    linear = np.array([[k * c, k * s], [-k * s, k * c]], dtype=np.float64)
    shift = (size - 1) / 2.0 - linear @ np.asarray(center, dtype=np.float64)
    return np.hstack([linear, shift[:, None]])


def crop_transform(policy: CropPolicy, points5: np.ndarray | None, box: np.ndarray | None) -> np.ndarray:
    """The frame -> crop 2x3 transform for one face under ``policy``."""
    if policy.kind == "aligned":
        if points5 is None:
            raise AnimatorError("crop policy 'aligned' needs the 5 face points")
        return similarity_fit(np.asarray(points5).reshape(5, 2), template_points(policy))
    if box is None:
        raise AnimatorError("crop policy 'box' needs the detector box")
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]) - 0.5
    return square_transform(center, max(x1 - x0, y1 - y0) * policy.scale, 0.0, policy.size)


def transform_scale(M: np.ndarray) -> float:
    """Crop pixels per frame pixel of a similarity transform."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(M, dtype=np.float64)[:, :2]))))


def warp_crop(frame_rgb: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """Cut the ``size`` x ``size`` crop. When the crop shrinks the face more than 2x, the region
    is first reduced with area averaging so the crop does not alias (fine hair, stubble).
    Parts outside the frame are mirrored in (less conspicuous than smeared edge pixels)."""
    M = np.asarray(M, dtype=np.float64)
    k = transform_scale(M)
    if k >= 0.5:
        return cv2.warpAffine(frame_rgb, M, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=BORDER)
    h, w = frame_rgb.shape[:2]
    inverse = cv2.invertAffineTransform(M)
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=np.float64)
    frame_corners = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.clip(np.floor(frame_corners.min(0)).astype(int) - 2, 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(frame_corners.max(0)).astype(int) + 3, 1, [w, h])
    region = frame_rgb[y0:y1, x0:x1]
    factor = 2.0 * k  # reduce so that the remaining warp shrinks by about 2x at most
    rw, rh = max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor))
    small = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
    fx, fy = rw / region.shape[1], rh / region.shape[0]
    # region pixel u maps to small pixel (u + 0.5) * f - 0.5
    to_small = np.array([[fx, 0, fx * (0.5 - x0) - 0.5], [0, fy, fy * (0.5 - y0) - 0.5]])
    from_small = cv2.invertAffineTransform(to_small)
    M_small = M @ np.vstack([from_small, [0, 0, 1]])
    return cv2.warpAffine(small, M_small, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=BORDER)
