"""The training loop on a generated toy set: finite losses, files, exact resume, the CLI."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from animator.cli import cli
from animator.errors import AnimatorError
from animator.media.images import write_image
from animator.model.checkpoint import ModelConfig, load_generator, save_generator
from animator.model.generator import Generator, GeneratorConfig
from animator.train.config import RUN_DEFINING, TrainConfig, learning_rate
from animator.train.data import (epoch_order, load_split, read_aus, read_ids, sample_targets,
                                 split_of, to_network, write_aus, write_ids)
from animator.train.losses import distillation_l1
from animator.train.loop import RunControl, train

TINY = dict(image_size=32, g_conv_dim=8, g_repeat_num=1, d_conv_dim=8, d_repeat_num=5,
            batch_size=4, log_every=2, eval_every=4, sample_every=6, eval_images=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from threads, and lose a lot when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory) -> Path:
    """16 training + 4 held-out 32x32 'faces' (smooth colour blobs) with random AUs."""
    root = tmp_path_factory.mktemp("toy")
    (root / "imgs").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    labels = {}
    names = [f"toy_{i:02d}" for i in range(20)]
    for name in names:
        cx, cy = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
        image = (blob[..., None] * rng.uniform(80, 255, 3) + 20).clip(0, 255).astype(np.uint8)
        write_image(root / "imgs" / f"{name}.jpg", image)
        labels[name] = rng.uniform(0, 5, 17)
    write_aus(root / "aus_openface.pkl", labels)
    write_ids(root / "train_ids.csv", names[:16])
    write_ids(root / "test_ids.csv", names[16:])
    (root / "manifest.json").write_text(json.dumps(
        {"crop_policy": {"kind": "aligned", "size": 32, "scale": 1.1}, "label_source": "test"}))
    return root


def _run(data: Path, out: Path, stop_at=None, resume=False, **changes) -> dict:
    config = TrainConfig(**{**TINY, "steps": 10, **changes})
    return train(data, out, config, RunControl(resume=resume, device="cpu", stop_at=stop_at, quiet=True),
                 log=lambda line: None)


def _metrics(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def straight_run(toy_set, tmp_path_factory) -> tuple[Path, dict]:
    """10 iterations in one go (the reference for the resume test)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    return run, _run(toy_set, run)


def test_smoke_run_is_finite_and_writes_its_files(straight_run):
    run, summary = straight_run
    assert summary["iterations"] == 10 and summary["stopped"] == "finished"
    rows = _metrics(run)
    assert [int(r["iteration"]) for r in rows] == [2, 4, 6, 8, 10]
    for row in rows:
        for key in ("d_total", "d_gp", "d_au"):
            assert np.isfinite(float(row[key]))
    assert any(r["g_total"] for r in rows) and all(np.isfinite(float(r["g_total"])) for r in rows if r["g_total"])
    assert rows[1]["eval_au_mae"] and np.isfinite(float(rows[1]["eval_au_mae"]))
    grid = run / "samples" / "it_0000006.png"
    assert grid.is_file() and (run / "samples" / "it_0000010.png").is_file()
    from animator.media.images import read_image
    assert read_image(grid).shape == (4 * 32, 6 * 32, 3)  # 4 faces x 6 panels
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["trainer"]["iteration"] == 10
    assert set(state) >= {"config", "trainer", "rng", "elapsed_s"}
    assert set(state["trainer"]) >= {"generator", "critic", "opt_g", "opt_d", "rng"}
    generator, model_config = load_generator(run / "generator")
    assert model_config.crop_policy == {"kind": "aligned", "size": 32, "scale": 1.1}
    assert model_config.provenance["iterations"] == 10
    with torch.no_grad():
        attention, color = generator(torch.zeros(1, 3, 32, 32), torch.zeros(1, 17))
    assert attention.shape == (1, 1, 32, 32) and torch.isfinite(color).all()


