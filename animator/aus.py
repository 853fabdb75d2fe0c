"""The Action Unit vocabulary: GANimation's 17 AUs, their FACS names, presets and target specs.

Everywhere outside the network an AU vector is a float32 array of shape (17,) in the order of
:data:`AU_CODES`, on OpenFace's intensity scale 0-5. Only the model divides by :data:`AU_MAX`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from animator.errors import AnimatorError
from animator.jsontext import parse_json, read_json

AU_CODES: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
AU_NAMES: tuple[str, ...] = tuple(f"AU{c:02d}" for c in AU_CODES)
N_AUS = len(AU_CODES)
AU_MIN, AU_MAX = 0.0, 5.0

FACS_NAMES: dict[str, str] = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU09": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU45": "blink",
}

# Prototypes after EMFACS (Friesen & Ekman) at a clear but not extreme intensity; AUs outside
# GANimation's 17 (AU16, AU24, AU27...) are left out. AU25/AU26 accompany open-mouth prototypes.
PRESETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"AU06": 2.5, "AU12": 3.5, "AU25": 1.0},
    "sad": {"AU01": 2.5, "AU04": 2.0, "AU15": 2.5, "AU17": 1.0},
    "surprise": {"AU01": 3.0, "AU02": 3.0, "AU05": 2.5, "AU25": 2.0, "AU26": 3.0},
    "fear": {"AU01": 3.0, "AU02": 2.5, "AU04": 2.0, "AU05": 3.0, "AU07": 1.5, "AU20": 2.5,
             "AU25": 2.0, "AU26": 2.0},
    "anger": {"AU04": 3.5, "AU05": 2.0, "AU07": 2.5, "AU17": 1.0, "AU23": 2.5},
    "disgust": {"AU09": 3.0, "AU10": 2.0, "AU15": 1.5, "AU17": 1.5},
    "contempt": {"AU12": 1.0, "AU14": 2.5},
    "blink": {"AU45": 5.0},
}

_AU_NAME_RE = re.compile(r"^(?:au)?0*(\d{1,2})(?:_r)?$", re.IGNORECASE)


def au_index(name: str | int) -> int:
    """Index into the AU vector for ``"AU12"``, ``"au12"``, ``"AU1"``, ``"12"`` or ``12``."""
    match = _AU_NAME_RE.match(str(name).strip())
    code = int(match.group(1)) if match else None
    if code not in AU_CODES:
        raise AnimatorError(f"unknown AU {name!r}: expected one of {', '.join(AU_NAMES)}")
    return AU_CODES.index(code)


def canonical_au_name(name: str | int) -> str:
    """``"au1"`` -> ``"AU01"``; raises :class:`AnimatorError` for unknown AUs."""
    return AU_NAMES[au_index(name)]


def as_float(value: object, where: str) -> float:
    """A JSON number as a float (an integer too large for one becomes +-inf, for the caller's
    range check to refuse), or an error that says ``where`` it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnimatorError(f"{where}: {value!r} is not a number")
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_intensity(value: object, where: str) -> float:
    """A finite number within 0-5, or an error that says ``where`` it came from."""
    value = as_float(value, where)
    if not math.isfinite(value) or not AU_MIN <= value <= AU_MAX:
        raise AnimatorError(f"{where}: {value:g} is outside the AU intensity range 0-5")
    return value


def zeros() -> np.ndarray:
    return np.zeros(N_AUS, dtype=np.float32)


def vector_from_dict(values: Mapping[str, object], where: str = "AUs") -> np.ndarray:
    """``{"AU12": 3, "AU25": 1.5}`` -> (17,) vector; unnamed AUs are 0."""
    vector = zeros()
    for key, value in values.items():
        vector[_index_at(key, where)] = check_intensity(value, f"{where}.{key}")
    return vector


def vector_to_dict(vector: np.ndarray, skip_zeros: bool = False) -> dict[str, float]:
    """(17,) vector -> ``{"AU01": v, ...}`` with plain floats (for JSON)."""
    vector = np.asarray(vector, dtype=np.float32).reshape(N_AUS)
    return {n: round(float(v), 4) for n, v in zip(AU_NAMES, vector) if not (skip_zeros and v == 0)}


