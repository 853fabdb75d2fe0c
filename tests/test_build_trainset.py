"""The default generator's training set builder (pipelines/build_trainset.py): helpers, and a
small build from a UTKFace-like tar of real face photos plus one expression clip."""

from __future__ import annotations

import io
import json
import tarfile

import cv2
import numpy as np
import pytest

from animator.aus import N_AUS
from animator.errors import AnimatorError
from animator.train.data import read_aus, read_ids
from animator.train.motion import LANDMARKS_FILE, RIG_FILE, load_landmarks, load_rig
from pipelines.build_trainset import (BuildOptions, build, farthest_points, held_out_name,
                                      sample_members)


def test_sample_members_is_seeded_sorted_and_images_only():
    names = [f"./{i}.jpg.chip.jpg" for i in range(50)] + ["./README.txt"]
    first = sample_members(names, 10, seed=3)
    assert first == sample_members(list(reversed(names)), 10, seed=3) and first == sorted(first)
    assert len(first) == 10 and "./README.txt" not in first
    assert len(sample_members(names, 500, seed=3)) == 50


def test_farthest_points_spread_over_the_shape():
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    chosen = farthest_points(grid, 4, first=0)
    assert sorted(map(tuple, grid[chosen])) == [(0, 0), (0, 9), (9, 0), (9, 9)]


def test_held_out_names():
    assert held_out_name("clip__d0_f000012", ("d0",))
    assert not held_out_name("clip__d03_f000012", ("d0",))
    assert not held_out_name("utk__25_1_0_2017.jpg.chip", ("d0",))


def test_options_check_the_inputs(tmp_path):
    with pytest.raises(AnimatorError, match="no such file"):
        BuildOptions(utkface_tar=tmp_path / "missing.tar")
    tar = tmp_path / "faces.tar"
    tar.write_bytes(b"")
    with pytest.raises(AnimatorError, match="--heldout-clips d9"):
        BuildOptions(utkface_tar=tar, heldout_clips=("d9",))


def test_small_build(tmp_path, astronaut, shared_dir):
    clip = shared_dir / "datasets" / "expression-clips" / "d0.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} is absent")
    from animator.faces.detect import FaceDetector

    x0, y0, x1, y1 = FaceDetector().detect(astronaut)[0].box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.8 * max(x1 - x0, y1 - y0)
    tar_path = tmp_path / "utk.tar"
    with tarfile.open(tar_path, "w") as tar:  # UTKFace-like: 200x200 photos around one face
        for i, angle in enumerate((-6, -3, 0, 3, 6, 9)):
            turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((cx, cy), angle, 1.0), (512, 512),
                                    borderMode=cv2.BORDER_REFLECT_101)
            box = turned[int(cy - half):int(cy + half), int(cx - half):int(cx + half)]
            photo = cv2.resize(box, (200, 200), interpolation=cv2.INTER_AREA)
            data = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))[1].tobytes()
            info = tarfile.TarInfo(f"./{30 + i}_1_0_2017.jpg.chip.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "set"
    options = BuildOptions(utkface_tar=tar_path, clips=(clip,), heldout_clips=("d0",), utkface_count=5,
                           every=20, test_fraction=0.3, points=32, quiet=True)
    manifest = build(out, options)
    train, test = read_ids(out / "train_ids.csv"), read_ids(out / "test_ids.csv")
    assert not set(train) & set(test)
    assert all(n.startswith("utk__") for n in train)           # the only clip is held out
    assert any(n.startswith("clip__d0_") for n in test)
    labels = read_aus(out / "aus_openface.pkl")
    assert set(labels) == set(train) | set(test)
    assert all(v.shape == (N_AUS,) for v in labels.values())
    points = load_landmarks(out / LANDMARKS_FILE, train + test)
    assert points.shape == (len(labels), 32, 2) and np.isfinite(points).all()
    assert ((points > 0) & (points < 128)).mean() > 0.95
    rig = load_rig(out / RIG_FILE)
    assert rig.displacement.shape == (N_AUS, 32, 2) and rig.size == 128
    assert rig.displacement.abs().max() > 0.1                   # the shipped rig moves points
    distribution = json.loads((out / "label_distribution.json").read_text())
    assert distribution["train_faces"] == len(train) and set(distribution["as_stored"]) == set(distribution["aus"])
    assert (out / "label_distribution.png").stat().st_size > 1000
    assert manifest["counts"]["total"] == len(labels)
    assert not (out / ".work").exists() and (tmp_path / "set.work").is_dir()
