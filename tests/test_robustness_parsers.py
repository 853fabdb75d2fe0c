"""Hostile text for the parsers users feed: keyframe files, AU targets and model configs.

Each must give a valid result or one :class:`AnimatorError` line naming the file, never another
exception type (the CLI shows anything else as a traceback) and never a silently absurd value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from animator import aus
from animator.cli import cli
from animator.errors import AnimatorError
from animator.keyframes import load_keyframes, parse_keyframes
from animator.model.checkpoint import ModelConfig, load_config, load_generator, save_generator
from animator.model.generator import Generator, GeneratorConfig

SMALL = GeneratorConfig(image_size=32, conv_dim=8, repeat_num=1)
DEEP = "[" * 100_000 + "]" * 100_000
LONG_INT = "9" * 5000


def _saved_model(folder: Path) -> Path:
    torch.manual_seed(0)
    generator = Generator(SMALL)
    return save_generator(generator, ModelConfig(generator=SMALL), folder)


# ---- the cases found by hand ------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    (DEEP, "nested too deeply"),
    ('{"keys": [{"time": ' + LONG_INT + ', "aus": {"AU12": 1}}]}', "digits"),
])
def test_keyframe_json_that_breaks_python_is_one_line(tmp_path, text, problem):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    with pytest.raises(AnimatorError, match=rf"hostile\.json: invalid JSON.*{problem}"):
        load_keyframes(path)


@pytest.mark.parametrize("text", [DEEP, '{"AU12": ' + LONG_INT + "}"])
def test_target_json_that_breaks_python_is_one_line(tmp_path, text):
    path = tmp_path / "target.json"
    path.write_text(text)
    with pytest.raises(AnimatorError, match=r"target\.json: invalid JSON"):
        aus.parse_target(str(path))
    with pytest.raises(AnimatorError, match=r"--to: invalid JSON"):
        aus.parse_target("{" + text.lstrip("{") if text.startswith("{") else "{" + text, "--to")


def test_model_config_json_that_breaks_python_is_one_line(tmp_path):
    model = _saved_model(tmp_path / "model")
    (model / "config.json").write_text(DEEP)
    with pytest.raises(AnimatorError, match=r"config\.json: invalid JSON.*nested too deeply"):
        load_config(model)


@pytest.mark.parametrize("spec", ["happy*1e308", "happy*1e999", "happy*nan", "happy*inf",
                                  "AU12=1e308", "AU12=nan", '{"preset": "happy", "intensity": 1e308}',
                                  '{"AU12": ' + "9" * 400 + "}"])
def test_targets_refuse_non_finite_and_huge_values(spec):
    with pytest.raises(AnimatorError):
        aus.parse_target(spec)


def test_aus_command_refuses_an_overflowing_factor():
    result = CliRunner().invoke(cli, ["aus", "--target", "happy*1e308"])
    assert result.exit_code == 1
    assert "Infinity" not in result.output and "happy*1e+308" in result.output


@pytest.mark.parametrize("where", [["--start", "nan"], ["--end", "nan"], ["--start", "inf"]])
def test_render_refuses_non_finite_times(tmp_path, where):
    keys = tmp_path / "k.json"
    keys.write_text('{"keys": [{"time": 0, "preset": "happy"}]}')
    result = CliRunner().invoke(cli, ["render", str(tmp_path / "v.mp4"), "-k", str(keys),
                                      "-o", str(tmp_path / "o.mp4"), *where])
    assert result.exit_code == 1 and f"{where[0]}:" in result.output
    assert "not a finite time" in result.output


# ---- presets in keyframe files: the command line's syntax --------------------------------------

def test_keyframe_preset_takes_the_command_line_factor():
    starred = parse_keyframes({"keys": [{"time": 0, "preset": "happy*0.5"}]})
    spelled = parse_keyframes({"keys": [{"time": 0, "preset": "happy", "intensity": 0.5}]})
    assert starred.keys[0].values == spelled.keys[0].values
    assert starred.keys[0].values["AU12"] == pytest.approx(1.75)
    relative = parse_keyframes({"mode": "relative", "keys": [{"time": 0, "preset": "happy*-0.5"}]})
    assert relative.keys[0].values["AU12"] == pytest.approx(-1.75)


@pytest.mark.parametrize("key, message", [
    ({"preset": "happy*0.5", "intensity": 0.5}, "already has a factor"),
    ({"preset": "happy*2"}, "reaches 7"),
    ({"preset": "happy*-1"}, "negative"),
    ({"preset": "happy*x"}, "not a number"),
    ({"preset": "happy*nan"}, "not a finite number"),
    ({"preset": "hapy*0.5"}, "unknown preset"),
])
def test_keyframe_preset_factor_errors(key, message):
    with pytest.raises(AnimatorError, match=message):
        parse_keyframes({"keys": [{"time": 0, **key}]}, "k.json")


# ---- model configs: values that would run and write unedited or absurd frames ----------------

@pytest.mark.parametrize("change, message", [
    ({"generator": {"image_size": 1_000_000}}, "image_size=1000000 is beyond"),
    ({"generator": {"conv_dim": 100_000}}, "conv_dim=100000 is beyond"),
    ({"generator": {"au_scale": float("inf")}}, "au_scale"),
    ({"generator": {"au_scale": float("nan")}}, "au_scale"),
    ({"input_normalisation": {"color_order": "RGB", "mean": [float("nan"), 0.5, 0.5],
                              "std": [0.5, 0.5, 0.5]}}, "input_normalisation"),
    ({"input_normalisation": {"color_order": "RGB", "mean": [0.5, 0.5, 0.5],
                              "std": [0.5, float("inf"), 0.5]}}, "input_normalisation"),
])
def test_model_config_refuses_absurd_values(tmp_path, change, message):
    model = _saved_model(tmp_path / "model")
    data = json.loads((model / "config.json").read_text())
    for name, value in change.items():
        data[name] = {**data[name], **value}
    (model / "config.json").write_text(json.dumps(data))  # Python writes NaN / Infinity
    with pytest.raises(AnimatorError, match=rf"config\.json: .*{message}"):
        load_config(model)


def test_nan_weights_are_refused_at_load(tmp_path):
    torch.manual_seed(0)
    generator = Generator(SMALL)
    with torch.no_grad():
        next(generator.parameters())[0, 0, 0, 0] = float("nan")
    model = save_generator(generator, ModelConfig(generator=SMALL), tmp_path / "model")
    with pytest.raises(AnimatorError, match=r"model: weights hold NaN or infinite values"):
        load_generator(model)


# ---- fuzzing: random bytes and random JSON never escape as another exception ------------------

JSON_SCALARS = (st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
                | st.integers() | st.sampled_from([10 ** 400, -(10 ** 400), 1e308, -1e308])
                | st.text(max_size=12)
                | st.sampled_from(["happy", "happy*0.5", "sad*1e308", "AU12", "au12", "00:00:01.5",
                                   "01:02:03:04", "pchip", "relative", "in-out", "neutral*-1"]))
FIELD_NAMES = st.sampled_from(["version", "mode", "interpolation", "interpolation_per_au", "fps",
                               "keys", "time", "frame", "timecode", "aus", "preset", "intensity",
                               "ease", "AU12", "AU45", "au1", "AU99", "x"])
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(FIELD_NAMES | st.text(max_size=6), children, max_size=5),
    max_leaves=25)
KEY = st.fixed_dictionaries({}, optional={
    "time": JSON_SCALARS, "frame": JSON_SCALARS, "timecode": JSON_SCALARS, "preset": JSON_SCALARS,
    "intensity": JSON_SCALARS, "ease": JSON_SCALARS,
    "aus": st.dictionaries(FIELD_NAMES, JSON_SCALARS, max_size=3) | JSON_VALUES})
KEYFRAME_DOCUMENTS = st.fixed_dictionaries({"keys": st.lists(KEY, max_size=4) | JSON_VALUES}, optional={
    "version": JSON_SCALARS, "mode": JSON_SCALARS, "interpolation": JSON_SCALARS, "fps": JSON_SCALARS,
    "interpolation_per_au": st.dictionaries(FIELD_NAMES, JSON_SCALARS, max_size=2)}) | JSON_VALUES
FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _json_text(value: object) -> str:
    return json.dumps(value)  # NaN / Infinity included: Python's reader accepts them


def _valid_or_animator_error(call) -> object:
    try:
        return call()
    except AnimatorError as exc:
        assert "\n" not in str(exc), f"not one line: {exc}"
        return None


@FUZZ
@given(document=KEYFRAME_DOCUMENTS, fps=st.none() | st.floats(0.5, 240))
def test_fuzz_keyframe_documents(tmp_path, document, fps):
    path = tmp_path / "keys.json"
    path.write_text(_json_text(document))
    keyframes = _valid_or_animator_error(lambda: load_keyframes(path, fps))
    if keyframes is not None:
        channels = _valid_or_animator_error(lambda: keyframes.channels(fps))
        for channel in (channels or {}).values():
            assert np.isfinite(channel.times).all() and np.isfinite(channel.values).all()
            low, high = keyframes.value_range
            assert ((channel.values >= low) & (channel.values <= high)).all()


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(tmp_path, data):
    for name in ("keys.json", "target.json", "config.json"):
        (tmp_path / name).write_bytes(data)
    _valid_or_animator_error(lambda: load_keyframes(tmp_path / "keys.json"))
    _valid_or_animator_error(lambda: load_config(tmp_path))  # a model folder's config.json
    vector = _valid_or_animator_error(lambda: aus.parse_target(str(tmp_path / "target.json")))
    assert vector is None or _in_range(vector)
    text = data.decode("utf-8", errors="replace")
    vector = _valid_or_animator_error(lambda: aus.parse_target(text))
    assert vector is None or _in_range(vector)


@FUZZ
@given(spec=st.one_of(
    JSON_VALUES.map(_json_text),
    st.lists(st.sampled_from(["happy", "sad", "*", "0.5", "1e308", "nan", "inf", "-1", "=", ",",
                              "AU12", "AU99", "3", "preset", " ", "{", "}"]), max_size=8).map("".join),
    st.text(max_size=30)))
def test_fuzz_target_specs(spec):
    vector = _valid_or_animator_error(lambda: aus.parse_target(spec))
    assert vector is None or _in_range(vector)


@FUZZ
@given(generator=st.dictionaries(st.sampled_from(["image_size", "n_aus", "conv_dim", "repeat_num",
                                                  "au_scale", "conv_bias", "norm_affine",
                                                  "residual_padding", "head_bias", "x"]),
                                 JSON_SCALARS, max_size=4),
       rest=st.dictionaries(st.sampled_from(["au_order", "input_normalisation", "crop_policy",
                                             "provenance", "format_version"]), JSON_VALUES, max_size=3),
       crop=st.fixed_dictionaries({}, optional={"kind": st.sampled_from(["aligned", "box"]) | JSON_SCALARS,
                                                "size": JSON_SCALARS, "scale": JSON_SCALARS}))
def test_fuzz_model_config(generator, rest, crop):
    data = {"format": "animator-model", "format_version": 1, "kind": "ganimation-generator",
            "generator": generator, "crop_policy": crop, **rest}
    config = _valid_or_animator_error(lambda: ModelConfig.from_json(json.loads(_json_text(data))))
    if config is not None:
        from animator.faces.align import CropPolicy

        CropPolicy.from_dict(config.crop_policy)  # usable as it is
        assert config.generator.image_size <= 1024 and math.isfinite(config.generator.au_scale)
        norm = config.input_normalisation
        assert all(math.isfinite(v) for v in norm["mean"] + norm["std"])


def _in_range(vector: np.ndarray) -> bool:
    return vector.shape == (aus.N_AUS,) and bool(((vector >= 0) & (vector <= 5)).all())