def preset(name: str, factor: float = 1.0, where: str = "preset") -> np.ndarray:
    """A named prototype scaled by ``factor``; the scaled values must stay within 0-5."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise AnimatorError(f"{where}: unknown preset {name!r}: expected one of {', '.join(PRESETS)}")
    if not math.isfinite(factor) or factor < 0:
        raise AnimatorError(f"{where}: intensity factor {factor:g} for {name!r} must be a "
                            f"finite number >= 0")
    values = vector_from_dict(PRESETS[key], where).astype(np.float64)
    peak = float(values.max(initial=0.0)) * factor  # a Python float: a huge factor gives inf
    if peak > AU_MAX:
        raise AnimatorError(f"{where}: {name}*{factor:g} reaches {peak:g}, above the AU range 0-5")
    return (values * factor).astype(np.float32)  # in float32 a huge factor is inf, and 0*inf NaN


def split_preset(text: str, where: str) -> tuple[str, float]:
    """``"happy*0.5"`` -> ``("happy", 0.5)``; ``"happy"`` -> ``("happy", 1.0)``. The factor is
    only parsed here: callers check its range (relative keyframes allow negative ones)."""
    name, star, raw_factor = text.partition("*")
    if not star:
        return name.strip(), 1.0
    factor = _number(raw_factor, f"{where}: {text.strip()}")
    if not math.isfinite(factor):
        raise AnimatorError(f"{where}: {text.strip()}: the factor is not a finite number")
    return name.strip(), factor


def preset_and_factor(name: object, intensity: object, where: str) -> tuple[str, float]:
    """A JSON ``"preset"`` (``"happy"``, or ``"happy*0.5"`` as on the command line) and its
    optional ``"intensity"`` (None when absent) -> (name, factor). The factor is given one way
    or the other, not both; callers check its range."""
    if not isinstance(name, str):
        raise AnimatorError(f"{where}.preset: {name!r} is not a preset name")
    name_only, factor = split_preset(name, f"{where}.preset")
    if intensity is not None:
        if name_only != name.strip():
            raise AnimatorError(f"{where}.intensity: the preset {name!r} already has a factor; "
                                f"give it once")
        factor = as_float(intensity, f"{where}.intensity")
    return name_only, factor


def parse_target(spec: str | Mapping[str, object], where: str = "target") -> np.ndarray:
    """Turn a user's target into a (17,) vector.

    Accepted: a preset (``happy``, ``happy*0.5``), AU assignments (``AU12=3,AU25=1.5``), both
    mixed (``happy*0.5,AU25=2``: later items override), a JSON object (``{"AU12": 3}``,
    ``{"preset": "happy", "intensity": 0.5, "AU25": 1}``) or the path of a JSON file with one.
    """
    if isinstance(spec, Mapping):
        return _target_from_mapping(spec, where)
    text = spec.strip()
    if text.startswith("{"):
        return _target_from_mapping(parse_json(text, where), where)
    if text.lower().endswith(".json"):
        data = read_json(text, "target file")
        if not isinstance(data, Mapping):
            raise AnimatorError(f"{text}: expected a JSON object of AU values")
        return _target_from_mapping(data, text)
    if not text:
        raise AnimatorError(f"{where}: empty target: give a preset, AU12=3,... or a JSON object")
    vector = zeros()
    for item in (part.strip() for part in text.split(",")):
        if "=" in item:
            key, _, raw = item.partition("=")
            vector[_index_at(key.strip(), where)] = check_intensity(
                _number(raw, f"{where}: {key.strip()}"), f"{where}: {key.strip()}")
        else:
            scaled = preset(*split_preset(item, where), where)
            vector = np.where(scaled > 0, scaled, vector).astype(np.float32)
    return vector


def _target_from_mapping(data: object, where: str) -> np.ndarray:
    if not isinstance(data, Mapping):
        raise AnimatorError(f"{where}: expected a JSON object of AU values, got {type(data).__name__}")
    values = dict(data)
    vector = zeros()
    if "preset" in values:
        name, factor = preset_and_factor(values.pop("preset"), values.pop("intensity", None), where)
        vector = preset(name, factor, f"{where}.preset")
    for key, value in values.items():
        vector[_index_at(key, where)] = check_intensity(value, f"{where}.{key}")
    return vector


def _index_at(key: object, where: str) -> int:
    try:
        return au_index(key)  # type: ignore[arg-type]
    except AnimatorError as exc:
        raise AnimatorError(f"{where}.{key}: {exc}") from None


def _number(raw: str, where: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise AnimatorError(f"{where}: {raw.strip()!r} is not a number") from None
