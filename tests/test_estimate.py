"""AU estimation: geometry on synthetic meshes, pose invariance, agreement with OpenFace on the
calibration set, zero-lag smoothing, and the ``animator estimate`` command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from animator.aus import AU_NAMES, au_index
from animator.cli import cli
from animator.errors import AnimatorError
from animator.estimate import OBSERVABLE, AUEstimator, estimate_image_aus, smooth_au_series
from animator.estimate import calibrate, geometry
from animator.estimate.aus import CALIBRATION_PATH

AU = {name: au_index(name) for name in AU_NAMES}


@pytest.fixture(scope="module")
def estimator() -> AUEstimator:
    return AUEstimator.default()


@pytest.fixture(scope="module")
def face(estimator) -> np.ndarray:
    """A frontal face mesh in pixels: the template (a real face's mesh) at 120 px inter-ocular."""
    return (estimator.template * 120.0 + [320.0, 200.0, 0.0]).astype(np.float32)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def moved(mesh: np.ndarray, index, delta_iod) -> np.ndarray:
    """Move points by ``delta_iod`` (x, y) inter-ocular units (the face is frontal, 120 px)."""
    out = mesh.copy()
    out[list(index), :2] += np.asarray(delta_iod, dtype=np.float32) * 120.0
    return out


def only_raised(before: np.ndarray, after: np.ndarray, allowed: set[str], tol: float = 1e-3) -> list[str]:
    return [n for n in AU_NAMES if n not in allowed and after[AU[n]] > before[AU[n]] + tol]


def test_lip_corners_up_and_out_raise_au12_only(estimator, face):
    base = estimator.estimate(face)
    right, left = geometry.MESH.mouth_corner
    smile = moved(moved(face, [right], (-0.04, -0.04)), [left], (0.04, -0.04))
    after = estimator.estimate(smile)
    assert after[AU["AU12"]] > base[AU["AU12"]] + 0.5
    assert only_raised(base, after, {"AU12"}) == []


def test_opening_the_jaw_raises_au25_and_au26(estimator, face):
    layout = geometry.MESH
    y = estimator.template[:, 1]
    mouth = (y[layout.upper_lip_inner[0]] + y[layout.lower_lip_inner[0]]) / 2
    chin = y[layout.chin[0]]
    below = np.flatnonzero(y > mouth)
    opened = face.copy()  # hinge the lower face down: 0 at the mouth line, 0.3 IOD at the chin
    opened[below, 1] += (0.3 * 120.0 * (y[below] - mouth) / (chin - mouth)).astype(np.float32)
    opened[list(layout.lower_lip_inner), 1] += 0.15 * 120.0
    base, after = estimator.estimate(face), estimator.estimate(opened)
    assert after[AU["AU25"]] > base[AU["AU25"]] + 0.5
    assert after[AU["AU26"]] > base[AU["AU26"]] + 0.5
    assert only_raised(base, after, {"AU25", "AU26", "AU17", "AU15", "AU20", "AU23"}) == []


def test_closing_the_lids_raises_au45(estimator, face):
    layout = geometry.MESH
    closed = face.copy()
    for side in (0, 1):
        upper, lower = list(layout.upper_lid[side]), list(layout.lower_lid[side])
        closed[upper, 1] = face[lower, 1] - 0.5  # upper lid meets the lower one
    base, after = estimator.estimate(face), estimator.estimate(closed)
    assert base[AU["AU45"]] < 0.5
    assert after[AU["AU45"]] > 2.5  # a full closure reads ~3 (the set only has partial blinks)
    assert only_raised(base, after, {"AU45", "AU07", "AU04"}) == []


@pytest.mark.parametrize("yaw, pitch, roll, scale", [(25, 0, 0, 1.0), (0, 15, 0, 0.5),
                                                      (0, 0, 30, 2.0), (-20, -10, 12, 0.7)])
def test_rotated_scaled_copy_gives_the_same_aus(estimator, face, yaw, pitch, roll, scale):
    # a posed face with some expression, so the comparison is not between zeros
    posed = moved(face, [geometry.MESH.mouth_corner[1]], (0.03, -0.03))
    centre = posed.mean(0)
    turned = (posed - centre) @ rotation(yaw, pitch, roll).T * scale + [50.0, -30.0, 5.0] + centre
    np.testing.assert_allclose(estimator.estimate(turned), estimator.estimate(posed), atol=1e-3)


def test_68_points_in_plane_pose_invariance_and_missing_measures(estimator, face):
    points = face[list(geometry.MESH_TO_IBUG68)].copy()
    points[:, 2] = 0  # FAN's 2-D output
    centre = points.mean(0)
    turned = (points - centre) @ rotation(0, 0, 25).T * 1.7 + centre
    aus = estimator.estimate(points)
    np.testing.assert_allclose(estimator.estimate(turned), aus, atol=1e-3)
    assert not estimator.observable(68)[AU["AU06"]] and aus[AU["AU06"]] == 0
    assert np.isnan(estimator.measures(points)[geometry.MEASURE_NAMES.index("cheek_raise")])


def test_batches_unobservable_and_bad_input(estimator, face):
    batch = np.stack([face, moved(face, [61, 291], (0, -0.05))])
    out = estimator.estimate(batch)
    assert out.shape == (2, 17) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], estimator.estimate(face))
    assert (out >= 0).all() and (out <= 5).all()
    assert not OBSERVABLE[AU["AU14"]] and (out[:, AU["AU14"]] == 0).all()
    with pytest.raises(AnimatorError, match="468"):
        estimator.estimate(np.zeros((100, 3)))


