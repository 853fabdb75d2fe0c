"""Crop policies, crops, and the full-resolution attention paste-back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from animator.errors import AnimatorError
from animator.faces.align import (CropPolicy, crop_transform, similarity_fit, template_points,
                                  transform_scale, warp_crop)
from animator.faces.composite import attention_matte, composite, face_mask
from animator.faces.detect import FaceDetector

SIZE = 128


@pytest.fixture(scope="module")
def face(astronaut):
    return FaceDetector().detect(astronaut)[0]


def rotation(angle_deg: float, scale: float, shift) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]],
                     [scale * np.sin(a), scale * np.cos(a), shift[1]]])


def test_policy_round_trip_and_validation():
    for policy in (CropPolicy(), CropPolicy("box", 256, 1.3)):
        assert CropPolicy.from_dict(policy.to_dict()) == policy
    assert CropPolicy().to_dict() == {"kind": "aligned", "size": 128, "scale": 1.0}
    with pytest.raises(AnimatorError, match="kind"):
        CropPolicy("tight")
    with pytest.raises(AnimatorError, match="size"):
        CropPolicy(size=8)
    with pytest.raises(AnimatorError, match="unknown field"):
        CropPolicy.from_dict({"kind": "box", "margin": 3})


def test_aligned_crop_maps_points_onto_the_template():
    policy = CropPolicy()
    template = template_points(policy)
    # a face rotated by 20 degrees, 3x larger, somewhere in a frame
    face_to_frame = rotation(20, 3.0, (400, 250))
    points = template @ face_to_frame[:, :2].T + face_to_frame[:, 2]
    M = crop_transform(policy, points, None)
    np.testing.assert_allclose(points @ M[:, :2].T + M[:, 2], template, atol=1e-6)
    assert transform_scale(M) == pytest.approx(1 / 3.0)
    # least squares: similarity_fit recovers a similarity exactly
    np.testing.assert_allclose(similarity_fit(template, points), face_to_frame, atol=1e-6)


def test_template_leaves_the_whole_face_in(face, astronaut):
    """Eyes, nose and mouth at sensible heights; the mesh's face outline inside the crop."""
    from animator.faces.landmarks import FACE_OVAL, MeshLandmarker

    t = template_points(CropPolicy()) / SIZE
    assert 0.3 < t[0, 1] < 0.4 and 0.6 < t[3, 1] < 0.8 and t[0, 0] < 0.5 < t[1, 0]
    mesh = MeshLandmarker().landmarks(astronaut, face)
    M = crop_transform(CropPolicy(), face.points, face.box)
    oval = mesh[FACE_OVAL, :2] @ M[:, :2].T + M[:, 2]
    assert oval.min() > 0.02 * SIZE and oval.max() < 0.98 * SIZE


def test_box_crop_is_an_upright_square_around_the_box(face):
    policy = CropPolicy("box", SIZE, 1.25)
    M = crop_transform(policy, None, face.box)
    assert M[0, 1] == 0 and M[1, 0] == 0 and M[0, 0] == pytest.approx(M[1, 1])
    side = max(face.box[2] - face.box[0], face.box[3] - face.box[1]) * 1.25
    assert transform_scale(M) == pytest.approx(SIZE / side)
    centre = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2]) - 0.5
    np.testing.assert_allclose(M[:, :2] @ centre + M[:, 2], [(SIZE - 1) / 2] * 2, atol=1e-6)
    with pytest.raises(AnimatorError, match="5 face points"):
        crop_transform(CropPolicy(), None, face.box)


