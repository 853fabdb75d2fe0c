"""The one-call GPU retraining script (pipelines/gpu_retrain.py), end to end on the CPU with
tiny networks on real face crops, so the GPU run cannot fail on a typo."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from animator.aus import N_AUS
from animator.model.checkpoint import ModelConfig, load_state, save_generator
from animator.model.generator import Generator, GeneratorConfig
from animator.train.data import write_ids
from animator.train.motion import LANDMARKS_FILE, RIG_FILE, save_landmarks, save_rig
from pipelines.gpu_retrain import choose_batch, main, planned_steps, scaled_lr

TINY = {"g_conv_dim": 8, "g_repeat_num": 1, "d_conv_dim": 8, "d_repeat_num": 6, "steps": 6,
        "eval_images": 2, "critic_steps": 2}


def test_sizing_helpers():
    assert scaled_lr(25) == pytest.approx(1e-4) and scaled_lr(100) == pytest.approx(2e-4)
    assert choose_batch({128: 2000.0, 256: 2900.0, 512: 3000.0}, 0.85) == 256
    assert choose_batch({128: 1000.0}, 0.85) == 128
    assert planned_steps(10.0, 100.0) == 900


@pytest.fixture(scope="module")
def motion_faces(tmp_path_factory, astronaut) -> Path:
    """Held-out and training copies of aligned astronaut crops with landmarks and a rig."""
    from animator.faces.align import CropPolicy, crop_transform, warp_crop
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker, five_points
    from animator.media.images import write_image
    from animator.train.data import write_aus
    from pipelines.evaluate import AUReader

    root = tmp_path_factory.mktemp("retrain_set")
    (root / "imgs").mkdir()
    detector, landmarker, reader = FaceDetector(), MeshLandmarker(), AUReader()
    face = detector.detect(astronaut)[0]
    mesh = landmarker.landmarks(astronaut, face)
    names, labels, points = [], {}, []
    rng = np.random.default_rng(0)
    for i, scale in enumerate((1.0, 1.05, 1.1, 1.15, 1.2, 0.95)):
        crop = warp_crop(astronaut, crop_transform(CropPolicy("aligned", 128, scale), five_points(mesh), face.box), 128)
        name = f"face{i}"
        write_image(root / "imgs" / f"{name}.webp", crop)
        names.append(name)
        labels[name] = rng.uniform(0, 3, N_AUS).astype(np.float32)
        points.append(reader.locate(crop)[0][:64, :2])
    write_aus(root / "aus_openface.pkl", labels)
    write_ids(root / "train_ids.csv", names[:4])
    write_ids(root / "test_ids.csv", names[4:])
    save_landmarks(root / LANDMARKS_FILE, names, np.stack(points))
    rig = np.zeros((N_AUS, 64, 2), np.float32)
    rig[:, :, 1] = 0.3
    save_rig(root / RIG_FILE, rig, 128, "test")
    (root / "manifest.json").write_text(json.dumps({"size": 128, "crop_policy": {"kind": "aligned", "size": 128}}))
    return root


def test_whole_call_on_cpu(motion_faces: Path, tmp_path: Path):
    torch.manual_seed(0)
    config = GeneratorConfig(image_size=128, conv_dim=8, repeat_num=1)
    start = save_generator(Generator(config), ModelConfig(config), tmp_path / "start")
    out = tmp_path / "OUT"
    main(["--data", str(motion_faces), "--out", str(out), "--device", "cpu", "--candidates", "2,4",
          "--no-compile", "--minutes", "30", "--reserve-minutes", "1", "--init-from", str(start),
          "--eval-faces", "2", "--responsiveness-faces", "1", "--network", json.dumps(TINY)])
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "log.txt" in files and "report.tar.gz" in files and "generator/config.json" in files
    assert len(files) <= 8 and all((out / f).stat().st_size < 16 * 2 ** 20 for f in files)
    trained, _ = load_state(out / "generator")
    assert trained["attention_head.weight"].shape == load_state(start)[0]["attention_head.weight"].shape
    with tarfile.open(out / "report.tar.gz") as tar:
        names = tar.getnames()
        summary = json.loads(tar.extractfile("summary.json").read())
    assert "measure.json" in names and "run/metrics.csv" in names
    assert any(n.startswith("evaluation/") for n in names) and "evaluation/grid_compare.png" in names
    assert summary["iterations"] == 6 and summary["evaluation"]["ok"]
    assert set(summary["measure"]["eager"]) == {"2", "4"}  # JSON keys
    assert summary["measure"]["batch"] in (2, 4)
    assert "AU12" in summary["evaluation"]["r"]
    assert not (out / "work").exists()