def test_resume_continues_exactly(toy_set, straight_run, tmp_path):
    straight, staged = straight_run[0], tmp_path / "staged"
    first = _run(toy_set, staged, stop_at=5)
    assert first["iterations"] == 5 and first["stopped"] == "stop_at"
    assert torch.load(staged / "checkpoint.pt", weights_only=False)["trainer"]["iteration"] == 5
    # a crashed session may have logged past its checkpoint: resume drops those rows
    with (staged / "metrics.csv").open("a") as handle:
        handle.write("7" + "," * 21 + "\n")
    second = _run(toy_set, staged, resume=True)
    assert second["iterations"] == 10
    assert [int(r["iteration"]) for r in _metrics(staged)] == [2, 4, 5, 6, 8, 10]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["trainer"]["generator"]
    b = torch.load(staged / "checkpoint.pt", weights_only=False)["trainer"]["generator"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_resume_refuses_to_change_what_is_learned(toy_set, tmp_path):
    run = tmp_path / "run"
    _run(toy_set, run, steps=2)
    with pytest.raises(AnimatorError, match="lambda_cyc"):
        _run(toy_set, run, resume=True, steps=4, lambda_cyc=3.0)
    with pytest.raises(AnimatorError, match="already exists"):
        _run(toy_set, run)


def test_cli_trains_and_resumes(toy_set, tmp_path):
    run = tmp_path / "cli_run"
    args = ["train", str(toy_set), "--out", str(run), "--device", "cpu", "--quiet",
            "--image-size", "32", "--g-conv-dim", "8", "--g-repeat-num", "1", "--d-conv-dim", "8",
            "--d-repeat-num", "5", "--batch-size", "4", "--steps", "6", "--stop-at", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (run / "generator" / "config.json").is_file()
    result = CliRunner().invoke(cli, ["train", str(toy_set), "--out", str(run), "--resume", "--quiet",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "summary.json").read_text())["iterations"] == 6
    result = CliRunner().invoke(cli, ["train", str(toy_set), "--out", str(run), "--resume",
                                      "--device", "cpu", "--batch-size", "8"])
    assert result.exit_code == 1 and "batch_size" in result.output


def test_missing_data_leaves_no_run_folder(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "nope"), "--out", str(run),
                                      "--device", "cpu", "--quiet"])
    assert result.exit_code == 1 and "no such folder" in result.output
    assert not run.exists()  # a second try is not refused as "already exists"


def test_paper_defaults_and_schedule():
    config = TrainConfig()
    assert (config.lr_g, config.lr_d, config.beta1, config.beta2) == (1e-4, 1e-4, 0.5, 0.999)
    assert (config.batch_size, config.critic_steps, config.epochs, config.decay_epochs) == (25, 5, 20, 10)
    assert (config.lambda_gp, config.lambda_cyc, config.lambda_mask, config.lambda_tv) == (10, 10, 0.1, 1e-5)
    assert config.total_iterations(100) == 3000 and config.decay_start(100) == 2000
    assert learning_rate(1e-4, 1999, 3000, 2000) == 1e-4
    assert learning_rate(1e-4, 2500, 3000, 2000) == pytest.approx(0.5e-4)
    assert learning_rate(1e-4, 3000, 3000, 2000) == 0.0
    stepped = TrainConfig(steps=900)
    assert stepped.total_iterations(100) == 900 and stepped.decay_start(100) == 600
    with pytest.raises(AnimatorError, match="image_size"):
        TrainConfig(image_size=100)


def test_folder_layout_round_trip_and_official_ids(tmp_path):
    labels = {"a": np.arange(17) / 4.0, "b.chip": np.ones(17)}
    write_aus(tmp_path / "aus.pkl", labels)
    back = read_aus(tmp_path / "aus.pkl")
    assert back["a"].dtype == np.float32 and np.allclose(back["a"], labels["a"])
    with (tmp_path / "aus.pkl").open("rb") as handle:  # what the official reader sees
        assert pickle.load(handle)["b.chip"].shape == (17,)
    (tmp_path / "ids.csv").write_text("a.jpg\n\nb.chip.jpg\n")
    assert read_ids(tmp_path / "ids.csv") == ["a", "b.chip"]
    with (tmp_path / "bad.pkl").open("wb") as handle:
        pickle.dump({"x": [1, 2, 3]}, handle)
    with pytest.raises(AnimatorError, match="17"):
        read_aus(tmp_path / "bad.pkl")


def test_load_split_keeps_labelled_ids(toy_set):
    train_set, test_set = load_split(toy_set, "train"), load_split(toy_set, "test")
    assert len(train_set) == 16 and len(test_set) == 4
    assert not set(train_set.names) & set(test_set.names)
    assert train_set.decode_all(16).shape == (16, 16, 16, 3)


