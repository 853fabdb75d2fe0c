"""Face landmarks -> the 17 AU intensities (0-5, OpenFace's scale) with a shipped calibration.

Each AU reads one *feature* of the face: a MediaPipe blendshape (:mod:`blendshapes`, the
subject's left and right coefficients averaged) or a pose-normalised geometric measure
(:mod:`geometry`), whichever agreed better with OpenFace on people the calibration was not
fitted on (docs/au_estimation.md). The feature goes through a monotone piecewise-linear map:
knots ``(feature, intensity)`` inside the calibrated range, continued beyond both ends with a
fixed ``slope``, then clipped to 0-5. Sources and knots come from
``animator/assets/au_calibration.json``, written by :mod:`animator.estimate.calibrate`.
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
CALIBRATION_FORMAT = "animator-au-calibration/2"


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
    """Which feature an AU reads and how; ``au_map`` None means the AU is reported as 0."""

    feature: str
    au_map: AUMap | None


class AUEstimator:
    """478 landmarks (the tracker's ``mesh``) -> 17 AU intensities on 0-5."""

    def __init__(self, template: np.ndarray, rules: dict[str, AURule], provenance: dict | None = None):
        self.template = np.asarray(template, dtype=np.float64).reshape(geometry.MESH.n_points, 3)
        self.rules = rules
        self.provenance = provenance or {}
        self._columns = [FEATURE_NAMES.index(rules[name].feature) for name in AU_NAMES]
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
            rules = {name: _rule(data["aus"][name]) for name in AU_NAMES}
        except (KeyError, TypeError, ValueError) as exc:
            raise AnimatorError(f"{source}: malformed AU calibration ({exc!r})") from None
        if template.shape != (geometry.MESH.n_points, 3):
            raise AnimatorError(f"{source}: template.points must be 468 x 3, got {template.shape}")
        return cls(template, rules, data.get("provenance"))

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
        """(…, F) features -> (…, 17) float32 intensities; unreported or NaN -> 0."""
        features = np.asarray(features, dtype=np.float64)
        out = np.zeros(features.shape[:-1] + (len(AU_NAMES),))
        for i, (name, column) in enumerate(zip(AU_NAMES, self._columns)):
            au_map = self.rules[name].au_map
            if au_map is not None:
                out[..., i] = au_map(features[..., column])
        out = np.where(np.isfinite(out), out, 0.0)
        return np.clip(out, AU_MIN, AU_MAX).astype(np.float32)

    def estimate(self, landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) or (N, 478, 3) landmarks in frame pixels -> (…, 17) float32 on 0-5."""
        return self.intensities(self.features(landmarks))


def _checked(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2:] != (N_LANDMARKS, 3):
        raise AnimatorError(f"AU estimation needs MediaPipe's {N_LANDMARKS} landmarks (…, {N_LANDMARKS}, 3), "
                            f"got shape {points.shape}")
    return points


def _rule(entry: dict) -> AURule:
    feature = entry["feature"]
    if feature not in FEATURE_NAMES:
        raise ValueError(f"unknown feature {feature!r}")
    if entry["method"] == "unobservable":
        return AURule(feature, None)
    knots = np.asarray(entry["knots"], dtype=np.float64).reshape(-1, 2)
    if len(knots) < 1 or np.any(np.diff(knots[:, 0]) <= 0) or np.any(np.diff(knots[:, 1]) < 0):
        raise ValueError(f"knots of {feature} are not monotone")
    return AURule(feature, AUMap(knots, float(entry["slope"])))


def au_map_to_dict(au_map: AUMap | None, method: str) -> dict:
    """The JSON form of one AU's map (used by the calibration script)."""
    if au_map is None:
        return {"method": "unobservable"}
    return {"method": method, "knots": np.round(au_map.knots, 5).tolist(),
            "slope": round(float(au_map.slope), 4)}
