"""Spectacle rims: the face moves behind them, the net finds them, synthetic pairs to train on."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from animator.aus import parse_target
from animator.errors import AnimatorError
from animator.motion.move import motion_aus, move_landmarks
from animator.motion.rig import AURig
from animator.motion.rims import (CROP_H, CROP_W, Rims, RimFinder, TrackRims, eye_crop, eye_region,
                                  fill_holes)
from test_motion import read_face, with_au


@pytest.fixture(scope="module")
def rig() -> AURig:
    return AURig.default()


def drawn_rims(image: np.ndarray, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray, Rims]:
    """``image`` wearing a dark pair of rims (two loops around the eyes and a bridge), the
    frame pixels the rims cover, and their :class:`Rims` (the same loops in the crop)."""
    crop_rims = np.zeros((CROP_H, CROP_W), np.uint8)
    for side in (-1, 1):
        cv2.ellipse(crop_rims, (CROP_W // 2 + side * 30, 45), (24, 15), 0, 0, 360, 1, 3)
    cv2.line(crop_rims, (CROP_W // 2 - 7, 40), (CROP_W // 2 + 7, 40), 1, 3)
    to_crop = eye_region(mesh)
    in_frame = cv2.warpAffine(crop_rims.astype(np.float32), to_crop, image.shape[1::-1],
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    worn = (image * (1 - in_frame[..., None]) + 20 * in_frame[..., None]).astype(np.uint8)
    return worn, in_frame > 0.5, Rims(crop_rims.astype(np.float32))


def test_holes_are_filled_from_the_pixels_around_them():
    ramp = np.tile(np.linspace(40, 200, 120, dtype=np.float32)[None, :, None], (60, 1, 3)).astype(np.uint8)
    holes = np.zeros(ramp.shape[:2], bool)
    holes[:, 50:56] = True
    holes[20:24, :] = True
    marked = ramp.copy()
    marked[holes] = 0
    filled = fill_holes(marked, holes)
    np.testing.assert_array_equal(filled[~holes], ramp[~holes])
    assert np.abs(filled.astype(int) - ramp)[holes].max() <= 6


def test_a_face_moves_behind_rims_that_stay(face_image, rig):
    """A blink and raised brows under drawn rims: the rims' pixels keep their values (without
    them the warp bends the rims), the eyes close as they would without glasses, and nothing
    outside the field changes."""
    mesh, current = read_face(face_image)
    worn, on_rim, rims = drawn_rims(face_image, mesh)
    for spec in ("AU45=5", "AU01=4,AU02=4"):
        moved = rig.displace(mesh, motion_aus(current, parse_target(spec), rig))
        behind, field = move_landmarks(worn, mesh, moved, rims)
        bent, _ = move_landmarks(worn, mesh, moved)
        np.testing.assert_array_equal(behind[on_rim], worn[on_rim])
        assert (np.abs(bent[on_rim].astype(int) - worn[on_rim]).max(1) > 10).mean() > 0.08, spec   # the warp bends them
        x0, y0, x1, y1 = field.box
        outside = np.ones(worn.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        np.testing.assert_array_equal(behind[outside], worn[outside])
    plain, _ = move_landmarks(face_image, mesh, moved)
    clear = ~cv2.dilate(on_rim.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(behind[clear].astype(int) - plain[clear]).mean() < 1.5   # the face moves as without glasses


def test_what_the_field_leaves_alone_stays_exact_behind_rims(face_image, rig):
    """A jaw drop moves neither eyes nor brows: behind rims, every pixel around the eyes keeps
    its value (the rims were filled only to be warped, and put back)."""
    mesh, current = read_face(face_image)
    worn, on_rim, rims = drawn_rims(face_image, mesh)
    moved = rig.displace(mesh, motion_aus(current, with_au(current, "AU26", 4.0), rig))
    behind, field = move_landmarks(worn, mesh, moved, rims)
    offsets = np.zeros(worn.shape[:2], bool)
    x0, y0, x1, y1 = field.box
    offsets[y0:y1, x0:x1] = field.moved
    still = ~offsets
    assert on_rim[still].sum() > 100
    np.testing.assert_array_equal(behind[still], worn[still])


def test_a_track_decides_on_glasses_once_and_follows_its_rims():
    """Glasses or not is decided on a track's first frame with landmarks; a face without them
    never runs the net again; a face with them has its rims found on every frame, averaged
    with the frames before."""
    from animator.motion.rims import SETTLE

    looks = []

    class Finder:   # marks a band whose height is the frame's value
        def probabilities(self, crop):
            looks.append(int(crop[0, 0, 0]))
            p = np.zeros((CROP_H, CROP_W), np.float32)
            p[: int(crop[0, 0, 0])] = 1.0
            return p

    mesh = np.zeros((478, 3))
    mesh[[33, 133], :2] = [[80, 100], [100, 100]]
    mesh[[263, 362], :2] = [[140, 100], [120, 100]]
    frame = lambda value: np.full((200, 200, 3), value, np.uint8)  # noqa: E731
    tracks = TrackRims(Finder())
    assert tracks.of(0, frame(40), None) is None and looks == []     # no landmarks: no look
    assert tracks.of(0, frame(0), mesh) is None                      # bare on its first look ...
    assert tracks.of(0, frame(40), mesh) is None and looks == [0]    # ... stays bare, no more looks
    rims = tracks.of(1, frame(20), mesh)                             # glasses: 20 rows of 80 marked
    assert rims.cover[:20].all() and not rims.cover[20:].any()
    later = tracks.of(1, frame(60), mesh)                            # 60 rows now: averaged in
    assert looks == [0, 20, 60]
    assert later.cover[:20].all() and later.cover[20:60].all() == (1 - SETTLE >= 0.5) and not later.cover[60:].any()


@pytest.mark.parametrize(("clip", "glasses"), [("d13", True), ("d9", True), ("d3", False), ("d0", False),
                                                ("d6", False), ("d14", False)])
def test_the_rim_finder_tells_glasses_from_bare_faces(shared_dir, clip, glasses):
    """The acting clips' first frames: d13 (half-rimmed metal frames, HD) and d9 (round frames)
    wear glasses, the others do not. The net never saw these people, nor any real glasses."""
    from animator.media.decode import iter_frames

    frame = next(iter(iter_frames(shared_dir / "datasets" / "expression-clips" / f"{clip}.mp4"))).rgb
    mesh, _ = read_face(frame)
    rims = RimFinder().find(frame, mesh)
    assert (rims is not None) == glasses
    if glasses:   # both lenses' rims, not one fleck
        half = CROP_W // 2
        assert rims.cover[:, :half].sum() > 100 and rims.cover[:, half:].sum() > 100


def test_glasses_have_two_lenses():
    """Marks on one side only (a brow, a strand of hair) are no pair of glasses, however many."""
    from animator.motion.rims import rims_of

    one_side = np.zeros((CROP_H, CROP_W), np.float32)
    one_side[30:40, 10:60] = 1.0                       # 4.3 % of the crop, all on its left half
    assert rims_of(one_side) is None
    pair = one_side.copy()
    pair[30:40, CROP_W - 60:CROP_W - 10] = 1.0
    assert rims_of(pair) is not None
    specks = np.zeros((CROP_H, CROP_W), np.float32)
    specks[::8, ::8] = 1.0                             # 1.6 % of single pixels: flecks, not rims
    assert rims_of(specks) is None


def test_eye_region_levels_the_eyes():
    rng = np.random.default_rng(0)
    mesh = rng.uniform(100, 300, (478, 3))
    mesh[[33, 133], :2] = [[120, 210], [160, 215]]
    mesh[[263, 362], :2] = [[260, 225], [220, 220]]
    to_crop = eye_region(mesh)
    right, left = (to_crop[:, :2] @ mesh[list(c), :2].mean(0) + to_crop[:, 2] for c in ((33, 133), (263, 362)))
    assert right[1] == pytest.approx(left[1]) and left[0] - right[0] == pytest.approx(56.0)
    assert eye_crop(np.zeros((400, 400, 3), np.uint8), mesh).shape == (CROP_H, CROP_W, 3)


def test_the_rim_net_travels_with_its_config(tmp_path):
    import torch

    from animator.model.rim_net import RimNet, RimNetConfig, load_rim_net, rim_provenance, save_rim_net

    net = RimNet(RimNetConfig(channels=(4, 6, 8))).eval()
    path = tmp_path / "rims.safetensors"
    save_rim_net(net, path, {"trained_on": "nothing"})
    again = load_rim_net(path)
    images = torch.zeros(1, 3, CROP_H, CROP_W)
    assert torch.equal(net(images), again(images))
    assert rim_provenance(path) == {"trained_on": "nothing"}
    (tmp_path / "broken.safetensors").write_bytes(b"not weights")
    with pytest.raises(AnimatorError, match="broken.safetensors"):
        load_rim_net(tmp_path / "broken.safetensors")


def test_synthetic_spectacles_frame_both_eyes():
    from animator.motion.rims import CROP_SCALE, CROP_TOP
    from animator.train.spectacles import draw_spectacles, jitter, wear_spectacles

    rng = np.random.default_rng(3)
    for _ in range(20):
        rim, lens, _ = draw_spectacles(rng)
        eye_y = round(CROP_TOP * CROP_SCALE)
        for x in (CROP_W / 2 - CROP_SCALE / 2, CROP_W / 2 + CROP_SCALE / 2):   # each eye behind a lens
            assert lens[eye_y, round(x)] == 1.0
        assert rim[:, : CROP_W // 2].sum() > 30 and rim[:, CROP_W // 2:].sum() > 30
        assert 0 <= rim.min() and rim.max() <= 1
    face = np.full((CROP_H, CROP_W, 3), 180, np.uint8)
    picture, cover = wear_spectacles(face, rng)
    assert np.abs(picture.astype(int) - face)[cover > 0.9].mean() > 20   # the rims show
    picture, cover = jitter(picture, cover, rng)
    assert picture.shape == (CROP_H, CROP_W, 3) and cover.shape == (CROP_H, CROP_W)
