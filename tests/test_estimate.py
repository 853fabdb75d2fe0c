"""AU estimation: the landmark and blendshape models on real faces, geometry's pose invariance,
leave-one-person-out agreement with OpenFace, expression clips checked frame by frame, zero-lag
smoothing, and the ``animator estimate`` command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from animator.aus import AU_NAMES, au_index
from animator.cli import cli
from animator.errors import AnimatorError
from animator.estimate import AUEstimator, estimate_image_aus, smooth_au_series
from animator.estimate import calibrate, geometry
from animator.estimate.aus import CALIBRATION_PATH, FEATURE_NAMES
from animator.estimate.blendshapes import BLENDSHAPE_NAMES, BlendshapeModel

AU = {name: au_index(name) for name in AU_NAMES}

# Frames of ../shared/datasets/expression-clips picked by looking at them (contact sheets):
# (clip, frame index from 0, what is plainly visible, AUs that must read >= the bound, AUs that
# must read <= the bound). "neutral": relaxed face, every AU <= 1.
CLIP_FRAMES = [
    ("d0", 5, "neutral", {}, {n: 1.0 for n in AU_NAMES}),
    ("d0", 75, "neutral", {}, {n: 1.0 for n in AU_NAMES}),
    ("d3", 0, "neutral", {}, {n: 1.0 for n in AU_NAMES}),
    ("d9", 0, "neutral", {}, {n: 1.0 for n in AU_NAMES}),
    ("d0", 45, "broad smile", {"AU12": 1.5, "AU06": 0.8, "AU25": 1.0}, {"AU45": 0.5, "AU04": 0.5}),
    ("d0", 66, "blink (smile fading)", {"AU45": 3.0}, {}),
    ("d9", 14, "blink", {"AU45": 3.0}, {"AU01": 1.0}),
    ("d9", 384, "blink", {"AU45": 3.0}, {}),
    ("d14", 94, "blink", {"AU45": 3.0}, {"AU05": 0.5}),
    ("d14", 110, "blink", {"AU45": 3.0}, {"AU05": 0.5}),
    ("d6", 200, "raised brows, wide eyes, mouth open", {"AU01": 2.0, "AU02": 2.0, "AU05": 2.0}, {"AU45": 0.5, "AU04": 0.5}),
    ("d6", 375, "raised brows, wide eyes, jaw dropped", {"AU01": 2.0, "AU05": 2.0, "AU26": 2.0}, {"AU17": 0.5}),
    ("d9", 480, "inner brows raised (forehead wrinkles)", {"AU01": 2.0}, {"AU45": 0.5, "AU04": 0.5}),
    ("d9", 504, "inner brows raised", {"AU01": 2.0}, {"AU45": 0.5}),
    ("d14", 72, "raised brows, wide eyes", {"AU01": 2.0, "AU02": 2.0, "AU05": 2.0}, {"AU45": 0.5}),
    ("d14", 342, "raised brows", {"AU01": 2.0, "AU02": 2.0}, {"AU45": 0.5}),
    ("d3", 136, "brows lowered and drawn together", {"AU04": 2.0}, {"AU01": 0.5, "AU02": 0.5}),
    ("d3", 305, "jaw dropped, lips apart", {"AU26": 2.0, "AU25": 2.0}, {"AU17": 0.5}),
    ("d3", 340, "jaw dropped, lips apart", {"AU26": 2.0, "AU25": 1.5}, {"AU17": 0.5}),
    ("d9", 70, "jaw dropped ('o')", {"AU26": 2.0}, {"AU17": 0.5}),
]


@pytest.fixture(scope="module")
def estimator() -> AUEstimator:
    return AUEstimator.default()


@pytest.fixture(scope="module")
def models():
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    return FaceDetector(), MeshLandmarker()


def checked_clips(shared_dir: Path) -> list[tuple[str, Path, set[int]]]:
    """(clip, its file, the frame indices :data:`CLIP_FRAMES` checks in it); skips the test
    when a clip is absent."""
    checked: dict[str, set[int]] = {}
    for clip, frame, *_ in CLIP_FRAMES:
        checked.setdefault(clip, set()).add(frame)
    found = []
    for clip, frames in checked.items():
        path = shared_dir / "datasets" / "expression-clips" / f"{clip}.mp4"
        if not path.is_file():
            pytest.skip(f"{path} is absent: the expression clips are needed")
        found.append((clip, path, frames))
    return found


@pytest.fixture(scope="module")
def clip_frames(shared_dir) -> dict[tuple[str, int], np.ndarray]:
    """The RGB frames of :data:`CLIP_FRAMES`, decoded once."""
    from animator.media.decode import iter_frames

    frames = {}
    for clip, path, indices in checked_clips(shared_dir):
        for item in iter_frames(path):
            if item.index in indices:
                frames[(clip, item.index)] = item.rgb
            if item.index >= max(indices):
                break
    return frames


def test_landmarker_places_irises_in_the_eyes_and_scores_presence(models, astronaut):
    """Pins the input convention (256 px RGB in [0, 1], MediaPipe's crop): a wrong scale or
    channel order moves the points off the features and drops the presence score."""
    from animator.faces.landmarks import LEFT_EYE, RIGHT_EYE, N_LANDMARKS, detection_roi

    detector, landmarker = models
    face = detector.detect(astronaut)[0]
    points, presence = landmarker.locate(astronaut, face)
    assert points.shape == (N_LANDMARKS, 3) and presence > 0.99
    for iris, contour in ((468, RIGHT_EYE), (473, LEFT_EYE)):
        lo, hi = points[contour, :2].min(0), points[contour, :2].max(0)
        assert np.all(points[iris, :2] > lo) and np.all(points[iris, :2] < hi)
    # the mouth corners and eye centres sit where YuNet puts them (a different model)
    from animator.faces.landmarks import five_points

    assert np.abs(five_points(points) - face.points).max() < 0.12 * (face.box[2] - face.box[0])
    _, on_wall = landmarker.run(astronaut, detection_roi(np.array([0, 300, 150, 450]), None))
    assert on_wall < 0.1


def test_blendshapes_read_smiles_and_blinks_on_real_frames(estimator, models, clip_frames):
    detector, landmarker = models
    smile, blink, neutral = ((clip_frames[("d0", i)]) for i in (45, 66, 5))
    coefficient = {}
    for name, rgb in (("smile", smile), ("blink", blink), ("neutral", neutral)):
        values = estimator.blendshapes(landmarker.landmarks(rgb, detector.detect(rgb)[0]))
        coefficient[name] = dict(zip(BLENDSHAPE_NAMES, values))
    pair = lambda c, base: (c[base + "Left"] + c[base + "Right"]) / 2  # noqa: E731
    assert pair(coefficient["smile"], "mouthSmile") > 0.6
    assert pair(coefficient["blink"], "eyeBlink") > 0.5
    assert pair(coefficient["neutral"], "mouthSmile") < 0.2 and pair(coefficient["neutral"], "eyeBlink") < 0.3


def test_blendshape_input_is_pixel_xy_and_the_model_normalises_it(models, astronaut):
    """MediaPipe feeds x, y in image pixels; the model removes position and scale itself."""
    detector, landmarker = models
    points = landmarker.landmarks(astronaut, detector.detect(astronaut)[0])
    model = BlendshapeModel()
    base = model(points)
    assert base.shape == (52,) and base.dtype == np.float32
    np.testing.assert_allclose(model(points * [2.0, 2.0, 1.0] + [30.0, -12.0, 0.0]), base, atol=1e-4)
    np.testing.assert_allclose(model(np.stack([points, points])), np.stack([base, base]), atol=1e-6)
    with pytest.raises(AnimatorError, match="478"):
        model(points[:468])


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


@pytest.mark.parametrize("yaw, pitch, roll, scale", [(25, 0, 0, 1.0), (0, 15, 0, 0.5),
                                                      (0, 0, 30, 2.0), (-20, -10, 12, 0.7)])
def test_geometry_is_pose_invariant(estimator, yaw, pitch, roll, scale):
    face = estimator.template * 120.0 + [320.0, 200.0, 0.0]
    face[list(geometry.MESH.mouth_corner), 1] -= 5.0  # some expression, not all zeros
    centre = face.mean(0)
    turned = (face - centre) @ rotation(yaw, pitch, roll).T * scale + [50.0, -30.0, 5.0] + centre
    batch = geometry.measures(np.stack([face, turned]), estimator.template)
    np.testing.assert_allclose(batch[1], batch[0], atol=1e-6)
    np.testing.assert_allclose(geometry.measures(face, estimator.template), batch[0])


def test_estimates_batch_and_refuse_other_layouts(estimator, models, astronaut):
    detector, landmarker = models
    points = landmarker.landmarks(astronaut, detector.detect(astronaut)[0])
    one = estimator.estimate(points)
    batch = estimator.estimate(np.stack([points, points[:, :] * [1.0, 1.0, 1.0]]))
    assert one.shape == (17,) and one.dtype == np.float32 and batch.shape == (2, 17)
    np.testing.assert_allclose(batch[0], one, atol=1e-6)
    assert ((one >= 0) & (one <= 5)).all() and one[AU["AU12"]] > 1.0  # she smiles
    with pytest.raises(AnimatorError, match="478"):
        estimator.estimate(points[:468])
    with pytest.raises(AnimatorError, match="478"):
        estimator.estimate(np.zeros((68, 3)))


# The bar (leave-one-person-out score >= 0.6) as met per mode; AU02 and AU26 miss it in
# both (docs/au_estimation.md says why). Video mode reads AU06 and AU12 statically.
MEETS_BAR = {"static": ("AU01", "AU06", "AU12", "AU25", "AU45"), "video": ("AU01", "AU25", "AU45")}


def test_shipped_calibration_records_sources_and_validation():
    data = json.loads(CALIBRATION_PATH.read_text())
    assert {"data", "date", "method", "validation", "people"} <= set(data["provenance"])
    assert len(data["provenance"]["people"]) == 3
    for name in AU_NAMES:
        entry = data["aus"][name]
        assert ("video" in entry) == (name in calibrate.VIDEO_BASELINE)
        for mode in ("static", "video") if "video" in entry else ("static",):
            rule = entry[mode]
            assert set(rule["features"]) <= set(calibrate.candidates(name, mode)) <= set(FEATURE_NAMES)
            assert rule["method"] in ("quantile", "prior") and len(rule["lopo_features"]) == 3
            assert not rule["neutral_offset"] > 1.0, name
    assert data["aus"]["AU45"]["static"]["method"] == data["aus"]["AU45"]["video"]["method"] == "prior"
    for mode, names in MEETS_BAR.items():  # weights fitted inside the folds: the honest score
        for name in names:
            assert data["aus"][name][mode]["lopo_score"] >= 0.6, (mode, name)
    with pytest.raises(AnimatorError, match="format"):
        AUEstimator.from_dict({"format": "animator-au-calibration/2"})
    broken = json.loads(CALIBRATION_PATH.read_text())
    broken["aus"]["AU01"]["static"]["weights"] = [1.0]  # two features, one weight
    with pytest.raises(AnimatorError, match="malformed"):
        AUEstimator.from_dict(broken)


def test_video_mode_reads_each_track_against_its_own_resting_face(estimator, models, astronaut):
    """A still face is its own baseline: the person-normalised AUs read their resting value on
    every frame (whatever her anatomy reads statically), the others their static value; a
    track too short for a baseline gets the static maps."""
    from animator.estimate.aus import MIN_TRACK_FRAMES

    detector, landmarker = models
    points = landmarker.landmarks(astronaut, detector.detect(astronaut)[0])
    still = np.repeat(points[None], MIN_TRACK_FRAMES, axis=0)
    static, video = estimator.estimate(still), estimator.estimate_track(still)
    assert video.shape == static.shape == (MIN_TRACK_FRAMES, 17) and video.dtype == np.float32
    for name in AU_NAMES:
        expected = estimator.video_rules[name](np.zeros_like(still[:, 0, :1].repeat(len(FEATURE_NAMES), 1))) \
            if name in estimator.video_rules else static[:, AU[name]]
        np.testing.assert_allclose(video[:, AU[name]], np.clip(expected, 0, 5), atol=1e-5, err_msg=name)
    assert set(estimator.video_rules) == calibrate.VIDEO_BASELINE
    np.testing.assert_allclose(estimator.estimate_track(still[:3]), static[:3])
    with pytest.raises(AnimatorError, match="478"):
        estimator.estimate_track(still[:, :468])


def _people_subsample(shared_dir, estimator, models, every: int = 6) -> list:
    """The three calibration people, every ``every``-th VoxCeleb frame, landmarks per frame."""
    import csv as csv_module

    from animator.media.decode import iter_frames

    data = shared_dir / "datasets" / "au-calibration"
    if not (data / "eric_andre" / "aus.csv").is_file():
        pytest.skip(f"{data} is absent: the AU calibration set is needed")
    detector, landmarker = models
    people = [calibrate.load_crops(data / "eric_andre", detector, landmarker, estimator)]
    for table in sorted((data / "voxceleb").glob("*.csv")):
        with table.open() as handle:
            rows = list(csv_module.reader(handle))
        header = [c.strip() for c in rows[0]]
        columns = [header.index(f"{n}_r") for n in AU_NAMES]
        points, values = [], []
        for item in iter_frames(table.with_suffix(".mp4")):
            row = rows[item.index + 1]
            if item.index % every or row[header.index("success")].strip() != "1":
                continue
            found = detector.detect(item.rgb)
            if found:
                points.append(landmarker.landmarks(item.rgb, found[0]))
                values.append([float(row[c]) for c in columns])
        people.append(calibrate.Person(table.stem, estimator.features(np.stack(points)), np.array(values)))
    return people


def test_quantile_map_is_monotone_and_keeps_the_scale():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 500)
    y = np.clip(4.0 * x ** 2 + rng.normal(0, 0.05, 500), 0, 5)  # monotone, not linear
    au_map = calibrate.fit_map(x, y)
    grid = np.linspace(-0.2, 1.2, 50)
    assert np.all(np.diff(au_map(grid)) >= 0)
    assert au_map(np.array([0.95]))[0] == pytest.approx(4.0 * 0.95 ** 2, abs=0.3)  # no shrinking
    assert calibrate.fit_map(x, 5.0 - y) is None  # a feature that falls as the AU grows
    prior = calibrate.prior_map(x, y, "AU45")
    assert prior(np.array([np.percentile(x[y < 0.5], 90)]))[0] == pytest.approx(0.0)


@pytest.mark.parametrize("mode", ["static", "video"])
def test_leave_one_person_out_agreement_with_openface(shared_dir, estimator, models, mode):
    """The whole procedure, weights and method included, validated on the person left out;
    video mode on each person's features relative to their own resting value."""
    people = _people_subsample(shared_dir, estimator, models)
    if mode == "video":
        people = [calibrate.relative_to_baseline(p) for p in people]
    scores = {}
    for index, name in enumerate(AU_NAMES):
        if mode == "video" and name not in calibrate.VIDEO_BASELINE:
            continue
        rule, score = calibrate.calibrate_au(people, index, mode)
        scores[name] = score
        assert set(rule.features) <= set(calibrate.candidates(name, mode))
        assert not score["neutral_offset"] > 1.0, (name, score)
    # Every 6th VoxCeleb frame, detected per frame: most scores land within 0.05 of the full
    # set's (the shipped file, pinned above), AU02's within 0.17 (OpenFace raises it on a few
    # frames only). A floor under each guards against regressions.
    floors = {"static": {"AU01": 0.6, "AU06": 0.6, "AU12": 0.6, "AU25": 0.6, "AU45": 0.6, "AU02": 0.3, "AU26": 0.4},
              "video": {"AU01": 0.6, "AU25": 0.6, "AU45": 0.6, "AU02": 0.4, "AU26": 0.5}}[mode]
    for name, floor in floors.items():
        assert scores[name]["score"] >= floor, (name, scores[name])


@pytest.mark.parametrize("clip, frame, what, at_least, at_most", CLIP_FRAMES,
                         ids=[f"{c}-{f}-{w.split(',')[0].replace(' ', '_')}" for c, f, w, *_ in CLIP_FRAMES])
def test_expression_clip_frames(estimator, models, clip_frames, clip, frame, what, at_least, at_most):
    """Static mode: the frame alone."""
    detector, landmarker = models
    found = estimate_image_aus(clip_frames[(clip, frame)], detector, landmarker, estimator)
    assert found is not None, f"no face in {clip} frame {frame}"
    _check_clip_frame(found[0], clip, frame, what, at_least, at_most)


def _check_clip_frame(values, clip, frame, what, at_least, at_most) -> None:
    aus = dict(zip(AU_NAMES, np.round(values, 2)))
    low = {n: aus[n] for n, bound in at_least.items() if aus[n] < bound}
    high = {n: aus[n] for n, bound in at_most.items() if aus[n] > bound}
    assert not low and not high, f"{clip} frame {frame} ({what}): too low {low}, too high {high}; all {aus}"


TRACK_FRAMES = 60  # video-mode clip checks: about this many frames of each clip, evenly spaced
# Video mode reads a movement against the person's own resting face. The d6 and d14 actresses
# keep their brows partly raised through much of their clips (docs/au_estimation.md), so a full
# raise reads less above that rest (AU01 1.9-2.3, AU02 1.5-1.7) than statically (3.2-3.5,
# 2.3); their blinks, statically AU01 2.2-2.4, read 0.6 in video mode.
BROWS_OVER_RAISED_REST = {"AU01": 1.5, "AU02": 1.2}
VIDEO_AT_LEAST = {("d6", 200): BROWS_OVER_RAISED_REST, ("d14", 72): BROWS_OVER_RAISED_REST,
                  ("d14", 342): BROWS_OVER_RAISED_REST}


@pytest.fixture(scope="module")
def clip_tracks(shared_dir, models) -> dict[str, tuple[list[int], np.ndarray]]:
    """Per clip of :data:`CLIP_FRAMES`: frame indices and landmarks of a thinned track (about
    TRACK_FRAMES evenly spaced frames and the checked ones, the largest face). Its baseline is
    the whole track's within noise; landmarking every frame would take a minute more."""
    from animator.estimate.aus import MIN_TRACK_FRAMES
    from animator.media.decode import iter_frames, probe

    detector, landmarker = models
    tracks = {}
    for clip, path, frames in checked_clips(shared_dir):
        step = max(1, probe(path).frames // TRACK_FRAMES)
        indices, meshes = [], []
        for item in iter_frames(path):
            if item.index % step and item.index not in frames:
                continue
            found = detector.detect(item.rgb)
            if found:
                indices.append(item.index)
                meshes.append(landmarker.landmarks(item.rgb, found[0]))
        assert len(indices) >= MIN_TRACK_FRAMES, f"{clip}: too few frames for video mode"
        tracks[clip] = (indices, np.stack(meshes))
    return tracks


@pytest.mark.parametrize("clip, frame, what, at_least, at_most", CLIP_FRAMES,
                         ids=[f"{c}-{f}-{w.split(',')[0].replace(' ', '_')}" for c, f, w, *_ in CLIP_FRAMES])
def test_expression_clip_frames_in_video_mode(estimator, clip_tracks, clip, frame, what, at_least, at_most):
    """Video mode: the same frames read within their clip's track, relative to its resting face."""
    indices, meshes = clip_tracks[clip]
    assert frame in indices, f"no face in {clip} frame {frame}"
    at_least = {**at_least, **VIDEO_AT_LEAST.get((clip, frame), {})}
    _check_clip_frame(estimator.estimate_track(meshes)[indices.index(frame)], clip, frame, what, at_least, at_most)


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


def test_cli_estimate_on_a_video_keeps_openface_columns(tmp_path):
    clip = Path(__file__).resolve().parents[1] / "examples" / "single_face.mp4"
    out = tmp_path / "aus.csv"
    result = CliRunner().invoke(cli, ["estimate", str(clip), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["frame", "timestamp", "face_id", "confidence"] + [f"{n}_r" for n in AU_NAMES]
    assert [int(r["frame"]) for r in rows] == list(range(1, 73))
    assert all(float(r["confidence"]) > 0.5 for r in rows)
    values = np.array([[float(r[f"{n}_r"]) for n in AU_NAMES] for r in rows])
    assert ((values >= 0) & (values <= 5)).all() and values.std(0).max() > 0.1  # a talking face moves


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
