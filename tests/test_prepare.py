"""``animator prepare`` on generated faces and a generated video, labelled by OpenFace-style
CSVs whose columns come in a shuffled order."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from animator.aus import AU_NAMES
from animator.cli import cli
from animator.errors import AnimatorError
from animator.media.images import read_image, write_image
from animator.train.data import load_split, read_aus, read_ids, split_of
from pipelines.prepare import PrepareOptions, collect_sources, prepare, read_openface_csv

EXTRA_COLUMNS = ("frame", "face_id", "timestamp", "confidence", "success", "AU01_c", "AU12_c", "gaze_0_x")


def _variant(face: np.ndarray, shift: tuple[int, int], scale: float, size: int = 512) -> np.ndarray:
    """The astronaut moved and resized on a grey canvas (a different 'photo' of a face)."""
    M = np.array([[scale, 0, shift[0] + (1 - scale) * 256], [0, scale, shift[1] + (1 - scale) * 256]])
    return cv2.warpAffine(face, M, (size, size), borderValue=(90, 90, 90))


def _labels(seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(0, 5, 17), 2).astype(np.float32)


def write_openface_csv(path: Path, rows: list[dict], seed: int) -> None:
    """OpenFace's layout (', ' separators, leading spaces in headers) with columns shuffled."""
    columns = [*EXTRA_COLUMNS, *(f"{n}_r" for n in AU_NAMES)]
    random.Random(seed).shuffle(columns)
    lines = [", ".join(columns)]
    for row in rows:
        lines.append(", ".join(f"{row.get(c, 0):g}" for c in columns))
    path.write_text("\n".join(lines) + "\n")


def _row(labels: np.ndarray, frame: int = 1, **extra) -> dict:
    return {"frame": frame, "confidence": 0.98, "success": 1, **extra,
            **{f"{n}_r": float(v) for n, v in zip(AU_NAMES, labels)}}


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory, face_image):
    """4 photos in two 'identity' folders + a decoy without a face, with OpenFace CSVs."""
    root = tmp_path_factory.mktemp("photos")
    csvs = tmp_path_factory.mktemp("openface")
    variants = {"alice/a1.png": ((0, 0), 1.0), "alice/a2.jpg": ((40, -25), 0.8),
                "bob/b1.png": ((-30, 30), 0.7), "bob/b2.png": ((20, 10), 1.1)}
    expected = {}
    for i, (rel, (shift, scale)) in enumerate(variants.items()):
        path = root / rel
        path.parent.mkdir(exist_ok=True)
        write_image(path, _variant(face_image, shift, scale))
        labels = _labels(i)
        # a second, less confident face in the CSV must not win
        write_openface_csv(csvs / f"{path.stem}.csv",
                           [_row(_labels(100 + i), face_id=1, confidence=0.5), _row(labels, face_id=0)], seed=i)
        expected[rel.replace("/", "__").rsplit(".", 1)[0]] = labels
    write_image(root / "bob" / "empty.png", np.full((200, 200, 3), 128, np.uint8))
    write_openface_csv(csvs / "empty.csv", [_row(_labels(9))], seed=9)
    return root, csvs, expected


