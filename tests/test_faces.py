"""Detection (YuNet), landmarks (face mesh; FAN's errors) and ``animator faces``."""

from __future__ import annotations

import builtins
import json
import sys
import types

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from animator.cli import cli
from animator.errors import AnimatorError
from animator.faces.detect import YUNET_MODEL, FaceDetector
from animator.faces.track import track_video
from animator.faces.landmarks import (LANDMARK_MODEL, FanLandmarker, MeshLandmarker, eye_centers,
                                      five_points, make_landmarker)
from animator.media.images import write_image

# The mesh's eye centres (mean of each eye contour) lie within this many pixels of YuNet's
# eye points on the astronaut (eye distance ~47 px; YuNet marks the pupils, she looks aside).
EYE_TOLERANCE_PX = 4.0


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def mesh_landmarker():
    return MeshLandmarker()


def test_models_ship_inside_the_package():
    for model in (YUNET_MODEL, LANDMARK_MODEL):
        assert model.is_file() and "animator" in model.parts and "shared" not in model.parts
        assert (model.parent / "LICENSE").is_file()


def test_astronaut_has_one_face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8 and face.box.shape == (4,) and face.points.shape == (5, 2)
    x0, y0, x1, y1 = face.box
    assert 150 < x0 < x1 < 300 and 30 < y0 < y1 < 220
    right_eye, left_eye, nose, mouth_right, mouth_left = face.points
    assert right_eye[0] < nose[0] < left_eye[0]  # subject's right eye is on the image's left
    assert mouth_right[0] < mouth_left[0] and max(right_eye[1], left_eye[1]) < nose[1] < mouth_right[1]
    assert np.all((face.points >= face.box[:2]) & (face.points <= face.box[2:]))


def test_detection_on_a_large_frame_maps_back(detector, astronaut):
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_LINEAR)  # > max_side
    small_face, big_face = detector.detect(astronaut)[0], detector.detect(big)[0]
    # same face within YuNet's own scale jitter (a 640 copy vs the 512 original)
    np.testing.assert_allclose(big_face.box / 4, small_face.box, atol=4.0)
    np.testing.assert_allclose(big_face.points / 4, small_face.points, atol=6.0)


def test_no_face_and_threshold(detector):
    assert detector.detect(np.full((200, 300, 3), 128, np.uint8)) == []
    with pytest.raises(AnimatorError, match="score-threshold"):
        FaceDetector(score_threshold=1.5)


def test_mesh_eyes_agree_with_the_detector(detector, mesh_landmarker, astronaut):
    face = detector.detect(astronaut)[0]
    mesh = mesh_landmarker.landmarks(astronaut, face)
    assert mesh.shape == (478, 3) and mesh.dtype == np.float32
    assert np.abs(eye_centers(mesh) - face.points[:2]).max() < EYE_TOLERANCE_PX
    five = five_points(mesh)
    assert five.shape == (5, 2)
    eye_distance = np.linalg.norm(face.points[1] - face.points[0])
    assert np.linalg.norm(five - face.points, axis=1).max() < 0.2 * eye_distance
    # the mesh stays on the face when tracked from itself, or started from a bare box
    again = mesh_landmarker.landmarks_from_mesh(astronaut, mesh)
    from_box = mesh_landmarker.landmarks(astronaut, face.box)
    assert np.abs(again[:, :2] - mesh[:, :2]).max() < 3.0
    assert np.abs(eye_centers(from_box) - face.points[:2]).max() < EYE_TOLERANCE_PX


def test_mesh_follows_a_rolled_face(detector, mesh_landmarker, astronaut):
    """Roll the photo 10-40 degrees: the mesh's eyes stay on the eyes (YuNet's points do not:
    they lag the roll by 10-17 px at 25-40 degrees, which is why tracks align from the mesh)."""
    upright = eye_centers(mesh_landmarker.landmarks(astronaut, detector.detect(astronaut)[0]))
    for angle in (10, 25, 40):
        R = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
        rolled = cv2.warpAffine(astronaut, R, (512, 512), borderMode=cv2.BORDER_REFLECT)
        eyes = eye_centers(mesh_landmarker.landmarks(rolled, detector.detect(rolled)[0]))
        truth = upright @ R[:, :2].T + R[:, 2]
        assert np.abs(eyes - truth).max() < EYE_TOLERANCE_PX, f"roll {angle}"
        track = track_video([(0, 0.0, rolled)], detector)
        assert np.abs(track.observations[0].points[:2] - truth).max() < EYE_TOLERANCE_PX


