"""Keyframe files: AU animation over time, validated with errors that carry JSON paths.

The format is documented in docs/keyframes.md. In short: a JSON object with ``keys``, each at a
``time`` (seconds), ``frame`` (0-based, needs an fps) or ``timecode``; a key sets the AUs named in
its ``aus`` and/or a whole-face ``preset``. Every AU is its own channel: its curve passes only
through the keys that set it. Parsing resolves presets and AU names; turning key times into
seconds may need a frame rate, so :meth:`Keyframes.channels` takes one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from animator import aus
from animator.errors import AnimatorError
from animator.jsontext import read_json

FORMAT_VERSION = 1
MODES = ("absolute", "relative")
INTERPOLATIONS = ("pchip", "cubic", "akima", "linear", "step")
EASES = ("none", "in", "out", "in-out")
TIME_FIELDS = ("time", "frame", "timecode")

_TOP_FIELDS = ("version", "mode", "interpolation", "interpolation_per_au", "fps", "keys", "comment")
_KEY_FIELDS = (*TIME_FIELDS, "aus", "preset", "intensity", "ease", "comment")
# HH:MM:SS(.fff) or MM:SS(.fff); and SMPTE-style HH:MM:SS:FF (non-drop frames, needs an fps).
_CLOCK_RE = re.compile(r"^(?:(\d+):)?([0-5]?\d):([0-5]\d(?:\.\d+)?)$")
_SMPTE_RE = re.compile(r"^(\d+):([0-5]\d):([0-5]\d):(\d{1,3})$")


@dataclass(frozen=True)
class Key:
    """One key. Its time is ``seconds + frames / fps``: frame keys and ``HH:MM:SS:FF`` timecodes
    have a frame part, which is why the fps may only be known when sampling."""

    index: int                   # position in the file's "keys" list (for messages)
    time_field: str              # "time" | "frame" | "timecode": what the user wrote
    raw: object                  # the value as written
    seconds: float
    frames: float
    values: Mapping[str, float]  # canonical AU name -> value; the AUs (channels) this key sets
    ease: str = "none"

    @property
    def path(self) -> str:
        return f"keys[{self.index}].{self.time_field}"


@dataclass(frozen=True)
class Channel:
    """The keys of one AU: strictly increasing times, values, and easing flags per key."""

    times: np.ndarray     # (k,) float64 seconds
    values: np.ndarray    # (k,) float64
    ease_in: np.ndarray   # (k,) bool: the segment arriving at this key slows to a stop
    ease_out: np.ndarray  # (k,) bool: the segment leaving this key starts from a stop


@dataclass(frozen=True)
class Keyframes:
    """A validated keyframe file (build it with :func:`load_keyframes` / :func:`parse_keyframes`)."""

    keys: tuple[Key, ...]
    mode: str = "absolute"
    interpolation: str = "pchip"
    interpolation_per_au: Mapping[str, str] = field(default_factory=dict)
    fps: float | None = None  # the rate the file's frame numbers count in
    source: str = "keyframes"

    @property
    def value_range(self) -> tuple[float, float]:
        """Absolute values live on 0-5; relative offsets on -5..5."""
        return (-aus.AU_MAX if self.mode == "relative" else aus.AU_MIN), aus.AU_MAX

    def interpolation_for(self, au: str) -> str:
        return self.interpolation_per_au.get(au, self.interpolation)

    def key_times(self, fps: float | None = None) -> np.ndarray:
        """Seconds of every key; the file's own fps wins over ``fps`` for its frame numbers.

        Raises if a key needs a frame rate none was given for, or if keys are not in order.
        """
        rate = self.fps if self.fps is not None else fps
        times = np.array([self._seconds(key, rate) for key in self.keys], dtype=np.float64)
        for prev, (key, t) in enumerate(zip(self.keys[1:], times[1:])):
            if t <= times[prev]:
                problem = "is at the same time as" if t == times[prev] else "is not after"
                value = f"{key.raw!r}" + ("" if key.time_field == "time" else f" ({t:g} s)")
                raise AnimatorError(
                    f"{self.source}: {key.path}: {value} {problem} keys[{prev}] "
                    f"({times[prev]:g} s); keys must be in increasing time order")
        return times

    def _seconds(self, key: Key, fps: float | None) -> float:
        if key.frames == 0:
            return key.seconds
        where = f"{self.source}: {key.path}"
        if fps is None:
            raise AnimatorError(f"{where}: {key.raw!r} counts frames, so a frame rate is needed: "
                                f'add "fps" to the file or pass --fps')
        if key.time_field == "timecode" and key.frames >= fps:
            raise AnimatorError(f"{where}: {key.raw!r} has frame {key.frames:g}, which does not "
                                f"exist at {fps:g} fps")
        return key.seconds + key.frames / fps

    def channels(self, fps: float | None = None) -> dict[str, Channel]:
        """The keys of every AU that some key sets, in AU order; unset AUs are absent."""
        times = self.key_times(fps)
        result: dict[str, Channel] = {}
        for au in aus.AU_NAMES:
            picked = [(t, key) for t, key in zip(times, self.keys) if au in key.values]
            if picked:
                result[au] = Channel(
                    times=np.array([t for t, _ in picked], dtype=np.float64),
                    values=np.array([key.values[au] for _, key in picked], dtype=np.float64),
                    ease_in=np.array([key.ease in ("in", "in-out") for _, key in picked]),
                    ease_out=np.array([key.ease in ("out", "in-out") for _, key in picked]))
        return result

    def channel_keys(self, fps: float | None = None) -> dict[str, list[tuple[float, float]]]:
        """``{"AU12": [(t, v), ...]}``: the key points to mark on a plot."""
        return {au: list(zip(ch.times.tolist(), ch.values.tolist()))
                for au, ch in self.channels(fps).items()}

    def end_time(self, fps: float | None = None) -> float:
        return float(self.key_times(fps)[-1])


def load_keyframes(path: str | Path, fps: float | None = None) -> Keyframes:
    """Read and validate a keyframe file. ``fps`` (e.g. the video's) is only used to check key
    order now when the file has frame keys but no fps of its own."""
    data = read_json(path, "keyframe file", object_pairs_hook=_no_duplicate_names)
    return parse_keyframes(data, str(path), fps)


def parse_keyframes(data: object, source: str = "keyframes", fps: float | None = None) -> Keyframes:
    """Validate a decoded keyframe document; ``source`` prefixes every error message."""
    if not isinstance(data, Mapping):
        raise AnimatorError(f"{source}: expected a JSON object with \"keys\", got {_kind(data)}")
    _check_fields(data, _TOP_FIELDS, source, "")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise AnimatorError(f"{source}: version: {version!r} is not supported "
                            f"(this animator reads version {FORMAT_VERSION})")
    mode = _choice(data.get("mode", "absolute"), MODES, f"{source}: mode")
    interpolation = _choice(data.get("interpolation", "pchip"), INTERPOLATIONS,
                            f"{source}: interpolation")
    per_au = _interpolation_per_au(data.get("interpolation_per_au", {}), source)
    file_fps = _fps(data["fps"], f"{source}: fps") if "fps" in data else None
    if fps is not None:
        fps = _fps(fps, "--fps")
    raw_keys = data.get("keys")
    if raw_keys is None:
        raise AnimatorError(f"{source}: keys: missing: give a list of keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise AnimatorError(f"{source}: keys: expected a non-empty list of keys, got {_kind(raw_keys)}")
    keys = tuple(_parse_key(item, i, mode, source) for i, item in enumerate(raw_keys))
    keyframes = Keyframes(keys=keys, mode=mode, interpolation=interpolation,
                          interpolation_per_au=per_au, fps=file_fps, source=source)
    if file_fps is not None or fps is not None or all(k.frames == 0 for k in keys):
        keyframes.key_times(fps)  # check the order now; otherwise when the fps is known
    return keyframes


def _parse_key(item: object, index: int, mode: str, source: str) -> Key:
    where = f"{source}: keys[{index}]"
    if not isinstance(item, Mapping):
        raise AnimatorError(f"{where}: expected a JSON object, got {_kind(item)}")
    _check_fields(item, _KEY_FIELDS, source, f"keys[{index}].")
    given = [name for name in TIME_FIELDS if name in item]
    if not given:
        raise AnimatorError(f"{where}: missing time: give one of \"time\" (seconds), "
                            f"\"frame\" (needs an fps) or \"timecode\" (\"00:01:02.500\")")
    if len(given) > 1:
        raise AnimatorError(f"{where}: give only one of time, frame, timecode (found {', '.join(given)})")
    name = given[0]
    seconds, frames = _key_time(name, item[name], f"{where}.{name}")
    if "aus" not in item and "preset" not in item:
        raise AnimatorError(f"{where}: sets no AUs: give \"aus\" and/or \"preset\"")
    if "intensity" in item and "preset" not in item:
        raise AnimatorError(f"{where}.intensity: only scales a \"preset\", and this key has none")
    values: dict[str, float] = {}
    if "preset" in item:
        values.update(_preset_values(item, mode, where))
    if "aus" in item:
        values.update(_au_values(item["aus"], mode, f"{where}.aus"))
    ease = _choice(item.get("ease", "none"), EASES, f"{where}.ease")
    return Key(index=index, time_field=name, raw=item[name], seconds=seconds, frames=frames,
               values=values, ease=ease)


def _key_time(name: str, value: object, where: str) -> tuple[float, float]:
    """(seconds, frames) of a key's time field."""
    if name == "timecode":
        return parse_timecode(value, where)
    number = _number(value, where)
    if number < 0:
        raise AnimatorError(f"{where}: {number:g} is negative")
    if name == "frame":
        if not float(number).is_integer():
            raise AnimatorError(f"{where}: {number:g} is not a whole frame number")
        return 0.0, float(number)
    return float(number), 0.0


def parse_timecode(value: object, where: str = "timecode") -> tuple[float, float]:
    """``"00:01:02.500"`` / ``"01:02.5"`` -> (62.5, 0); ``"00:01:02:15"`` (HH:MM:SS:FF) -> (62, 15)."""
    if not isinstance(value, str):
        raise AnimatorError(f"{where}: {value!r} is not a timecode string like \"00:01:02.500\"")
    text = value.strip()
    clock = _CLOCK_RE.match(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), 0.0
    smpte = _SMPTE_RE.match(text)
    if smpte:
        hours, minutes, seconds, frames = (int(g) for g in smpte.groups())
        return float(hours * 3600 + minutes * 60 + seconds), float(frames)
    raise AnimatorError(f"{where}: {value!r} is not a timecode: use HH:MM:SS.mmm (\"00:01:02.500\"), "
                        f"MM:SS.mmm or HH:MM:SS:FF (frames, needs an fps)")


def _preset_values(item: Mapping, mode: str, where: str) -> dict[str, float]:
    """A preset key is a whole-face pose: all 17 AUs, those the preset lists scaled by intensity
    (``"intensity": 0.5`` or ``"happy*0.5"``) and the rest 0 (so going from one preset to
    another leaves nothing behind)."""
    name, factor = aus.preset_and_factor(item["preset"], item.get("intensity"), where)
    base = aus.preset(name, 1.0, f"{where}.preset")
    factor = _number(factor, f"{where}.intensity")
    if factor < 0 and mode == "absolute":
        raise AnimatorError(f"{where}.intensity: {factor:g} is negative (only relative-mode "
                            f"offsets can be negative)")
    scaled = base.astype(np.float64) * factor
    peak = float(np.abs(scaled).max(initial=0.0))
    if peak > aus.AU_MAX:
        raise AnimatorError(f"{where}.intensity: {name}*{factor:g} reaches {peak:g}, "
                            f"beyond the AU range of 5")
    return dict(zip(aus.AU_NAMES, scaled.tolist()))


def _au_values(data: object, mode: str, where: str) -> dict[str, float]:
    if not isinstance(data, Mapping):
        raise AnimatorError(f"{where}: expected an object like {{\"AU12\": 3}}, got {_kind(data)}")
    if not data:
        raise AnimatorError(f"{where}: is empty: name at least one AU, e.g. {{\"AU12\": 3}}")
    values: dict[str, float] = {}
    for key, value in data.items():
        au = _au_key(key, where)
        if au in values:
            raise AnimatorError(f"{where}.{key}: {au} is given twice in this key")
        if mode == "absolute":
            values[au] = aus.check_intensity(value, f"{where}.{key}")
        else:
            offset = _number(value, f"{where}.{key}")
            if abs(offset) > aus.AU_MAX:
                raise AnimatorError(f"{where}.{key}: {offset:g} is outside the relative offset "
                                    f"range -5..5")
            values[au] = offset
    return values


def _interpolation_per_au(data: object, source: str) -> dict[str, str]:
    where = f"{source}: interpolation_per_au"
    if not isinstance(data, Mapping):
        raise AnimatorError(f"{where}: expected an object like {{\"AU45\": \"linear\"}}, got {_kind(data)}")
    result: dict[str, str] = {}
    for key, value in data.items():
        au = _au_key(key, where)
        result[au] = _choice(value, INTERPOLATIONS, f"{where}.{key}")
    return result


def _au_key(key: str, where: str) -> str:
    """The canonical AU name of an object key; errors name the key's JSON path."""
    try:
        return aus.canonical_au_name(key)
    except AnimatorError as exc:
        raise AnimatorError(f"{where}.{key}: {exc}") from None


def _check_fields(data: Mapping, allowed: tuple[str, ...], source: str, prefix: str) -> None:
    for name in data:
        if name not in allowed:
            raise AnimatorError(f"{source}: {prefix}{name}: unknown field; expected one of "
                                f"{', '.join(allowed)}")


def _choice(value: object, allowed: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise AnimatorError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value.strip().lower()


def _number(value: object, where: str) -> float:
    number = aus.as_float(value, where)
    if not math.isfinite(number):
        raise AnimatorError(f"{where}: {number!r} is not a finite number")
    return number


def _fps(value: object, where: str) -> float:
    rate = _number(value, where)
    if rate <= 0:
        raise AnimatorError(f"{where}: {rate:g} is not a positive frame rate")
    return rate


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class _DuplicateName(ValueError):
    pass


def _no_duplicate_names(pairs: list[tuple[str, object]]) -> dict:
    """JSON silently keeps the last of two equal names; a keyframe file almost never means that."""
    result: dict = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateName(f"the name {name!r} appears twice in one object")
        result[name] = value
    return result
