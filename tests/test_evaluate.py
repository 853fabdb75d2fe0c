"""The held-out evaluation (pipelines/evaluate.py): metrics, pictures and report files on a tiny
GANimation-layout set cut from the astronaut photo, with small generators saved to disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from animator.aus import AU_NAMES, PRESETS, preset
from animator.errors import AnimatorError
from animator.media.images import read_image, write_image
from animator.model.checkpoint import ModelConfig, save_generator
from animator.model.generator import Generator, GeneratorConfig
from animator.outputs import MARKER
from animator.train.data import write_aus, write_ids
from pipelines.evaluate import (GRID_COLUMNS, HEADER_HEIGHT, EvaluateOptions, au_errors, evaluate,
                                interleave_grids, main, morph_targets, pearson, psnr,
                                response_summary, target_sets)

SIZE = 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, astronaut) -> Path:
    """Four aligned crops (scales, a mirror, a small turn) in GANimation layout, JPEG and PNG."""
    from animator.faces.align import CropPolicy, crop_transform, warp_crop
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker, five_points

    root = tmp_path_factory.mktemp("set")
    (root / "imgs").mkdir()
    detector, landmarker = FaceDetector(), MeshLandmarker()
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 8, 1.0), (512, 512),
                            borderMode=cv2.BORDER_REFLECT_101)
    sources = [(astronaut, 1.0), (astronaut[:, ::-1].copy(), 1.1), (turned, 0.95), (astronaut, 1.2)]
    labels = {}
    rng = np.random.default_rng(3)
    for i, (image, scale) in enumerate(sources):
        face = detector.detect(image)[0]
        mesh = landmarker.landmarks(image, face)
        M = crop_transform(CropPolicy("aligned", SIZE, scale), five_points(mesh), face.box)
        write_image(root / "imgs" / f"face{i}.{'png' if i % 2 else 'jpg'}", warp_crop(image, M, SIZE))
        labels[f"face{i}"] = rng.uniform(0, 3, len(AU_NAMES)).astype(np.float32)
    labels["train0"] = labels["face0"]
    write_aus(root / "aus_openface.pkl", labels)
    write_ids(root / "test_ids.csv", [f"face{i}" for i in range(len(sources))])
    write_ids(root / "train_ids.csv", ["train0"])
    (root / "manifest.json").write_text(json.dumps({"label_source": "animator-estimator",
                                                    "counts": {"test": 4, "train": 1}}))
    return root


def _generator(tmp: Path, name: str, identity: bool) -> Path:
    torch.manual_seed(0)
    config = GeneratorConfig(image_size=SIZE, conv_dim=8, repeat_num=1, head_bias=True)
    generator = Generator(config)
    if identity:  # A = sigmoid(30) == 1 in float32: every pixel is the input's
        with torch.no_grad():
            generator.attention_head.weight.zero_()
            generator.attention_head.bias.fill_(30.0)
    return save_generator(generator, ModelConfig(config), tmp / name)


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def _run(checkpoint: Path, data: Path, out: Path, **kwargs) -> dict:
    return evaluate(EvaluateOptions(checkpoint=checkpoint, data=data, out=out, device="cpu",
                                    precision="fp32", quiet=True, **kwargs))


def test_random_generator_report(dataset: Path, tmp_path: Path) -> None:
    checkpoint = _generator(tmp_path, "random", identity=False)
    out = tmp_path / "report"
    report = _run(checkpoint, dataset, out, limit=3, random_sets=1)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "grid.png", "metrics.json",
                                                     "metrics.md", "morph_strip.png"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["n_faces"] == 3 and saved["data"]["held_out"] == 4
    assert saved["data"]["label_source"] == "animator-estimator"
    assert saved["checkpoint"]["path"] == str(checkpoint)
    assert saved["checkpoint"]["config"]["generator"]["conv_dim"] == 8
    assert set(saved["au_error"]["per_au"]) == set(AU_NAMES)
    assert set(saved["per_target"]) == {"heldout_1", *PRESETS}
    assert saved["n_edits"] == 3 * (1 + len(PRESETS))
    assert all(math.isfinite(v) for v in _numbers(saved))
    assert saved["faces_found"]["inputs"] == 3
    # the estimator reports every AU (AU14 from MediaPipe's mouthDimple), so every AU is scored
    assert all(saved["au_error"]["per_au"][name]["observable"] for name in AU_NAMES)
    assert set(saved["au_error"]["observable"]) == set(AU_NAMES)
    assert saved["au_error"]["per_au"]["AU12"]["mae_input"] is not None
    # a random network repaints: it changes the face and does not reconstruct it
    assert saved["change"]["face"] > 0.2
    assert saved["cycle"]["l1"] > 0.02
    assert saved["cycle"]["psnr_db"] < 40
    grid = read_image(out / "grid.png")
    assert grid.shape[1] == (1 + len(GRID_COLUMNS)) * SIZE + len(GRID_COLUMNS) * 2
    assert grid.shape[0] == HEADER_HEIGHT + 3 * SIZE + 2 * 2
    assert (grid[:HEADER_HEIGHT] < 128).any()  # the column titles were drawn
    strip = read_image(out / "morph_strip.png")
    assert strip.shape[0] == HEADER_HEIGHT + SIZE and strip.shape[1] == 10 * SIZE + 9 * 2
    table = (out / "metrics.md").read_text()
    assert "| AU12 | lip corner puller |" in table
    assert "| happy |" in table
    with pytest.raises(AnimatorError, match="already exists"):
        _run(checkpoint, dataset, out, limit=1)


def test_identity_generator_changes_nothing(dataset: Path, tmp_path: Path) -> None:
    checkpoint = _generator(tmp_path, "identity", identity=True)
    report = _run(checkpoint, dataset, tmp_path / "report", limit=2, random_sets=2)
    assert report["cycle"]["l1"] == 0.0
    assert report["cycle"]["psnr_db"] == 100.0
    assert report["change"]["face"] == 0.0 and report["change"]["outside_face"] == 0.0
    # the edit is the input, so the estimator reads the same AUs from both
    for row in report["au_error"]["per_au"].values():
        assert row["mae"] == row["mae_input"]
    assert report["au_error"]["mean"]["mae"] > 0.3  # and the targets were not reached
    grid = read_image(tmp_path / "report" / "grid.png")
    first_row = grid[HEADER_HEIGHT:HEADER_HEIGHT + SIZE]
    cells = [first_row[:, k * (SIZE + 2):k * (SIZE + 2) + SIZE] for k in range(1 + len(GRID_COLUMNS))]
    assert all(np.array_equal(cells[0], cell) for cell in cells[1:])


def test_command_line(dataset: Path, tmp_path: Path) -> None:
    checkpoint = _generator(tmp_path, "identity", identity=True)
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(checkpoint), "--data", str(dataset), "--out", str(out),
              "--limit", "1", "--device", "cpu", "--random-sets", "0", "-q"])
    assert exit_info.value.code == 0
    assert json.loads((out / "metrics.json").read_text())["n_faces"] == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "missing"), "--data", str(dataset),
              "--out", str(tmp_path / "x"), "-q"])
    assert exit_info.value.code == 1


def test_targets_come_from_other_faces() -> None:
    labels = np.arange(5 * 17, dtype=np.float32).reshape(5, 17) % 5
    labels[:, 0] = np.arange(5)  # each face's own marker
    sets = dict(target_sets(labels, random_sets=3, seed=1))
    for k in (1, 2, 3):
        donors = sets[f"heldout_{k}"][:, 0]
        assert sorted(donors) == list(range(5)) and not np.any(donors == np.arange(5))
    assert np.array_equal(target_sets(labels, 3, 1)[0][1], sets["heldout_1"])
    assert np.all(sets["neutral"] == 0) and sets["happy"][0, AU_NAMES.index("AU12")] > 0


def test_metric_helpers() -> None:
    a = np.array([0.0, 1.0, 2.0, 3.0])
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert pearson(a, np.ones(4)) is None
    image = np.zeros((2, 4, 4, 3), np.uint8)
    other = image.copy()
    other[1] = 255
    assert psnr(image, image).tolist() == [100.0, 100.0]
    assert psnr(image, other)[1] == pytest.approx(0.0)
    observable = np.ones(17, bool)
    observable[AU_NAMES.index("AU14")] = False
    requested = np.tile(np.linspace(0, 4, 6)[:, None], (1, 17)).astype(np.float32)
    errors = au_errors(requested, requested + 0.5, observable)
    assert errors["AU01"]["mae"] == pytest.approx(0.5) and errors["AU01"]["r"] == pytest.approx(1.0)
    assert errors["AU14"] == {"mae": None, "r": None}


def test_morph_targets_pass_through_the_keys() -> None:
    aus, labels = morph_targets(8)
    assert len(aus) == 9 and labels[0] == "neutral" and labels[4] == "happy" and labels[8] == "surprise"
    assert labels[1] == ""
    assert np.all(aus[0] == 0)
    assert np.allclose(aus[2], preset("happy") / 2) and np.allclose(aus[4], preset("happy"))
    assert np.allclose(aus[6], (preset("happy") + preset("surprise")) / 2)
    assert np.allclose(aus[8], preset("surprise"))


# ---------------------------------------------------------------- responsiveness, identity, motion

def test_response_summary() -> None:
    levels = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    readback = np.array([[0.1, 0.0, 0.3], [1.0, 0.8, 0.0], [2.1, 1.5, 0.0], [2.8, 2.5, 0.0], [3.9, 1.9, 9.0]])
    found = np.ones_like(readback, bool)
    found[:, 2] = [True, True, True, True, False]  # the third face vanished at the top level
    row = response_summary(levels, readback, found)
    assert row["n"] == 2
    assert row["mean_at_top"] == pytest.approx((3.9 + 1.9) / 2)
    assert row["share_responsive"] == pytest.approx(0.5)
    assert row["mean_at_zero"] == pytest.approx(0.4 / 3)
    assert row["r"] == pytest.approx(pearson(np.repeat(levels, 3)[found.T.reshape(-1)[np.argsort(
        np.tile(np.arange(5), 3), kind="stable")]], readback[found]), abs=1e-9)
    flat = response_summary(levels, np.ones((5, 3)), np.ones((5, 3), bool))
    assert flat["r"] is None and flat["share_responsive"] == 0.0


def test_similarity_transform_recovers_a_similarity() -> None:
    from pipelines.identity import TEMPLATE, similarity_transform

    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = TEMPLATE @ (scale * rotation).T + shift
    matrix = similarity_transform(TEMPLATE, moved)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_interleaved_grid_puts_the_previous_row_under_each_face() -> None:
    faces, width = 3, 50
    grid = np.full((HEADER_HEIGHT + faces * SIZE + (faces - 1) * 2, width, 3), 10, np.uint8)
    previous = np.full_like(grid, 200)
    out = interleave_grids(grid, previous, faces)
    assert out.shape == (HEADER_HEIGHT + faces * (2 * SIZE + 1) + (faces - 1) * 4, width + 4, 3)
    top = HEADER_HEIGHT
    assert (out[top:top + SIZE, 4:] == 10).all() and (out[top + SIZE + 1:top + 2 * SIZE + 1, 4:] == 200).all()
    assert (out[top + SIZE + 1:top + 2 * SIZE + 1, :4] == 128).all()  # the previous model's marker


@pytest.fixture(scope="module")
def sface(shared_dir: Path) -> Path:
    pytest.importorskip("onnxruntime", reason="identity needs the eval extra (onnxruntime, onnx)")
    pytest.importorskip("onnx", reason="identity needs the eval extra (onnxruntime, onnx)")
    path = shared_dir / "models" / "sface" / "face_recognition_sface_2021dec_int8bq.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_identity_responsiveness_and_comparison(dataset: Path, sface: Path, tmp_path: Path) -> None:
    keep = _generator(tmp_path, "identity", identity=True)
    report = _run(keep, dataset, tmp_path / "keep", limit=3, random_sets=0, responsiveness_faces=2,
                  identity_model=sface, compare=_generator(tmp_path, "random", identity=False))
    for name in PRESETS:  # nothing changes, so the identity is the input's
        assert report["per_target"][name]["identity_cosine"] == pytest.approx(1.0, abs=1e-4)
        assert report["per_target"][name]["identity_same_person"] == 1.0
    response = report["responsiveness"]
    assert response["faces"] == 2 and set(response["per_au"]) == set(report["au_error"]["observable"])
    for row in response["per_au"].values():  # an unchanged face reads the same at every level
        assert row["mean_at_top"] == pytest.approx(row["mean_at_zero"], abs=1e-5)
        assert row["r"] is None or abs(row["r"]) < 1e-6  # faces differ, levels make no difference
    assert "| AU12 |" in (tmp_path / "keep" / "metrics.md").read_text().split("Responsiveness")[1]
    compare = read_image(tmp_path / "keep" / "grid_compare.png")
    assert compare.shape[0] == HEADER_HEIGHT + 3 * (2 * SIZE + 1) + 2 * 4

    paint = _generator(tmp_path, "paint", identity=False)
    random_report = _run(paint, dataset, tmp_path / "paint_report", limit=3, random_sets=0,
                         responsiveness_faces=2, identity_model=sface)
    assert random_report["identity"]["presets"] < report["identity"]["presets"] - 0.1


def test_motion_evaluation_warps_with_the_sets_rig(dataset: Path, tmp_path: Path) -> None:
    import shutil

    from animator.train.data import load_split
    from animator.train.motion import LANDMARKS_FILE, RIG_FILE, save_landmarks, save_rig
    from pipelines.evaluate import AUReader

    data = tmp_path / "set"
    shutil.copytree(dataset, data)
    faces = load_split(data, "test")
    reader = AUReader()
    points = np.stack([reader.locate(faces.image(i, SIZE))[0][:, :2] for i in range(len(faces))])
    save_landmarks(data / LANDMARKS_FILE, faces.names, points)
    rig = np.zeros((len(AU_NAMES), points.shape[1], 2), np.float32)
    rig[AU_NAMES.index("AU26"), :, 1] = 1.0  # every point 1 px down per unit of jaw drop
    save_rig(data / RIG_FILE, rig, SIZE, "test")
    keep = _generator(tmp_path, "identity", identity=True)
    plain = _run(keep, data, tmp_path / "plain", limit=2, random_sets=0, responsiveness_faces=0)
    moved = _run(keep, data, tmp_path / "moved", limit=2, random_sets=0, responsiveness_faces=0,
                 motion="rig")
    assert plain["cycle"]["l1"] == 0.0
    assert moved["per_target"]["surprise"]["cycle_l1"] > 0.0  # the warp moved the face and back
    assert moved["per_target"]["surprise"]["cycle_l1"] < 0.02
    assert moved["per_target"]["happy"]["change_face"] == 0.0  # the generator still keeps all
    assert moved["settings"]["motion"] == "rig"
