"""Geometric measures -> AU intensities (0-5, OpenFace's scale) with a shipped calibration.

Each AU reads one measure of :mod:`animator.estimate.geometry` through a monotone
piecewise-linear map: knots ``(measure, intensity)`` inside the calibrated range, continued
beyond both ends with a fixed ``slope`` (intensity per inter-ocular unit) so a full blink or a
wide-open jaw reads higher than anything in the calibration set, then clipped to 0-5. The knots
come from ``animator/assets/au_calibration.json`` (written by :mod:`animator.estimate.calibrate`,
which records how each AU was calibrated: a linear or isotonic fit to OpenFace's intensities,
or a FACS-geometry prior scale where the calibration set cannot fit one). AUs geometry cannot
see are reported as 0 and flagged in :data:`OBSERVABLE`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animator.aus import AU_MAX, AU_MIN, AU_NAMES
from animator.errors import AnimatorError
from animator.estimate import geometry

CALIBRATION_PATH = Path(__file__).resolve().parents[1] / "assets" / "au_calibration.json"
CALIBRATION_FORMAT = "animator-au-calibration/1"

# The measure each AU reads (same order as AU_NAMES).
AU_MEASURES: dict[str, str] = dict(zip(AU_NAMES, geometry.MEASURE_NAMES))

# AU14 (dimpler) is a skin fold beside the lip corner: the mesh only moves the corner a little
# backwards, which smiles do too, so no landmark measure separates it. Reported as 0.
UNOBSERVABLE: frozenset[str] = frozenset({"AU14"})
OBSERVABLE: np.ndarray = np.array([n not in UNOBSERVABLE for n in AU_NAMES])
# The 68-point layout additionally has no cheek or nostril-wing points (AU06, AU09).
OBSERVABLE_68: np.ndarray = np.array(
    [n not in UNOBSERVABLE and AU_MEASURES[n] not in geometry.MEASURES_68_MISSING for n in AU_NAMES])

LAYOUT_KEYS = {"mesh468": geometry.MESH, "ibug68": geometry.IBUG68}


@dataclass(frozen=True)
class AUMap:
    """One AU's monotone map: knots (increasing measure, non-decreasing intensity) + end slope."""

    knots: np.ndarray   # (K, 2)
    slope: float

    def __call__(self, measure: np.ndarray) -> np.ndarray:
        xs, ys = self.knots[:, 0], self.knots[:, 1]
        inside = np.interp(measure, xs, ys)
        below = ys[0] + self.slope * (measure - xs[0])
        above = ys[-1] + self.slope * (measure - xs[-1])
        return np.where(measure < xs[0], below, np.where(measure > xs[-1], above, inside))


@dataclass(frozen=True)
class Mapping:
    """One layout's 17 AU maps (AU_NAMES order); ``None`` marks an unobservable AU."""

    maps: tuple[AUMap | None, ...]

    @property
    def observable(self) -> np.ndarray:
        return np.array([m is not None for m in self.maps])

    def intensities(self, measures: np.ndarray) -> np.ndarray:
        """(…, 17) measures -> (…, 17) float32 intensities; unobservable or NaN -> 0."""
        measures = np.asarray(measures, dtype=np.float64)
        out = np.zeros(measures.shape)
        for i, au_map in enumerate(self.maps):
            if au_map is not None:
                out[..., i] = au_map(measures[..., i])
        out = np.where(np.isfinite(out), out, 0.0)
        return np.clip(out, AU_MIN, AU_MAX).astype(np.float32)


class AUEstimator:
    """Landmarks (468-point mesh or 68 points) -> 17 AU intensities on 0-5."""

    def __init__(self, template: np.ndarray, mappings: dict[str, Mapping], provenance: dict | None = None):
        self.template = np.asarray(template, dtype=np.float64).reshape(geometry.MESH.n_points, 3)
        self.mappings = mappings
        self.provenance = provenance or {}

    @classmethod
    def default(cls) -> AUEstimator:
        """The calibration shipped with the package."""
        return cls.from_file(CALIBRATION_PATH)

    @classmethod
    def from_file(cls, path: str | Path) -> AUEstimator:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise AnimatorError(f"{path}: no such AU calibration file") from None
        except json.JSONDecodeError as exc:
            raise AnimatorError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "calibration") -> AUEstimator:
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise AnimatorError(f"{source}: not an AU calibration (format {CALIBRATION_FORMAT!r} expected)")
        try:
            template = np.asarray(data["template"]["points"], dtype=np.float64)
            mappings = {}
            for key, layout in data["layouts"].items():
                if key not in LAYOUT_KEYS:
                    raise AnimatorError(f"{source}: layouts.{key}: unknown layout")
                mappings[key] = Mapping(tuple(_au_map(layout[n]) for n in AU_NAMES))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnimatorError(f"{source}: malformed AU calibration ({exc!r})") from None
        if template.shape != (geometry.MESH.n_points, 3):
            raise AnimatorError(f"{source}: template.points must be 468 x 3, got {template.shape}")
        return cls(template, mappings, data.get("provenance"))

    def _mapping(self, points: np.ndarray) -> Mapping:
        key = "mesh468" if geometry.layout_for(points) is geometry.MESH else "ibug68"
        if key not in self.mappings:
            raise AnimatorError(f"this AU calibration has no {key} layout")
        return self.mappings[key]

    def observable(self, n_points: int = 468) -> np.ndarray:
        """(17,) bool: which AUs this estimator reports for a layout of ``n_points``."""
        return self._mapping(np.zeros((n_points, 3))).observable.copy()

    def measures(self, points: np.ndarray) -> np.ndarray:
        """(…, N, 3) landmarks -> (…, 17) geometric measures (inter-ocular units)."""
        return geometry.measures(points, self.template)

    def estimate(self, points: np.ndarray) -> np.ndarray:
        """(468, 3) / (…, 468, 3) mesh (or 68 points) -> (…, 17) float32 intensities on 0-5."""
        points = np.asarray(points)
        if points.ndim < 2 or points.shape[-1] not in (2, 3):
            raise AnimatorError(f"landmarks: expected (…, N, 3) points, got shape {points.shape}")
        return self._mapping(points).intensities(self.measures(points))


def _au_map(entry: dict) -> AUMap | None:
    if entry["method"] == "unobservable":
        return None
    knots = np.asarray(entry["knots"], dtype=np.float64).reshape(-1, 2)
    if len(knots) < 1 or np.any(np.diff(knots[:, 0]) <= 0) or np.any(np.diff(knots[:, 1]) < 0):
        raise ValueError(f"knots of {entry.get('measure')} are not monotone")
    return AUMap(knots, float(entry["slope"]))


def au_map_to_dict(au_map: AUMap | None, method: str) -> dict:
    """The JSON form of one AU's map (used by the calibration script)."""
    if au_map is None:
        return {"method": "unobservable"}
    return {"method": method, "knots": np.round(au_map.knots, 5).tolist(),
            "slope": round(float(au_map.slope), 4)}
