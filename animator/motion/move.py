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
from animator.motion.rig import BLINK, LID_RAISER, LOWER_LIDS, UPPER_LIDS, AURig
from animator.motion.rims import Rims, behind_rims, without_rims
from animator.motion.warp import MotionField, apply_field, motion_field

# each eye's lids: where the field is evaluated at every pixel (a blink's contours meet)
EYES = tuple(upper + lower for upper, lower in zip(UPPER_LIDS, LOWER_LIDS))

CLOSING = 0.5  # frame pixels an upper lid must come down for its lash band to be kept
LOWER_GUARD = 0.03  # ... and how far below a closing eye's lower lid (of its width) its guard nodes sit
# What motion also lowers: the expressions of the brows, lids, cheeks, nose and lip corners.
# Lowering them only moves skin over what the picture already shows. The mouth's speech shapes
# (AU10, AU17, AU20, AU23, AU25, AU26) and blinks are never lowered: an actor's speech and
# blinks survive an absolute target, and an eye or a mouth opened by undoing them would show
# what the picture does not.
LOWERED = tuple(AU_NAMES.index(name) for name in
                ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU12", "AU14", "AU15"))
# ... of these, the ones whose lowering drops the lower lid (it would open a closing eye)
LID_OPENERS = tuple(AU_NAMES.index(name) for name in ("AU06", "AU07"))
REST_READING = 0.5  # the estimator reads resting faces up to about this: never lowered below it


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


def motion_aus(current: np.ndarray, target: np.ndarray, rig: AURig) -> np.ndarray:
    """What the rig moves a face by, from its ``current`` AUs towards ``target`` (both (17,),
    0-5): every AU the target asks for beyond what the face shows is added, and each of the
    :data:`LOWERED` expressions the face shows beyond the target is taken back -- down to the
    target or to :data:`REST_READING`, whichever is higher (the estimator reads some AUs on
    resting faces, and undoing those readings would pull a calm face past its rest).

    A closing eye keeps its lids: AU05 lifts a lid, and lowering AU06 or AU07 drops a lower
    lid, by what is left of the eye's opening (AU45 reads i, ``rig.closure(i)`` of it shut,
    ``1 - closure`` as far). A blink under a wide-eyed or relaxed target then stays a blink,
    rather than its lids being pulled off the closed eye and an eyeball painted between."""
    current = np.asarray(current, np.float64)
    target = np.asarray(target, np.float64)
    still_open = 1.0 - rig.closure(float(current[BLINK]))
    added = np.maximum(target - current, 0.0)
    added[LID_RAISER] *= still_open
    taken = np.zeros_like(added)
    lowered = list(LOWERED)
    taken[lowered] = np.maximum(current[lowered] - np.maximum(target[lowered], REST_READING), 0.0)
    taken[list(LID_OPENERS)] *= still_open
    return added - taken


def move_face(frame: np.ndarray, mesh: np.ndarray, current: np.ndarray, target: np.ndarray,
              rig: AURig, rims: Rims | None = None) -> tuple[np.ndarray, MotionField | None]:
    """``frame`` with the face whose mesh (frame px) is ``mesh`` moved from its ``current``
    AUs towards ``target`` (:func:`motion_aus`) behind its spectacle ``rims`` (if it wears
    glasses, :class:`animator.motion.rims.RimFinder`), and the field that did it (None:
    nothing moved)."""
    delta = motion_aus(current, target, rig)
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
