"""Learning the AU rig: within a clip, landmark displacements between frames are explained by
AU differences.

Every clip is one person; its faces are pose-normalised (:func:`normalise_pose`) and both the
landmarks and the AU readings are centred on the clip's mean, so identity and the clip's
average expression drop out and only changes remain. Each landmark coordinate is then a ridge
regression on the AUs whose FACS region contains the landmark (:data:`SUPPORT`): brows (not
the lid margins) for AU01/02, brows and glabella for AU04, the lids for AU05/07/45, mouth
and chin for AU10-AU26 and so on, so an AU that happens to co-occur with another in the data
(a smile with a blink) cannot borrow its motion.

The regression is shrunk towards a prior rather than towards zero: for each AU, the smallest
smooth motion of its region that grows the AU's FACS measure (:func:`geometric_prior`). AUs
the clips exercise (smiles, jaw, brows, blinks) follow the data; AUs they barely move (AU05,
AU09, AU23 in the shipped data) keep the prior's direction. Finally each AU's unit is set so
that the estimator reads the requested change back on resting faces (:func:`calibrate_units`):
the rig speaks the estimator's 0-5 scale. How far a blink closes the eye at each intensity is
measured the same way round (:func:`fit_blink_closure`): on the clips' own frames, how closed
the eyes are that the estimator reads at 1, 2, 3 and 4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from animator.aus import AU_MAX, AU_NAMES, N_AUS
from animator.estimate import geometry
from animator.estimate.geometry import MESH

# Regions of the face frame (x towards the subject's left, y down, eye centres at (+-0.5, 0),
# inter-ocular distance 1; the nose tip is near y 0.6, the mouth corners near (+-0.53, 0.86)
# and the chin near y 1.7). Each takes the template's x and y arrays and returns a mask.
Region = Callable[[np.ndarray, np.ndarray], np.ndarray]
PRIOR_SIGMA = 0.08  # inter-ocular units: how far the prior spreads a measured point's motion
PRIOR_REACH = 0.02  # inter-ocular units the prior moves its furthest point per unit
CALIBRATION_REQUEST = 2.0
CALIBRATION_SCALES = np.geomspace(0.5, 2.0, 7)  # how far (beyond, brows fold over the forehead)
SMOOTH_SIGMA = 0.05  # ... how far the fitted moves are averaged
TAPER = 0.12        # ... and over what distance they fade out at their region's border
MIN_AREA = 0.4      # at full intensity, no mesh triangle shrinks below this share of its area
BUNCHED_AREA = 0.1  # ... except between the brows, whose skin the corrugator bunches into furrows
# per round, how far a squeezed triangle's corners are pulled towards its mean move, (x, y):
# folds run along the face (a brow onto the lid crease), so sideways moves (brows drawn
# together) are kept as far as the vertical pull allows
PULL = np.array([0.1, 0.5])
BLINK_LEVELS = (1.0, 2.0, 3.0, 4.0)  # AU45 readings at which real eyes' closure is measured ...
BLINK_MIN_FRAMES = 3                 # ... from at least this many frames of a clip, within 0.5


def _mouth_line(x: np.ndarray) -> np.ndarray:
    """y of the line between the lips: the lip corners at |x| 0.53, y 0.86; 0.97 mid-mouth."""
    return 0.97 - 0.11 * np.minimum(np.abs(x) / 0.53, 1.0) ** 2


def _eye_opening(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each eye's opening and lid margins: what the brow AUs must not move (a raised brow
    that dragged the lid margins with it would narrow the eye)."""
    return ((np.abs(x) - 0.5) / 0.3) ** 2 + ((y + 0.03) / 0.14) ** 2 < 1