def test_fan_without_the_package_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_fan(name, *args, **kwargs):
        if name == "face_alignment":
            raise ImportError("No module named 'face_alignment'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fan)
    with pytest.raises(AnimatorError, match=r"pip install animator\[fan\]"):
        make_landmarker("fan")


def test_fan_without_its_weights_says_so(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    fake = types.SimpleNamespace(LandmarksType=types.SimpleNamespace(TWO_D=1), FaceAlignment=no_network)
    monkeypatch.setitem(sys.modules, "face_alignment", fake)
    with pytest.raises(AnimatorError, match="could not load face-alignment's weights"):
        FanLandmarker()


def test_unknown_landmarker():
    with pytest.raises(AnimatorError, match="--landmarks"):
        make_landmarker("dlib")


def run_cli(*args: str):
    return CliRunner().invoke(cli, ["faces", *args], catch_exceptions=False)


def test_cli_on_an_image(tmp_path, astronaut):
    photo = tmp_path / "astronaut.png"
    write_image(photo, astronaut)
    out_json, preview = tmp_path / "faces.json", tmp_path / "preview.png"
    result = run_cli(str(photo), "--json", str(out_json), "--preview", str(preview))
    assert result.exit_code == 0, result.output
    doc = json.loads(out_json.read_text())
    assert doc["source"] == str(photo) and doc["fps"] is None and len(doc["frames"]) == 1
    (found,) = doc["frames"][0]["faces"]
    assert found["id"] == 0 and len(found["box"]) == 4 and len(found["points"]) == 5
    drawn = cv2.imread(str(preview))[..., ::-1]
    assert drawn.shape == astronaut.shape and np.any(drawn != astronaut)
    assert np.array_equal(drawn[400:, 400:], astronaut[400:, 400:])  # drawn only near the face
    # no outputs named: the JSON goes to stdout; existing outputs are refused
    assert json.loads(run_cli(str(photo)).output)["frames"][0]["faces"][0]["id"] == 0
    refused = CliRunner().invoke(cli, ["faces", str(photo), "--json", str(out_json)])
    assert refused.exit_code == 1 and "already exists" in refused.output
    wrong = CliRunner().invoke(cli, ["faces", str(photo), "--select", "3"])
    assert wrong.exit_code == 1 and "no face with ID 3" in wrong.output
    mismatch = CliRunner().invoke(cli, ["faces", str(photo), "--preview", str(tmp_path / "p.mp4")])
    assert mismatch.exit_code == 1 and "preview of an image is an image" in mismatch.output
    same = tmp_path / "same.png"
    clash = CliRunner().invoke(cli, ["faces", str(photo), "--json", str(same), "--preview", str(same)])
    assert clash.exit_code == 1 and "--json and --preview name the same file" in clash.output
    assert not same.exists()  # neither output was half-written


def write_video(path, astronaut, n: int = 12) -> None:
    face = cv2.resize(astronaut[20:230, 120:330], (100, 100), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 240, 160, "yuv420p"
        for i in range(n):
            frame = np.full((160, 240, 3), 120, np.uint8)
            frame[30:130, 20 + 5 * i:120 + 5 * i] = face
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def test_cli_on_a_video(tmp_path, astronaut):
    video = tmp_path / "clip.mp4"
    write_video(video, astronaut)
    bad = CliRunner().invoke(cli, ["faces", str(video), "--preview", str(tmp_path / "p.txt")])
    assert bad.exit_code == 1  # checked up front, naming the user's path (not a temp file)
    assert bad.output.strip().splitlines() == [
        f"Error: {tmp_path / 'p.txt'}: the preview of a video is a video (.mp4, .mov, .mkv, .webm)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    out_json, preview = tmp_path / "faces.json", tmp_path / "preview.mp4"
    result = run_cli(str(video), "--json", str(out_json), "--preview", str(preview), "--select", "all")
    assert result.exit_code == 0, result.output
    doc = json.loads(out_json.read_text())
    assert doc["fps"] == pytest.approx(25.0) and len(doc["frames"]) == 12
    assert [f["index"] for f in doc["frames"]] == list(range(12))
    assert all([face["id"] for face in f["faces"]] == [0] for f in doc["frames"])
    xs = [f["faces"][0]["box"][0] for f in doc["frames"]]
    assert xs[-1] - xs[0] == pytest.approx(55, abs=6)  # the face moved 5 px a frame
    with av.open(str(preview)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (160, 240, 3)
