"""The motion stage for one face: rig -> target landmarks -> full-resolution warp -> mouth.

Fed by the tracker (the face's smoothed mesh) and the trajectory (the face's current AUs and
its target), it returns the moved frame — which the generator then crops and paints — and the
motion field it applied (for ``--frames --mattes`` exports).
"""

from __future__ import annotations

import numpy as np

from animator.motion.mouth import fill_mouth
from animator.motion.rig import LOWER_INNER_LIP, LOWER_LIDS, UPPER_INNER_LIP, UPPER_LIDS, AURig
from animator.motion.warp import MotionField, apply_field, motion_field

# each eye's lids: where the field is evaluated at every pixel (a blink's contours meet)
EYES = tuple(upper + lower for upper, lower in zip(UPPER_LIDS, LOWER_LIDS))

# facing contours (upper, lower) with nothing between them in the mesh: the eyes and the mouth
OPENINGS = tuple(zip(UPPER_LIDS, LOWER_LIDS)) + ((UPPER_INNER_LIP, LOWER_INNER_LIP),)


def with_midlines(points: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) plus the midpoints between each opening's facing contour points. As
    extra nodes they split an opening the warp widens into an upper and a lower half, each
    stretched from its own lip or lid, instead of a zigzag of triangles across the gap."""
    mids = [(points[list(upper)] + points[list(lower)]) / 2 for upper, lower in OPENINGS]
    return np.vstack([points] + mids)


def move_face(frame: np.ndarray, mesh: np.ndarray, current: np.ndarray, target: np.ndarray,
              rig: AURig) -> tuple[np.ndarray, MotionField | None]:
    """``frame`` with the face whose mesh (frame px) is ``mesh`` moved from its ``current``
    AUs towards ``target`` (both (17,), 0-5), and the field that did it (None: nothing moved).

    Motion only adds: an AU the target asks for beyond what the face shows is moved, one the
    face shows beyond the target is left to the generator. The estimator reads some AUs on
    resting faces (upper lip, lip corners), and undoing those readings would push closed
    lips into each other; an actor's own speech and blinks also survive an absolute target."""
    delta = np.maximum(np.asarray(target, np.float64) - np.asarray(current, np.float64), 0.0)
    if not np.any(delta):
        return frame, None
    source = np.asarray(mesh, np.float64)[: rig.template.shape[0]]
    moved = rig.displace(source, delta)
    field = motion_field(with_midlines(source[:, :2]), with_midlines(moved[:, :2]), frame.shape,
                         detail=EYES)
    if field is None:
        return frame, None
    return fill_mouth(apply_field(frame, field), source, moved), field
