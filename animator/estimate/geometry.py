"""Face geometry: pose-normalise a landmark set and measure what each Action Unit moves.

Landmarks are aligned to a frontal template by a similarity transform (Umeyama, x, y and z)
fitted only on points that expressions barely move (forehead midline, nose, eye corners), so
a smile cannot tilt the frame it is measured in. The template's inter-ocular
distance (between eye centres) is 1, so every measure is in inter-ocular units: the same face
filmed closer, turned or tilted gives the same numbers. Axes of the aligned frame: x towards
the subject's left (image right for a frontal face), y down, z away from the camera.

Each measure is signed so that it grows with the AU it serves ("up" is -y). Some AUs read
these measures, others MediaPipe's blendshapes; the choice and the mapping to 0-5 intensities
live in :mod:`animator.estimate.aus`. Input is the 468-point face mesh (the first 468 of the
landmarker's 478 points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from animator.errors import AnimatorError


@dataclass(frozen=True)
class Layout:
    """Landmark indices of one layout; pairs are (subject's right, subject's left)."""

    n_points: int
    stable: tuple[int, ...]            # points used for the similarity alignment
    eye_outer: tuple[int, int]
    eye_inner: tuple[int, int]
    upper_lid: tuple[tuple[int, ...], tuple[int, ...]]   # lid points, inner..outer order
    lower_lid: tuple[tuple[int, ...], tuple[int, ...]]   # matching lower-lid points
    brow_inner: tuple[tuple[int, ...], tuple[int, ...]]
    brow_outer: tuple[tuple[int, ...], tuple[int, ...]]
    mouth_corner: tuple[int, int]
    upper_lip_top: int                 # outer contour, philtrum midline
    upper_lip_inner: tuple[int, ...]   # inner contour of the upper lip (midline first)
    lower_lip_inner: tuple[int, ...]   # matching inner contour of the lower lip
    lower_lip_bottom: int              # outer contour, midline
    subnasale: int
    nose_tip: int
    chin: tuple[int, ...]              # chin and lower jaw contour (menton first)
    cheek: tuple[tuple[int, ...], tuple[int, ...]]
    nose_wing: tuple[tuple[int, ...], tuple[int, ...]]


# MediaPipe face mesh (468). Indices follow the canonical face model's numbering, where the
# subject's right side carries the lower numbers (33 outer / 133 inner eye corner, 61 mouth
# corner) and the left side the mirrored ones (263 / 362, 291).
MESH = Layout(
    n_points=468,
    # forehead midline, nose bridge to tip, eye corners. The face oval is left out: the mesh
    # model moves its lower and side contour with the jaw, which would tilt the frame.
    stable=(10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 263, 362),
    eye_outer=(33, 263),
    eye_inner=(133, 362),
    upper_lid=((157, 158, 159, 160, 161), (384, 385, 386, 387, 388)),
    lower_lid=((154, 153, 145, 144, 163), (381, 380, 374, 373, 390)),
    brow_inner=((107, 66, 55, 65), (336, 296, 285, 295)),
    brow_outer=((70, 63, 46, 53), (300, 293, 276, 283)),
    mouth_corner=(61, 291),
    upper_lip_top=0,
    upper_lip_inner=(13, 82, 312, 81, 311),
    lower_lip_inner=(14, 87, 317, 178, 402),
    lower_lip_bottom=17,
    subnasale=2,
    nose_tip=1,
    chin=(152, 148, 176, 149, 150, 377, 400, 378, 379),
    cheek=((50, 101, 118, 117, 205), (280, 330, 347, 346, 425)),
    nose_wing=((64, 98, 129, 48), (294, 327, 358, 278)),
)

MEASURE_NAMES: tuple[str, ...] = (
    "brow_inner_raise",   # AU01: inner brow height above the inner eye corners
    "brow_outer_raise",   # AU02: outer brow height above the outer eye corners
    "brow_lower",         # AU04: brows low and drawn together (minus height, minus gap)
    "upper_lid_raise",    # AU05: upper lid height above the eye-corner line
    "cheek_raise",        # AU06: infraorbital cheek points rise towards the eye
    "lid_tighten",        # AU07: lower lid rises towards the eye-corner line
    "nose_wing_raise",    # AU09: nostril wings rise towards the eyes
    "upper_lip_raise",    # AU10: philtrum shortens (upper lip towards the nose)
    "lip_corner_pull",    # AU12: corners up (vs. the eyes) and out
    "lip_corner_back",    # AU14: corners pulled back into the cheek (depth) and in
    "lip_corner_depress", # AU15: corners below the mouth's midline (between the inner lips)
    "chin_raise",         # AU17: lower lip to menton distance shortens
    "lip_stretch",        # AU20: corners out, without the rise of a smile
    "lip_press",          # AU23: red lip thickness shrinks
    "lips_part",          # AU25: gap between the inner lip contours
    "jaw_drop",           # AU26: chin and lower jaw contour lower relative to the nose tip
    "eye_closure",        # AU45: lid aperture shrinks (as a fraction of eye width)
)
N_MEASURES = len(MEASURE_NAMES)
def _checked(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2:] != (MESH.n_points, 3):
        raise AnimatorError(f"landmarks: expected (…, {MESH.n_points}, 3) face-mesh points, got {points.shape}")
    return points


def eye_centres(points: np.ndarray, layout: Layout) -> np.ndarray:
    """(…, 2, D): subject's right and left eye centres (mean of the two corners)."""
    outer = points[..., list(layout.eye_outer), :]
    inner = points[..., list(layout.eye_inner), :]
    return (outer + inner) / 2


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity mapping (…, K, D) ``source`` onto ``target``, batched over ….

    Umeyama (1991): SVD of the cross-covariance with a reflection guard, so the result is a
    proper rotation even for noisy, nearly planar point sets. Returns scale (…,), rotation
    (…, D, D) and translation (…, D).
    """
    mu_s, mu_t = source.mean(-2, keepdims=True), target.mean(-2, keepdims=True)
    s, t = source - mu_s, target - mu_t
    cov = np.swapaxes(t, -1, -2) @ s / source.shape[-2]
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(d.shape)
    sign[..., -1] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rotation = (u * sign[..., None, :]) @ vt
    variance = (s ** 2).sum((-1, -2)) / source.shape[-2]
    scale = np.where(variance > 0, (d * sign).sum(-1) / np.where(variance > 0, variance, 1.0), 1.0)
    shift = mu_t[..., 0, :] - scale[..., None] * (rotation @ mu_s[..., 0, :, None])[..., 0]
    return scale, rotation, shift


def normalise_pose(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Align (…, 468, 3) mesh points onto the ``template`` (468, 3) on the stable points."""
    points = _checked(points)
    stable = list(MESH.stable)
    reference = np.broadcast_to(np.asarray(template, dtype=np.float64)[stable], points[..., stable, :].shape)
    scale, rotation, shift = umeyama(points[..., stable, :], reference)
    return scale[..., None, None] * points @ np.swapaxes(rotation, -1, -2) + shift[..., None, :]


