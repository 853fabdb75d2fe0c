"""Trajectory sampling: property tests over random keyframes, plus exact small cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from animator import aus
from animator.errors import AnimatorError
from animator.keyframes import EASES, INTERPOLATIONS, Keyframes, parse_keyframes
from animator.trajectory import sample_trajectory

FAST = settings(max_examples=60, derandomize=True, deadline=None)
AU12 = aus.au_index("AU12")
AU45 = aus.au_index("AU45")


@st.composite
def channel(draw: st.DrawFn, min_keys: int = 1, max_keys: int = 7) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Key times (strictly increasing, gaps >= 0.05 s), values on 0-5 and an ease per key."""
    count = draw(st.integers(min_keys, max_keys))
    start = draw(st.floats(0.0, 2.0))
    gaps = draw(st.lists(st.floats(0.05, 2.0), min_size=count - 1, max_size=count - 1))
    times = start + np.concatenate([[0.0], np.cumsum(gaps)])
    values = draw(st.lists(st.floats(0.0, 5.0), min_size=count, max_size=count))
    eases = draw(st.lists(st.sampled_from(EASES), min_size=count, max_size=count))
    return times, np.array(values), eases


def keyframes(times: np.ndarray, values: np.ndarray, method: str, eases: list[str] | None = None,
              au: str = "AU12") -> Keyframes:
    eases = eases or ["none"] * len(times)
    keys = [{"time": float(t), "aus": {au: float(v)}, "ease": e} for t, v, e in zip(times, values, eases)]
    return parse_keyframes({"interpolation": method, "keys": keys}, "test.json")


def within(times: np.ndarray, count: int = 200) -> np.ndarray:
    return np.linspace(times[0], times[-1], count)


@FAST
@given(channel(), st.sampled_from(INTERPOLATIONS), st.booleans())
def test_passes_through_every_key(ch, method: str, eased: bool) -> None:
    times, values, eases = ch
    out = sample_trajectory(keyframes(times, values, method, eases if eased else None), times)
    np.testing.assert_allclose(out[:, AU12], values, atol=1e-5)


@FAST
@given(channel(min_keys=2), st.booleans())
def test_pchip_stays_within_neighbouring_keys(ch, eased: bool) -> None:
    times, values, eases = ch
    t = within(times, 500)
    out = sample_trajectory(keyframes(times, values, "pchip", eases if eased else None), t)[:, AU12]
    segment = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    low = np.minimum(values[segment], values[segment + 1])
    high = np.maximum(values[segment], values[segment + 1])
    assert np.all(out >= low - 1e-5) and np.all(out <= high + 1e-5)


@FAST
@given(channel(min_keys=2), st.lists(st.floats(-1.0, 20.0), min_size=1, max_size=50))
def test_step_holds_the_previous_key(ch, sample_times: list[float]) -> None:
    times, values, eases = ch
    t = np.array(sample_times)
    out = sample_trajectory(keyframes(times, values, "step", eases), t)[:, AU12]
    previous = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
    np.testing.assert_allclose(out, values[previous], atol=1e-6)


@FAST
@given(channel(min_keys=2), st.lists(st.floats(-1.0, 20.0), min_size=1, max_size=50))
def test_linear_is_straight_lines_between_keys(ch, sample_times: list[float]) -> None:
    times, values, _ = ch
    t = np.array(sample_times)
    out = sample_trajectory(keyframes(times, values, "linear"), t)[:, AU12]
    np.testing.assert_allclose(out, np.interp(t, times, values), atol=1e-5)


@FAST
@given(channel(), st.sampled_from(INTERPOLATIONS), st.booleans(),
       st.lists(st.floats(-2.0, 20.0), min_size=1, max_size=40))
def test_irregular_timestamps_agree_with_the_dense_curve(ch, method: str, eased: bool,
                                                         sample_times: list[float]) -> None:
    times, values, eases = ch
    kf = keyframes(times, values, method, eases if eased else None)
    irregular = np.array(sample_times)  # unsorted, maybe repeated, beyond the keys
    dense = np.arange(-2.0, 20.0, 1e-3)
    at_irregular = sample_trajectory(kf, irregular)
    together = sample_trajectory(kf, np.concatenate([dense, irregular]))
    # Each row depends only on its own timestamp: exactly the same numbers either way...
    np.testing.assert_array_equal(together[dense.size:], at_irregular)
    # ...and, for continuous curves, they lie on the densely sampled curve.
    if method != "step":
        on_dense = np.interp(irregular, dense, together[: dense.size, AU12])
        np.testing.assert_allclose(at_irregular[:, AU12], on_dense, atol=2e-2)


@FAST
@given(channel(), st.sampled_from(INTERPOLATIONS), st.floats(0.01, 100.0))
def test_holds_before_the_first_and_after_the_last_key(ch, method: str, beyond: float) -> None:
    times, values, eases = ch
    out = sample_trajectory(keyframes(times, values, method, eases),
                            np.array([times[0] - beyond, times[-1] + beyond]))
    np.testing.assert_allclose(out[:, AU12], [values[0], values[-1]], atol=1e-5)