REGIONS: dict[str, Region] = {
    "brows": lambda x, y: (y < 0.0) & ~_eye_opening(x, y),         # forehead, brows, lid creases
    "glabella": lambda x, y: (y < 0.35) & (np.abs(x) < 1.0) & ~_eye_opening(x, y),  # brows down and in
    "eyes": lambda x, y: ((np.abs(x) - 0.5) / 0.42) ** 2 + ((y + 0.03) / 0.26) ** 2 < 1,
    "cheeks": lambda x, y: (y > -0.15) & (y < 0.75) & (np.abs(x) > 0.2),
    "nose": lambda x, y: (np.abs(x) < 0.6) & (y > -0.3) & (y < 1.0),
    "upper_lip": lambda x, y: (np.abs(x) < 0.75) & (y > 0.45) & (y < _mouth_line(x) + 0.02),
    "mouth": lambda x, y: (np.abs(x) < 1.05) & (y > 0.3) & (y < 1.4),    # cheeks, lips, not chin
    "lip_corners": lambda x, y: (np.abs(x) > 0.2) & (np.abs(x) < 1.05) & (y > 0.55) & (y < 1.45),
    "lips": lambda x, y: (np.abs(x) < 0.75) & (y > 0.65) & (y < 1.35),
    "between_brows": lambda x, y: (np.abs(x) < 0.3) & (y > -0.45) & (y < 0.0),  # skin that bunches
    "chin": lambda x, y: (np.abs(x) < 0.65) & (y > _mouth_line(x)),
    "jaw": lambda x, y: y > _mouth_line(x) - 0.04,                  # lower lip, chin, jaw line
}

SUPPORT: dict[str, tuple[str, ...]] = {
    "AU01": ("brows",), "AU02": ("brows",), "AU04": ("glabella",),
    "AU05": ("eyes",), "AU06": ("cheeks", "eyes"), "AU07": ("eyes",),
    "AU09": ("nose",), "AU10": ("upper_lip",), "AU12": ("mouth",), "AU14": ("mouth",),
    "AU15": ("lip_corners",), "AU17": ("chin",), "AU20": ("mouth",), "AU23": ("lips",),
    "AU25": ("lips",), "AU26": ("jaw",), "AU45": ("eyes",),
}


def support_mask(template: np.ndarray) -> np.ndarray:
    """(17, N) bool: which template landmarks each AU may move."""
    x, y = np.asarray(template)[:, 0], np.asarray(template)[:, 1]
    mask = np.zeros((N_AUS, len(x)), dtype=bool)
    for k, name in enumerate(AU_NAMES):
        for region in SUPPORT[name]:
            mask[k] |= REGIONS[region](x, y)
    return mask


@dataclass
class Clip:
    """One person's frames: pose-normalised landmarks (N, P, 3) and AU readings (N, 17),
    smoothed in time as the renderer smooths an actor's."""

    name: str
    faces: np.ndarray
    aus: np.ndarray
    landmarks: np.ndarray | None = None  # (N, 478, 3) frame px, as the estimator reads them
    readings: np.ndarray | None = None   # (N, 17) each frame's own reading (a blink is a few frames)
    times: np.ndarray | None = None      # (N,) each frame's time, seconds from the stream's start

    def resting(self, count: int) -> np.ndarray:
        """The ``count`` frames' landmarks whose AU readings sum lowest (the most neutral)."""
        return self.landmarks[np.argsort(self.aus.sum(1))[:count]]

    def centred(self) -> tuple[np.ndarray, np.ndarray]:
        """Landmark and AU changes about the clip's mean: (N, P*3), (N, 17)."""
        faces = self.faces.reshape(len(self.faces), -1)
        return faces - faces.mean(0), self.aus - self.aus.mean(0)


def geometric_prior(template: np.ndarray, support: np.ndarray, sigma: float = PRIOR_SIGMA,
                    step: float = 1e-3) -> np.ndarray:
    """(17, P, 3): per AU, the smallest smooth motion of its region that grows the AU's FACS
    measure (:data:`animator.estimate.geometry.MEASURE_NAMES`, one per AU): the measure's
    gradient on the template (finite differences, restricted to the support, the pose-fitting
    points left out), spread over neighbouring landmarks with a Gaussian of ``sigma``
    inter-ocular units so regions move as a whole, scaled to move no point more than
    ``PRIOR_REACH`` per unit. Directions only: :func:`calibrate_units` sets the scale."""
    template = np.asarray(template, dtype=np.float64)
    n = template.size
    shifted = np.repeat(template[None], 2 * n, axis=0).reshape(2 * n, -1)
    shifted[np.arange(n), np.arange(n)] += step
    shifted[n + np.arange(n), np.arange(n)] -= step
    measures = geometry.measures(shifted.reshape(2 * n, *template.shape), template)
    gradient = ((measures[:n] - measures[n:]) / (2 * step)).T.reshape(N_AUS, *template.shape)
    distance2 = ((template[:, None, :2] - template[None, :, :2]) ** 2).sum(-1)
    kernel = np.exp(-0.5 * distance2 / sigma ** 2)
    movable = support.copy()
    movable[:, list(MESH.stable)] = False
    prior = np.zeros_like(gradient)
    for k in range(N_AUS):
        g = np.where(movable[k][:, None], np.nan_to_num(gradient[k]), 0.0)
        spread = np.where(support[k][:, None], kernel @ g, 0.0)
        reach = np.linalg.norm(spread, axis=1).max()
        if reach > 0:
            prior[k] = spread * PRIOR_REACH / reach
    return prior


