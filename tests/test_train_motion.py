"""Motion training mode (animator/train/motion.py), balanced sampling (balance.py) and the loop
running with both, warm-started, on a generated toy set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from animator.aus import AU_NAMES, N_AUS
from animator.errors import AnimatorError
from animator.media.images import write_image
from animator.motion.move import REST_READING
from animator.model.checkpoint import ModelConfig, load_state, save_generator
from animator.model.generator import Generator, GeneratorConfig
from animator.train.balance import balance_weights, intensity_bins, label_distribution
from animator.train.config import TrainConfig
from animator.train.data import (epoch_order, flip_where, sample_targets, to_network, write_aus,
                                 write_ids)
from animator.train.loop import RunControl, Trainer, train
from animator.train.motion import (LANDMARKS_FILE, RIG_FILE, LinearRig, dense_displacement,
                                   load_landmarks, load_rig, mirror_field, rig_in_crop,
                                   save_landmarks, save_rig, warp_images)

SIZE = 32
TINY = dict(image_size=SIZE, g_conv_dim=8, g_repeat_num=1, d_conv_dim=8, d_repeat_num=5,
            batch_size=4, log_every=2, eval_every=4, sample_every=6, eval_images=4, steps=10)


# ---------------------------------------------------------------- rig and warp

def test_rig_in_crop_turns_face_frame_moves_into_crop_pixels():
    rng = np.random.default_rng(0)
    template = rng.normal(0, 1, (468, 3))
    basis = np.zeros((N_AUS, 468, 3))
    basis[AU_NAMES.index("AU26"), :, 1] = 0.1  # the whole face 0.1 template units down per unit
    angle, scale = 0.2, 40.0  # the crop shows the template turned and 40x larger
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    crop_face = template @ (scale * rotation).T + np.array([64.0, 60.0, 0.0])
    crop_face = np.vstack([crop_face, np.zeros((10, 3))])  # irises: not rigged
    indices = np.array([3, 100, 400])
    rig = rig_in_crop(basis, template, crop_face, list(range(0, 468, 7)), indices)
    assert rig.shape == (N_AUS, 3, 2)
    expected = (np.array([0.0, 0.1, 0.0]) * scale) @ rotation.T  # the move seen in the crop
    np.testing.assert_allclose(rig[AU_NAMES.index("AU26")], np.tile(expected[:2], (3, 1)), atol=1e-6)
    assert not rig[AU_NAMES.index("AU12")].any()


def test_zero_field_is_the_identity_and_a_shift_moves_content():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32))
    zero = torch.zeros(2, SIZE, SIZE, 2)
    torch.testing.assert_close(warp_images(images, zero), images, atol=1e-5, rtol=0)
    shift = torch.zeros(2, SIZE, SIZE, 2)
    shift[..., 0] = 3.0  # every pixel 3 px to the right
    moved = warp_images(images, shift)
    torch.testing.assert_close(moved[..., 3:], images[..., :-3], atol=1e-5, rtol=0)


def test_dense_field_follows_points_and_fades_away_from_them():
    points = torch.tensor([[[16.0, 16.0]]])
    moves = torch.tensor([[[2.0, -1.0]]])
    field = dense_displacement(points, moves, 64, sigma=4.0, grid=32)
    near, far = field[0, 16, 16], field[0, 60, 60]
    assert near[0] > 1.0 and near[1] < -0.5        # most of the move at the point
    assert far.abs().max() < 1e-3                  # nothing far away
    mirrored = mirror_field(field)
    torch.testing.assert_close(mirrored[0, 16, 63 - 16], field[0, 16, 16] * torch.tensor([-1.0, 1.0]))


def test_linear_rig_moves_landmarks_by_the_au_difference_and_back():
    displacement = torch.zeros(N_AUS, 1, 2)
    displacement[AU_NAMES.index("AU26"), 0] = torch.tensor([0.0, 1.5])  # jaw drops 1.5 px per unit
    rig = LinearRig(displacement, size=SIZE)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    image = torch.exp(-((xx - 16.0) ** 2 + (yy - 20.0) ** 2) / 8.0).expand(1, 3, SIZE, SIZE)
    landmarks = torch.tensor([[[16.0, 20.0]]])
    source, target = torch.zeros(1, N_AUS), torch.zeros(1, N_AUS)
    target[0, AU_NAMES.index("AU26")] = 2.0
    warped, moves = rig(image, landmarks, source, target)
    torch.testing.assert_close(moves, torch.tensor([[[0.0, 3.0]]]))
    column = warped[0, 0, :, 16]
    assert 21 <= int(column.argmax()) <= 23  # the blob went down with its landmark
    back = rig.apply(warped, landmarks + moves, -moves)
    assert int(back[0, 0, :, 16].argmax()) in (19, 20, 21)
    # a jaw drop (speech) is never taken back: a target below the source moves nothing
    _, none = rig(image, landmarks, target, source)
    assert not none.any()
    _, both_ways = LinearRig(displacement, SIZE, as_rendered=False)(image, landmarks, target, source)
    torch.testing.assert_close(both_ways, -moves)
    # a smile is, as the renderer takes it back: to the target or the resting reading
    displacement[AU_NAMES.index("AU12"), 0] = torch.tensor([1.0, 0.0])
    smiling = torch.zeros(1, N_AUS)
    smiling[0, AU_NAMES.index("AU12")] = 3.0
    _, relaxed = LinearRig(displacement, SIZE)(image, landmarks, smiling, torch.zeros(1, N_AUS))
    torch.testing.assert_close(relaxed, torch.tensor([[[-(3.0 - REST_READING), 0.0]]]))


def test_rig_and_landmark_files_round_trip(tmp_path):
    displacement = np.random.default_rng(2).normal(0, 1, (N_AUS, 5, 2)).astype(np.float32)
    save_rig(tmp_path / RIG_FILE, displacement, 128, "test")
    rig = load_rig(tmp_path / RIG_FILE)
    assert rig.size == 128
    np.testing.assert_array_equal(rig.displacement.numpy(), displacement)
    points = np.random.default_rng(3).uniform(0, 128, (3, 5, 2))
    save_landmarks(tmp_path / LANDMARKS_FILE, ["a", "b", "c"], points)
    loaded = load_landmarks(tmp_path / LANDMARKS_FILE, ["c", "a"])
    np.testing.assert_allclose(loaded, points[[2, 0]], atol=0.07)  # float16 at 128 px
    with pytest.raises(AnimatorError, match="no landmarks for 1 face"):
        load_landmarks(tmp_path / LANDMARKS_FILE, ["a", "zz"])
    with pytest.raises(AnimatorError, match="no such file"):
        load_rig(tmp_path / "missing.npz")


# ---------------------------------------------------------------- balance

def test_balance_weights_lift_rare_aus_to_the_floor_within_the_cap():
    aus = np.zeros((1000, N_AUS), np.float32)
    brow, smile, blink = AU_NAMES.index("AU01"), AU_NAMES.index("AU12"), AU_NAMES.index("AU45")
    aus[:20, brow] = 3.0            # 2 % strong brow raises
    aus[20:520, smile] = 2.0        # a smile on half
    aus[520, blink] = 4.0           # one blink: the cap stops it taking over
    weights = balance_weights(aus, floor=0.15, cap=30.0)
    assert weights.mean() == pytest.approx(1.0)
    drawn = label_distribution(aus, weights)
    assert drawn["AU01"]["at_least_2"] == pytest.approx(0.15, abs=0.01)
    assert drawn["AU12"]["at_least_2"] >= 0.15
    assert weights[520] / weights.min() == pytest.approx(30.0)
    assert drawn["AU45"]["at_least_2"] < 0.05
    assert label_distribution(aus)["AU01"]["at_least_2"] == pytest.approx(0.02)
    assert intensity_bins(np.array([[0.2, 0.5, 1.7, 4.0]])).tolist() == [[0, 1, 2, 3]]


def test_weighted_epochs_and_targets_are_seeded_draws():
    weights = torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    order = epoch_order(4000, seed=1, epoch=0, weights=torch.cat([weights, torch.zeros(3996, dtype=torch.float64)]))
    assert set(order.tolist()) <= {2, 3}
    assert torch.equal(order, epoch_order(4000, 1, 0, weights=torch.cat([weights, torch.zeros(3996, dtype=torch.float64)])))
    pool = torch.arange(4, dtype=torch.float32).view(4, 1).expand(4, N_AUS)
    drawn = sample_targets(pool, 2000, 0.0, torch.Generator().manual_seed(0), weights.float())
    assert set(drawn[:, 0].tolist()) <= {2.0, 3.0}
    assert (drawn[:, 0] == 3.0).float().mean() == pytest.approx(0.75, abs=0.05)


# ---------------------------------------------------------------- the trainer in motion mode

def _toy_rig() -> LinearRig:
    displacement = torch.zeros(N_AUS, 4, 2)
    displacement[:, :, 1] = 0.5
    return LinearRig(displacement, size=SIZE)


def test_motion_inputs_warp_then_mirror_and_the_way_back_undoes_the_warp():
    config = TrainConfig(**TINY)
    trainer = Trainer(config, torch.device("cpu"), warp=_toy_rig())
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    pattern = 127.5 + 120 * np.sin(xx / 3.0) * np.cos(yy / 2.5)  # smooth, so resampling is exact enough
    images = torch.from_numpy(np.stack([pattern, pattern.T]).round().astype(np.uint8)[..., None].repeat(3, -1))
    landmarks = torch.tensor([[[12.0, 12.0], [20.0, 12.0], [16.0, 18.0], [16.0, 24.0]]]).expand(2, -1, -1)
    source, target = torch.zeros(2, N_AUS), torch.full((2, N_AUS), 0.2)
    flip = torch.tensor([True, False])
    real, inputs, back = trainer.inputs(images, source, target, flip, landmarks)
    face = to_network(images)
    warped, _ = _toy_rig()(face, landmarks, source, target)
    torch.testing.assert_close(real, flip_where(face, flip))
    torch.testing.assert_close(inputs, flip_where(warped, flip), atol=1e-5, rtol=0)  # warp, then mirror
    assert not torch.allclose(inputs, real)
    returned = back(inputs)
    inside = (slice(None), slice(None), slice(6, 26), slice(6, 26))
    assert (returned - real)[inside].abs().mean() < 0.25 * (inputs - real)[inside].abs().mean()
    with pytest.raises(AnimatorError, match="landmarks"):
        trainer.inputs(images, source, target, flip, None)


@pytest.fixture(scope="module")
def motion_set(tmp_path_factory) -> Path:
    """16 training + 4 held-out toy faces with 4 landmarks each and a rig at 64 px."""
    root = tmp_path_factory.mktemp("motion")
    (root / "imgs").mkdir()
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    names = [f"toy_{i:02d}" for i in range(20)]
    labels = {}
    for name in names:
        cx, cy = rng.uniform(0.35, 0.65, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.04)
        write_image(root / "imgs" / f"{name}.webp",
                    (blob[..., None] * rng.uniform(80, 255, 3) + 20).clip(0, 255).astype(np.uint8))
        labels[name] = rng.uniform(0, 5, N_AUS) * (rng.uniform(size=N_AUS) < 0.3)
    write_aus(root / "aus_openface.pkl", labels)
    write_ids(root / "train_ids.csv", names[:16])
    write_ids(root / "test_ids.csv", names[16:])
    points = rng.uniform(20, 44, (20, 4, 2))  # at 64 px: the loop scales them to 32
    save_landmarks(root / LANDMARKS_FILE, names, points)
    save_rig(root / RIG_FILE, rng.normal(0, 0.5, (N_AUS, 4, 2)), 64, "test")
    (root / "manifest.json").write_text(json.dumps({"crop_policy": {"kind": "aligned", "size": 32}}))
    return root


def test_motion_run_warm_started_and_balanced(motion_set, tmp_path):
    torch.manual_seed(0)
    generator_config = GeneratorConfig(image_size=SIZE, conv_dim=8, repeat_num=1)
    start = save_generator(Generator(generator_config), ModelConfig(generator_config), tmp_path / "start")
    config = TrainConfig(**TINY, motion="rig", balance=True, init_from=str(start))
    summary = train(motion_set, tmp_path / "run", config, RunControl(device="cpu", quiet=True),
                    log=lambda line: None)
    assert summary["iterations"] == 10
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert "nan" not in "".join(rows[1:]).lower()
    assert (tmp_path / "run" / "samples" / "it_0000010.png").is_file()
    trained, _ = load_state(tmp_path / "run" / "generator")
    initial, _ = load_state(start)
    assert all(trained[k].shape == initial[k].shape for k in initial)
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)  # it learned from there

    # a warm start only from a generator of the same shape
    wider = GeneratorConfig(image_size=SIZE, conv_dim=16, repeat_num=1)
    other = save_generator(Generator(wider), ModelConfig(wider), tmp_path / "wider")
    with pytest.raises(AnimatorError, match="--init-from"):
        train(motion_set, tmp_path / "run2", config.with_changes(init_from=str(other)),
              RunControl(device="cpu", quiet=True), log=lambda line: None)


def test_motion_run_needs_the_rig_and_landmarks(motion_set, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(motion_set, copy)
    (copy / RIG_FILE).unlink()
    with pytest.raises(AnimatorError, match="motion_rig.npz"):
        train(copy, tmp_path / "run", TrainConfig(**TINY, motion="rig"),
              RunControl(device="cpu", quiet=True), log=lambda line: None)
    assert not (tmp_path / "run").exists()