@pytest.fixture(scope="module")
def video(tmp_path_factory, face_image):
    """10 frames at 320x320: brightness changes every frame except 5 (= 4, a duplicate)."""
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    small = cv2.resize(face_image, (320, 320), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        stream.bit_rate = 4_000_000
        for i in range(10):
            gain = 0.55 + 0.05 * (4 if i == 5 else i)
            frame = av.VideoFrame.from_ndarray((small * gain).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_photos_get_their_own_openface_labels(photo_set, tmp_path):
    root, csvs, expected = photo_set
    out = tmp_path / "data"
    options = PrepareOptions(size=64, openface=str(csvs), test_fraction=0.5, split_by="folder",
                             min_face=32)
    manifest = prepare([root], out, options, quiet=True)
    labels = read_aus(out / "aus_openface.pkl")
    assert set(labels) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(labels[name], values, atol=1e-4)
        crop = read_image(out / "imgs" / f"{name}.jpg")
        assert crop.shape == (64, 64, 3)
    assert manifest["dropped"]["no_face"] == 1
    assert manifest["counts"] == {"train": len(read_ids(out / "train_ids.csv")),
                                  "test": len(read_ids(out / "test_ids.csv")), "total": 4, "sources": 5}
    assert manifest["crop_policy"] == {"kind": "aligned", "size": 64, "scale": 1.0}
    assert manifest["label_source"].startswith("openface")
    for folder in ("alice", "bob"):  # an identity folder lands on one side, by its hash
        side = split_of(f"{root.name}/{folder}", 0.5)
        ids = read_ids(out / f"{side}_ids.csv")
        assert {n for n in expected if n.startswith(folder)} <= set(ids)

    # crops are aligned: the eyes sit at the same place whatever the shift and scale
    crops = [read_image(out / "imgs" / f"{n}.jpg").astype(np.float32) for n in sorted(expected)]
    assert np.abs(crops[0] - crops[2]).mean() < 12  # unaligned: ~50-70

    # a rerun resumes: nothing is redone, the same set comes out
    record = (out / "prepare_progress.jsonl").read_text()
    again = prepare([root], out, options, quiet=True)
    assert (out / "prepare_progress.jsonl").read_text() == record
    assert again["counts"] == manifest["counts"]
    with pytest.raises(AnimatorError, match="size"):
        prepare([root], out, PrepareOptions(size=32, openface=str(csvs)), quiet=True)


def test_video_frames_get_their_rows_and_duplicates_go(video, tmp_path):
    csvs = tmp_path / "openface"
    csvs.mkdir()
    rows = [_row(_labels(50 + i), frame=i + 1) for i in range(10)]  # OpenFace counts from 1
    write_openface_csv(csvs / "clip.csv", rows[::-1], seed=3)
    out = tmp_path / "data"
    manifest = prepare([video], out, PrepareOptions(size=64, every=1, openface=str(csvs), min_face=32),
                       quiet=True)
    labels = read_aus(out / "aus_openface.pkl")
    assert manifest["dropped"]["duplicate"] == 1 and "clip_f000005" not in labels
    assert len(labels) == 9
    for i in (0, 1, 4, 9):
        np.testing.assert_allclose(labels[f"clip_f{i:06d}"], _labels(50 + i), atol=1e-4)
    sparse = prepare([video], tmp_path / "sparse", PrepareOptions(size=64, every=3, openface=str(csvs),
                                                                  min_face=32), quiet=True)
    assert sparse["counts"]["total"] == 4  # frames 0, 3, 6, 9


def test_video_frames_get_video_mode_labels(video, tmp_path, monkeypatch):
    """Without CSVs a clip's kept frames are labelled together, as one track (the estimator's
    video mode), not frame by frame; duplicates still go."""
    from animator.estimate import aus as estimator_module
    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker
    from animator.media.decode import iter_frames

    monkeypatch.setattr(estimator_module, "MIN_TRACK_FRAMES", 5)  # the 10-frame clip counts as a track
    manifest = prepare([video], tmp_path / "data", PrepareOptions(size=64, every=1, min_face=32), quiet=True)
    labels = read_aus(tmp_path / "data" / "aus_openface.pkl")
    assert manifest["dropped"]["duplicate"] == 1 and len(labels) == 9
    detector, landmarker = FaceDetector(), MeshLandmarker()
    meshes = [landmarker.landmarks(f.rgb, detector.detect(f.rgb)[0]) for f in iter_frames(video) if f.index != 5]
    estimator = AUEstimator.default()
    expected = np.clip(estimator.estimate_track(np.stack(meshes)), 0, 5)
    got = np.array([labels[f"clip_f{i:06d}"] for i in range(10) if i != 5])
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert not np.allclose(expected, estimator.estimate(np.stack(meshes)), atol=2e-3)  # not the static read


def test_a_clip_with_several_faces_is_labelled_frame_by_frame(face_image, tmp_path, monkeypatch):
    """Prepare samples frames without tracking, so the largest face of each frame is one
    person's track only when it is the only face: with two people, static labels."""
    from animator.estimate import aus as estimator_module
    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker
    from animator.media.decode import iter_frames

    av = pytest.importorskip("av")
    monkeypatch.setattr(estimator_module, "MIN_TRACK_FRAMES", 5)
    path = tmp_path / "two.mp4"
    big = cv2.resize(face_image, (320, 320), interpolation=cv2.INTER_AREA)
    small = cv2.resize(face_image[:, ::-1], (240, 240), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 320, "yuv420p"
        stream.bit_rate = 4_000_000
        for i in range(8):
            canvas = np.full((320, 640, 3), 40, np.uint8)
            canvas[:, :320] = big * (0.6 + 0.05 * i)
            canvas[40:280, 360:600] = small
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    prepare([path], tmp_path / "data", PrepareOptions(size=64, every=1, min_face=32, dedupe_threshold=0),
            quiet=True)
    labels = read_aus(tmp_path / "data" / "aus_openface.pkl")
    detector, landmarker = FaceDetector(), MeshLandmarker()
    frames = list(iter_frames(path))
    assert all(len(detector.detect(f.rgb)) == 2 for f in frames)
    meshes = np.stack([landmarker.landmarks(f.rgb, detector.detect(f.rgb)[0]) for f in frames])
    estimator = AUEstimator.default()
    got = np.array([labels[f"two_f{i:06d}"] for i in range(len(frames))])
    np.testing.assert_allclose(got, np.clip(estimator.estimate(meshes), 0, 5), atol=2e-3)


def test_estimator_labels_when_no_csvs(photo_set, tmp_path):
    root, _, expected = photo_set
    result = CliRunner().invoke(cli, ["prepare", str(root / "alice"), "--out", str(tmp_path / "d"),
                                      "--size", "64", "--min-face", "32", "--quiet"])
    assert result.exit_code == 0, result.output
    labels = read_aus(tmp_path / "d" / "aus_openface.pkl")
    assert len(labels) == 2 and all(((v >= 0) & (v <= 5)).all() for v in labels.values())
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["label_source"].startswith("animator estimator")
    result = CliRunner().invoke(cli, ["prepare", str(root), "--out", str(tmp_path / "d"), "--size", "32"])
    assert result.exit_code == 1 and "size" in result.output


def test_parallel_prepare_ends_quietly(photo_set, tmp_path):
    """With workers, a finished quiet prepare prints nothing: its workers exit
    on their own (terminated, they printed SystemExit tracebacks). A subprocess, since the
    workers write to the real stderr."""
    import subprocess
    import sys

    root, _, _ = photo_set
    out = tmp_path / "d"
    done = subprocess.run([sys.executable, "-c", "import sys; from animator.cli import main; sys.exit(main())",
                           "prepare", str(root), "--out", str(out), "--size", "64", "--min-face", "32",
                           "--workers", "2", "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
    assert len(read_aus(out / "aus_openface.pkl")) == 4


def test_webp_sets_load_like_jpeg_sets(photo_set, tmp_path):
    root, _, _ = photo_set
    result = CliRunner().invoke(cli, ["prepare", str(root / "alice"), "--out", str(tmp_path / "w"),
                                      "--size", "64", "--min-face", "32", "--image-format", "webp",
                                      "--quality", "80", "--test-fraction", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "w" / "imgs").iterdir())
    assert len(files) == 2 and all(f.suffix == ".webp" for f in files)
    faces = load_split(tmp_path / "w", "train")
    assert faces.path(0).suffix == ".webp" and faces.image(0, 64).shape == (64, 64, 3)


def test_openface_csv_reading(tmp_path):
    path = tmp_path / "x.csv"
    write_openface_csv(path, [_row(_labels(1), frame=2), _row(_labels(2), frame=3, success=0)], seed=5)
    table = read_openface_csv(path)
    assert list(table.frames) == [2]  # failed frames are skipped
    np.testing.assert_allclose(table.frames[2], _labels(1), atol=1e-5)
    path.write_text("frame, AU01_r, AU02_r\n1, 0.5, 1\n")
    with pytest.raises(AnimatorError, match="AU04_r"):
        read_openface_csv(path)


def test_sources_and_names(tmp_path):
    for rel in ("a/x.jpg", "b/x.jpg", "b/c/clip.mp4", "b/notes.txt", ".hidden/y.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    sources = collect_sources([tmp_path / "a", tmp_path / "b"], split_by="folder")
    assert [(s.rel, s.kind) for s in sources] == [("x.jpg", "image"), ("c/clip.mp4", "video"), ("x.jpg", "image")]
    assert len({s.name for s in sources}) == 3  # same relative path under two inputs: renamed
    assert sources[1].name == "c__clip" and sources[1].split_key == "b/c"
    with pytest.raises(AnimatorError, match="no such"):
        collect_sources([tmp_path / "missing"])