def eye_apertures(faces: np.ndarray) -> np.ndarray:
    """(N,) each pose-normalised face's mean gap between facing upper and lower lid points."""
    from animator.motion.rig import LOWER_LIDS, UPPER_LIDS  # noqa: PLC0415

    upper, lower = [i for lid in UPPER_LIDS for i in lid], [i for lid in LOWER_LIDS for i in lid]
    return (np.asarray(faces)[:, lower, 1] - np.asarray(faces)[:, upper, 1]).mean(1)


def blink_closures(faces: np.ndarray, blink: np.ndarray) -> np.ndarray:
    """(len(BLINK_LEVELS),) one clip's share of the open eye's aperture that is closed, median
    over the frames (pose-normalised ``faces``) whose AU45 reading ``blink`` is within 0.5 of
    each level; NaN where fewer than BLINK_MIN_FRAMES are, or no frame reads open (< 0.5),
    whose median aperture is the open eye's."""
    aperture, blink = eye_apertures(faces), np.asarray(blink)
    shares = np.full(len(BLINK_LEVELS), np.nan)
    if not (blink < 0.5).any():
        return shares
    closed = 1 - aperture / np.median(aperture[blink < 0.5])
    for i, level in enumerate(BLINK_LEVELS):
        near = np.abs(blink - level) <= 0.5
        if near.sum() >= BLINK_MIN_FRAMES:
            shares[i] = np.median(closed[near])
    return shares


def fit_blink_closure(per_clip: Sequence[np.ndarray]) -> np.ndarray:
    """(K, 2) knots (AU45 intensity, share of the opening closed) for :class:`AURig`: (0, 0),
    each level's median over the clips (:func:`blink_closures`) that show it, made rising, and
    (5, 1): a blink at full intensity closes any eye."""
    table = np.stack(per_clip)
    seen = np.isfinite(table).any(0)
    levels = np.asarray(BLINK_LEVELS)[seen]
    shares = np.maximum.accumulate(np.clip(np.nanmedian(table[:, seen], axis=0), 0.0, 1.0))
    return np.column_stack([np.r_[0.0, levels, AU_MAX], np.r_[0.0, shares, 1.0]])


def blink_closure_held_out(per_clip: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, dict]:
    """Per clip that shows blinks, the mean absolute error of the closure a curve fitted on
    the other clips predicts at its levels, and that of closing i/5 of the eye at intensity i."""
    scores = {}
    for i, (held, name) in enumerate(zip(per_clip, names)):
        seen = np.isfinite(held)
        if not seen.any():
            continue
        knots = fit_blink_closure([c for j, c in enumerate(per_clip) if j != i])
        levels = np.asarray(BLINK_LEVELS)[seen]
        fitted = np.interp(levels, knots[:, 0], knots[:, 1])
        scores[name] = {"fitted": round(float(np.abs(fitted - held[seen]).mean()), 3),
                        "linear": round(float(np.abs(levels / AU_MAX - held[seen]).mean()), 3)}
    return scores


