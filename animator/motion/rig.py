"""The AU rig: how far each face-mesh landmark moves per unit of each Action Unit.

A rig is a (17, 468, 3) displacement basis in the pose-normalised face frame of
:func:`animator.estimate.geometry.normalise_pose` (inter-ocular distance 1, x towards the
subject's left, y down), so it turns and scales with the head: a face's target landmarks are

    target = mesh + R^T (sum_k delta_k * basis_k) / s

where (s, R) is the similarity that puts the mesh into that frame, fitted on the points
expressions barely move. Each AU moves only the region FACS says it moves (its ``support``);
the basis is learned from clips by :mod:`animator.motion.fit` and shipped in
``animator/assets/au_rig.json`` with its provenance.

A blink closes each eye by its own opening: AU45 at intensity i brings the upper lids at least
``blink_closure(i)`` of the way down to the lower lids, the lid skin above them following as
one sheet. That curve is learned with the basis (:func:`animator.motion.fit.fit_blink_closure`):
how far real eyes are closed when the estimator reads each intensity -- about 0.4 of the
opening at 1 and 0.77 at 4, not i/5: a lid a third of the way down reads barely 1. Lids
and lips are contours that meet but never cross: after the displacement an upper lid that
would pass its lower lid stops just above it (a blink closes the eye to its lash line), and
inner lips that would pass each other meet in the middle (a closing mouth stays closed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from animator.aus import AU_MAX, AU_NAMES, N_AUS
from animator.errors import AnimatorError
from animator.jsontext import read_json
from animator.estimate.geometry import MESH, umeyama

RIG_PATH = Path(__file__).resolve().parents[1] / "assets" / "au_rig.json"
RIG_FORMAT = "animator-au-rig/1"
BLINK = AU_NAMES.index("AU45")
N_POINTS = MESH.n_points

# Each eye's outer and inner corner (the subject's right eye, then left), and its upper/lower
# contour pairs (same position along the contour), MediaPipe mesh numbering.
EYE_CORNERS = ((33, 133), (263, 362))
UPPER_LIDS = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
LOWER_LIDS = ((7, 163, 144, 145, 153, 154, 155), (249, 390, 373, 374, 380, 381, 382))
# The upper lids' skin above each margin point, ring by ring towards the brow (the lid's fold,
# then its crease), and how much of the margin's blink each ring follows: a closing lid unfolds
# as one sheet instead of stretching its lashes over the eye.
UPPER_LID_SKIN = (((247, 30, 29, 27, 28, 56, 190), (113, 225, 224, 223, 222, 221, 189)),
                  ((467, 260, 259, 257, 258, 286, 414), (342, 445, 444, 443, 442, 441, 413)))
SKIN_FOLLOWS = (0.5, 0.25)
# Each brow's lower edge, and how much the skin between it and the lid's rings may stretch
# (keep_lid_skin_under_brows)
LOWER_BROWS = ((46, 53, 52, 65, 55), (285, 295, 282, 283, 276))
BROW_STRETCH = 1.5
# a closed eye keeps this gap (inter-ocular units): its lash line, and no degenerate triangles
CLOSED_LID_GAP = 0.012
# (AU45 intensity, share of the opening closed) for rig files without a fitted curve
LINEAR_BLINK = ((0.0, 0.0), (AU_MAX, 1.0))
UPPER_INNER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)
MOUTH_CORNERS = (61, 291)
# lips' opening (a share of the mouth's width) where teeth start to show, and are fully shown
TEETH_FROM, TEETH_FULL = 0.02, 0.08
TEETH_SQUEEZE = 0.1  # a relaxing mouth open on its teeth narrows by at most this share of its width
# per eye: its iris's centre and contour (478-point meshes)
IRISES = ((468, (469, 470, 471, 472)), (473, (474, 475, 476, 477)))
LID_RAISER = AU_NAMES.index("AU05")
LIP_CORNER_AUS = tuple(AU_NAMES.index(name) for name in ("AU12", "AU14", "AU15"))


@dataclass
class AURig:
    """Per-AU landmark displacements per unit of intensity, in the template's face frame."""

    template: np.ndarray                 # (468, 3) neutral face, inter-ocular units
    basis: np.ndarray                    # (17, 468, 3) displacement per unit of each AU
    provenance: dict = field(default_factory=dict)
    # (K, 2) knots (AU45 intensity, share of each eye's opening a blink closes), from (0, 0)
    blink_closure: np.ndarray = field(default_factory=lambda: np.array(LINEAR_BLINK))

    def __post_init__(self) -> None:
        self.template = np.asarray(self.template, dtype=np.float64).reshape(N_POINTS, 3)
        self.basis = np.asarray(self.basis, dtype=np.float64).reshape(N_AUS, N_POINTS, 3)
        self.blink_closure = np.asarray(self.blink_closure, dtype=np.float64)
        if not (np.isfinite(self.template).all() and np.isfinite(self.basis).all()):
            raise AnimatorError("AU rig: template and basis must be finite")
        knots = self.blink_closure
        if (knots.ndim != 2 or knots.shape[1] != 2 or len(knots) < 2 or not np.isfinite(knots).all()
                or (np.diff(knots, axis=0) < 0).any() or knots[0, 0] != 0 or knots[0, 1] != 0
                or knots[:, 1].max() > 1):
            raise AnimatorError("AU rig: blink_closure must be rising (intensity, share closed) "
                                "knots from (0, 0), shares at most 1")

    @classmethod
    def default(cls) -> AURig:
        """The rig shipped with the package."""
        return cls.from_file(RIG_PATH)

    @classmethod
    def from_file(cls, path: str | Path) -> AURig:
        return cls.from_dict(read_json(path, "AU rig file"), str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "AU rig") -> AURig:
        """Read the JSON form (:meth:`to_dict`): per AU, its support points and their moves."""
        if not isinstance(data, dict) or data.get("format") != RIG_FORMAT:
            raise AnimatorError(f"{source}: not an AU rig (format {RIG_FORMAT!r} expected)")
        try:
            template = np.asarray(data["template"], dtype=np.float64)
            basis = np.zeros((N_AUS, N_POINTS, 3))
            for k, name in enumerate(AU_NAMES):
                entry = data["aus"][name]
                points = np.asarray(entry["points"], dtype=np.int64)
                basis[k, points] = np.asarray(entry["displacement"], dtype=np.float64).reshape(-1, 3)
            closure = np.asarray(data.get("blink_closure", LINEAR_BLINK), dtype=np.float64)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise AnimatorError(f"{source}: malformed AU rig ({exc!r})") from None
        if template.shape != (N_POINTS, 3):
            raise AnimatorError(f"{source}: template must be {N_POINTS} x 3, got {template.shape}")
        return cls(template, basis, data.get("provenance", {}), closure)

    def to_dict(self, decimals: int = 5) -> dict:
        aus = {}
        for k, name in enumerate(AU_NAMES):
            points = np.flatnonzero(np.abs(self.basis[k]).sum(1) > 0)
            aus[name] = {"points": points.tolist(),
                         "displacement": np.round(self.basis[k, points], decimals).tolist()}
        return {"format": RIG_FORMAT, "provenance": self.provenance,
                "template": np.round(self.template, decimals).tolist(), "aus": aus,
                "blink_closure": np.round(self.blink_closure, 3).tolist()}

    def offsets(self, delta: np.ndarray) -> np.ndarray:
        """(17,) AU change -> (468, 3) displacements in the face frame."""
        delta = np.asarray(delta, dtype=np.float64).reshape(N_AUS)
        return np.tensordot(delta, self.basis, axes=1)

    def closure(self, blink: float) -> float:
        """The share of an eye's opening that AU45 at intensity ``blink`` closes."""
        return float(np.interp(blink, self.blink_closure[:, 0], self.blink_closure[:, 1]))

    @functools.cached_property
    def eye_region(self) -> np.ndarray:
        """(468,) bool: the points the lid raiser (AU05) moves, the eyes' lids and skin."""
        return np.abs(self.basis[LID_RAISER]).sum(1) > 0

    @functools.cached_property
    def lip_corner_region(self) -> np.ndarray:
        """(468,) bool: the points the lip-corner AUs (AU12, AU14, AU15) move."""
        return np.abs(self.basis[list(LIP_CORNER_AUS)]).sum(axis=(0, 2)) > 0

    def displace(self, mesh: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Move one face's mesh (N >= 468, 3 in frame pixels; with its 10 iris points when it
        has 478) by the AU change ``delta``; returns the target mesh (468, 3) in frame pixels.
        What ``delta`` takes back (its negative part) only relaxes the face (:func:`relaxed`)."""
        mesh = np.asarray(mesh, dtype=np.float64)
        stable = list(MESH.stable)
        scale, rotation, shift = umeyama(mesh[stable], self.template[stable])
        face = scale * mesh @ rotation.T + shift          # irises included, when the mesh has them
        offsets = self.offsets(np.maximum(delta, 0.0))
        if np.any(delta < 0):
            offsets += relaxed(face, self.offsets(np.minimum(delta, 0.0)), self.eye_region, self.lip_corner_region)
        face = face[:N_POINTS]
        moved = close_lids(face, face + offsets, self.closure(delta[BLINK]))
        moved = keep_contours_apart(keep_lid_skin_under_brows(face, moved))
        return mesh[:N_POINTS] + (moved - face) @ rotation / scale


def teeth_shown(opening: float) -> float:
    """How much of its teeth (0-1) a mouth shows whose lips part by ``opening`` (a share of
    the mouth's width)."""
    return float(np.clip((opening - TEETH_FROM) / (TEETH_FULL - TEETH_FROM), 0.0, 1.0))


def relaxed(face: np.ndarray, lowering: np.ndarray, eye_region: np.ndarray, lip_corner_region: np.ndarray) -> np.ndarray:
    """``lowering`` (468, 3: the rig's offsets for the AUs a move takes back, face frame) as far
    as it returns ``face`` (468 or 478 points, face frame) towards rest by moving skin over
    what the picture shows:

    - the inner lips do not part: a smile presses them together as it pulls their corners, so
      undoing one by the rig alone would tear the mouth open where the face only relaxes;
    - a mouth open on its teeth narrows by at most :data:`TEETH_SQUEEZE` of its width (the
      lowering of ``lip_corner_region``, the points the lip-corner AUs move, scaled down together):
      the warp drags the teeth with the lips, where real lips slide over them, and a wide grin
      taken back to neutral squeezed its teeth into a narrow, rounded mouth;
    - an upper lid comes down no further than the top of its iris (when ``face`` has irises),
      where a resting lid sits: the rig's units are set so that a raised lid reads back, and
      taking a very wide eye's reading back by them closed it half over the iris, drowsy,
      where the same person's resting eye is open to its iris (d6, d14). The eye's lowering
      (``eye_region``, the points AU05 moves) is scaled down together, so its lids and skin
      keep their shape."""
    out = lowering.copy()
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    parting = np.maximum(out[low, 1] - out[up, 1], 0.0)
    out[up, 1] += parting / 2
    out[low, 1] -= parting / 2
    corners = list(MOUTH_CORNERS)
    width = float(np.linalg.norm(np.subtract(*face[corners, :2])))
    narrower = (width - float(np.linalg.norm(np.subtract(*(face[corners, :2] + out[corners, :2]))))) / width
    if narrower > TEETH_SQUEEZE:
        shown = teeth_shown(float(np.max(face[low, 1] - face[up, 1])) / width)
        out[lip_corner_region] *= 1.0 - shown * (1.0 - TEETH_SQUEEZE / narrower)
    if len(face) < N_POINTS + 10:
        return out
    for (centre, rim), lid in zip(IRISES, UPPER_LIDS):
        radius = np.linalg.norm(face[list(rim), :2] - face[centre, :2], axis=1).mean()
        across = face[list(lid), 0] - face[centre, 0]
        above = np.abs(across) < radius                   # the lid points over the iris, and its edge there
        top = face[centre, 1] - np.sqrt(np.maximum(radius ** 2 - across ** 2, 0.0))
        drop = out[list(lid), 1]
        room = np.maximum(top - face[list(lid), 1], 0.0)
        share = float(np.min(np.where(above & (drop > room), room / np.maximum(drop, 1e-12), 1.0)))
        side = eye_region & (np.sign(face[:N_POINTS, 0]) == np.sign(face[centre, 0]))
        out[side] *= share
    return out


def close_lids(face: np.ndarray, moved: np.ndarray, fraction: float) -> np.ndarray:
    """``moved`` with each upper lid at least ``fraction`` of the way down to its lower lid
    (as ``face`` had them): a blink's intensity is how much of the eye it closes, whatever
    the eye's own opening, so a blink that closes all of it (AU45 at 5) closes any eye to its
    lash line (:func:`keep_contours_apart`)."""
    out = moved.copy()
    fraction = float(np.clip(fraction, 0.0, 1.0))
    if fraction == 0.0:
        return out  # no blink asked: the lids go where the rig puts them (AU05 raises them)
    for upper, lower, skin in zip(UPPER_LIDS, LOWER_LIDS, UPPER_LID_SKIN):
        up, low = list(upper), list(lower)
        reach = face[up, 1] + fraction * np.maximum(face[low, 1] - face[up, 1], 0.0)
        blink = np.maximum(reach - out[up, 1], 0.0)
        out[up, 1] += blink
        for ring, follows in zip(skin, SKIN_FOLLOWS):
            out[list(ring), 1] += follows * blink
    return out


def keep_lid_skin_under_brows(face: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """``moved`` with each upper lid's skin rings at most :data:`BROW_STRETCH` times as far below
    the brow's lower edge as ``face`` had them: the skin between brow and lid fold stretches
    no further. A narrowed or wide-open eye's fold lies right under the brow; pulled down by a
    blink, or left behind by a raised brow, the rings would stretch the brow's hair and
    shadow over the lid (dark smears on d3's and d6's eyes, raised and blinking); instead the
    fold goes up with the brow, as FACS describes for AU1+2, and the lid below stretches."""
    out = moved.copy()
    for skin, brow in zip(UPPER_LID_SKIN, LOWER_BROWS):
        rings = [point for ring in skin for point in ring]
        limit = BROW_STRETCH * np.maximum(below_brow(face, rings, brow), 0.0)
        out[rings, 1] -= np.maximum(below_brow(out, rings, brow) - limit, 0.0)
    return out


def below_brow(face: np.ndarray, points: list[int], brow: tuple[int, ...]) -> np.ndarray:
    """How far (face frame, y down) each of ``points`` lies below the brow's lower edge ``brow``
    (:data:`LOWER_BROWS`)."""
    return face[points, 1] - line_at(face, points, brow)


def line_at(face: np.ndarray, points: list[int], line: list[int] | tuple[int, ...]) -> np.ndarray:
    """The height (face frame y) of the polyline through the ``line`` points (joined in x
    order) where each of ``points`` is along x."""
    ends = face[list(line)]
    order = np.argsort(ends[:, 0])
    return np.interp(face[points, 0], ends[order, 0], ends[order, 1])


def keep_contours_apart(face: np.ndarray) -> np.ndarray:
    """A copy of ``face`` (468, 3, face frame, y down) with upper lids stopped on their lower
    lids and crossed inner lips meeting halfway. An upper lid point stops above the lower
    lid's line where it is (corner to corner through the lower lid's points), not only above
    its partner: the two lids' points sit at different places along the eye, and a point
    below that line lets the field's triangles reach from the closed lid across the lower lid,
    showing bits of the eye under it."""
    out = face.copy()
    for (outer, inner), upper, lower in zip(EYE_CORNERS, UPPER_LIDS, LOWER_LIDS):
        up = list(upper)
        out[up, 1] = np.minimum(out[up, 1], line_at(out, up, [outer, *lower, inner]) - CLOSED_LID_GAP)
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    crossed = out[up, 1] > out[low, 1]
    middle = (out[up, 1] + out[low, 1]) / 2
    out[up, 1] = np.where(crossed, middle, out[up, 1])
    out[low, 1] = np.where(crossed, middle, out[low, 1])
    return out