def canonical_frame(points: np.ndarray) -> np.ndarray:
    """Put one (N, 3) face in the template frame from its own landmarks (used to build it).

    Origin between the eye centres, x from the right to the left eye, y towards the chin
    (orthogonalised), z = x cross y (away from the camera), inter-ocular distance 1.
    """
    layout = MESH
    points = _checked(points)
    right, left = eye_centres(points, layout)
    origin = (right + left) / 2
    x = left - right
    iod = np.linalg.norm(x)
    x = x / iod
    down = points[layout.chin[0]] - origin
    y = down - x * (down @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    return ((points - origin) @ np.stack([x, y, z]).T / iod).astype(np.float32)


def _mean(points: np.ndarray, index: tuple[int, ...] | tuple[tuple[int, ...], ...]) -> np.ndarray:
    return points[..., list(np.ravel(index)), :].mean(-2)


def measures(points: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(…, 468, 3) mesh points -> (…, 17) measures in :data:`MEASURE_NAMES` order (in
    inter-ocular units, after pose normalisation onto ``template``)."""
    layout = MESH
    p = normalise_pose(points, template)
    x, y = p[..., 0], p[..., 1]
    m: dict[str, np.ndarray] = {}

    eye_outer_y = y[..., list(layout.eye_outer)].mean(-1)
    eye_inner_y = y[..., list(layout.eye_inner)].mean(-1)
    eye_line_y = (eye_outer_y + eye_inner_y) / 2
    inner_brow_h = eye_inner_y - _mean(p, layout.brow_inner)[..., 1]
    outer_brow_h = eye_outer_y - _mean(p, layout.brow_outer)[..., 1]
    m["brow_inner_raise"] = inner_brow_h
    m["brow_outer_raise"] = outer_brow_h
    brow_gap = x[..., layout.brow_inner[1][0]] - x[..., layout.brow_inner[0][0]]
    m["brow_lower"] = -(inner_brow_h + outer_brow_h) / 2 - brow_gap / 2

    # Lids, per side against that eye's own corner line (corners barely move).
    upper_h, lower_d, aperture = [], [], []
    for side in (0, 1):
        corners_y = (y[..., layout.eye_outer[side]] + y[..., layout.eye_inner[side]]) / 2
        width = np.abs(x[..., layout.eye_outer[side]] - x[..., layout.eye_inner[side]])
        up = y[..., list(layout.upper_lid[side])]
        low = y[..., list(layout.lower_lid[side])]
        upper_h.append(corners_y - up.mean(-1))
        lower_d.append(low.mean(-1) - corners_y)
        aperture.append((low - up).mean(-1) / width)
    m["upper_lid_raise"] = np.mean(upper_h, axis=0)
    m["lid_tighten"] = -np.mean(lower_d, axis=0)
    m["eye_closure"] = -np.mean(aperture, axis=0)
    m["cheek_raise"] = eye_line_y - _mean(p, layout.cheek)[..., 1]
    m["nose_wing_raise"] = eye_inner_y - _mean(p, layout.nose_wing)[..., 1]

    corners = p[..., list(layout.mouth_corner), :]
    corner_up = eye_line_y - corners[..., 1].mean(-1)
    half_width = (corners[..., 1, 0] - corners[..., 0, 0]) / 2
    upper_inner_y = y[..., layout.upper_lip_inner[0]]
    m["upper_lip_raise"] = -(y[..., layout.upper_lip_top] - y[..., layout.subnasale])
    m["lip_corner_pull"] = corner_up + half_width
    lip_mid_z = (p[..., layout.upper_lip_top, 2] + p[..., layout.lower_lip_bottom, 2]) / 2
    m["lip_corner_back"] = corners[..., 2].mean(-1) - lip_mid_z - half_width
    mouth_mid_y = (upper_inner_y + y[..., layout.lower_lip_inner[0]]) / 2
    m["lip_corner_depress"] = corners[..., 1].mean(-1) - mouth_mid_y
    m["chin_raise"] = -(y[..., layout.chin[0]] - y[..., layout.lower_lip_bottom])
    m["lip_stretch"] = half_width - corner_up
    upper_red = upper_inner_y - y[..., layout.upper_lip_top]
    lower_red = y[..., layout.lower_lip_bottom] - y[..., layout.lower_lip_inner[0]]
    m["lip_press"] = -(upper_red + lower_red)
    gap = y[..., list(layout.lower_lip_inner)] - y[..., list(layout.upper_lip_inner)]
    m["lips_part"] = np.maximum(gap, 0).mean(-1)
    m["jaw_drop"] = y[..., list(layout.chin)].mean(-1) - y[..., layout.nose_tip]
    return np.stack([m[name] for name in MEASURE_NAMES], axis=-1)