def calibrate_units(basis: np.ndarray, faces: np.ndarray, estimator, blink_closure: np.ndarray,
                    request: float = CALIBRATION_REQUEST, scales: np.ndarray = CALIBRATION_SCALES) -> np.ndarray:
    """(17,) factors that put each AU's moves in the estimator's units: applied to resting
    ``faces`` (N, 478, 3 frame px), ``request`` units of the scaled basis (a blink also
    closing the eye by ``blink_closure``, :class:`AURig`'s knots) read back as about
    ``request`` more (the median over faces, the factor searched in ``scales``). AUs the
    estimator does not report, or that no factor moves, keep factor 1."""
    from animator.motion.rig import AURig  # noqa: PLC0415

    before = estimator.estimate(faces)
    factors = np.ones(N_AUS)
    for k, name in enumerate(AU_NAMES):
        if estimator.rules[name].au_map is None or not np.any(basis[k]):
            continue
        gains = []
        for scale in scales:
            single = np.zeros_like(basis)
            single[k] = basis[k] * scale
            rig = AURig(estimator.template, single, blink_closure=blink_closure)
            moved = faces.copy()
            delta = np.zeros(N_AUS)
            delta[k] = request
            for i, face in enumerate(faces):
                moved[i, : len(estimator.template)] = rig.displace(face, delta)
            gains.append(float(np.median(estimator.estimate(moved)[:, k] - before[:, k])))
        reaching = [s for s, g in zip(scales, gains) if g >= request]
        factors[k] = min(reaching) if reaching else scales[int(np.argmax(gains))] if max(gains) > 0 else 1.0
    return factors


def fit_basis(clips: Sequence[Clip], support: np.ndarray, ridge: float,
              prior: np.ndarray | None = None) -> np.ndarray:
    """(17, P, 3) displacement per unit of each AU. ``ridge`` is added to every AU's variance
    (intensity units squared, per frame), shrinking AUs the data barely moves towards ``prior``
    (zero if None)."""
    pairs = [clip.centred() for clip in clips]
    X = np.concatenate([p[0] for p in pairs])
    A = np.concatenate([p[1] for p in pairs]).astype(np.float64)
    gram, cross = A.T @ A, A.T @ X                     # (17, 17), (17, P*3)
    n_points = support.shape[1]
    cross = cross.reshape(N_AUS, n_points, 3)
    basis = np.zeros((N_AUS, n_points, 3))
    penalty = ridge * len(A)
    pull = penalty * (prior if prior is not None else np.zeros_like(basis))
    for p in range(n_points):
        active = np.flatnonzero(support[:, p])
        if active.size == 0:
            continue
        system = gram[np.ix_(active, active)] + penalty * np.eye(active.size)
        basis[active, p] = np.linalg.solve(system, cross[active, p] + pull[active, p])
    return basis


def explained(clip: Clip, basis: np.ndarray, where: np.ndarray) -> float:
    """Fraction of the clip's landmark motion (at points ``where``) the basis predicts from its
    AU changes: 1 - residual / total sum of squares."""
    X, A = clip.centred()
    X = X.reshape(len(X), -1, 3)[:, where]
    predicted = np.tensordot(A, basis[:, where], axes=1)
    total = float((X ** 2).sum())
    return 1.0 - float(((X - predicted) ** 2).sum()) / total if total > 0 else 0.0


def mirror_index(template: np.ndarray) -> np.ndarray:
    """(P,) for each landmark, its mirror image across the face's midline: the one-to-one
    matching of the landmarks to their reflections (-x, y, z) with the least total distance
    (a nearest neighbour alone pairs some lip points twice on a slightly asymmetric face)."""
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415

    template = np.asarray(template, dtype=np.float64)
    flipped = template * (-1.0, 1.0, 1.0)
    _, mirror = linear_sum_assignment(((flipped[:, None] - template[None]) ** 2).sum(-1))
    return mirror


