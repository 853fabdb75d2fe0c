"""Keyframe parsing: every accepted form, and every error naming the file, JSON path and problem."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from animator import aus
from animator.errors import AnimatorError
from animator.keyframes import load_keyframes, parse_keyframes, parse_timecode

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "version": 1,
    "keys": [
        {"time": 0.0, "aus": {"AU12": 0}},
        {"time": 1.0, "aus": {"AU12": 3}},
        {"time": 2.0, "aus": {"AU12": 1}},
    ],
}


def doc(**changes: object) -> dict:
    """BASE with top-level fields replaced (None deletes)."""
    data = copy.deepcopy(BASE)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def with_key(index: int, key: dict) -> dict:
    data = copy.deepcopy(BASE)
    data["keys"][index] = key
    return data


def error(data: object, fps: float | None = None) -> str:
    with pytest.raises(AnimatorError) as info:
        kf = parse_keyframes(data, "smile.json", fps)
        kf.key_times(fps)  # deferred checks (frame keys without a file fps)
    return str(info.value)


def test_minimal_file_defaults() -> None:
    kf = parse_keyframes({"keys": [{"time": 0.5, "aus": {"au12": 2}}]}, "k.json")
    assert kf.mode == "absolute" and kf.interpolation == "pchip" and kf.fps is None
    assert kf.keys[0].values == {"AU12": 2.0}
    assert kf.keys[0].ease == "none"
    np.testing.assert_array_equal(kf.key_times(), [0.5])


def test_preset_key_is_a_whole_face_pose_and_aus_override() -> None:
    kf = parse_keyframes({"keys": [{"time": 0, "preset": "happy", "intensity": 0.5,
                                    "aus": {"AU25": 4}}]}, "k.json")
    values = kf.keys[0].values
    assert set(values) == set(aus.AU_NAMES)
    assert values["AU12"] == pytest.approx(aus.PRESETS["happy"]["AU12"] * 0.5)
    assert values["AU25"] == 4.0  # aus beats the preset
    assert values["AU04"] == 0.0  # not in the preset: keyed at 0


def test_neutral_preset_keys_every_au_to_zero() -> None:
    kf = parse_keyframes({"keys": [{"time": 0, "preset": "neutral"}]}, "k.json")
    assert kf.keys[0].values == dict.fromkeys(aus.AU_NAMES, 0.0)


def test_channels_only_pass_through_keys_that_name_them() -> None:
    kf = parse_keyframes({"keys": [
        {"time": 0, "aus": {"AU12": 1}},
        {"time": 1, "aus": {"AU45": 5}, "ease": "in-out"},
        {"time": 2, "aus": {"AU12": 3, "AU45": 0}, "ease": "out"},
    ]}, "k.json")
    channels = kf.channels()
    assert list(channels) == ["AU12", "AU45"]  # AU order, only AUs some key sets
    np.testing.assert_array_equal(channels["AU12"].times, [0, 2])
    np.testing.assert_array_equal(channels["AU12"].values, [1, 3])
    np.testing.assert_array_equal(channels["AU45"].times, [1, 2])
    np.testing.assert_array_equal(channels["AU45"].ease_in, [True, False])
    np.testing.assert_array_equal(channels["AU45"].ease_out, [True, True])
    assert kf.channel_keys()["AU12"] == [(0.0, 1.0), (2.0, 3.0)]


def test_frame_and_timecode_keys_resolve_with_the_file_fps_first() -> None:
    data = {"fps": 25, "keys": [
        {"frame": 0, "aus": {"AU12": 0}},
        {"frame": 50, "aus": {"AU12": 1}},                 # 2 s at 25 fps
        {"timecode": "00:00:03.500", "aus": {"AU12": 2}},
        {"timecode": "00:00:04:05", "aus": {"AU12": 3}},   # 4 s + 5 frames
    ]}
    kf = parse_keyframes(data, "k.json")
    np.testing.assert_allclose(kf.key_times(fps=100), [0, 2, 3.5, 4.2])  # file fps wins
    del data["fps"]
    kf = parse_keyframes(data, "k.json")
    np.testing.assert_allclose(kf.key_times(fps=50), [0, 1, 3.5, 4.1])  # falls back to the given fps


@pytest.mark.parametrize("text, expected", [
    ("00:01:02.500", (62.5, 0.0)),
    ("01:02.5", (62.5, 0.0)),
    ("1:02", (62.0, 0.0)),
    ("2:00:00", (7200.0, 0.0)),
    ("00:00:01:15", (1.0, 15.0)),
])
def test_timecodes(text: str, expected: tuple[float, float]) -> None:
    assert parse_timecode(text) == pytest.approx(expected)


def test_load_keyframes_reads_the_examples() -> None:
    names = sorted(p.name for p in (REPO / "examples").glob("*.json"))
    assert names == ["relative_smile.json", "smile.json", "surprise_blink.json"]
    for name in names:
        kf = load_keyframes(REPO / "examples" / name)
        assert kf.end_time(30) <= 2.4  # all fit the 2.4 s example clip
    assert load_keyframes(REPO / "examples" / "relative_smile.json").mode == "relative"


def test_relative_mode_accepts_negative_offsets() -> None:
    kf = parse_keyframes({"mode": "relative", "keys": [
        {"time": 0, "aus": {"AU12": -2.5}},
        {"time": 1, "preset": "happy", "intensity": -0.5},
    ]}, "k.json")
    assert kf.value_range == (-5.0, 5.0)
    assert kf.keys[0].values["AU12"] == -2.5
    assert kf.keys[1].values["AU12"] == pytest.approx(-0.5 * aus.PRESETS["happy"]["AU12"])


# (data, substrings every message must contain)
ERRORS = [
    pytest.param(with_key(2, {"time": 0.5, "aus": {"AU12": 1}}),
                 ["smile.json", "keys[2].time", "0.5", "not after keys[1]", "(1 s)"], id="out-of-order"),
    pytest.param(with_key(2, {"time": 1.0, "aus": {"AU12": 1}}),
                 ["keys[2].time", "same time as keys[1]"], id="duplicate-time"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": 5.5}}),
                 ["keys[1].aus.AU12", "5.5", "0-5"], id="above-5"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": -1}}),
                 ["keys[1].aus.AU12", "-1", "0-5"], id="negative-absolute"),
    pytest.param(doc(mode="relative", keys=[{"time": 0, "aus": {"AU12": -6}}]),
                 ["keys[0].aus.AU12", "-6", "-5..5"], id="relative-below-minus-5"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU13": 1}}),
                 ["keys[1].aus.AU13", "unknown AU", "AU12"], id="unknown-au"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": 1, "au12": 2}}),
                 ["keys[1].aus.au12", "twice"], id="same-au-twice"),
    pytest.param(with_key(1, {"time": 1, "preset": "hapy"}),
                 ["keys[1].preset", "unknown preset", "'hapy'", "happy"], id="unknown-preset"),
    pytest.param(with_key(1, {"time": 1, "preset": 3}),
                 ["keys[1].preset", "not a preset name"], id="preset-not-string"),
    pytest.param(with_key(1, {"time": 1, "preset": "happy", "intensity": 2}),
                 ["keys[1].intensity", "happy*2", "reaches 7"], id="preset-intensity-too-high"),
    pytest.param(with_key(1, {"time": 1, "preset": "happy", "intensity": -1}),
                 ["keys[1].intensity", "negative"], id="negative-intensity-absolute"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": 1}, "intensity": 0.5}),
                 ["keys[1].intensity", "preset"], id="intensity-without-preset"),
    pytest.param(doc(interpolation="spline"),
                 ["smile.json: interpolation", "'spline'", "pchip"], id="bad-interpolation"),
    pytest.param(doc(interpolation_per_au={"AU45": "smooth"}),
                 ["interpolation_per_au.AU45", "'smooth'", "linear"], id="bad-per-au-interpolation"),
    pytest.param(doc(interpolation_per_au={"AU99": "linear"}),
                 ["interpolation_per_au.AU99", "unknown AU"], id="per-au-unknown-au"),
    pytest.param(doc(mode="additive"), ["mode", "'additive'", "relative"], id="bad-mode"),
    pytest.param(doc(version=2), ["version", "2", "not supported"], id="bad-version"),
    pytest.param(with_key(1, {"timecode": "1:2:3", "aus": {"AU12": 1}}),
                 ["keys[1].timecode", "'1:2:3'", "HH:MM:SS"], id="bad-timecode"),
    pytest.param(with_key(1, {"timecode": "00:00:90", "aus": {"AU12": 1}}),
                 ["keys[1].timecode", "not a timecode"], id="timecode-seconds-over-59"),
    pytest.param(with_key(1, {"timecode": 12, "aus": {"AU12": 1}}),
                 ["keys[1].timecode", "12", "not a timecode string"], id="timecode-not-string"),
    pytest.param(doc(fps=25, keys=[{"timecode": "00:00:01:30", "aus": {"AU12": 1}}]),
                 ["keys[0].timecode", "frame 30", "25 fps"], id="timecode-frame-beyond-fps"),
    pytest.param(with_key(1, {"aus": {"AU12": 1}}),
                 ["keys[1]", "missing time", "frame", "timecode"], id="missing-time"),
    pytest.param(with_key(1, {"time": 1, "frame": 30, "aus": {"AU12": 1}}),
                 ["keys[1]", "only one of", "time, frame"], id="two-times"),
    pytest.param(with_key(1, {"frame": 30, "aus": {"AU12": 1}}),
                 ["keys[1].frame", "30", "frame rate", "--fps"], id="frame-without-fps"),
    pytest.param(with_key(1, {"frame": 4.5, "aus": {"AU12": 1}}),
                 ["keys[1].frame", "4.5", "whole frame"], id="fractional-frame"),
    pytest.param(with_key(1, {"time": -1, "aus": {"AU12": 1}}),
                 ["keys[1].time", "-1", "negative"], id="negative-time"),
    pytest.param(with_key(1, {"time": "1.5", "aus": {"AU12": 1}}),
                 ["keys[1].time", "'1.5'", "not a number"], id="time-is-string"),
    pytest.param(with_key(1, {"time": True, "aus": {"AU12": 1}}),
                 ["keys[1].time", "not a number"], id="time-is-bool"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": "3"}}),
                 ["keys[1].aus.AU12", "'3'", "not a number"], id="value-is-string"),
    pytest.param(with_key(1, {"time": 1, "aus": [3]}),
                 ["keys[1].aus", "expected an object", "a list"], id="aus-is-list"),
    pytest.param(with_key(1, {"time": 1, "aus": {}}), ["keys[1].aus", "empty"], id="aus-empty"),
    pytest.param(with_key(1, {"time": 1}), ["keys[1]", "sets no AUs"], id="key-sets-nothing"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": 1}, "ease": "slow"}),
                 ["keys[1].ease", "'slow'", "in-out"], id="bad-ease"),
    pytest.param(with_key(1, {"time": 1, "aus": {"AU12": 1}, "value": 2}),
                 ["keys[1].value", "unknown field"], id="unknown-key-field"),
    pytest.param(with_key(1, 7), ["keys[1]", "expected a JSON object", "a number"], id="key-not-object"),
    pytest.param(doc(interpolaton="linear"), ["interpolaton", "unknown field"], id="unknown-top-field"),
    pytest.param(doc(keys=None), ["keys", "missing"], id="no-keys"),
    pytest.param(doc(keys=[]), ["keys", "non-empty list"], id="empty-keys"),
    pytest.param(doc(keys={"time": 0}), ["keys", "non-empty list", "an object"], id="keys-not-list"),
    pytest.param(doc(fps=0), ["fps", "0", "positive frame rate"], id="zero-fps"),
    pytest.param(doc(fps="30"), ["fps", "not a number"], id="fps-is-string"),
    pytest.param([1, 2], ["smile.json", "expected a JSON object", "a list"], id="top-is-list"),
]


@pytest.mark.parametrize("data, expected", ERRORS)
def test_errors_name_path_and_problem(data: object, expected: list[str]) -> None:
    message = error(data)
    assert message.startswith("smile.json")
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "\n" not in message


def test_frame_keys_are_ordered_once_the_fps_is_known() -> None:
    data = {"keys": [{"time": 1.0, "aus": {"AU12": 1}}, {"frame": 20, "aus": {"AU12": 2}}]}
    kf = parse_keyframes(data, "k.json")  # order unknown without a frame rate: accepted for now
    np.testing.assert_allclose(kf.key_times(10), [1.0, 2.0])
    with pytest.raises(AnimatorError, match=r"keys\[1\].frame: 20 \(0.5 s\) is not after keys\[0\]"):
        kf.key_times(40)
    with pytest.raises(AnimatorError, match=r"keys\[1\].frame: 20 \(0.5 s\) is not after"):
        parse_keyframes(data, "k.json", fps=40)  # a known fps checks the order at once


def test_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "keys": [\n    {"time": 0 "aus": {"AU12": 1}}\n  ]\n}\n')
    with pytest.raises(AnimatorError, match=r"broken.json: invalid JSON at line 3, column 16: Expecting ','"):
        load_keyframes(path)


def test_duplicate_json_names_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"keys": [{"time": 0, "time": 1, "aus": {"AU12": 1}}]}')
    with pytest.raises(AnimatorError, match=r"dup.json: .*'time' appears twice"):
        load_keyframes(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(AnimatorError, match=r"nope.json: no such file"):
        load_keyframes(tmp_path / "nope.json")
    with pytest.raises(AnimatorError, match=r"is a folder"):
        load_keyframes(tmp_path)


def test_load_matches_parse(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps(BASE))
    loaded = load_keyframes(path)
    assert loaded.source == str(path)
    assert loaded.keys == parse_keyframes(BASE, str(path)).keys