def test_epochs_targets_and_flips():
    ranks = [epoch_order(10, seed=3, epoch=1, rank=r, world=2) for r in range(2)]
    assert sorted(torch.cat(ranks).tolist()) == list(range(10))
    assert torch.equal(epoch_order(10, 3, 1), epoch_order(10, 3, 1))
    assert not torch.equal(epoch_order(10, 3, 1), epoch_order(10, 3, 2))
    pool = torch.tensor([[0.0] * 17, [5.0] * 17, [2.5] * 17])
    targets = sample_targets(pool, 200, 0.1, torch.Generator().manual_seed(0))
    assert targets.min() >= 0 and targets.max() <= 5
    nearest = (targets[:, None, :] - pool[None]).abs().max(-1).values.min(-1).values
    assert nearest.max() <= 0.5 + 1e-6  # another sample's AUs within +-0.1 on the /5 scale
    images = torch.arange(2 * 2 * 3 * 3, dtype=torch.uint8).view(2, 2, 3, 3)
    x = to_network(images, torch.tensor([True, False]))
    assert x.shape == (2, 3, 2, 3) and x.min() >= -1 and x.max() <= 1
    plain = to_network(images)
    assert torch.equal(x[0], plain[0].flip(-1)) and torch.equal(x[1], plain[1])


def test_split_is_stable():
    keys = [f"person_{i}" for i in range(2000)]
    first = [split_of(k, 0.1) for k in keys]
    assert first == [split_of(k, 0.1) for k in keys]
    assert 0.07 < first.count("test") / len(keys) < 0.13


def test_streamed_data_trains_like_cached_data(toy_set, tmp_path):
    _run(toy_set, tmp_path / "memory", steps=5, cache="memory")
    _run(toy_set, tmp_path / "disk", steps=5, cache="none", workers=0)
    a = torch.load(tmp_path / "memory" / "checkpoint.pt", weights_only=False)["trainer"]["generator"]
    b = torch.load(tmp_path / "disk" / "checkpoint.pt", weights_only=False)["trainer"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_stops_early_and_still_exports(toy_set, tmp_path):
    run = tmp_path / "budget"
    summary = _run(toy_set, run, steps=1000, max_minutes=0.01)  # 0.6 s, less than the export reserve
    assert summary["stopped"] == "time budget" and 1 <= summary["iterations"] < 1000
    assert (run / "generator" / "config.json").is_file() and (run / "checkpoint.pt").is_file()


def _teacher(path: Path, image_size: int = 32) -> Path:
    """A small random generator saved as a model folder, with non-trivial masks."""
    torch.manual_seed(5)
    config = GeneratorConfig(image_size=image_size, conv_dim=8, repeat_num=1)
    return save_generator(Generator(config), ModelConfig(generator=config), path)


def _distance_to_teacher(student: Path, teacher: Path, data: Path) -> float:
    """distillation_l1 of two model folders on the held-out toy faces with fixed targets."""
    faces = load_split(data, "test")
    images = to_network(torch.from_numpy(np.stack([faces.image(i, 32) for i in range(len(faces))])))
    targets = torch.from_numpy(np.random.default_rng(4).uniform(0, 5, (len(faces), 17)).astype(np.float32))
    with torch.no_grad():
        return distillation_l1(*load_generator(student)[0].eval()(images, targets),
                               *load_generator(teacher)[0].eval()(images, targets)).item()


def test_distillation_pulls_the_student_to_the_teacher(toy_set, tmp_path):
    teacher = _teacher(tmp_path / "teacher")
    fast = dict(steps=20, critic_steps=1, lr_g=2e-3, epochs=1, decay_epochs=0)
    _run(toy_set, tmp_path / "plain", **fast)
    _run(toy_set, tmp_path / "distilled", distill_from=str(teacher), lambda_distill=100.0, **fast)
    plain = _distance_to_teacher(tmp_path / "plain" / "generator", teacher, toy_set)
    distilled = _distance_to_teacher(tmp_path / "distilled" / "generator", teacher, toy_set)
    assert distilled < 0.5 * plain
    rows = _metrics(tmp_path / "distilled")
    assert all(np.isfinite(float(r["g_distill"])) for r in rows if r["g_distill"])
    assert all(r["g_distill"] == "" for r in _metrics(tmp_path / "plain"))


def test_distillation_refuses_a_teacher_of_another_size(toy_set, tmp_path):
    teacher = _teacher(tmp_path / "teacher64", image_size=64)
    with pytest.raises(AnimatorError, match="teacher works at 64 px, this run at 32 px"):
        _run(toy_set, tmp_path / "run", distill_from=str(teacher))
    assert "distill_from" in RUN_DEFINING and "lambda_distill" in RUN_DEFINING