def test_shipped_calibration_records_provenance_and_methods():
    data = json.loads(CALIBRATION_PATH.read_text())
    assert {"data", "date", "method", "cross_validation"} <= set(data["provenance"])
    mesh = data["layouts"]["mesh468"]
    assert mesh["AU14"]["method"] == "unobservable"
    assert mesh["AU04"]["method"] == "prior" and mesh["AU17"]["method"] == "prior"
    for name in ("AU12", "AU25", "AU26", "AU45"):
        assert mesh[name]["method"] in ("linear", "isotonic")


def test_cross_validated_agreement_with_openface(shared_dir):
    data = shared_dir / "datasets" / "au-calibration" / "eric_andre"
    if not (data / "aus.csv").is_file():
        pytest.skip(f"{data}/aus.csv is absent: the AU calibration set is needed")
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    detector, landmarker = FaceDetector(), MeshLandmarker()
    template = calibrate.build_template(detector, landmarker)
    cal = calibrate.load_set(data, detector, landmarker)
    neutral = geometry.measures(template, template)
    layout = calibrate.calibrate_layout(geometry.measures(cal.meshes, template), cal.aus, OBSERVABLE, neutral)
    for name in ("AU12", "AU25", "AU26", "AU45"):
        assert layout[name]["cv_pearson_r"] >= 0.6, (name, layout[name])
    shipped = json.loads(CALIBRATION_PATH.read_text())["layouts"]["mesh468"]
    assert layout["AU12"]["cv_pearson_r"] == pytest.approx(shipped["AU12"]["cv_pearson_r"], abs=0.02)


def test_smoothing_is_zero_lag_and_fills_gaps():
    times = np.arange(120) / 30.0
    aus = np.zeros((120, 17), dtype=np.float32)
    aus[58:63, AU["AU45"]] = 4.0  # a 5-frame blink centred on frame 60
    aus[:, AU["AU12"]] = 2.0
    aus[30] = np.nan  # no face in frame 30
    out = smooth_au_series(times, aus, cutoff_hz=4.0)
    assert out.shape == (120, 17) and out.dtype == np.float32
    assert int(np.argmax(out[:, AU["AU45"]])) == 60
    assert out[60, AU["AU45"]] > 2.5  # the blink survives
    np.testing.assert_allclose(out[:, AU["AU12"]], 2.0, atol=1e-5)
    assert np.isfinite(out).all()
    with pytest.raises(AnimatorError):
        smooth_au_series(times[::-1], aus)


def test_estimate_image_aus_on_a_real_photo(astronaut):
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    aus, confidence = estimate_image_aus(astronaut, FaceDetector(), MeshLandmarker())
    assert aus.shape == (17,) and 0.5 < confidence <= 1.0
    assert aus[AU["AU12"]] > 1.0  # she smiles
    assert aus[AU["AU45"]] < 0.5  # eyes open
    assert estimate_image_aus(np.full((200, 200, 3), 128, np.uint8), FaceDetector(), MeshLandmarker()) is None


def test_cli_estimate_on_an_image_folder(tmp_path, astronaut):
    from animator.media.images import write_image

    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a_astronaut.png", astronaut)
    write_image(folder / "b_mirrored.jpg", np.ascontiguousarray(astronaut[:, ::-1]))
    write_image(folder / "c_blank.png", np.full((120, 120, 3), 90, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    out, plot = tmp_path / "aus.csv", tmp_path / "aus.png"
    result = CliRunner().invoke(cli, ["estimate", str(folder), "-o", str(out), "--plot", str(plot), "-q"])
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:5] == ["file", "frame", "timestamp", "face_id", "confidence"]
    assert list(rows[0])[5:] == [f"{n}_r" for n in AU_NAMES]
    assert [r["file"] for r in rows] == ["a_astronaut.png", "b_mirrored.jpg", "c_blank.png"]
    assert float(rows[0]["AU12_r"]) > 1.0 and float(rows[0]["confidence"]) > 0.5
    assert abs(float(rows[0]["AU12_r"]) - float(rows[1]["AU12_r"])) < 0.5  # mirror: same smile
    assert float(rows[2]["confidence"]) == 0 and float(rows[2]["AU12_r"]) == 0
    assert plot.stat().st_size > 0
    again = CliRunner().invoke(cli, ["estimate", str(folder), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output
    csv2 = tmp_path / "other.csv"
    bad_plot = CliRunner().invoke(cli, ["estimate", str(folder), "-o", str(csv2), "--plot",
                                        str(tmp_path / "aus.txt")])
    assert bad_plot.exit_code == 1 and "can't draw a plot as 'txt'" in bad_plot.output
    assert not csv2.exists()  # checked before the CSV was written