def test_crop_of_a_large_frame_matches_the_small_one(astronaut, face):
    """The anti-aliased path (face shrunk > 2x) cuts the same crop as a small copy does."""
    M = crop_transform(CropPolicy(), face.points, face.box)
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    to_small = np.array([[0.25, 0, -0.375], [0, 0.25, -0.375], [0, 0, 1]])  # big -> small pixels
    crop_small = warp_crop(astronaut, M, SIZE)
    crop_big = warp_crop(big, M @ to_small, SIZE)
    assert transform_scale(M @ to_small) < 0.5
    assert np.abs(crop_big.astype(float) - crop_small).mean() < 2.0
    plain = cv2.warpAffine(big, M @ to_small, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    assert np.abs(crop_big.astype(float) - crop_small).mean() < np.abs(plain.astype(float) - crop_small).mean()


def test_face_mask_is_zero_at_the_crop_border():
    mask = face_mask(SIZE)
    assert mask.dtype == np.float32 and mask.max() == 1.0 and mask.min() == 0.0
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert np.all(border == 0)
    assert mask[SIZE // 2, SIZE // 2] == 1.0


@pytest.mark.parametrize("policy", [CropPolicy(), CropPolicy("box", SIZE, 1.2)])
def test_attention_one_returns_the_frame_bit_identical(astronaut, face, policy):
    M = crop_transform(policy, face.points, face.box)
    noise = np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    out, _ = composite(astronaut, M, np.ones((SIZE, SIZE), np.float32), noise)
    assert out is not astronaut and np.array_equal(out, astronaut)
    assert not attention_matte(astronaut.shape, M, np.ones((SIZE, SIZE), np.float32)).any()


def test_attention_zero_with_the_crop_itself_restores_the_face(astronaut, face):
    M = crop_transform(CropPolicy(), face.points, face.box)
    crop = warp_crop(astronaut, M, SIZE)
    attention = np.zeros((SIZE, SIZE), np.float32)
    out, box = composite(astronaut, M, attention, crop.astype(np.float32))
    matte = attention_matte(astronaut.shape, M, attention)
    changed = np.any(out != astronaut, axis=2)
    # outside the mask: bit-identical; only the touched box can change
    assert not np.any(changed & (matte == 0))
    x0, y0, x1, y1 = box
    outside = np.ones(changed.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert not np.any(changed & outside) and changed.sum() > 5000
    # inside: the crop's own resampling error (a crop -> frame warp), no more
    resampled = cv2.warpAffine(crop.astype(np.float32), cv2.invertAffineTransform(M),
                               astronaut.shape[1::-1], flags=cv2.INTER_LINEAR)
    inner = matte == 255
    assert inner.sum() > 5000
    error = np.abs(out.astype(float) - astronaut)[inner]
    assert np.abs(out.astype(float) - resampled)[inner].max() <= 1.0  # rounding only
    assert error.mean() < 4.0 and np.percentile(error, 95) < 12


def test_composite_blends_as_defined(astronaut, face):
    """alpha = mask * (1 - A); out = frame * (1 - alpha) + C * alpha, rounded."""
    M = crop_transform(CropPolicy(), face.points, face.box)
    attention = np.full((SIZE, SIZE), 0.25, np.float32)
    color = np.full((SIZE, SIZE, 3), 200.0, np.float32)
    out, _ = composite(astronaut, M, attention, color)
    matte = attention_matte(astronaut.shape, M, attention)
    inner = matte == round(255 * 0.75)
    assert inner.sum() > 5000
    expected = np.rint(astronaut[inner] * 0.25 + 200.0 * 0.75)
    assert np.abs(out[inner].astype(float) - expected).max() <= 1.0


def test_composite_of_a_face_leaving_the_frame(astronaut):
    # a crop that lies entirely outside the frame touches nothing
    M = rotation(0, 1.0, (-5000, -5000))
    out, box = composite(astronaut, M, np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE, 3), np.float32))
    assert np.array_equal(out, astronaut) and box == (0, 0, 0, 0)
    # half outside: no error, the in-frame part changes
    M = crop_transform(CropPolicy(), np.array([[5, 100], [50, 100], [27, 125], [8, 150], [46, 150]]) - [40, 0], None)
    out, box = composite(astronaut, M, np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE, 3), np.float32))
    assert box[0] == 0 and np.any(out != astronaut)
