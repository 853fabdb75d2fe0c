"""The AU vocabulary: names, presets and every form of target spec, with their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from animator import aus
from animator.errors import AnimatorError


def vec(**values: float) -> np.ndarray:
    out = np.zeros(aus.N_AUS, dtype=np.float32)
    for name, value in values.items():
        out[aus.au_index(name)] = value
    return out


def test_table_is_ganimations_seventeen_in_order() -> None:
    assert aus.AU_CODES == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
    assert aus.N_AUS == 17 and aus.AU_NAMES[0] == "AU01" and aus.AU_NAMES[-1] == "AU45"
    assert set(aus.FACS_NAMES) == set(aus.AU_NAMES)
    assert aus.FACS_NAMES["AU12"] == "lip corner puller" and aus.FACS_NAMES["AU45"] == "blink"


def test_presets_cover_the_basic_expressions_within_range() -> None:
    for name in ("neutral", "happy", "sad", "surprise", "fear", "anger", "disgust", "blink"):
        assert name in aus.PRESETS
    for name, values in aus.PRESETS.items():
        vector = aus.preset(name)
        assert vector.dtype == np.float32 and vector.min() >= 0 and vector.max() <= 5
        assert aus.vector_to_dict(vector, skip_zeros=True) == pytest.approx(
            {aus.canonical_au_name(k): v for k, v in values.items()})


@pytest.mark.parametrize("name", ["AU12", "au12", "AU012", "12", 12, "AU12_r", " au12 "])
def test_au_index_accepts_common_spellings(name: object) -> None:
    assert aus.au_index(name) == aus.AU_NAMES.index("AU12")


@pytest.mark.parametrize("name", ["AU13", "AU3", "blink", "", "AU", 99])
def test_au_index_rejects_unknown_aus(name: object) -> None:
    with pytest.raises(AnimatorError, match=r"unknown AU .*expected one of AU01"):
        aus.au_index(name)


@pytest.mark.parametrize("spec, expected", [
    ("happy", vec(AU06=2.5, AU12=3.5, AU25=1.0)),
    ("HAPPY*0.5", vec(AU06=1.25, AU12=1.75, AU25=0.5)),
    ("AU12=3,AU25=1.5", vec(AU12=3, AU25=1.5)),
    ("au12 = 3 , au1=2", vec(AU12=3, AU01=2)),
    ("happy*0.5,AU25=2", vec(AU06=1.25, AU12=1.75, AU25=2)),
    ("AU25=2,happy", vec(AU06=2.5, AU12=3.5, AU25=1.0)),  # later items override
    ("neutral", vec()),
    ('{"AU12": 3, "AU25": 1.5}', vec(AU12=3, AU25=1.5)),
    ('{"preset": "happy", "intensity": 0.5, "AU25": 1}', vec(AU06=1.25, AU12=1.75, AU25=1)),
    ({"AU45": 5}, vec(AU45=5)),
])
def test_parse_target_forms(spec: object, expected: np.ndarray) -> None:
    out = aus.parse_target(spec)
    assert out.dtype == np.float32 and out.shape == (aus.N_AUS,)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_parse_target_reads_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "target.json"
    path.write_text(json.dumps({"preset": "surprise", "AU45": 5}))
    out = aus.parse_target(str(path))
    assert out[aus.au_index("AU45")] == 5 and out[aus.au_index("AU26")] == 3


@pytest.mark.parametrize("spec, expected", [
    ("AU13=2", ["target.AU13", "unknown AU 'AU13'"]),
    ("AU12=6", ["target: AU12", "6", "0-5"]),
    ("AU12=-1", ["target: AU12", "-1", "0-5"]),
    ("AU12=lots", ["target: AU12", "'lots'", "not a number"]),
    ("hapy", ["unknown preset 'hapy'", "happy"]),
    ("happy*2", ["happy*2", "reaches 7", "0-5"]),
    ("happy*-1", ["intensity factor -1", ">= 0"]),
    ("", ["empty target"]),
    ('{"AU12": 3,', ["invalid JSON"]),
    ('{"AU12": "3"}', ["target.AU12", "'3'", "not a number"]),
    ('{"AU99": 1}', ["target.AU99", "unknown AU"]),
    ('{"preset": 5}', ["target.preset", "not a preset name"]),
    ('{"preset": "sad", "intensity": "x"}', ["target.intensity", "not a number"]),
    ({"AU12": True}, ["target.AU12", "not a number"]),
    ({"AU12": float("nan")}, ["target.AU12", "outside"]),
])
def test_parse_target_errors_name_the_offending_part(spec: object, expected: list[str]) -> None:
    with pytest.raises(AnimatorError) as info:
        aus.parse_target(spec)
    for part in expected:
        assert part in str(info.value), f"{part!r} not in {str(info.value)!r}"


def test_parse_target_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AnimatorError, match=r"missing.json: no such file"):
        aus.parse_target(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  \"AU12\": \n}")
    with pytest.raises(AnimatorError, match=r"bad.json: invalid JSON.* line 3"):
        aus.parse_target(str(bad))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(AnimatorError, match=r"list.json: expected a JSON object"):
        aus.parse_target(str(listed))


def test_vector_dict_round_trip() -> None:
    vector = aus.parse_target("AU01=1.25,AU45=5")
    as_dict = aus.vector_to_dict(vector)
    assert list(as_dict) == list(aus.AU_NAMES)
    np.testing.assert_array_equal(aus.vector_from_dict(as_dict), vector)
    assert aus.vector_to_dict(vector, skip_zeros=True) == {"AU01": 1.25, "AU45": 5.0}
    with pytest.raises(AnimatorError, match=r"AUs.AU12: 9 is outside"):
        aus.vector_from_dict({"AU12": 9})
