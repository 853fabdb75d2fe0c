"""The motion stage for one face: rig -> target landmarks -> full-resolution warp -> eyes and mouth.

Fed by the tracker (the face's smoothed mesh) and the trajectory (the face's current AUs and
its target), it returns the moved frame — which the generator then crops and paints — and the
motion field it applied (for ``--frames --mattes`` exports).
"""

from __future__ import annotations

import functools

import numpy as np

from animator.aus import AU_NAMES
from animator.motion.eyes import LASH_BAND, hold_eyeballs, paint_eyes, picture_blur
from animator.motion.mouth import MouthTear, fill_mouth, mouth_tear
from animator.motion.rig import BLINK, LOWER_LIDS, UPPER_LIDS, AURig
from animator.motion.rims import Rims, behind_rims, without_rims
from animator.motion.warp import MotionField, apply_field, motion_field

# each eye's lids: where the field is evaluated at every pixel (a blink's contours meet)
EYES = tuple(upper + lower for upper, lower in zip(UPPER_LIDS, LOWER_LIDS))

CLOSING = 0.5  # frame pixels an upper lid must come down for its lash band to be kept
LOWER_GUARD = 0.03  # ... and how far below a closing eye's lower lid (of its width) its guard nodes sit
LID_RAISER = AU_NAMES.index("AU05")


def opening_nodes(source: np.ndarray, target: np.ndarray, mouth: MouthTear) -> tuple[np.ndarray, np.ndarray]:
    """Extra field nodes (source, target; each (K, 2) frame px) for the openings between facing
    contours, which the mesh leaves empty.

    The mouth gets nodes between facing inner-lip points (``mouth``, :func:`animator.motion.mouth.mouth_tear`:
    a widened opening tears between its lips, each carrying what the source shows inside
    it, rather than stretching across a zigzag of triangles). An upper lid
    point that comes down gets a lash node above it, carried down with it, so the margin keeps
    its thickness and only the lid skin above stretches. The lower lid of a closing eye (its
    upper lid comes down on average) gets a guard node just below each point, moving with
    it, so no triangle reaches from the closed upper lid (its offsets point up into the eye)
    across the lower lid into the skin below, which would show bits of the eye there. (The
    eye's inside is not stretched at all: :func:`animator.motion.eyes.hold_eyeballs`.)"""
    sources, targets = [], []
    for upper, lower in zip(UPPER_LIDS, LOWER_LIDS):
        su, sl, tu, tl = (points[list(index)] for points, index in
                          ((source, upper), (source, lower), (target, upper), (target, lower)))
        down = sl - su
        down /= np.maximum(np.linalg.norm(down, axis=1, keepdims=True), 1e-9)
        width = np.linalg.norm(su[0] - su[-1])
        comes_down = ((tu - su) * down).sum(1)
        closing = comes_down > CLOSING
        lash = su[closing] - LASH_BAND * width * down[closing]
        sources.append(lash)
        targets.append(lash + tu[closing] - su[closing])
        if comes_down.mean() > CLOSING:
            guard = sl + LOWER_GUARD * width * down
            sources.append(guard)
            targets.append(guard + tl - sl)
    return np.vstack(sources + [mouth.sources]), np.vstack(targets + [mouth.targets])


def face_field(shape: tuple[int, ...], source: np.ndarray, moved: np.ndarray,
               mouth: MouthTear) -> MotionField | None:
    """The field that moves a face from its mesh ``source`` to ``moved`` (both (468, >= 2),
    frame px; ``mouth`` is how its mouth tears, :func:`animator.motion.mouth.mouth_tear`) in a
    frame of ``shape``: the landmarks plus :func:`opening_nodes`, the lids evaluated at every
    pixel, the eyeballs held still under them."""
    source, moved = np.asarray(source, np.float64)[:, :2], np.asarray(moved, np.float64)[:, :2]
    extra_source, extra_target = opening_nodes(source, moved, mouth)
    field = motion_field(np.vstack([source, extra_source]), np.vstack([moved, extra_target]), shape,
                         detail=EYES)
    return None if field is None else hold_eyeballs(field, source, moved)


def added_aus(current: np.ndarray, target: np.ndarray, rig: AURig) -> np.ndarray:
    """What the rig moves a face by, from its ``current`` AUs towards ``target`` (both (17,),
    0-5). Motion only adds: an AU the target asks for beyond what the face shows is moved, one
    the face shows beyond the target is left to the generator. The estimator reads some AUs
    on resting faces (upper lip, lip corners), and undoing those readings would push closed
    lips into each other; an actor's own speech and blinks also survive an absolute target.

    The upper lid raiser (AU05) lifts a lid by what is left of the eye's opening: an eye the
    face is closing (AU45 reads i, ``rig.closure(i)`` of its opening shut) is raised
    ``1 - closure`` as far. A blink under a wide-eyed target then stays a blink, rather than
    its lid being lifted off the closed eye and an eyeball painted under it."""
    current = np.asarray(current, np.float64)
    delta = np.maximum(np.asarray(target, np.float64) - current, 0.0)
    delta[LID_RAISER] *= 1.0 - rig.closure(float(current[BLINK]))
    return delta


def move_face(frame: np.ndarray, mesh: np.ndarray, current: np.ndarray, target: np.ndarray,
              rig: AURig, rims: Rims | None = None) -> tuple[np.ndarray, MotionField | None]:
    """``frame`` with the face whose mesh (frame px) is ``mesh`` moved from its ``current``
    AUs towards ``target`` (:func:`added_aus`) behind its spectacle ``rims`` (if it wears
    glasses, :class:`animator.motion.rims.RimFinder`), and the field that did it (None:
    nothing moved)."""
    delta = added_aus(current, target, rig)
    if not np.any(delta):
        return frame, None
    return move_landmarks(frame, mesh, rig.displace(mesh, delta), rims)


def move_landmarks(frame: np.ndarray, mesh: np.ndarray, moved: np.ndarray, rims: Rims | None = None
                   ) -> tuple[np.ndarray, MotionField | None]:
    """``frame`` with the face whose mesh (frame px; with its iris points when it has them)
    is ``mesh`` moved so that its first 468 landmarks land on ``moved`` (468, >= 2): the
    field, the warp, the eyes and the mouth (painted as soft as the picture), all behind the
    face's spectacle ``rims`` when it has some (:mod:`animator.motion.rims`); and the field
    (None: the face is outside the frame)."""
    mesh = np.asarray(mesh, np.float64)
    moved = np.asarray(moved, np.float64)
    source = mesh[: len(moved)]
    mouth = mouth_tear(source, moved)
    field = face_field(frame.shape, source, moved, mouth)
    if field is None:
        return frame, None
    on_rims = None if rims is None else rims.in_frame(mesh, field.box)   # (cover, box) or None
    skin = frame if on_rims is None else without_rims(frame, on_rims[1], on_rims[0])
    blur = functools.cache(functools.partial(picture_blur, frame, mesh))  # measured if something is painted
    warped = fill_mouth(paint_eyes(skin, apply_field(skin, field), mesh, moved, blur), moved, mouth, blur)
    return (warped if on_rims is None else behind_rims(frame, warped, on_rims[1], on_rims[0])), field
