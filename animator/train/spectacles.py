"""Synthetic spectacles drawn over eye-region crops, to train the rim net (animator.model.rim_net).

No photo set labels glasses pixel by pixel, but rims are simple to draw: two lenses (rounded
rectangles to ovals, :func:`lens_outline`), mirrored about the face's midline near the eyes,
joined by a bridge, with temples running off to the sides; full rims, half rims (the top
only) or browlines; dark, tortoise, metal, light or coloured; soft or sharp. Drawn over crops
of faces without glasses (:data:`animator.motion.rims.CROP_W` x ``CROP_H``, the eyes level),
they give pictures with an exact rim cover to learn from. Whether the net then finds real
glasses is measured on real photos only (``pipelines/train_rims.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

from animator.motion.rims import CROP_H, CROP_SCALE, CROP_TOP, CROP_W

SUPERSAMPLE = 4   # rims are drawn this many times finer, then averaged: soft, exact covers
STYLES = ("full", "full", "full", "half", "browline")
FINISHES = ("dark", "dark", "brown", "metal", "light", "colour")


def lens_outline(half_width: float, half_height: float, squareness: float, narrowing: float,
                 n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) points of a lens's outline around its centre (crop px, y down) and each point's
    angle: a superellipse of exponent ``squareness`` (2: an oval; higher: squarer), its lower
    half narrowed by ``narrowing`` (aviator-like)."""
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    cos, sin = np.cos(angle), np.sin(angle)
    x = half_width * np.sign(cos) * np.abs(cos) ** (2 / squareness)
    y = half_height * np.sign(sin) * np.abs(sin) ** (2 / squareness)
    x *= np.where(sin > 0, 1 - narrowing * sin, 1.0)
    return np.stack([x, y], 1), angle


