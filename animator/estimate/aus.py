"""Face landmarks -> the 17 AU intensities (0-5, OpenFace's scale) with a shipped calibration.

Each AU reads a weighted sum of a few *features* of the face -- MediaPipe blendshapes
(:mod:`blendshapes`, the subject's left and right coefficients averaged) and pose-normalised
geometric measures (:mod:`geometry`) -- weighted by how well each agreed with OpenFace within
each calibration person (docs/au_estimation.md). The sum goes through a monotone
piecewise-linear map: knots ``(score, intensity)`` inside the calibrated range, continued
beyond both ends with a fixed ``slope``, then clipped to 0-5.

Two modes. **Static** (:meth:`AUEstimator.estimate`): every frame on its own, for photos.
**Video** (:meth:`AUEstimator.estimate_track`): one person's whole track; for the AUs OpenFace
itself scores with person-normalised ("dynamic") models, each feature is taken relative to the
track's resting value first (its :data:`BASELINE_PERCENTILE`), so a high brow or a long chin is
not read as expression -- OpenFace's video mode normalises its appearance features by the
person's median likewise. Each mode has its own fitted maps.
Everything comes from ``animator/assets/au_calibration.json``, written by
:mod:`animator.estimate.calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animator.aus import AU_MAX, AU_MIN, AU_NAMES
from animator.errors import AnimatorError
from animator.jsontext import read_json
from animator.estimate import geometry
from animator.estimate.blendshapes import BLENDSHAPE_NAMES, BlendshapeModel
from animator.faces.landmarks import N_LANDMARKS

CALIBRATION_PATH = Path(__file__).resolve().parents[1] / "assets" / "au_calibration.json"
CALIBRATION_FORMAT = "animator-au-calibration/3"
# A track shorter than this has no reliable baseline: video mode falls back to the static maps.
MIN_TRACK_FRAMES = 25
# Video mode's per-track baseline: each feature's 25th percentile over the track, a resting
# face for AUs that only add movement from rest. Not the median: in expressive footage the
# median frame already has raised brows or an open mouth (docs/au_estimation.md).
BASELINE_PERCENTILE = 25.0


def _paired_blendshapes() -> tuple[tuple[str, ...], np.ndarray]:
    """Blendshape features (left/right pairs merged, ``_neutral`` dropped) and the (52, F)
    matrix that averages the coefficients into them."""
    names: list[str] = []
    for name in BLENDSHAPE_NAMES[1:]:
        merged = name.replace("Left", "").replace("Right", "")
        if merged not in names:
            names.append(merged)
    weights = np.zeros((len(BLENDSHAPE_NAMES), len(names)))
    for i, name in enumerate(BLENDSHAPE_NAMES[1:], start=1):
        weights[i, names.index(name.replace("Left", "").replace("Right", ""))] = 1.0
    return tuple(names), weights / weights.sum(0)


BLENDSHAPE_FEATURES, _PAIR_AVERAGE = _paired_blendshapes()
# Every feature an AU may read: blendshapes first, then the geometric measures.
FEATURE_NAMES: tuple[str, ...] = BLENDSHAPE_FEATURES + geometry.MEASURE_NAMES


@dataclass(frozen=True)
class AUMap:
    """One AU's monotone map: knots (increasing feature, non-decreasing intensity) + end slope."""

    knots: np.ndarray   # (K, 2)
    slope: float

    def __call__(self, value: np.ndarray) -> np.ndarray:
        xs, ys = self.knots[:, 0], self.knots[:, 1]
        inside = np.interp(value, xs, ys)
        below = ys[0] + self.slope * (value - xs[0])
        above = ys[-1] + self.slope * (value - xs[-1])
        return np.where(value < xs[0], below, np.where(value > xs[-1], above, inside))


@dataclass(frozen=True)
class AURule:
    """Which features an AU reads, their weights, and the map of the weighted sum;
    ``au_map`` None means the AU is reported as 0."""

    features: tuple[str, ...]
    weights: np.ndarray     # (len(features),)
    au_map: AUMap | None

    @property
    def feature(self) -> str:
        """The features read, as one label (``browOuterUp+brow_outer_raise``)."""
        return "+".join(self.features)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(…, F) features in :data:`FEATURE_NAMES` order -> (…,) weighted sum."""
        return features[..., [FEATURE_NAMES.index(f) for f in self.features]] @ self.weights

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(…, F) features -> (…,) intensities, not yet clipped; zeros if unreported."""
        if self.au_map is None:
            return np.zeros(features.shape[:-1])
        return self.au_map(self.score(features))