@FAST
@given(channel(), channel(), st.sampled_from(INTERPOLATIONS))
def test_channels_are_independent(first, second, method: str) -> None:
    """Adding keys for AU45 (at other times) leaves AU12's curve as it was; unset AUs stay 0."""
    times, values, eases = first
    alone = keyframes(times, values, method, eases)
    other_times = second[0] + 0.013  # keys at times AU12 has none
    merged = {float(t): {"aus": {"AU12": float(v)}, "ease": e} for t, v, e in zip(times, values, eases)}
    for t, v in zip(other_times, second[1]):
        merged.setdefault(float(t), {"aus": {}, "ease": "none"})["aus"]["AU45"] = float(v)
    both = parse_keyframes({"interpolation": method, "keys": [
        {"time": t, **merged[t]} for t in sorted(merged)]}, "test.json")
    t = np.linspace(-1, 20, 300)
    out_alone, out_both = sample_trajectory(alone, t), sample_trajectory(both, t)
    np.testing.assert_allclose(out_both[:, AU12], out_alone[:, AU12], atol=1e-6)
    others = np.delete(np.arange(aus.N_AUS), [AU12, AU45])
    assert not out_both[:, others].any()


@FAST
@given(channel(min_keys=3), st.sampled_from(["cubic", "akima"]))
def test_overshooting_splines_are_clamped_to_the_au_range(ch, method: str) -> None:
    times, values, _ = ch
    out = sample_trajectory(keyframes(times, values, method), within(times, 400))
    assert out.min() >= 0.0 and out.max() <= 5.0


def test_output_shape_dtype_and_unsorted_times() -> None:
    kf = keyframes(np.array([0.0, 1.0]), np.array([0.0, 4.0]), "linear")
    t = np.array([0.75, 0.25, 0.5])
    out = sample_trajectory(kf, t)
    assert out.shape == (3, aus.N_AUS) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, AU12], [3.0, 1.0, 2.0])
    assert sample_trajectory(kf, np.array([])).shape == (0, aus.N_AUS)


def test_single_key_is_constant() -> None:
    for method in INTERPOLATIONS:
        out = sample_trajectory(keyframes(np.array([1.0]), np.array([2.5]), method),
                                np.array([0.0, 1.0, 9.0]))
        np.testing.assert_array_equal(out[:, AU12], [2.5, 2.5, 2.5])


def test_easing_is_the_documented_time_remap() -> None:
    u = np.linspace(0, 1, 11)
    both = keyframes(np.array([0.0, 1.0]), np.array([0.0, 5.0]), "linear", ["out", "in"])
    np.testing.assert_allclose(sample_trajectory(both, u)[:, AU12], 5 * (3 * u**2 - 2 * u**3), atol=1e-5)
    arriving = keyframes(np.array([0.0, 1.0]), np.array([0.0, 5.0]), "linear", ["none", "in"])
    out = sample_trajectory(arriving, np.array([0.0, 1e-3, 1 - 1e-3, 1.0]))[:, AU12]
    assert out[1] == pytest.approx(5e-3, rel=1e-2)   # leaves the first key at full speed
    assert 5.0 - out[2] < 1e-4                        # arrives at the eased key with zero slope
    # An eased key only touches the segments next to it.
    three = keyframes(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 3.0]), "linear",
                      ["none", "none", "none", "in"])
    np.testing.assert_allclose(sample_trajectory(three, np.array([0.5, 1.5]))[:, AU12], [0.5, 1.5], atol=1e-6)


def test_per_au_interpolation_overrides_the_file_default() -> None:
    kf = parse_keyframes({"interpolation": "step", "interpolation_per_au": {"au45": "linear"},
                          "keys": [{"time": 0, "aus": {"AU12": 0, "AU45": 0}},
                                   {"time": 1, "aus": {"AU12": 4, "AU45": 4}}]}, "test.json")
    out = sample_trajectory(kf, np.array([0.5]))
    assert out[0, AU12] == 0.0 and out[0, AU45] == pytest.approx(2.0)


def test_relative_offsets_may_be_negative_and_clamp_to_plus_minus_5() -> None:
    kf = parse_keyframes({"mode": "relative", "interpolation": "cubic", "keys": [
        {"time": 0, "aus": {"AU12": 0}}, {"time": 1, "aus": {"AU12": -5}},
        {"time": 1.2, "aus": {"AU12": 5}}, {"time": 3, "aus": {"AU12": 0}}]}, "rel.json")
    out = sample_trajectory(kf, np.linspace(0, 3, 301))[:, AU12]
    assert out.min() == -5.0 and out.max() == 5.0  # the spline overshoots both ways: clamped
    assert (out < 0).any()


def test_frame_keys_use_the_given_fps() -> None:
    kf = parse_keyframes({"keys": [{"frame": 0, "aus": {"AU12": 0}}, {"frame": 30, "aus": {"AU12": 3}}],
                          "interpolation": "linear"}, "f.json")
    np.testing.assert_allclose(sample_trajectory(kf, np.array([0.5]), fps=30)[:, AU12], [1.5])
    np.testing.assert_allclose(sample_trajectory(kf, np.array([0.5]), fps=60)[:, AU12], [3.0])
    with pytest.raises(AnimatorError, match="frame rate"):
        sample_trajectory(kf, np.array([0.5]))


def test_bad_times_are_rejected() -> None:
    kf = keyframes(np.array([0.0]), np.array([1.0]), "pchip")
    with pytest.raises(AnimatorError, match="1-D"):
        sample_trajectory(kf, np.zeros((2, 2)))
    with pytest.raises(AnimatorError, match="NaN"):
        sample_trajectory(kf, np.array([0.0, np.nan]))