def draw_spectacles(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """A random pair in crop px: (rim cover, lens cover), each (CROP_H, CROP_W) float32 in
    [0, 1], and the pair's style."""
    s = CROP_SCALE
    fine = lambda points: np.rint(np.asarray(points) * SUPERSAMPLE).astype(np.int32)  # noqa: E731
    rim = np.zeros((CROP_H * SUPERSAMPLE, CROP_W * SUPERSAMPLE), np.uint8)
    lens = np.zeros_like(rim)
    outline, angle = lens_outline(rng.uniform(0.34, 0.54) * s, rng.uniform(0.2, 0.38) * s,
                                  rng.uniform(2.0, 6.0), rng.uniform(0.0, 0.25))
    half_height = float(outline[:, 1].max())
    apart, lift = rng.uniform(-0.05, 0.10) * s, rng.uniform(-0.12, 0.10) * s
    tilt = np.radians(rng.uniform(-8, 8))
    thickness = float(np.exp(rng.uniform(np.log(0.012), np.log(0.085))) * s)
    width = max(1, round(thickness * SUPERSAMPLE))
    style = str(rng.choice(STYLES))
    centre_y = CROP_TOP * s + lift
    inner_ends = []
    for side in (-1, 1):   # the lens on the crop's left, then the one on its right (mirrored)
        centre = np.array([CROP_W / 2 + side * (0.5 * s + apart), centre_y])
        turn = side * tilt
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        points = outline * [side, 1] @ rotation.T + centre
        cv2.fillPoly(lens, [fine(points)], 1)
        if style == "full":
            cv2.polylines(rim, [fine(points)], True, 1, width)
        else:
            top = np.sin(angle) < 0.15
            order = np.argsort(np.arctan2(*(points[top] - centre).T[::-1]))
            cv2.polylines(rim, [fine(points[top][order])], False, 1, width if style == "half" else round(width * 2.2))
            if style == "browline":
                cv2.polylines(rim, [fine(points)], True, 1, max(1, width // 2))
        inner_ends.append(points[np.argmin(side * points[:, 0])])
        outer = points[np.argmax(side * points[:, 0])]
        temple_y = centre_y - half_height * rng.uniform(0.2, 0.7)
        temple = [[outer[0] - side * thickness, temple_y],
                  [CROP_W / 2 + side * CROP_W, temple_y + rng.uniform(-0.15, 0.15) * s]]
        cv2.polylines(rim, [fine(temple)], False, 1, max(1, round(width * rng.uniform(0.5, 1.0))))
    (x0, y0), (x1, y1) = inner_ends
    arch = min(y0, y1) - half_height * rng.uniform(0.0, 0.6) - rng.uniform(0, 0.08) * s
    u = np.linspace(0, 1, 20)
    bridge = np.stack([x0 + (x1 - x0) * u, (1 - u) ** 2 * y0 + 2 * u * (1 - u) * arch + u ** 2 * y1], 1)
    cv2.polylines(rim, [fine(bridge)], False, 1, max(1, round(width * rng.uniform(0.6, 1.0))))
    return _shrink(rim), _shrink(lens), style


def _shrink(fine: np.ndarray) -> np.ndarray:
    """A SUPERSAMPLE times finer 0/1 drawing averaged down to the crop: each pixel's cover."""
    return cv2.resize(fine.astype(np.float32), (CROP_W, CROP_H), interpolation=cv2.INTER_AREA)


def finish_colour(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A frame's RGB colour and its kind."""
    kind = str(rng.choice(FINISHES))
    if kind == "dark":
        colour = rng.uniform(5, 50, 3)
    elif kind == "brown":
        colour = np.array([rng.uniform(50, 110), rng.uniform(30, 70), rng.uniform(10, 40)])
    elif kind == "metal":
        grey = rng.uniform(90, 200)
        colour = np.array([grey, grey * rng.uniform(0.8, 1.0), grey * rng.uniform(0.55, 1.0)])
    elif kind == "light":
        colour = rng.uniform(170, 245, 3)
    else:
        colour = rng.uniform(20, 220, 3)
    return colour.astype(np.float32), kind


def wear_spectacles(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``face`` (a crop, uint8 RGB) wearing a random pair: (picture, rim cover)."""
    rim, lens, _ = draw_spectacles(rng)
    colour, kind = finish_colour(rng)
    picture = face.astype(np.float32)
    if rng.random() < 0.6:   # the lenses tint and reflect a little
        gain = rng.uniform(0.9, 1.1)
        glare = np.linspace(rng.uniform(-12, 12), rng.uniform(-12, 12), CROP_H)[:, None, None] * rng.uniform(0, 1)
        picture = picture * (1 + (gain - 1) * lens[..., None]) + glare * lens[..., None]
    shade = np.ones((1, CROP_W, 1), np.float32)
    if kind == "metal":      # light glints along polished metal
        shade = 1 + 0.35 * np.sin(np.linspace(0, rng.uniform(6, 20), CROP_W))[None, :, None]
    opacity = rng.uniform(0.35, 0.8) if kind == "light" else rng.uniform(0.55, 1.0)
    alpha = rim * opacity
    blur = rng.uniform(0.0, 1.2)
    if blur > 0.2:
        alpha = cv2.GaussianBlur(alpha, (0, 0), blur)
    picture = picture * (1 - alpha[..., None]) + colour * shade * alpha[..., None]
    return np.clip(picture, 0, 255).astype(np.uint8), rim


def jitter(picture: np.ndarray, cover: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Picture and cover mirrored (half the time), turned, scaled and shifted a little (as a
    landmark model's eye corners place the crop), then the picture's contrast, brightness,
    sharpness and noise varied."""
    if rng.random() < 0.5:
        picture, cover = picture[:, ::-1], cover[:, ::-1]
    turn = cv2.getRotationMatrix2D((CROP_W / 2 + rng.uniform(-3, 3), CROP_H / 2 + rng.uniform(-3, 3)),
                                   rng.uniform(-6, 6), rng.uniform(0.92, 1.08))
    picture = cv2.warpAffine(np.ascontiguousarray(picture), turn, (CROP_W, CROP_H), borderMode=cv2.BORDER_REFLECT)
    cover = cv2.warpAffine(np.ascontiguousarray(cover), turn, (CROP_W, CROP_H), borderMode=cv2.BORDER_CONSTANT)
    values = (picture.astype(np.float32) - 128) * rng.uniform(0.7, 1.3) + 128 + rng.uniform(-25, 25)
    if rng.random() < 0.3:
        values = cv2.GaussianBlur(values, (0, 0), rng.uniform(0.5, 1.5))
    values += rng.normal(0, rng.uniform(0, 4), values.shape)
    return np.clip(values, 0, 255).astype(np.uint8), cover