def symmetrise(basis: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The bilateral part of a (17, P, 3) basis: each point's move averaged with its mirror
    point's, x flipped (the AUs are controls for both sides of the face; clips of turned heads
    would otherwise leave a one-sided smile)."""
    return (basis + basis[:, mirror] * (-1.0, 1.0, 1.0)) / 2


def smooth(basis: np.ndarray, template: np.ndarray, support: np.ndarray,
           sigma: float = SMOOTH_SIGMA, taper: float = TAPER) -> np.ndarray:
    """Each AU's moves averaged over neighbouring landmarks of its support (Gaussian weights,
    ``sigma`` inter-ocular units), then faded to zero over ``taper`` towards the support's
    border: per-landmark regression noise and a hard border would make contours wavy."""
    template = np.asarray(template, dtype=np.float64)
    distance = np.sqrt(((template[:, None, :2] - template[None, :, :2]) ** 2).sum(-1))
    kernel = np.exp(-0.5 * (distance / sigma) ** 2)
    out = np.zeros_like(basis)
    for k in range(len(basis)):
        if not support[k].any():
            continue
        weights = kernel * support[k][None, :]
        total = weights.sum(1, keepdims=True)
        averaged = weights @ basis[k] / np.maximum(total, 1e-12)
        outside = distance[:, ~support[k]].min(1) if (~support[k]).any() else np.full(len(template), np.inf)
        t = np.clip(outside / taper, 0.0, 1.0)
        out[k] = np.where(support[k][:, None], averaged * (t * t * (3 - 2 * t))[:, None], 0.0)
    return out


def unfold(basis: np.ndarray, template: np.ndarray, support: np.ndarray, intensity: float = AU_MAX,
           rounds: int = 2000) -> np.ndarray:
    """``basis`` with each AU's moves spread so that, at ``intensity``, no triangle of the
    template's mesh (Delaunay in the face plane; triangles across the eye and mouth openings
    left out: those close by design) shrinks below ``MIN_AREA`` of its area (``BUNCHED_AREA``
    between the brows: brows drawn together bunch the skin there) or turns over.
    Per-landmark regression lets a brow run into the forehead row above it (a raised brow
    then folds the forehead over itself) or onto the lid below it; each round pulls the
    vertices of every such triangle towards the triangle's mean move (a translation, which
    keeps its area; :data:`PULL`), within the AU's support, so the skin around is carried
    along."""
    from scipy.spatial import Delaunay  # noqa: PLC0415

    from animator.motion.rig import LOWER_INNER_LIP, LOWER_LIDS, UPPER_INNER_LIP, UPPER_LIDS  # noqa: PLC0415

    plane = np.asarray(template, dtype=np.float64)[:, :2]
    triangles = Delaunay(plane).simplices
    facing = [(set(upper), set(lower)) for upper, lower in zip(UPPER_LIDS, LOWER_LIDS)]
    facing.append((set(UPPER_INNER_LIP), set(LOWER_INNER_LIP)))
    across = np.array([any(set(t) & upper and set(t) & lower for upper, lower in facing) for t in triangles])
    triangles = triangles[~across]

    def areas(points: np.ndarray) -> np.ndarray:
        a, b, c = (points[triangles[:, k]] for k in range(3))
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    rest = areas(plane)
    centroid = plane[triangles].mean(1)
    floor = np.where(REGIONS["between_brows"](centroid[:, 0], centroid[:, 1]), BUNCHED_AREA, MIN_AREA) * rest
    out = basis.copy()
    for k in range(len(out)):
        move = out[k, :, :2] * intensity
        for _ in range(rounds):
            squeezed = areas(plane + move) < floor
            if not squeezed.any():
                break
            bad = triangles[squeezed]
            mean = move[bad].mean(1)                                   # (B, 2)
            total = np.zeros_like(move)
            count = np.zeros(len(move))
            np.add.at(total, bad.ravel(), np.repeat(mean, 3, axis=0))
            np.add.at(count, bad.ravel(), 1)
            pulled = (count > 0) & support[k]
            move[pulled] += PULL * (total[pulled] / count[pulled, None] - move[pulled])
        out[k, :, :2] = move / intensity
    return out


def fit_rig_basis(clips: Sequence[Clip], template: np.ndarray, support: np.ndarray, ridge: float,
                  prior: np.ndarray | None = None) -> np.ndarray:
    """The rig's basis on ``template``'s landmarks: :func:`fit_basis`, :func:`symmetrise`,
    :func:`smooth`."""
    basis = symmetrise(fit_basis(clips, support, ridge, prior), mirror_index(template))
    return smooth(basis, template, support)


def leave_one_out(clips: Sequence[Clip], template: np.ndarray, support: np.ndarray, ridge: float,
                  prior: np.ndarray | None = None) -> dict[str, float]:
    """Per held-out clip, the fraction of its landmark motion (points any AU may move) that a
    rig fitted (:func:`fit_rig_basis`) on the other clips explains."""
    where = support.any(0)
    scores = {}
    for i, held in enumerate(clips):
        basis = fit_rig_basis([c for j, c in enumerate(clips) if j != i], template, support, ridge, prior)
        scores[held.name] = explained(held, basis, where)
    return scores
