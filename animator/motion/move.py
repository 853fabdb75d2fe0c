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

# An upper lid that closes slides over an eyeball that stays where it is: the lid margin and its
# lashes, this fraction of the eye's width thick, come down as one band, the lid skin above it
# stretches, and the eye's inside is covered from this many frame pixels under the new margin.
LASH_BAND = 0.06
EYEBALL_GAP = 1.0
CLOSING = 0.5  # frame pixels an upper lid must come down to cover the eye rather than squash it


def opening_nodes(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extra field nodes (source, target; each (K, 2) frame px) for the openings between facing
    contours, which the mesh leaves empty.

    The mouth, and an eye whose upper lid does not come down, get the midpoints between facing
    points, so a widened opening is stretched from its own two edges rather than across a
    zigzag of triangles. Where an upper lid comes down, the eye's inside does not move and
    the lid covers it: a band of the margin (lashes) moves with it, and a node just under the
    new margin samples the eye where it was, so the eye's inside between the old and the new
    margin vanishes under the lid instead of being squashed into a thin band."""
    sources, targets = [], []
    for upper, lower in zip(UPPER_LIDS, LOWER_LIDS):
        su, sl, tu, tl = (points[list(index)] for points in (source, target) for index in (upper, lower))
        down = sl - su
        down /= np.maximum(np.linalg.norm(down, axis=1, keepdims=True), 1e-9)
        closing = ((tu - su) * down).sum(1) > CLOSING
        middle = ~closing
        sources.append((su[middle] + sl[middle]) / 2)
        targets.append((tu[middle] + tl[middle]) / 2)
        width = np.linalg.norm(su[0] - su[-1])
        lash = su[closing] - LASH_BAND * width * down[closing]
        sources.append(lash)
        targets.append(lash + tu[closing] - su[closing])
        gap = np.minimum(EYEBALL_GAP, np.linalg.norm(tl[closing] - tu[closing], axis=1, keepdims=True) / 2)
        eyeball = tu[closing] + gap * down[closing]
        sources.append(eyeball)
        targets.append(eyeball)
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    sources.append((source[up] + source[low]) / 2)
    targets.append((target[up] + target[low]) / 2)
    return np.vstack(sources), np.vstack(targets)


def face_field(shape: tuple[int, ...], source: np.ndarray, moved: np.ndarray) -> MotionField | None:
    """The field that moves a face from its mesh ``source`` to ``moved`` (both (468, >= 2),
    frame px) in a frame of ``shape``: the landmarks plus :func:`opening_nodes`, the lids
    evaluated at every pixel."""
    source, moved = np.asarray(source, np.float64)[:, :2], np.asarray(moved, np.float64)[:, :2]
    extra_source, extra_target = opening_nodes(source, moved)
    return motion_field(np.vstack([source, extra_source]), np.vstack([moved, extra_target]), shape,
                        detail=EYES)


def added_aus(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """What the rig moves a face by, from its ``current`` AUs towards ``target`` (both (17,),
    0-5). Motion only adds: an AU the target asks for beyond what the face shows is moved, one
    the face shows beyond the target is left to the generator. The estimator reads some AUs
    on resting faces (upper lip, lip corners), and undoing those readings would push closed
    lips into each other; an actor's own speech and blinks also survive an absolute target."""
    return np.maximum(np.asarray(target, np.float64) - np.asarray(current, np.float64), 0.0)


def move_face(frame: np.ndarray, mesh: np.ndarray, current: np.ndarray, target: np.ndarray,
              rig: AURig) -> tuple[np.ndarray, MotionField | None]:
    """``frame`` with the face whose mesh (frame px) is ``mesh`` moved from its ``current``
    AUs towards ``target`` (:func:`added_aus`), and the field that did it (None: nothing
    moved)."""
    delta = added_aus(current, target)
    if not np.any(delta):
        return frame, None
    source = np.asarray(mesh, np.float64)[: rig.template.shape[0]]
    moved = rig.displace(source, delta)
    field = face_field(frame.shape, source, moved)
    if field is None:
        return frame, None
    return fill_mouth(apply_field(frame, field), source, moved), field
