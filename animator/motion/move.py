"""The motion stage for one face: rig -> target landmarks -> full-resolution warp -> mouth.

Fed by the tracker (the face's smoothed mesh) and the trajectory (the face's current AUs and
its target), it returns the moved frame — which the generator then crops and paints — and the
motion field it applied (for ``--frames --mattes`` exports).
"""

from __future__ import annotations

import numpy as np

from animator.motion.mouth import fill_mouth
from animator.motion.rig import AURig
from animator.motion.warp import MotionField, apply_field, motion_field


def move_face(frame: np.ndarray, mesh: np.ndarray, current: np.ndarray, target: np.ndarray,
              rig: AURig) -> tuple[np.ndarray, MotionField | None]:
    """``frame`` with the face whose mesh (frame px) is ``mesh`` moved from its ``current``
    AUs to ``target`` (both (17,), 0-5), and the field that did it (None: nothing moved)."""
    delta = np.asarray(target, np.float64) - np.asarray(current, np.float64)
    if not np.any(delta):
        return frame, None
    source = np.asarray(mesh, np.float64)[: rig.template.shape[0]]
    moved = rig.displace(source, delta)
    field = motion_field(source[:, :2], moved[:, :2], frame.shape)
    if field is None:
        return frame, None
    return fill_mouth(apply_field(frame, field), source, moved), field
