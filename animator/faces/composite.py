"""Paste an edited face back at full resolution by attention compositing.

The model returns an attention map A (1 = keep the input) and a colour map C for the crop.
Rather than pasting the low-resolution output crop, A and C are warped back to frame
coordinates and mixed there, inside a feathered elliptical face mask m:

    alpha = m * (1 - A_frame)
    out   = frame * (1 - alpha) + C_frame * alpha        (rounded to uint8)

so wherever the model keeps the input the frame's own full-resolution pixels survive, and
wherever alpha is 0 (outside the mask, or A = 1) the frame is bit-identical. Only the
bounding box of the warped mask is touched, which keeps large frames cheap.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

DEFAULT_FEATHER = 0.2
# the mask ellipse in unit crop coordinates: centre and semi-axes (fits both crop policies)
MASK_CENTER = (0.5, 0.5)
MASK_AXES = (0.44, 0.48)

Box = tuple[int, int, int, int]


@functools.lru_cache(maxsize=8)
def face_mask(size: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """(size, size) float32 in [0, 1]: 1 inside the face ellipse, 0 on and outside it, with a
    smooth ramp over the outer ``feather`` fraction of the radius (no visible seam).

    Computed once per (size, feather) and shared: every face of every frame uses it, so the
    array is read-only."""
    if not 0.0 < feather <= 1.0:
        raise ValueError(f"feather {feather} is not in (0, 1]")
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = (u[None, :] - MASK_CENTER[0]) / MASK_AXES[0]
    dy = (u[:, None] - MASK_CENTER[1]) / MASK_AXES[1]
    t = np.clip((1.0 - np.sqrt(dx * dx + dy * dy)) / feather, 0.0, 1.0)
    mask = (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep
    mask.flags.writeable = False
    return mask


def _support(M: np.ndarray, size: int, shape: tuple[int, ...]) -> tuple[Box, np.ndarray]:
    """The frame box a crop covers (clipped) and the crop -> box-local transform."""
    h, w = shape[:2]
    inverse = cv2.invertAffineTransform(np.asarray(M, dtype=np.float64))
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=np.float64)
    frame_corners = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(frame_corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(frame_corners.max(0)).astype(int) + 1, [w, h])
    local = inverse.copy()
    local[:, 2] -= (x0, y0)
    return (int(x0), int(y0), int(max(x0, x1)), int(max(y0, y1))), local


def _alpha(M: np.ndarray, attention: np.ndarray, shape: tuple[int, ...],
           feather: float) -> tuple[Box, np.ndarray, np.ndarray]:
    """alpha = mask * (1 - A) warped into the touched box; also returns the box-local transform."""
    size = attention.shape[0]
    box, local = _support(M, size, shape)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return (0, 0, 0, 0), local, np.zeros((0, 0), np.float32)
    weight = face_mask(size, feather) * (1.0 - np.clip(attention.astype(np.float32), 0.0, 1.0))
    alpha = cv2.warpAffine(weight, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return box, local, alpha


def composite(frame_rgb: np.ndarray, M: np.ndarray, attention: np.ndarray, color: np.ndarray,
              feather: float = DEFAULT_FEATHER) -> tuple[np.ndarray, Box]:
    """Mix one edited face into a copy of the frame.

    ``M`` is the frame -> crop transform the crop was cut with; ``attention`` (s, s) in [0, 1];
    ``color`` (s, s, 3) in [0, 255]. Returns the new frame and the (x0, y0, x1, y1) box that
    may differ from the input (empty (0, 0, 0, 0) when the crop lies outside the frame).
    """
    out = frame_rgb.copy()
    box, local, alpha = _alpha(M, attention, frame_rgb.shape, feather)
    x0, y0, x1, y1 = box
    if alpha.size == 0 or not alpha.any():
        return out, box
    color_frame = cv2.warpAffine(np.ascontiguousarray(color, dtype=np.float32), local, (x1 - x0, y1 - y0),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    region = out[y0:y1, x0:x1]
    a = alpha[..., None]
    mixed = region.astype(np.float32) * (1.0 - a) + color_frame * a
    mixed = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    changed = alpha > 0
    region[changed] = mixed[changed]
    return out, box


def attention_matte(frame_shape: tuple[int, ...], M: np.ndarray, attention: np.ndarray,
                    feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """(H, W) uint8 full-frame matte of how much of each pixel the edit replaces,
    255 * mask * (1 - A); combine several faces with ``np.maximum``."""
    h, w = frame_shape[:2]
    matte = np.zeros((h, w), np.uint8)
    box, _, alpha = _alpha(M, attention, frame_shape, feather)
    x0, y0, x1, y1 = box
    if alpha.size:
        matte[y0:y1, x0:x1] = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    return matte