class AUEstimator:
    """478 landmarks (the tracker's ``mesh``) -> 17 AU intensities on 0-5.

    ``rules``: the static map of every AU. ``video_rules``: the AUs read relative to the
    track's resting value in video mode, with the maps fitted that way; the others use ``rules``.
    """

    def __init__(self, template: np.ndarray, rules: dict[str, AURule],
                 video_rules: dict[str, AURule] | None = None, provenance: dict | None = None):
        self.template = np.asarray(template, dtype=np.float64).reshape(geometry.MESH.n_points, 3)
        self.rules = rules
        self.video_rules = video_rules or {}
        self.provenance = provenance or {}
        self._blendshapes: BlendshapeModel | None = None

    @classmethod
    def default(cls) -> AUEstimator:
        """The calibration shipped with the package."""
        return cls.from_file(CALIBRATION_PATH)

    @classmethod
    def from_file(cls, path: str | Path) -> AUEstimator:
        return cls.from_dict(read_json(path, "AU calibration file"), str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "calibration") -> AUEstimator:
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise AnimatorError(f"{source}: not an AU calibration (format {CALIBRATION_FORMAT!r} expected)")
        try:
            template = np.asarray(data["template"]["points"], dtype=np.float64)
            rules = {name: _rule(data["aus"][name]["static"]) for name in AU_NAMES}
            video = {name: _rule(data["aus"][name]["video"]) for name in AU_NAMES if "video" in data["aus"][name]}
        except (KeyError, TypeError, ValueError) as exc:
            raise AnimatorError(f"{source}: malformed AU calibration ({exc!r})") from None
        if template.shape != (geometry.MESH.n_points, 3):
            raise AnimatorError(f"{source}: template.points must be 468 x 3, got {template.shape}")
        return cls(template, rules, video, data.get("provenance"))

    @property
    def observable(self) -> np.ndarray:
        """(17,) bool: the AUs this estimator reports (the others are always 0)."""
        return np.array([self.rules[name].au_map is not None for name in AU_NAMES])

    def blendshapes(self, landmarks: np.ndarray) -> np.ndarray:
        """(…, 478, 3) landmarks -> (…, 52) MediaPipe blendshape coefficients."""
        if self._blendshapes is None:
            self._blendshapes = BlendshapeModel()
        return self._blendshapes(landmarks)

    def features(self, landmarks: np.ndarray) -> np.ndarray:
        """(…, 478, 3) frame-pixel landmarks -> (…, F) features in :data:`FEATURE_NAMES` order."""
        landmarks = _checked(landmarks)
        paired = self.blendshapes(landmarks) @ _PAIR_AVERAGE
        measures = geometry.measures(landmarks[..., :geometry.MESH.n_points, :], self.template)
        return np.concatenate([paired, measures], axis=-1)

    def intensities(self, features: np.ndarray) -> np.ndarray:
        """Static mode: (…, F) features of single frames -> (…, 17) float32 intensities;
        unreported or NaN -> 0."""
        features = np.asarray(features, dtype=np.float64)
        return _clipped(np.stack([self.rules[name](features) for name in AU_NAMES], axis=-1))

    def track_intensities(self, features: np.ndarray) -> np.ndarray:
        """Video mode: (N, F) features of one person's track -> (N, 17) float32; the AUs in
        ``video_rules`` read each feature relative to the track's :data:`BASELINE_PERCENTILE`.
        A track shorter than :data:`MIN_TRACK_FRAMES` gets the static maps."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise AnimatorError(f"a track's features must be (frames, {len(FEATURE_NAMES)}), got {features.shape}")
        if len(features) < MIN_TRACK_FRAMES:
            return self.intensities(features)
        relative = relative_to_rest(features)
        return _clipped(np.stack([self.video_rules[name](relative) if name in self.video_rules
                                  else self.rules[name](features) for name in AU_NAMES], axis=-1))

    def estimate(self, landmarks: np.ndarray) -> np.ndarray:
        """Static mode: (478, 3) or (N, 478, 3) landmarks in frame pixels, each frame on its
        own -> (…, 17) float32 on 0-5. For photos; a video's tracks go to :meth:`estimate_track`."""
        return self.intensities(self.features(landmarks))

    def estimate_track(self, landmarks: np.ndarray) -> np.ndarray:
        """Video mode: (N, 478, 3) landmarks of ONE person's track (in time order, whole
        track) -> (N, 17) float32 on 0-5, relative to that person's own resting face."""
        return self.track_intensities(self.features(landmarks))


def relative_to_rest(features: np.ndarray) -> np.ndarray:
    """(N, F) one person's features -> each relative to its resting value over them (its
    :data:`BASELINE_PERCENTILE`): video mode's per-track baseline."""
    return features - np.nanpercentile(features, BASELINE_PERCENTILE, axis=0)


def _clipped(values: np.ndarray) -> np.ndarray:
    values = np.where(np.isfinite(values), values, 0.0)
    return np.clip(values, AU_MIN, AU_MAX).astype(np.float32)


def _checked(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2:] != (N_LANDMARKS, 3):
        raise AnimatorError(f"AU estimation needs MediaPipe's {N_LANDMARKS} landmarks (…, {N_LANDMARKS}, 3), "
                            f"got shape {points.shape}")
    return points


def _rule(entry: dict) -> AURule:
    features = tuple(entry["features"])
    weights = np.asarray(entry["weights"], dtype=np.float64).reshape(-1)
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown or not features or len(weights) != len(features) or not np.isfinite(weights).all():
        raise ValueError(f"features {features} / weights {weights.tolist()} do not match")
    if entry["method"] == "unobservable":
        return AURule(features, weights, None)
    knots = np.asarray(entry["knots"], dtype=np.float64).reshape(-1, 2)
    if len(knots) < 1 or np.any(np.diff(knots[:, 0]) <= 0) or np.any(np.diff(knots[:, 1]) < 0):
        raise ValueError(f"knots of {'+'.join(features)} are not monotone")
    return AURule(features, weights, AUMap(knots, float(entry["slope"])))


def rule_to_dict(rule: AURule, method: str) -> dict:
    """The JSON form of one AU's rule (used by the calibration script)."""
    head = {"features": list(rule.features), "weights": [float(f"{w:.6g}") for w in rule.weights]}
    if rule.au_map is None:
        return {**head, "method": "unobservable"}
    return {**head, "method": method, "knots": np.round(rule.au_map.knots, 5).tolist(),
            "slope": round(float(rule.au_map.slope), 4)}
