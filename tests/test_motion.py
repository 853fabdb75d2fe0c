"""The motion stage: AU rig, dense warp, mouth fill, rig fitting, and stability in video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from animator.aus import AU_NAMES, N_AUS, parse_target
from animator.errors import AnimatorError
from animator.estimate.geometry import MESH
from animator.motion.fit import (MIN_AREA, REGIONS, Clip, blink_closure_held_out, blink_closures,
                                 fit_basis, fit_blink_closure, mirror_index, support_mask, symmetrise, unfold)
from animator.motion.mouth import mouth_tear
from animator.motion.move import face_field, move_face, opening_nodes
from animator.motion.rig import LOWER_LIDS, UPPER_LIDS, AURig, keep_contours_apart
from animator.motion.warp import MotionField, apply_field, frame_offsets, motion_field
from test_render import tiny_model  # noqa: F401 (a fixture: a small random generator)


@pytest.fixture(scope="module")
def rig() -> AURig:
    return AURig.default()


def one_au(name: str, value: float) -> np.ndarray:
    delta = np.zeros(N_AUS)
    delta[AU_NAMES.index(name)] = value
    return delta


def read_face(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's face as the motion stage is fed it: its 478 landmarks and its AUs."""
    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    mesh = MeshLandmarker().landmarks(image, FaceDetector().detect(image)[0])
    return mesh, AUEstimator.default().estimate(mesh)


def with_au(current: np.ndarray, name: str, value: float) -> np.ndarray:
    """``current`` AUs with one of them set to ``value``."""
    target = current.copy()
    target[AU_NAMES.index(name)] = value
    return target


def posed(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """``points`` (N, 3) turned in the image plane, scaled and moved."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return scale * points @ rotation.T + (*shift, 0)


def test_rig_file_round_trips_and_rejects_other_files(rig, tmp_path):
    again = AURig.from_dict(json.loads(json.dumps(rig.to_dict())))
    np.testing.assert_allclose(again.basis, rig.basis, atol=1e-5)
    np.testing.assert_allclose(again.blink_closure, rig.blink_closure, atol=1e-3)
    assert again.provenance["clips"] and again.provenance["held_out_explained"]
    (tmp_path / "x.json").write_text('{"format": "something else"}')
    with pytest.raises(AnimatorError, match="not an AU rig"):
        AURig.from_file(tmp_path / "x.json")
    without_curve = rig.to_dict()
    del without_curve["blink_closure"]  # a rig fitted before blinks were measured: i/5 of the eye
    assert AURig.from_dict(without_curve).closure(4.0) == pytest.approx(0.8)
    falling = dict(rig.to_dict(), blink_closure=[[0, 0], [2, 0.6], [4, 0.3]])
    with pytest.raises(AnimatorError, match="blink_closure"):
        AURig.from_dict(falling)


def test_displacement_turns_and_scales_with_the_head(rig):
    face = posed(rig.template, 0.0, 60.0, (200.0, 150.0))
    turned = posed(rig.template, 0.4, 90.0, (320.0, 180.0))
    delta = parse_target("surprise")
    moved_face = rig.displace(face, delta) - face
    moved_turned = rig.displace(turned, delta) - turned
    expected = posed(moved_face, 0.4, 1.5, (0.0, 0.0))
    np.testing.assert_allclose(moved_turned, expected, atol=1e-6 * 90)
    np.testing.assert_array_equal(rig.displace(face, np.zeros(N_AUS)), face)


def test_each_au_moves_only_its_region(rig):
    support = support_mask(rig.template)
    moves = np.abs(rig.basis).sum(-1) > 0
    assert not (moves & ~support).any()
    up = -rig.basis[..., 1]  # y grows downwards
    assert up[AU_NAMES.index("AU01"), list(MESH.brow_inner[0])].min() > 0     # brows rise
    assert up[AU_NAMES.index("AU04"), list(MESH.brow_inner[0])].max() < 0     # ... or lower
    assert up[AU_NAMES.index("AU26"), 152] < 0                                # the jaw drops
    assert up[AU_NAMES.index("AU12"), 61] > 0                                 # corners rise


def test_a_blink_closes_the_lids_without_crossing_them(rig):
    face = posed(rig.template, 0.1, 80.0, (300.0, 200.0))
    for strength in (3.0, 5.0, 50.0):
        closed = rig.displace(face, one_au("AU45", strength))
        back = posed(closed - (300.0, 200.0, 0.0), 0.0, 1.0, (0.0, 0.0))
        for upper, lower in zip(UPPER_LIDS, LOWER_LIDS):
            # in the face's own frame (undo the turn), the upper lid stays above the lower one
            c, s = np.cos(-0.1), np.sin(-0.1)
            y = back[:, :2] @ np.array([[c, -s], [s, c]]).T
            assert (y[list(upper), 1] < y[list(lower), 1]).all()
    aperture = lambda m: (m[list(LOWER_LIDS[0]), 1] - m[list(UPPER_LIDS[0]), 1]).mean()  # noqa: E731
    assert aperture(rig.displace(face, one_au("AU45", 5.0))) < 0.25 * aperture(face)
    upright = posed(rig.template, 0.0, 80.0, (300.0, 200.0))
    upper, lower = list(UPPER_LIDS[0]), list(LOWER_LIDS[0])
    for strength in (1.0, 2.0, 4.0):  # the upper lid comes down the share real blinks read so close
        drop = rig.displace(upright, one_au("AU45", strength))[upper, 1] - upright[upper, 1]
        gap = upright[lower, 1] - upright[upper, 1]  # (by the corners it stops on its lash line)
        assert drop.mean() == pytest.approx(rig.closure(strength) * gap.mean(), rel=0.05)


def test_the_lids_skin_stretches_at_most_half_again_under_the_brows(rig):
    """A fold that lies right under the brow (a narrowed or wide-open eye): blinking at 5, the
    lid still closes, but its skin rings end at most 1.5x as far below the brow's lower edge as
    they were (pulled further, they dragged the brow's hair over the lid); raising the brows at
    4, the rings go up with them as far as that takes (the fold lifts with the brow, AU1+2)."""
    from animator.motion.rig import BROW_STRETCH, LOWER_BROWS, UPPER_LID_SKIN, below_brow

    face = rig.template.copy()
    for brow, skin in zip(LOWER_BROWS, UPPER_LID_SKIN):  # the brows come down onto the fold
        gap = below_brow(face, list(skin[1]), brow).min()
        face[list(brow), 1] += gap - 0.02
    face = posed(face, 0.0, 80.0, (300.0, 200.0))
    for delta in (one_au("AU45", 5.0), one_au("AU01", 4.0) + one_au("AU02", 4.0)):
        moved = rig.displace(face, delta)
        for brow, skin in zip(LOWER_BROWS, UPPER_LID_SKIN):
            for ring in skin:
                before, after = below_brow(face, list(ring), brow), below_brow(moved, list(ring), brow)
                assert (after <= BROW_STRETCH * np.maximum(before, 0) + 1e-6).all()
    closed = rig.displace(face, one_au("AU45", 5.0))
    aperture = lambda m: (m[list(LOWER_LIDS[0]), 1] - m[list(UPPER_LIDS[0]), 1]).mean()  # noqa: E731
    assert aperture(closed) < 0.25 * aperture(face)


def test_the_rigs_blink_closes_what_real_blinks_read_so_close():
    """Blinks read at 1-4 in the clips close ~0.4-0.8 of the eye, not i/5: the shipped curve is
    fitted to that, and a curve fitted on clips that close the eye as sqrt(i/5) recovers it
    and predicts a held-out clip better than i/5 does."""
    knots = AURig.default().blink_closure
    assert 0.3 < np.interp(1.0, *knots.T) < 0.5 and 0.7 < np.interp(4.0, *knots.T) < 0.85
    rng = np.random.default_rng(1)
    template = AURig.default().template
    clips = []
    for _ in range(4):
        blink = np.r_[np.zeros(50), rng.uniform(0.5, 4.5, 200)]
        closed = np.sqrt(blink / 5) + rng.normal(0, 0.02, len(blink))
        faces = np.repeat(template[None], len(blink), axis=0)
        for upper, lower in zip(UPPER_LIDS, LOWER_LIDS):  # upper lids down by the closed share
            gap = template[list(lower), 1] - template[list(upper), 1]
            faces[:, list(upper), 1] += closed[:, None] * gap[None]
        clips.append(blink_closures(faces, blink))
    fitted = fit_blink_closure(clips)
    np.testing.assert_allclose(fitted[1:-1, 1], np.sqrt(fitted[1:-1, 0] / 5), atol=0.03)
    assert tuple(fitted[0]) == (0.0, 0.0) and tuple(fitted[-1]) == (5.0, 1.0)
    scores = blink_closure_held_out(clips, ["a", "b", "c", "d"])
    assert all(s["fitted"] < 0.03 < s["linear"] for s in scores.values())


def test_contours_kept_apart_in_the_face_frame():
    face = np.zeros((468, 3))
    face[list(UPPER_LIDS[0]), 1] = 0.5  # upper lid below the lower one
    out = keep_contours_apart(face)
    assert (out[list(UPPER_LIDS[0]), 1] < out[list(LOWER_LIDS[0]), 1]).all()


def test_a_closed_lid_stays_above_the_lower_lids_line_between_its_points(rig):
    """Upper lid points brought down to just under the lower lid's line (corner to corner
    through its points) at their own place along the eye end above it, not only above their
    partners, which sit elsewhere along the eye (otherwise the field's triangles reach from the
    closed lid across the lower lid and show bits of the eye under it: a sawtooth at AU45 5)."""
    from animator.motion.rig import CLOSED_LID_GAP, EYE_CORNERS

    face = rig.template.copy()
    for (outer, inner), upper, lower in zip(EYE_CORNERS, UPPER_LIDS, LOWER_LIDS):
        line = face[[outer, *lower, inner], :2]
        order = np.argsort(line[:, 0])
        under = lambda points: np.interp(points[list(upper), 0], line[order, 0], line[order, 1])  # noqa: E731
        face[list(upper), 1] = under(face) + 0.005
        out = keep_contours_apart(face)
        assert (out[list(upper), 1] <= under(out) - CLOSED_LID_GAP + 1e-12).all()


def smooth_image(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)


def test_the_field_carries_target_landmarks_to_their_sources_and_is_zero_outside(rig):
    frame = smooth_image(360, 640)
    source = posed(rig.template, 0.0, 60.0, (320.0, 150.0))
    target = rig.displace(source, parse_target("surprise"))
    field = motion_field(source[:, :2], target[:, :2], frame.shape, nodes_across=120)
    x0, y0, x1, y1 = field.box
    assert 0 < x0 < x1 < 640 and 0 <= y0 < y1 <= 360
    at = np.rint(target[:, :2]).astype(int)
    sampled = field.offsets[at[:, 1] - y0, at[:, 0] - x0]
    moved = np.linalg.norm(source[:, :2] - target[:, :2], axis=1) > 2
    error = np.linalg.norm(sampled - (source[:, :2] - target[:, :2]), axis=1)
    assert np.median(error[moved]) < 0.5
    out = apply_field(frame, field)
    untouched = np.ones(frame.shape[:2], bool)
    untouched[y0:y1, x0:x1] = ~field.moved
    np.testing.assert_array_equal(out[untouched], frame[untouched])  # bit-identical
    assert not field.moved[0, :].any() and not field.moved[:, 0].any()  # zero at the border
    whole = frame_offsets(frame.shape, [field])
    assert whole.shape == (360, 640, 2) and not whole[~np.pad(field.moved, ((y0, 360 - y1), (x0, 640 - x1)))].any()


def test_a_translation_field_moves_the_picture():
    frame = smooth_image(80, 80)
    offsets = np.zeros((40, 40, 2), np.float32)
    offsets[..., 0] = 3.0
    out = apply_field(frame, MotionField((20, 20, 60, 60), offsets))
    np.testing.assert_array_equal(out[20:60, 20:57], frame[20:60, 23:60])
    np.testing.assert_array_equal(out[:20], frame[:20])


def test_a_field_that_moves_nothing_samples_zero():
    """A face already at its target (a neutral key on a neutral face) gives all-zero node
    moves: every triangle is left out, and the field is zero, not an error."""
    from animator.motion.warp import Grid, PiecewiseLinear

    nodes = np.random.default_rng(0).uniform(0, 50, (40, 2))
    field = PiecewiseLinear(nodes, np.zeros((40, 2))).sample(Grid(0, 0, 2, 2, 25, 25))
    assert field.shape == (25, 25, 2) and not field.any()


class ExactPiecewiseLinear:
    """The field's definition evaluated point by point, slowly: scipy's point location and
    barycentric transform on the same Delaunay triangulation."""

    def __init__(self, nodes: np.ndarray, values: np.ndarray):
        from scipy.spatial import Delaunay

        self.triangulation, self.values = Delaunay(nodes), values

    def sample(self, grid) -> np.ndarray:
        x, y = np.meshgrid(grid.x0 + grid.dx * np.arange(grid.nx), grid.y0 + grid.dy * np.arange(grid.ny))
        points = np.column_stack([x.ravel(), y.ravel()])
        simplex = self.triangulation.find_simplex(points)
        affine = self.triangulation.transform[simplex]
        barycentric = np.einsum("nij,nj->ni", affine[:, :2], points - affine[:, 2])
        weights = np.column_stack([barycentric, 1 - barycentric.sum(1)])
        values = np.einsum("nk,nkc->nc", weights, self.values[self.triangulation.simplices[simplex]])
        values[simplex < 0] = 0
        return values.reshape(grid.ny, grid.nx, -1)


def test_the_field_and_the_warp_match_an_exact_evaluation_on_a_real_face(rig, monkeypatch):
    """On the example clip's face, for a smile and a blink (whose lids are evaluated at every
    pixel): the field's backward offsets are within 0.05 px of the exact piecewise-linear field
    on every pixel, and the warped frame within one level of remapping by the exact field and
    keeping the unmoved pixels."""
    import cv2

    from animator.media.decode import iter_frames
    from animator.motion import warp

    frame = next(iter(iter_frames(Path(__file__).resolve().parents[1] / "examples" / "single_face.mp4"))).rgb
    mesh, current = read_face(frame)
    mesh = mesh[:len(rig.template)]
    for preset in ("happy", "blink"):
        moved = rig.displace(mesh, np.maximum(parse_target(preset) - current, 0))
        field = face_field(frame.shape, mesh, moved, mouth_tear(mesh, moved))
        with monkeypatch.context() as patch:
            patch.setattr(warp, "PiecewiseLinear", ExactPiecewiseLinear)
            exact = face_field(frame.shape, mesh, moved, mouth_tear(mesh, moved))
        assert field.box == exact.box and np.abs(exact.offsets).max() > 1
        assert np.abs(field.offsets - exact.offsets).max() <= 0.05
        x0, y0, x1, y1 = exact.box
        xy = exact.offsets + np.stack(np.meshgrid(np.arange(x0, x1), np.arange(y0, y1)), -1).astype(np.float32)
        expected = frame.copy()
        remapped = cv2.remap(frame, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        expected[y0:y1, x0:x1][exact.moved] = remapped[exact.moved]
        assert np.abs(apply_field(frame, field).astype(int) - expected).max() <= 1


def test_the_lids_exact_field_blends_into_the_upsampled_one(rig):
    """Around the lids the field is evaluated at every pixel, elsewhere upsampled from a coarse
    grid, which is off by up to about a pixel there (surprise: brows and lids move). Across the
    exact patch's edges the field changes hardly more than it does one pixel further out: the
    blend spreads the difference over a coarse step (~6 px here, a tenth of it per pixel), and
    no seam shifts the picture along them (pasted as it was, the patch changed 0.14-0.29 px
    more across its edges here, up to 1.2 px on a 720x1280 face)."""
    from animator.media.decode import iter_frames
    from animator.motion import warp
    from animator.motion.move import EYES

    frame = next(iter(iter_frames(Path(__file__).resolve().parents[1] / "examples" / "single_face.mp4"))).rgb
    mesh, current = read_face(frame)
    mesh = mesh[:len(rig.template)]
    moved = rig.displace(mesh, np.maximum(parse_target("surprise") - current, 0))
    field = face_field(frame.shape, mesh, moved, mouth_tear(mesh, moved))
    x0, y0, x1, y1 = field.box
    step = max(warp.MIN_STEP, max(x1 - x0, y1 - y0) / warp.GRID_NODES)
    o = field.offsets
    for group in EYES:
        points = np.vstack([mesh[list(group), :2], moved[list(group), :2]])
        gx0, gy0, gx1, gy1 = (v - d for v, d in zip(warp.detail_box(points, step, field.box), (x0, y0, x0, y0)))
        edges = [(o[gy0, gx0:gx1], o[gy0 - 1, gx0:gx1], o[gy0 - 2, gx0:gx1]),        # top: inside, out, further
                 (o[gy1 - 1, gx0:gx1], o[gy1, gx0:gx1], o[gy1 + 1, gx0:gx1]),
                 (o[gy0:gy1, gx0], o[gy0:gy1, gx0 - 1], o[gy0:gy1, gx0 - 2]),
                 (o[gy0:gy1, gx1 - 1], o[gy0:gy1, gx1], o[gy0:gy1, gx1 + 1])]
        for inside, out, further in edges:
            across = np.linalg.norm(inside - out, axis=-1)
            beyond = np.linalg.norm(out - further, axis=-1)
            assert (across - beyond).max() < 0.12


def test_the_mouth_splits_at_its_midline_and_a_closing_lid_keeps_its_lash_band(rig):
    face = posed(rig.template, 0.0, 100.0, (300.0, 200.0))[:, :2]
    sources, targets = opening_nodes(face, face, mouth_tear(face, face))
    assert len(sources) == 9  # the mouth's midpoints
    np.testing.assert_array_equal(sources, targets)
    closed = rig.displace(posed(rig.template, 0.0, 100.0, (300.0, 200.0)), one_au("AU45", 5.0))[:, :2]
    sources, targets = opening_nodes(face, closed, mouth_tear(face, closed))
    # per closing lid point a lash node above the margin, carried down with it; per lower lid
    # point of a closing eye a guard node just below it, moving with it
    n = len(UPPER_LIDS[0])
    assert len(sources) == 4 * n + 9
    for eye, (upper, lower) in enumerate(zip(UPPER_LIDS, LOWER_LIDS)):
        lashes, guards = slice(2 * eye * n, (2 * eye + 1) * n), slice((2 * eye + 1) * n, (2 * eye + 2) * n)
        np.testing.assert_allclose(targets[lashes] - sources[lashes], closed[list(upper)] - face[list(upper)])
        assert (sources[lashes, 1] < face[list(upper), 1]).all()
        np.testing.assert_allclose(targets[guards] - sources[guards], closed[list(lower)] - face[list(lower)])
        assert (sources[guards, 1] > face[list(lower), 1]).all()


def test_skin_under_a_closing_eyes_lower_lid_does_not_show_the_eye(shared_dir, rig):
    """A closed upper lid lies on the lower one; triangles of the field reaching from it (its
    offsets point up into the eye) across the lower lid would show bits of iris and white in
    the skin below. On d0's narrow, side-looking eyes that was 47 pixels; the guard nodes
    under a closing eye's lower lid keep it to stray ones."""
    import av

    from animator.motion.eyes import eye_contour, eye_width
    from animator.motion.move import motion_aus

    with av.open(str(shared_dir / "datasets" / "expression-clips" / "d0.mp4")) as video:
        frame = next(f for i, f in enumerate(video.decode(video=0)) if i == 11).to_ndarray(format="rgb24")
    mesh, current = read_face(frame)
    moved = rig.displace(mesh, motion_aus(current, with_au(current, "AU45", 5.0), rig))
    field = face_field(frame.shape, mesh[:468], moved, mouth_tear(mesh[:468], moved))
    x0, y0, x1, y1 = field.box
    ys, xs = np.mgrid[y0:y1, x0:x1]
    sx = np.clip(np.rint(xs + field.offsets[..., 0]).astype(int), 0, frame.shape[1] - 1)
    sy = np.clip(np.rint(ys + field.offsets[..., 1]).astype(int), 0, frame.shape[0] - 1)
    for eye, lower in enumerate(LOWER_LIDS):
        old_opening = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(old_opening, [np.rint(eye_contour(mesh, eye)).astype(np.int32)], 1)
        lid = moved[list(lower), :2][np.argsort(moved[list(lower), 0])]
        lid_y = np.interp(xs, lid[:, 0], lid[:, 1], left=np.inf, right=np.inf)
        under = (ys > lid_y + 1) & (ys < lid_y + 0.3 * eye_width(moved, eye))
        assert (under & (old_opening[sy, sx] == 1)).sum() <= 2


def test_motion_takes_expressions_back_but_not_speech_or_blinks(rig):
    """Under a target below what the face shows, the brows', lids', cheeks', nose's and lip
    corners' AUs are taken back, to the target or to the resting reading, whichever is
    higher; the mouth's speech shapes and a blink stay as the face has them; a closing eye's
    lower lids stay up (AU06 and AU07 are taken back by what is left of its opening)."""
    from animator.motion.move import LOWERED, REST_READING, motion_aus

    zeros = np.zeros(N_AUS)
    current = with_au(np.full(N_AUS, 3.0), "AU45", 0.0)
    delta = motion_aus(current, zeros, rig)
    for k, name in enumerate(AU_NAMES):
        expected = REST_READING - 3.0 if k in LOWERED else 0.0
        assert delta[k] == pytest.approx(expected), name
    assert {AU_NAMES[k] for k in LOWERED} >= {"AU01", "AU02", "AU04", "AU05", "AU06", "AU12"}
    assert not {AU_NAMES[k] for k in LOWERED} & {"AU10", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45"}
    au12 = AU_NAMES.index("AU12")
    assert motion_aus(current, with_au(zeros, "AU12", 2.0), rig)[au12] == pytest.approx(-1.0)
    assert not np.any(motion_aus(np.full(N_AUS, REST_READING), zeros, rig))
    closing = with_au(current, "AU45", 3.0)
    delta = motion_aus(closing, with_au(zeros, "AU45", 3.0), rig)
    for name in ("AU06", "AU07"):
        assert delta[AU_NAMES.index(name)] == pytest.approx((REST_READING - 3.0) * (1 - rig.closure(3.0)))
    assert delta[au12] == pytest.approx(REST_READING - 3.0)


def test_relaxing_a_smile_keeps_the_lips_together_and_the_teeth_unsqueezed(face_image, rig):
    """The astronaut smiles (AU12 about 2) with her lips apart on her teeth. Taken back to
    neutral, her inner lips part no further than they do (the rig alone would part them: a
    smile presses the lips together as it pulls their corners, and the mouth would tear open
    and be painted where the face only relaxes), and her mouth narrows by at most
    TEETH_SQUEEZE of its width (the warp drags teeth with the lips; the rig alone would
    narrow it further); her cheeks come down and the picture reads a smaller smile."""
    from animator.motion.move import motion_aus
    from animator.motion.rig import LOWER_INNER_LIP, MOUTH_CORNERS, TEETH_SQUEEZE, UPPER_INNER_LIP

    mesh, current = read_face(face_image)
    au06, au12 = AU_NAMES.index("AU06"), AU_NAMES.index("AU12")
    delta = motion_aus(current, np.zeros(N_AUS), rig)
    assert delta[au12] < -1
    up, low, corners = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP), list(MOUTH_CORNERS)
    lowering = rig.offsets(np.minimum(delta, 0))
    assert (lowering[low, 1] - lowering[up, 1]).max() > 0.02     # by the rig alone, inter-ocular units

    def width(points: np.ndarray) -> float:
        return float(np.linalg.norm(np.subtract(*points[corners, :2])))

    free = rig.template + lowering
    assert 1 - width(free) / width(rig.template) > TEETH_SQUEEZE + 0.03
    moved = rig.displace(mesh, delta)
    gap = moved[low, 1] - moved[up, 1] - (mesh[low, 1] - mesh[up, 1])
    assert gap.max() < 0.25              # frame px (the face is a little turned), against ~1.5 by the rig alone
    assert TEETH_SQUEEZE - 0.02 < 1 - width(moved) / width(mesh) < TEETH_SQUEEZE + 0.01
    assert mouth_tear(mesh[:468], moved).parting < 0
    relaxed, _ = move_face(face_image, mesh, current, np.zeros(N_AUS), rig)
    after = read_face(relaxed)[1]
    assert after[au12] < current[au12] - 0.2 and after[au06] < current[au06] - 0.5


def test_a_closed_smile_relaxes_all_the_way(rig):
    """A smile whose lips are closed shows no teeth to squeeze: its corners are taken back as
    far as the rig takes them (its lips kept together), where the same smile with the lips
    apart on teeth narrows by TEETH_SQUEEZE of the mouth's width only."""
    from animator.motion.rig import LOWER_INNER_LIP, MOUTH_CORNERS, TEETH_SQUEEZE, UPPER_INNER_LIP, relaxed

    closed = rig.template.copy()          # the astronaut's, whose smile shows teeth: her lips closed
    closed[list(LOWER_INNER_LIP), 1] = closed[list(UPPER_INNER_LIP), 1]
    lowering = rig.offsets(one_au("AU12", -4.0))
    eyes, mouth = rig.eye_region, rig.lip_corner_region
    corners = list(MOUTH_CORNERS)

    def narrower(face: np.ndarray, offsets: np.ndarray) -> float:
        width = np.linalg.norm(np.subtract(*face[corners, :2]))
        return float(1 - np.linalg.norm(np.subtract(*(face + offsets)[corners, :2])) / width)

    assert narrower(closed, relaxed(closed, lowering, eyes, mouth)) == pytest.approx(narrower(closed, lowering))
    assert narrower(closed, lowering) > TEETH_SQUEEZE + 0.03
    parted = closed.copy()
    parted[list(LOWER_INNER_LIP), 1] += 0.1 * np.linalg.norm(np.subtract(*closed[corners, :2]))
    assert narrower(parted, relaxed(parted, lowering, eyes, mouth)) == pytest.approx(TEETH_SQUEEZE, abs=1e-3)


def test_a_relaxing_upper_lid_stops_at_the_top_of_its_iris(face_image, rig):
    """A wide eye taken back: the rig's units (set so that a raised lid reads back) would bring
    its upper lid down over the iris; it stops at the iris's top edge, where a resting lid
    sits. A mesh without iris points has no such stop."""
    from animator.motion.rig import IRISES

    big = cv2.resize(face_image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    mesh, _ = read_face(big)
    wide = mesh.copy()
    wide[:468] = rig.displace(mesh, one_au("AU05", 4.0))          # the eyeballs stay where they are
    relaxed, unguarded = rig.displace(wide, one_au("AU05", -5.0)), rig.displace(wide[:468], one_au("AU05", -5.0))
    for (centre, rim), lid in zip(IRISES, UPPER_LIDS):
        radius = np.linalg.norm(mesh[list(rim), :2] - mesh[centre, :2], axis=1).mean()
        across = mesh[list(lid), 0] - mesh[centre, 0]
        over = np.abs(across) < radius
        top = (mesh[centre, 1] - np.sqrt(np.maximum(radius ** 2 - across ** 2, 0)))[over]
        assert (wide[list(lid), 1][over] < top - 5).all()
        assert np.abs(relaxed[list(lid), 1][over] - top).max() < 1.5
        assert (unguarded[list(lid), 1][over] > top + 2).all()


def test_a_lid_raise_fades_as_the_face_closes_its_eyes(rig):
    """AU05 lifts a lid by what is left of the eye's opening: fully on an open eye, not at all
    on one the face has shut, so a wide-eyed target over an actor's blink keeps the blink
    (rather than lifting the lid off a closed eye and painting an eyeball under it). The other
    AUs are added as asked."""
    from animator.motion.move import motion_aus

    target, au05 = parse_target("surprise"), AU_NAMES.index("AU05")
    np.testing.assert_allclose(motion_aus(np.zeros(N_AUS), target, rig), target)
    face = posed(rig.template, 0.0, 100.0, (300.0, 200.0))
    for blink in (1.0, 3.0, 5.0):
        current = with_au(np.zeros(N_AUS), "AU45", blink)
        delta = motion_aus(current, target, rig)
        assert delta[au05] == pytest.approx(target[au05] * (1 - rig.closure(blink)))
        np.testing.assert_allclose(np.delete(delta, au05), np.delete(target, au05))
    shut = motion_aus(with_au(np.zeros(N_AUS), "AU45", 5.0), target, rig)
    lids = [i for contour in UPPER_LIDS + LOWER_LIDS for i in contour]
    np.testing.assert_allclose(rig.displace(face, shut)[lids], face[lids], atol=1e-9)


def test_the_render_mesh_follows_a_real_blink():
    """The meshes the motion stage warps from (``animator render``'s smoothed tracks) keep the
    example clip's own blink (frames 25-28): each eye's lid gap stays within a tenth of its
    open gap of what the landmark model found (0.4 of it, eyes drawn open on a shut eye, when
    the whole mesh was low-passed at 2 Hz)."""
    from pipelines.render import follow_faces, smoothed

    clip = Path(__file__).resolve().parents[1] / "examples" / "single_face.mp4"
    found, _ = follow_faces(clip, None, 1.2, quiet=True)
    raw = np.stack([o.mesh for o in found.select("largest").track(0)]).astype(np.float64)
    smooth = np.stack([o.mesh for o in smoothed(found, "largest", smooth_mesh=True).track(0)])

    def gaps(meshes: np.ndarray) -> np.ndarray:
        return np.stack([(meshes[:, list(lower), 1] - meshes[:, list(upper), 1]).mean(1)
                         for upper, lower in zip(UPPER_LIDS, LOWER_LIDS)], 1)

    open_gap = gaps(raw)[:20].mean(0)
    assert gaps(raw)[25:29].min(0).max() < 0.3 * open_gap.min()     # the clip does blink
    assert (np.abs(gaps(smooth) - gaps(raw)) < 0.1 * open_gap).all()


def test_lids_slide_over_an_eyeball_that_stays(rig):
    """Half closed or raised, the field shows the eye where it was inside the new opening:
    neither squashed under a lowering lid nor stretched under a rising one."""
    face = posed(rig.template, 0.0, 100.0, (300.0, 200.0))
    for name, value in (("AU45", 3.0), ("AU05", 5.0)):
        moved = rig.displace(face, one_au(name, value))[:, :2]
        field = face_field((400, 600, 3), face[:, :2], moved, mouth_tear(face[:, :2], moved))
        x0, y0 = field.box[:2]
        for upper, lower in zip(UPPER_LIDS, LOWER_LIDS):
            inside = np.rint((0.7 * moved[list(upper[2:5])] + 0.3 * moved[list(lower[2:5])])).astype(int)
            assert np.abs(field.offsets[inside[:, 1] - y0, inside[:, 0] - x0]).max() < 0.5
            assert np.abs(moved[list(upper), 1] - face[list(upper), 1]).max() > 2  # the lid moved


def eye_aperture(mesh: np.ndarray) -> float:
    """Both eyes' mean lid gap over their mean width (frame px ratio)."""
    gaps = [(mesh[list(low), 1] - mesh[list(up), 1]).mean()
            / np.linalg.norm(mesh[up[0], :2] - mesh[up[-1], :2]) for up, low in zip(UPPER_LIDS, LOWER_LIDS)]
    return float(np.mean(gaps))


def test_a_blink_closes_the_eyes_the_landmark_model_sees(face_image, rig):
    """On a real photo, a blink covers the eye with the lid: the landmark model re-run on the
    output finds the lids much closer than on the input, and the eye's inside (dark iris
    pixels) has gone from between them."""
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    mesh, current = read_face(face_image)
    out, _ = move_face(face_image, mesh, current, with_au(current, "AU45", 5.0), rig)
    detector, landmarker = FaceDetector(), MeshLandmarker()
    again = landmarker.landmarks(out, detector.detect(out)[0])
    assert eye_aperture(again) < 0.5 * eye_aperture(mesh)
    iris = np.rint(mesh[468, :2]).astype(int)  # the right iris centre: under the lid now
    assert out[iris[1], iris[0]].mean() > face_image[iris[1], iris[0]].mean() + 20


def test_a_narrowing_slit_darkens_into_the_lash_line(face_image, rig, monkeypatch):
    """A blink at 4 leaves a slit a few percent of the eye's width high; on real eyes read at
    4 the lashes, pointing down, hide it. The slit is painted at least half way from what the
    eye showed there towards the lash line's colour."""
    from animator.motion import eyes
    from animator.motion.move import motion_aus

    mesh, current = read_face(face_image)
    target = with_au(current, "AU45", 4.0)
    moved = rig.displace(mesh, motion_aus(current, target, rig))

    def slit_brightness(image: np.ndarray, eye: int) -> float:
        opening = eyes.eye_contour(moved, eye)
        (x0, y0), (x1, y1) = np.floor(opening.min(0)).astype(int), np.ceil(opening.max(0)).astype(int) + 1
        inside = eyes.polygon_coverage(opening, (x0, y0), (y1 - y0, x1 - x0)) > 0.5
        return float((image[y0:y1, x0:x1].astype(float) @ [0.299, 0.587, 0.114])[inside].mean())

    painted, _ = move_face(face_image, mesh, current, target, rig)
    monkeypatch.setattr(eyes, "SHUT_FROM", eyes.SHUT_FULL * 1.01)  # only a shut eye painted
    shown, _ = move_face(face_image, mesh, current, target, rig)
    for eye in range(2):
        lashes = float(eyes.lash_colour(face_image, mesh, eye) @ [0.299, 0.587, 0.114])
        assert abs(slit_brightness(painted, eye) - lashes) < 0.5 * abs(slit_brightness(shown, eye) - lashes)


def test_a_raised_lid_uncovers_white_above_a_round_iris(face_image, rig):
    """On a real photo, AU05 uncovers the eyeball: where the upper lid was, the output shows
    white (brighter than the lid margin there before) beside the iris; the iris's centre does
    not move."""
    from animator.motion.eyes import iris_circle, eye_width
    from animator.motion.move import motion_aus

    photo = cv2.resize(face_image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # eyes 40 px wide
    mesh, current = read_face(photo)
    target = with_au(current, "AU05", 5.0)
    out, field = move_face(photo, mesh, current, target, rig)
    moved = rig.displace(mesh, motion_aus(current, target, rig))
    luma = np.array([0.299, 0.587, 0.114])
    for eye, upper in enumerate(UPPER_LIDS):
        centre, radius = iris_circle(mesh, eye, eye_width(mesh, eye))
        x0, y0 = field.box[:2]
        held = np.rint(centre).astype(int)
        assert np.abs(field.offsets[held[1] - y0, held[0] - x0]).max() < 0.5
        # where the upper lid was, at every tenth of the way along it
        old = np.array([np.interp(np.linspace(0, 6, 61), np.arange(7), mesh[list(upper), k]) for k in (0, 1)]).T
        new = np.array([np.interp(np.linspace(0, 6, 61), np.arange(7), moved[list(upper), k]) for k in (0, 1)]).T
        band = np.rint(old + 0.3 * (new - old)).astype(int)   # uncovered, near the old margin
        grew = old[:, 1] - new[:, 1] > 3
        off_centre = np.linalg.norm(band - centre, axis=1)
        beside = grew & (off_centre > 1.3 * radius)
        assert beside.any()
        white = out[band[beside, 1], band[beside, 0]] @ luma
        assert np.median(white - photo[band[beside, 1], band[beside, 0]] @ luma) > 40  # was the lid's margin
    # a mesh without iris points (another landmark backend) gets a typical iris, the same white
    plain, _ = move_face(photo, mesh[:468], current, target, rig)
    assert np.abs(plain.astype(int) - out.astype(int)).mean() < 1.0


SKIN, WHITE, BLUE = np.array([200, 160, 140]), np.array([235, 232, 228]), np.array([60, 90, 140])


def drawn_eyes(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A flat skin picture with the ``face``'s (468, 3) eyes drawn in: white, and a blue iris
    whose top the upper lid hides; and the face's 478-point mesh (its iris points added)."""
    from animator.motion.eyes import eye_contour, eye_width

    image = np.zeros((500, 600, 3), np.uint8) + SKIN.astype(np.uint8)
    irises = []
    ys, xs = np.mgrid[0:500, 0:600]
    for eye in range(2):
        opening = eye_contour(face, eye)
        centre, radius = opening.mean(0) - (0, 0.1 * eye_width(face, eye)), 0.2 * eye_width(face, eye)
        eye_mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(eye_mask, [np.rint(opening).astype(np.int32)], 1)
        in_iris = np.hypot(xs - centre[0], ys - centre[1]) < radius
        image[(eye_mask == 1) & ~in_iris] = WHITE
        image[(eye_mask == 1) & in_iris] = BLUE
        ring = centre + radius * np.column_stack([np.cos(np.arange(4) * np.pi / 2), np.sin(np.arange(4) * np.pi / 2)])
        irises += [np.r_[centre, 0.0], *np.c_[ring, np.zeros(4)]]
        assert (opening[1:8, 1] > centre[1] - radius + 2).all()  # the lid hides the iris's top
    return image, np.vstack([face, irises])


def raised_lids(face: np.ndarray, share: float) -> np.ndarray:
    """``face`` with both upper lids raised by ``share`` of the eye's width."""
    from animator.motion.eyes import eye_width

    raised = face.copy()
    for upper in UPPER_LIDS:
        raised[list(upper), 1] -= share * eye_width(face, 0)
    return raised


def test_the_uncovered_top_of_an_iris_is_painted_as_iris(rig):
    """A drawn eye whose upper lid hides the top of its iris: raised, the lid uncovers the
    iris's circle in the iris's colour and the white beside it in the white's."""
    from animator.motion.eyes import eye_width, paint_eyes

    face = posed(rig.template, 0.0, 300.0, (300.0, 250.0))
    image, mesh = drawn_eyes(face)
    raised = raised_lids(face, 0.3)
    out = paint_eyes(image, image.copy(), mesh, raised, lambda: 0.0)   # a sharp drawing
    for eye, upper in enumerate(UPPER_LIDS):
        centre, radius = mesh[468 + 5 * eye, :2], 0.2 * eye_width(face, eye)
        top = np.rint(centre - (0, radius - 2)).astype(int)           # the iris's top, uncovered
        assert np.abs(out[top[1], top[0]].astype(int) - BLUE).max() < 45
        middle = list(upper)[1]                                      # beside the iris, uncovered
        spot = np.rint((face[middle, :2] + raised[middle, :2]) / 2).astype(int)
        assert np.abs(out[spot[1], spot[0]].astype(int) - WHITE).max() < 60
        assert np.abs(image[spot[1], spot[0]].astype(int) - SKIN).max() == 0  # was lid


def paint_raised(image: np.ndarray, mesh: np.ndarray, raised: np.ndarray, **settings: float) -> np.ndarray:
    """The drawn eyes (a sharp picture) painted under lids ``raised``, with the eye paint's
    ``settings`` (names in animator.motion.eyes) changed."""
    from unittest import mock

    from animator.motion import eyes

    with mock.patch.multiple(eyes, **settings):
        return eyes.paint_eyes(image, image.copy(), mesh, raised, lambda: 0.0)


def beside_iris(shape: tuple[int, ...], mesh: np.ndarray, eye: int, width: float, margin: float = 2.0) -> np.ndarray:
    """(h, w) bool: the pixels more than ``margin`` px outside :func:`drawn_eyes`' iris of ``eye``."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    centre = mesh[468 + 5 * eye, :2]
    return np.hypot(xs - centre[0], ys - centre[1]) > 0.2 * width + margin


def test_a_raised_lid_lights_the_eyes_white_and_not_its_iris(rig):
    """Out of the lid's shadow, a widened eye's white (held and painted alike) is lit by
    ``WHITE_LIGHT`` (here 0.4) x the share of the opening uncovered; the iris and everything
    outside the new opening stay as they were."""
    from animator.motion import eyes
    from animator.motion.mouth import polygon_area

    face = posed(rig.template, 0.0, 300.0, (300.0, 250.0))
    image, mesh = drawn_eyes(face)
    image[(image == WHITE).all(-1)] = (150, 148, 146)                 # a white in shadow, lit below 255
    raised = raised_lids(face, 0.3)
    lit, unlit = (paint_raised(image, mesh, raised, WHITE_LIGHT=light) for light in (0.4, 0.0))
    for eye in range(2):
        width = eyes.eye_width(face, eye)
        share = 1 - polygon_area(eyes.eye_contour(face, eye)) / polygon_area(eyes.eye_contour(raised, eye))
        opening = polygon_mask(image.shape, eyes.eye_contour(raised, eye))
        away = cv2.distanceTransform(opening.astype(np.uint8), cv2.DIST_L2, 3) > 4 * eyes.SHADOW_REACH * width
        white = away & beside_iris(image.shape, mesh, eye, width)
        assert white.sum() > 50
        ratio = luma(lit)[white] / luma(unlit)[white]
        assert np.median(ratio) == pytest.approx(1 + 0.4 * share, abs=0.02)
        iris = ~beside_iris(image.shape, mesh, eye, width, margin=-2.0)     # 2 px inside its rim
        assert np.array_equal(lit[iris & opening], unlit[iris & opening])
    openings = [polygon_mask(image.shape, eyes.eye_contour(raised, eye), grow=2) for eye in range(2)]
    outside = ~(openings[0] | openings[1])
    assert np.array_equal(lit[outside], unlit[outside])


def test_below_measures_the_distance_under_a_lid_line():
    """``below``: 0 on and above a polyline (within its ends), the distance under it below (a
    slanted line too)."""
    from animator.motion.eyes import below

    line = np.array([[2.0, 10.0], [30.0, 10.0], [58.0, 24.0]])
    distance = below(line, (40, 60))
    assert distance[:10, 2:59].max() == 0
    assert distance[20, 15] == pytest.approx(10, abs=0.5)
    assert distance[30, 50] == pytest.approx((30 - 20) * 28 / np.hypot(28, 14), abs=0.6)   # under the slant
    assert distance[15, 50] == 0                                                          # above the slant


def test_a_raised_lids_lashes_shade_the_eyeball_under_it(rig):
    """Right under a raised upper lid the painted eyeball is darker by about ``UPPER_SHADOW``
    (as under real wide eyes' lashes), fading over ``UPPER_SHADOW_REACH`` of the eye's width:
    a few reaches down it is as without the shadow."""
    from animator.motion import eyes

    face = posed(rig.template, 0.0, 300.0, (300.0, 250.0))
    image, mesh = drawn_eyes(face)
    raised = raised_lids(face, 0.3)
    shadow = eyes.UPPER_SHADOW
    shaded, plain = (paint_raised(image, mesh, raised, UPPER_SHADOW=value) for value in (shadow, 0.0))
    for eye in range(2):
        width = eyes.eye_width(face, eye)
        reach = eyes.UPPER_SHADOW_REACH * width
        under = eyes.below(eyes.eye_contour(raised, eye)[:eyes.CONTOUR_INNER + 1], image.shape[:2])
        white = polygon_mask(image.shape, eyes.eye_contour(raised, eye)) & beside_iris(image.shape, mesh, eye, width)
        ratio = luma(shaded) / luma(plain)
        near = white & (under >= 0.5 * reach) & (under <= 1.5 * reach)
        deep = white & (under > 5 * reach)
        assert near.sum() > 20 and deep.sum() > 20
        assert np.median(ratio[near]) == pytest.approx(np.median(1 - shadow * np.exp(-under[near] / reach)), abs=0.03)
        assert np.median(ratio[near]) < 0.9
        assert np.median(ratio[deep]) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_edge_blur_measures_how_soft_the_picture_is(rig, sigma):
    """The drawn eyes, sharp, measure about a sharp edge's blur; blurred by ``sigma``, about
    that blur added to it (blurs add in quadrature)."""
    from animator.motion.eyes import eye_contour, eye_width
    from animator.motion.softness import SHARP_EDGE, edge_blur

    face = posed(rig.template, 0.0, 300.0, (300.0, 250.0))
    image, _ = drawn_eyes(face)
    soft = cv2.GaussianBlur(image, (0, 0), sigma)
    for eye in range(2):
        contour, width = eye_contour(face, eye), eye_width(face, eye)
        assert edge_blur(image, contour, width) == pytest.approx(SHARP_EDGE, rel=0.2)
        assert edge_blur(soft, contour, width) == pytest.approx(np.hypot(sigma, SHARP_EDGE), rel=0.2)


def steepest(image: np.ndarray, where: np.ndarray) -> float:
    """The picture's steepest brightness rise (99th percentile, levels per px) ``where``."""
    rise_y, rise_x = np.gradient(luma(image))
    return float(np.percentile(np.hypot(rise_x, rise_y)[where], 99))


def polygon_mask(shape: tuple[int, ...], polygon: np.ndarray, grow: int = 0) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.rint(polygon).astype(np.int32)], 1)
    return (cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) if grow else mask) > 0


def test_a_raised_lid_is_painted_as_soft_as_the_picture(rig, monkeypatch):
    """The eyeball a raised lid uncovers is painted no sharper than the picture around it
    (a crisp painted eye on a soft photo reads as a sticker); on a sharp picture the paint is
    as it was. (Unlit: lighting the white raises its contrast, which the steepest rise
    measured here cannot tell from sharpness; its own test is above.)"""
    from animator.motion import eyes
    from animator.motion.eyes import eye_contour, paint_eyes, picture_blur

    monkeypatch.setattr(eyes, "WHITE_LIGHT", 0.0)

    face = posed(rig.template, 0.0, 300.0, (300.0, 250.0))
    sharp, mesh = drawn_eyes(face)
    soft = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    raised = raised_lids(face, 0.3)
    assert picture_blur(sharp, mesh) == 0.0 and picture_blur(soft, mesh) > 2.0
    painted = paint_eyes(soft, soft.copy(), mesh, raised, lambda: picture_blur(soft, mesh))
    crisp = paint_eyes(soft, soft.copy(), mesh, raised, lambda: 0.0)
    for eye in range(2):
        grown = polygon_mask(sharp.shape, eye_contour(raised, eye)) & ~polygon_mask(sharp.shape, eye_contour(face, eye))
        near = cv2.dilate(grown.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0   # the new part and its edge
        source = steepest(soft, polygon_mask(sharp.shape, eye_contour(face, eye), grow=4))
        assert steepest(crisp, near) > 2 * source
        assert steepest(painted, near) < 1.3 * source


def test_a_shut_eyes_lash_line_keeps_hiding_its_slit_on_a_soft_picture(rig):
    """Shut to a slit thinner than the picture's blur, the eye's lash line still covers the
    slit in full (blurring it as a whole would let the squeezed white show through)."""
    from animator.motion.eyes import eye_width, lash_colour, paint_eyes, picture_blur

    face = posed(rig.template, 0.0, 300.0, (300.0, 250.0))
    sharp, mesh = drawn_eyes(face)
    soft = cv2.GaussianBlur(sharp, (0, 0), 3.0)
    shut = face.copy()
    for upper, lower in zip(UPPER_LIDS, LOWER_LIDS):
        shut[list(upper), :2] = shut[list(lower), :2] - (0.0, 0.02 * eye_width(face, 0))
    out = paint_eyes(soft, soft.copy(), mesh, shut, lambda: picture_blur(soft, mesh))
    for eye, (upper, lower) in enumerate(zip(UPPER_LIDS, LOWER_LIDS)):
        lashes = lash_colour(soft, mesh, eye) @ np.array([0.299, 0.587, 0.114])
        middle = np.rint((shut[upper[3], :2] + shut[lower[3], :2]) / 2).astype(int)
        assert abs(luma(out)[middle[1], middle[0]] - lashes) < 3


def test_an_opened_mouth_is_painted_as_soft_as_the_picture(face_image, rig):
    """On the photo upscaled 2x and blurred by 3 px (as soft as the held-out photos the
    read-back uses), a mouth dropped open is painted as blurred as the photo measures at its
    eyes (its teeth against its cavity have more contrast than the photo's lips, so it is the
    blur that is compared, not the steepness); drawn crisp, it measures sharp."""
    from animator.motion.eyes import eye_contour, eye_width, picture_blur
    from animator.motion.mouth import INNER_LIPS, MOUTH_CORNERS, fill_mouth
    from animator.motion.softness import edge_blur

    soft = cv2.GaussianBlur(cv2.resize(face_image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC), (0, 0), 3.0)
    mesh, _ = read_face(soft)
    source = mesh[:468, :2]
    opened = rig.displace(mesh[:468], one_au("AU26", 5.0))[:, :2]
    eyes = np.mean([edge_blur(soft, eye_contour(mesh, eye), eye_width(mesh, eye)) for eye in range(2)])
    mouth, width = opened[list(INNER_LIPS)], float(np.linalg.norm(np.subtract(*opened[list(MOUTH_CORNERS)])))
    crisp = fill_mouth(soft.copy(), opened, mouth_tear(source, opened), lambda: 0.0)
    painted = fill_mouth(soft.copy(), opened, mouth_tear(source, opened), lambda: picture_blur(soft, mesh))
    assert edge_blur(crisp, mouth, width) < 0.6 * eyes
    assert edge_blur(painted, mouth, width) == pytest.approx(eyes, rel=0.25)


def test_brows_and_lids_move_as_facs_says(rig):
    """AU01/02 raise the brows without dragging the lid margins down; AU04 lowers the brows and
    draws their inner ends towards the midline; AU05 raises the upper lids (a blink-free rig
    must not hold them in place) and lowers the lower lids a little, as the clips' wide eyes do."""
    face = posed(rig.template, 0.0, 100.0, (300.0, 200.0))
    lids = [i for upper in UPPER_LIDS for i in upper]
    for name in ("AU01", "AU02"):
        moved = rig.displace(face, one_au(name, 4.0))
        brows = list(MESH.brow_inner[0]) + list(MESH.brow_outer[0])
        assert (moved[brows, 1] < face[brows, 1]).all()
        np.testing.assert_allclose(moved[lids], face[lids], atol=1e-9)
    lowered = rig.displace(face, one_au("AU04", 4.0))
    inner = [MESH.brow_inner[0][0], MESH.brow_inner[1][0]]
    assert (lowered[inner, 1] > face[inner, 1] + 3).all()                    # down, frame px
    assert lowered[inner[1], 0] - lowered[inner[0], 0] < face[inner[1], 0] - face[inner[0], 0] - 3  # together
    widened = rig.displace(face, one_au("AU05", 4.0))
    assert (widened[[159, 386], 1] < face[[159, 386], 1] - 2).all()   # upper lids up
    assert (widened[[145, 374], 1] > face[[145, 374], 1] + 1).all()   # lower lids a little down


def luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def down_the_mouth(image: np.ndarray, moved: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """The luma of ``image`` down the middle of the mouth, at ``shares`` of the way from the
    moved upper inner lip (13) to the lower (14)."""
    points = np.rint(moved[13, :2] + shares[:, None] * (moved[14, :2] - moved[13, :2])).astype(int)
    return luma(image)[points[:, 1], points[:, 0]]


@pytest.mark.parametrize("roll", [0.0, 30.0])
def test_a_closed_mouth_opened_shows_a_row_of_teeth_and_a_dark_inside(face_image, rig, roll):
    """A closed mouth (the photo's inner lips put together) dropped open at 5: under the upper
    lip's middle a row of teeth, with a darker gap between the front teeth and fading into the
    dark towards the corners (not copying the lip's contour down the opening's sides); the
    lower middle of the opening is dark. The same with the head rolled: the paint turns with
    the mouth."""
    from animator.motion.mouth import MOUTH_CORNERS, fill_mouth
    from animator.motion.rig import LOWER_INNER_LIP, UPPER_INNER_LIP

    turn = cv2.getRotationMatrix2D((face_image.shape[1] / 2, face_image.shape[0] / 2), roll, 1.0)
    face_image = cv2.warpAffine(face_image, turn, face_image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    mesh, _ = read_face(face_image)
    closed = mesh[:468, :2].copy()
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    closed[up] = closed[low] = (closed[up] + closed[low]) / 2
    opened = rig.displace(np.column_stack([closed, mesh[:468, 2]]), one_au("AU26", 5.0))[:, :2]
    out = luma(fill_mouth(face_image.copy(), opened, mouth_tear(closed, opened), lambda: 0.0))
    top, bottom = opened[13], opened[14]
    along = opened[MOUTH_CORNERS[1]] - opened[MOUTH_CORNERS[0]]
    half = 0.5 * float(np.linalg.norm(opened[308] - opened[78])) * along / np.linalg.norm(along)

    def at(point: np.ndarray) -> float:  # bilinear
        return float(cv2.getRectSubPix(out, (1, 1), (float(point[0]), float(point[1])))[0, 0])

    width = float(np.linalg.norm(along))
    teeth = top + (bottom - top) / np.linalg.norm(bottom - top) * 0.06 * width  # half-way down the row
    row = np.array([at(teeth + f * half) for f in np.linspace(-0.3, 0.3, 25)])  # across the front teeth
    inside = at(top + (bottom - top) * 0.6)
    assert np.median(row) > inside + 60                     # teeth, not cavity
    assert row[11:14].min() < np.median(row) - 5            # the gap between the front teeth
    side = opened[78] + 0.5 * (opened[95] - opened[78]) + 0.15 * half
    assert at(side) < np.median(row) - 60                   # no teeth down the opening's side


def test_a_wide_open_mouth_tears_under_its_upper_teeth(rig):
    """Opened further, a mouth already open wider than a row of upper teeth tears that row's
    height below the upper lip (the tongue and lower teeth go with the jaw); a narrow opening
    tears at its middle."""
    from animator.motion.mouth import MOUTH_CORNERS, TEETH_HEIGHT
    from animator.motion.rig import LOWER_INNER_LIP, UPPER_INNER_LIP

    face = posed(rig.template, 0.0, 100.0, (300.0, 200.0))[:, :2]
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    width = float(np.linalg.norm(np.subtract(*face[list(MOUTH_CORNERS)])))
    for opening, teeth_row in ((0.4 * width, True), (0.1 * width, False)):
        source = face.copy()
        source[low, 1] = source[up, 1] + opening
        gap = float(np.linalg.norm(source[14] - source[13]))
        torn_at = TEETH_HEIGHT * width if teeth_row else gap / 2
        target = source.copy()
        target[low, 1] += 20.0
        sources = mouth_tear(source, target).sources
        middle = np.flatnonzero(np.array(up) == 13)[0]  # the pair in the middle of the lips
        assert np.linalg.norm(sources[middle] - source[13]) == pytest.approx(torn_at, rel=1e-6)


def test_a_raised_upper_lip_bares_a_narrow_opening_and_tears_a_wide_one(rig):
    """An upper lip raised 8 px over a mouth open two rows of teeth (a toothy smile) leaves
    what it showed in place, nothing torn; over a mouth open four rows (its inside more than its
    teeth) it tears as before, for :func:`fill_mouth` to paint teeth under the lip."""
    from animator.motion.mouth import MOUTH_CORNERS, TEARS_FROM, TEETH_HEIGHT
    from animator.motion.rig import LOWER_INNER_LIP, UPPER_INNER_LIP

    face = posed(rig.template, 0.0, 100.0, (300.0, 200.0))[:, :2]
    up, low = list(UPPER_INNER_LIP), list(LOWER_INNER_LIP)
    width = float(np.linalg.norm(np.subtract(*face[list(MOUTH_CORNERS)])))
    for rows, torn in ((2.0, False), (4.0, True)):
        source = face.copy()
        source[low, 1] = source[up, 1] + rows * TEETH_HEIGHT * width
        target = source.copy()
        target[up, 1] -= 8.0
        parting = mouth_tear(source, target).parting
        assert (parting > TEARS_FROM) == torn, (rows, parting)


def test_an_open_mouth_opened_further_keeps_its_own_teeth_and_tears_between_them(face_image, rig):
    """The photo's smile shows its upper teeth. Dropped open at 5, they move with the upper lip
    (the same pixels under the lip's middle), the middle of the opening is a dark, even cavity
    (the teeth are not stretched into streaks down it)."""
    mesh, current = read_face(face_image)
    target = with_au(current, "AU26", 5.0)
    out, _ = move_face(face_image, mesh, current, target, rig)
    moved = rig.displace(mesh, np.maximum(target - current, 0))
    before, after = luma(face_image), luma(out)
    tooth = mesh[13, :2] + 0.15 * (mesh[14, :2] - mesh[13, :2])  # the source's front teeth
    carried = np.rint(tooth + moved[13, :2] - mesh[13, :2]).astype(int)
    source_tooth = before[int(round(tooth[1])) - 1:int(round(tooth[1])) + 2, int(round(tooth[0])) - 1:int(round(tooth[0])) + 2]
    edited_tooth = after[carried[1] - 1:carried[1] + 2, carried[0] - 1:carried[0] + 2]
    assert source_tooth.mean() > 150 and abs(edited_tooth.mean() - source_tooth.mean()) < 25
    values = down_the_mouth(out, moved, np.linspace(0.35, 0.65, 9))
    assert values.max() < 90 and values.std() < 12


@pytest.mark.parametrize("name", ["AU05", "AU07", "AU26"])
def test_a_slow_ramp_changes_the_face_smoothly(face_image, rig, name):
    """An AU rising slowly from the face's own value: no step of the ramp changes the face
    much more than the steps around it (:mod:`pipelines.motion_ramps`). What the motion stage
    does only past a threshold fades in instead: the eyeball held still once the lids move (a
    lid tightened by 0.4 jumped its iris's edge), the eyeball painted as a lid rises (its band
    past the old margin appeared at once), a mouth's tear painted as the lips part (a dark band
    across a smile's teeth); those steps changed the face 3.5 to 9 times as much as their
    neighbours."""
    from pipelines.motion_ramps import jumps, ramp_steps

    mesh, current = read_face(face_image)
    steps = ramp_steps(face_image, mesh, current, name, rig, np.arange(0.0, 0.8, 0.05))
    assert (jumps(steps) < 2).all(), steps.round(3)


def test_motion_ramps_reports_each_aus_largest_jump(face_image, tmp_path, capsys):
    from animator.media.images import write_image
    from pipelines.motion_ramps import main

    photo = tmp_path / "face.png"
    write_image(photo, face_image)
    assert main([str(photo), "--aus", "AU26", "--to", "0.3", "--step", "0.1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["inputs"][str(photo)]) == {"AU26"}
    assert 0 < report["inputs"][str(photo)]["AU26"]["jump"] < 2
    assert main([str(photo), "--aus", "AU99"]) == 1
    assert capsys.readouterr().err.strip() == "error: --aus: unknown AU99"


@pytest.mark.parametrize("name, value, teeth", [("AU10", 2.5, 90), ("AU25", 3.0, 150)])
def test_a_lip_leaving_the_teeth_bares_them(face_image, rig, name, value, teeth):
    """The upper teeth sit in the skull and the lower ones in the jaw: an upper lip raised
    (AU10) or a lower lip parted from them (AU25, the jaw still) over the photo's smile bares
    more of them, with no dark band torn across them. (When what the mouth showed went with
    its lips, the opening tore between the teeth's halves: luma 36 and 114 at the darkest.)"""
    from animator.motion.move import motion_aus

    mesh, current = read_face(face_image)
    target = with_au(current, name, value)
    out, _ = move_face(face_image, mesh, current, target, rig)
    moved = rig.displace(mesh, motion_aus(current, target, rig))
    assert down_the_mouth(out, moved, np.linspace(0.15, 0.85, 8)).min() > teeth


def synthetic_clips(basis: np.ndarray, template: np.ndarray, rng) -> list[Clip]:
    clips = []
    for c in range(4):
        aus = rng.uniform(0, 3, (60, N_AUS))
        faces = template[None] + np.tensordot(aus, basis, axes=1) + rng.normal(0, 1e-3, (60,) + template.shape)
        clips.append(Clip(f"c{c}", faces, aus))
    return clips


def test_fitting_recovers_a_known_rig_within_its_supports(rig):
    rng = np.random.default_rng(0)
    support = support_mask(rig.template)
    truth = rng.normal(0, 0.02, rig.basis.shape) * support[..., None]
    fitted = fit_basis(synthetic_clips(truth, rig.template, rng), support, ridge=1e-4)
    assert np.abs(fitted - truth).max() < 2e-3
    assert not (np.abs(fitted).sum(-1) > 0)[~support].any()


def smallest_area_share(basis: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(17,) per AU at intensity 5: the smallest area share of a template mesh triangle that
    does not span an eye or the mouth nor lie between the brows (that skin may bunch)."""
    from scipy.spatial import Delaunay

    from animator.motion.rig import LOWER_INNER_LIP, UPPER_INNER_LIP

    plane = template[:, :2]
    triangles = Delaunay(plane).simplices
    pairs = [(set(u), set(lo))
             for u, lo in zip(UPPER_LIDS + (UPPER_INNER_LIP,), LOWER_LIDS + (LOWER_INNER_LIP,))]
    triangles = np.array([t for t in triangles if not any(set(t) & u and set(t) & lo for u, lo in pairs)])
    centroid = plane[triangles].mean(1)
    triangles = triangles[~REGIONS["between_brows"](centroid[:, 0], centroid[:, 1])]

    def areas(points):
        a, b, c = (points[triangles[:, k]] for k in range(3))
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    return np.array([(areas(plane + 5 * basis[k, :, :2]) / areas(plane)).min() for k in range(len(basis))])


def test_unfolding_stops_a_brow_running_into_the_forehead(rig):
    support = support_mask(rig.template)
    assert smallest_area_share(rig.basis, rig.template).min() >= MIN_AREA - 0.02  # the shipped rig
    folding = np.zeros_like(rig.basis)
    folding[AU_NAMES.index("AU01"), 105, 1] = -0.06   # a brow point 0.3 up at 5: past its forehead row
    assert smallest_area_share(folding, rig.template)[AU_NAMES.index("AU01")] < 0
    fixed = unfold(folding, rig.template, support)
    assert smallest_area_share(fixed, rig.template)[AU_NAMES.index("AU01")] >= MIN_AREA - 0.02
    assert fixed[AU_NAMES.index("AU01"), 105, 1] < -0.02                       # the brow still rises
    assert not (np.abs(fixed).sum(-1) > 0)[~support].any()


def test_symmetrise_mirrors_left_and_right(rig):
    mirror = mirror_index(rig.template)
    assert mirror[61] == 291 and mirror[33] == 263 and mirror[1] == 1
    basis = np.zeros_like(rig.basis)
    basis[0, 61] = (-1.0, -2.0, 0.0)
    sym = symmetrise(basis, mirror)
    np.testing.assert_allclose(sym[0, 61], (-0.5, -1.0, 0.0))
    np.testing.assert_allclose(sym[0, 291], (0.5, -1.0, 0.0))


# painted eyeballs; a lit lid over a dark slit; her smile and cheeks taken back, nothing added
@pytest.mark.parametrize("spec", ["surprise", "AU45=4", "neutral"])
def test_a_still_face_under_a_constant_target_does_not_shimmer(face_image, rig, tmp_path, spec):
    """The motion stage fed as in ``animator render`` (smoothed tracks, smoothed AUs): the
    output's frame-to-frame change inside the face is not larger than the input's. (Fed the
    raw meshes instead, the landmarks' jitter makes it about 35 % larger at this noise level.)"""
    import cv2

    from pipelines.render import FaceTargets, move_faces, track_faces
    from test_media import make_video

    rng = np.random.default_rng(1)
    still = cv2.resize(face_image, (256, 256), interpolation=cv2.INTER_AREA)
    frames = [np.clip(still + rng.normal(0, 1, still.shape), 0, 255).astype(np.uint8) for _ in range(10)]
    clip = make_video(tmp_path / "still.mkv", frames, codec="ffv1")
    tracks, times = track_faces(clip, None, None, "largest", quiet=True, smooth_mesh=True)
    target = parse_target(spec)
    targets = FaceTargets("absolute", np.repeat(target[None], len(times), 0), tracks, actor=True)
    from animator.media.decode import iter_frames

    inputs, outputs, boxes = [], [], []
    for frame in iter_frames(clip):
        observed = tracks.for_frame(frame.index)
        moved, fields = move_faces(frame.rgb, [o.mesh for o in observed],
                                   [targets.actor(o.frame_index, o.track_id) for o in observed],
                                   [target] * len(observed), rig, [None] * len(observed))
        assert fields, "the face moved"
        inputs.append(frame.rgb.astype(np.float32))
        outputs.append(moved.astype(np.float32))
        boxes.append(observed[0].box)
    x0, y0, x1, y1 = np.round(np.mean(boxes, 0)).astype(int)
    change = lambda seq: np.mean([np.abs(b - a)[y0:y1, x0:x1].mean() for a, b in zip(seq, seq[1:])])  # noqa: E731
    assert change(outputs) <= change(inputs)


def test_model_configs_record_the_motion_choice():
    from animator.model.checkpoint import ModelConfig

    assert ModelConfig().motion == "warp"
    data = ModelConfig(motion="none").to_json()
    assert ModelConfig.from_json(data).motion == "none"
    del data["motion"]  # configs written before motion existed
    assert ModelConfig.from_json(data).motion == "warp"
    with pytest.raises(AnimatorError, match="motion 'wiggle'"):
        ModelConfig(motion="wiggle")


def test_motion_none_is_the_generator_alone(tiny_model, tmp_path):
    """``--motion none`` exports no motion fields and changes only what the matte covers."""
    import cv2
    from click.testing import CliRunner

    from animator.cli import cli
    from test_media import make_video

    skimage_data = pytest.importorskip("skimage.data")
    still = cv2.resize(skimage_data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    clip = make_video(tmp_path / "still.mkv", [still] * 3, codec="ffv1")
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"version": 1, "keys": [{"time": 0, "preset": "surprise"}]}))
    runs = {}
    for motion in ("none", "warp"):
        folder = tmp_path / motion
        result = CliRunner().invoke(cli, ["render", str(clip), "-k", str(keys), "-o", str(tmp_path / f"{motion}.mkv"),
                                          "--codec", "ffv1", "--checkpoint", str(tiny_model), "--motion", motion,
                                          "--frames", str(folder), "--mattes", "--quiet"])
        assert result.exit_code == 0, result.output
        runs[motion] = folder
    assert not list(runs["none"].glob("motion_*.npy"))
    assert len(list(runs["warp"].glob("motion_*.npy"))) == 3
    matte = cv2.imread(str(runs["none"] / "matte_000001.png"), cv2.IMREAD_GRAYSCALE)
    frame = cv2.cvtColor(cv2.imread(str(runs["none"] / "frame_000001.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frame[matte == 0], still[matte == 0])
    motion = np.load(runs["warp"] / "motion_000001.npy")
    assert motion.dtype == np.float16 and motion.shape == (256, 256, 2) and np.abs(motion).max() > 1


def test_warp_says_when_relative_keys_ask_to_lower_what_motion_keeps(tiny_model, tmp_path):
    """Relative keys that lower the lip corners are moved by the warp; ones that lower the jaw
    (speech) are not, and the summary says which."""
    import cv2
    from click.testing import CliRunner

    from animator.cli import cli
    from test_media import make_video

    skimage_data = pytest.importorskip("skimage.data")
    still = cv2.resize(skimage_data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    clip = make_video(tmp_path / "still.mp4", [still] * 2)
    notes = {}
    for name, lowered in (("smile", {"AU12": -2}), ("jaw", {"AU12": -2, "AU26": -1, "AU45": -1})):
        keys = tmp_path / f"{name}.json"
        keys.write_text(json.dumps({"version": 1, "mode": "relative", "keys": [{"time": 0, "aus": lowered}]}))
        result = CliRunner().invoke(cli, ["render", str(clip), "-k", str(keys), "-o", str(tmp_path / f"{name}.mp4"),
                                          "--checkpoint", str(tiny_model), "--motion", "warp", "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        notes[name] = json.loads(result.stdout)["notes"]
    assert any("the generator did not run" in n for n in notes["smile"])
    assert not any("relative keyframes lower" in n for n in notes["smile"])
    assert any("relative keyframes lower AU26, AU45:" in n for n in notes["jaw"])


def test_real_motion_warped_onto_a_neutral_frame_reads_as_the_expression(shared_dir, rig, monkeypatch):
    """The oracle read-back of ``pipelines.motion_eval --oracle``: a neutral frame warped onto the
    same person's dropped jaw reads AU26 as the real frame does; moved only inside AU26's FACS
    region (jaw and lower lip), it still reads a dropped jaw."""
    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker
    from pipelines import motion_eval

    clips = shared_dir / "datasets" / "expression-clips"
    if not (clips / "d9.mp4").is_file():
        pytest.skip(f"{clips / 'd9.mp4'} is absent: the expression clips are needed")
    monkeypatch.setattr(motion_eval, "ORACLE_PAIRS", (("d9", 0, 70, ("AU26",)),))
    (row,) = motion_eval.oracle_readback(clips, FaceDetector(), MeshLandmarker(), AUEstimator.default(), rig)
    assert row["au"] == "AU26" and row["neutral"] < 0.5 and row["expressive"] >= 2.0
    assert abs(row["whole face moved"] - row["expressive"]) < 0.5
    assert row["FACS regions only"] >= 1.5


def test_relaxing_a_smiling_photo_reads_back_a_smaller_smile(face_image, rig, tmp_path):
    """``motion_eval --relax``: the astronaut's smile edited to ``neutral`` reads back smaller
    (it shows teeth, so it narrows only a little) and her cheeks, raised with it, come down.
    The sheet shows her before and after, in a row of four such pairs."""
    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker
    from animator.media.images import read_image
    from pipelines.motion_eval import RELAX_SHEET_PAIRS, TILE, relax_readback

    report = relax_readback([("astronaut", face_image)], FaceDetector(), MeshLandmarker(), AUEstimator.default(), rig,
                            tmp_path / "relax.png")
    assert read_image(tmp_path / "relax.png").shape[1] == 2 * RELAX_SHEET_PAIRS * TILE
    assert report["faces"] == 1 and report["smile_below_1"] == 0.0   # her smile shows teeth: it narrows a little
    assert report["per_au"]["AU12"]["before"] >= 2.0 > report["per_au"]["AU12"]["after"]
    assert report["per_au"]["AU06"]["after"] < report["per_au"]["AU06"]["before"] - 0.5


def test_a_region_re_found_is_put_on_the_rigs_targets_after_fitting_the_head():
    """``motion_eval``'s ``warp, region re-found``: the landmarks found on an edit, fitted onto
    the rig's targets by a similarity (the landmark model's placement of the head is not at
    issue), with the requested AU's region at the targets; the rest stays where it was found."""
    from pipelines.motion_eval import with_region_refound

    rig_ = AURig.default()
    target = np.zeros((478, 3))
    target[:468] = rig_.template * 120 + 250
    angle = np.radians(4.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    found = target.copy()
    found[:, :2] = 1.07 * target[:, :2] @ rotation.T + [3.0, -5.0]
    region = REGIONS["brows"](rig_.template[:, 0], rig_.template[:, 1])
    lowered = np.zeros(468, bool)
    lowered[np.setdiff1d(np.flatnonzero(~region), MESH.stable)[:20]] = True
    found[:468][lowered, 1] += 9.0  # found elsewhere than the target, outside the region
    out = with_region_refound(found, target, region)[:468]
    np.testing.assert_array_equal(out[region], target[:468][region])
    rest = ~region & ~lowered
    np.testing.assert_allclose(out[rest, :2], target[:468][rest, :2], atol=1e-6)
    np.testing.assert_allclose(out[lowered, 1] - target[:468][lowered, 1], 9.0 * 1.0 / 1.07, rtol=0.01)


def test_rig_skin_follows_the_skin_not_the_landmarks(rig):
    """pipelines.rig_skin: brows warped by the rig's move (AU01 at 2.5, ~9 px) on a textured
    picture, with landmarks that found half of it: the flow finds most of the skin's move
    (it under-reads a move that varies inside its window: ~0.75 on this texture), the
    landmarks exactly half."""
    from animator.estimate.geometry import MESH
    from animator.motion.move import move_landmarks
    from pipelines.rig_skin import pair_shares

    rng = np.random.default_rng(3)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (500, 600, 3), dtype=np.uint8), (0, 0), 1.5)
    face = posed(rig.template, 0.0, 120.0, (300.0, 250.0))
    brows = [i for side in (*MESH.brow_inner, *MESH.brow_outer) for i in side]
    asked = 2.5 * rig.basis[AU_NAMES.index("AU01"), brows, :2]          # face frame
    moved, half = face.copy(), face.copy()
    moved[brows, :2] += 120.0 * asked                                   # frame px (scale 120, upright)
    half[brows, :2] += 60.0 * asked
    warped, _ = move_landmarks(picture, face, moved)
    grey = [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in (picture, warped)]
    skin, found = pair_shares(grey[0], grey[1], face, half, asked, brows, rig.template)
    assert found == pytest.approx(0.5, abs=0.02)
    assert 0.65 < skin < 1.05
    assert pair_shares(grey[0], grey[0][::-1].copy(), face, half, asked, brows, rig.template) is None  # lost


def test_eye_paint_fits_the_lid_cap_on_the_other_people():
    """pipelines.eye_paint: people whose real closed lids are lit exactly as a cap of 1.3
    would light them; leaving each out, the others fit 1.3, which predicts every one of them;
    a shipped cap of 1.6 is off for those whose crease is brighter than 1.3 times the lid."""
    from pipelines.eye_paint import held_out_caps

    crease = np.array([0.9, 1.1, 1.25, 1.5, 1.8, 2.0])
    rows = held_out_caps(np.clip(crease, 1.0, 1.3), crease, shipped=1.6)
    assert [row["held_out_cap"] for row in rows] == [1.3] * 6
    assert [row["held_out_error"] for row in rows] == [0.0] * 6
    assert [row["shipped_error"] > 0 for row in rows] == [False, False, False, True, True, True]


def test_eye_paint_fits_the_white_light_on_the_other_people():
    """pipelines.eye_paint: people whose real wide whites are their unlit ones lit by 0.3 x
    the share uncovered; leaving each out, the others fit 0.3, which predicts every one of
    them; a shipped light of 0.6 (or none) is off for all."""
    from pipelines.eye_paint import held_out_lights

    unlit, share = np.array([0.8, 0.9, 1.0, 1.1]), np.array([0.2, 0.35, 0.5, 0.4])
    real = (1 + 0.3 * share) * unlit
    rows = held_out_lights(real, unlit, share, shipped=0.6)
    assert [row["held_out_light"] for row in rows] == [0.3] * 4
    assert [row["held_out_error"] for row in rows] == [0.0] * 4
    assert all(row["shipped_error"] > 0 for row in rows)
    assert all(row["shipped_error"] > 0 for row in held_out_lights(real, unlit, share, shipped=0.0))


def test_eye_paint_fits_the_lashes_shadow_on_the_other_people():
    """pipelines.eye_paint: people whose real margin profiles are the rig's at a shadow of 0.5;
    leaving each out, the others fit 0.5 with no error on the one left out; no shadow is off."""
    from pipelines.eye_paint import SHADOWS, held_out_shadows

    depth = np.arange(5)
    edits = 1 - SHADOWS[None, :, None] * np.exp(-depth) * np.array([0.8, 1.0, 1.2])[:, None, None]  # (3, shadows, 5)
    real = edits[:, list(SHADOWS).index(0.5)]
    rows = held_out_shadows(real, edits, shipped=0.0)
    assert [row["held_out_shadow"] for row in rows] == [0.5] * 3
    assert [row["held_out_error"] for row in rows] == [0.0] * 3
    assert all(row["shipped_error"] > 0.1 for row in rows)


def test_eye_paint_profiles_the_margin_beside_the_iris(face_image):
    """pipelines.eye_paint's margin profile: a dark lid line over a flat white reads dark at
    the lid and 1 (the white's level) a few hundredths of the eye's width below it; lid points
    over the iris are left out."""
    from animator.motion.eyes import CONTOUR_UPPER, eye_contour, eye_width, iris_circle
    from pipelines.eye_paint import margin_profile

    photo = cv2.resize(face_image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    mesh, _ = read_face(photo)
    contour, width = eye_contour(mesh, 0), eye_width(mesh, 0)
    iris = iris_circle(mesh, 0, width)
    picture = np.full_like(photo, 200)
    cv2.polylines(picture, [np.rint(contour[CONTOUR_UPPER]).astype(np.int32)], False, (40, 40, 40), 2)
    profiles = margin_profile(picture, contour, iris, width)
    beside = sum(abs(p[0] - iris[0][0]) >= 1.3 * iris[1] for p in contour[CONTOUR_UPPER])
    assert 0 < len(profiles) == beside < len(UPPER_LIDS[0])
    for profile in profiles:
        assert profile[0] < 0.5 and profile[3:] == pytest.approx(1.0, abs=0.02)


def test_eye_paint_reads_the_lid_the_white_and_the_cheeks_where_they_are(face_image):
    """pipelines.eye_paint measures a closed lid on the skin between its lash band and its
    fold (where smooth_lid paints), an eye's white inside its opening outside the iris, and
    the cheeks' brightness around their points."""
    from animator.motion.eyes import eye_contour, eye_width, iris_circle, lid_skin
    from animator.motion.rig import UPPER_LID_SKIN
    from pipelines.eye_paint import CHEEKS, cheek_brightness, lid_brightness, white_brightness

    photo = cv2.resize(face_image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    mesh, _ = read_face(photo)
    picture = np.full_like(photo, 40)
    fold = mesh[list(UPPER_LID_SKIN[0][0]), :2]
    skin = lid_skin(eye_contour(mesh, 0), fold, eye_width(mesh, 0))
    cv2.fillPoly(picture, [np.rint(skin).astype(np.int32)], (200, 200, 200))
    assert lid_brightness(picture, mesh, 0) == pytest.approx(200, abs=12)
    assert lid_brightness(picture, mesh, 1) == pytest.approx(40)
    contour, iris = eye_contour(mesh, 1), iris_circle(mesh, 1, eye_width(mesh, 1))
    cv2.fillPoly(picture, [np.rint(contour).astype(np.int32)], (230, 230, 230))
    cv2.circle(picture, tuple(int(v) for v in np.rint(iris[0])), int(np.ceil(1.2 * iris[1])), (10, 10, 10), -1)
    assert white_brightness(picture, contour, iris) == pytest.approx(230)
    for point in CHEEKS:
        centre = tuple(int(v) for v in np.rint(mesh[point, :2]))
        cv2.circle(picture, centre, int(eye_width(mesh, 0)), (120, 120, 120), -1)
    assert cheek_brightness(picture, mesh) == pytest.approx(120)


def test_eye_paint_names_a_missing_clip(tmp_path, capsys):
    from pipelines.eye_paint import main

    assert main([str(tmp_path / "none.mp4")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none.mp4'}: no such file"


def test_motion_found_is_the_share_of_the_rigs_move_the_landmarks_show(rig):
    """``motion_eval``'s ``motion_found``: landmarks found half-way to the rig's targets inside
    the region score 0.5, whatever the head's placement; all the way, 1; not at all, 0."""
    from pipelines.motion_eval import motion_found

    source = np.zeros((478, 3))
    source[:468] = rig.template * 110 + 240
    k = AU_NAMES.index("AU04")
    region = np.abs(rig.basis[k]).sum(1) > 0
    moved = source.copy()
    moved[:468] = rig.displace(source, one_au("AU04", 4.0))
    angle = np.radians(-3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for share in (0.0, 0.5, 1.0):
        found = source + share * (moved - source)
        found[:, :2] = 0.9 * found[:, :2] @ rotation.T + [-4.0, 6.0]
        found[:, 2] *= 0.9  # the landmark model's depth scales with the face
        assert motion_found(source, moved, found, region, rig.template) == pytest.approx(share, abs=0.02)


def test_the_brow_aus_read_back_once_their_region_is_re_found(face_image, rig):
    """What the read-back of the brow AUs lacks is inside their own FACS region: on the photo
    edited to AU01, AU02 or AU04 at 4, the landmarks found with that AU's region put where the
    rig moved it read the AU within 0.5 of the rig's own targets, and at least 2."""
    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker
    from animator.motion.fit import support_mask
    from pipelines.motion_eval import read_mesh, rig_targets, with_region_refound

    detector, landmarker, estimator = FaceDetector(), MeshLandmarker(), AUEstimator.default()
    mesh, current = read_face(face_image)
    regions = support_mask(rig.template)
    for name in ("AU01", "AU02", "AU04"):
        k = AU_NAMES.index(name)
        target = with_au(current, name, 4.0)
        (moved,) = rig_targets(mesh, current, target[None], rig)
        edited, _ = move_face(face_image, mesh, current, target, rig)
        refound = with_region_refound(read_mesh(edited, detector, landmarker), moved, regions[k])
        reading, ceiling = estimator.estimate(refound)[k], estimator.estimate(moved)[k]
        assert reading >= 2.0 and abs(reading - ceiling) < 0.5, (name, reading, ceiling)


def test_a_closed_lid_is_lit_like_the_skin_above_its_crease(face_image, rig, monkeypatch):
    """The strip of lid between lashes and fold lies in the fold's shadow (darkened here); a
    closing lid unfolds the skin the fold hid, which is lit like the skin above the crease:
    the closed lid comes out at least a fifth lighter than the shadowed strip stretched."""
    from animator.motion import eyes
    from animator.motion.move import motion_aus
    from animator.motion.rig import UPPER_LID_SKIN

    mesh, current = read_face(face_image)
    shadowed = face_image.copy()
    for upper, (fold, _) in zip(UPPER_LIDS, UPPER_LID_SKIN):
        strip = np.zeros(face_image.shape[:2], np.uint8)
        cv2.fillPoly(strip, [np.rint(np.vstack([mesh[list(upper), :2], mesh[list(fold)[::-1], :2]])).astype(np.int32)], 1)
        shadowed[strip == 1] //= 2
    target = with_au(current, "AU45", 5.0)
    moved = rig.displace(mesh, motion_aus(current, target, rig))

    def lid_brightness(image: np.ndarray) -> float:
        values = []
        for eye, (fold, _) in enumerate(UPPER_LID_SKIN):
            lid = np.zeros(face_image.shape[:2], np.uint8)
            lash_top = moved[list(UPPER_LIDS[eye]), :2] - (0, 2 * eyes.LASH_BAND * eyes.eye_width(moved, eye))
            cv2.fillPoly(lid, [np.rint(np.vstack([lash_top, moved[list(fold)[::-1], :2]])).astype(np.int32)], 1)
            values.append((image.astype(float) @ [0.299, 0.587, 0.114])[lid == 1].mean())
        return float(np.mean(values))

    lit, _ = move_face(shadowed, mesh, current, target, rig)
    monkeypatch.setattr(eyes, "LID_TONE_GAIN", 1.0)
    dark, _ = move_face(shadowed, mesh, current, target, rig)
    assert lid_brightness(lit) > 1.2 * lid_brightness(dark)


@pytest.mark.parametrize("blink", [1.5, 5.0])  # a blink's first frames (the lid ~0.45 down), shut
def test_a_closed_lid_is_smooth_where_its_stretched_skin_would_streak(face_image, rig, monkeypatch, blink):
    """The open lid's narrow strip of skin (striped here, as lashes and mascara are), stretched
    over a closing eye, would streak the lid: it is smoothed as far as the lid came down, from
    the first frames of a blink on."""
    from animator.motion import eyes
    from animator.motion.move import motion_aus
    from animator.motion.rig import UPPER_LID_SKIN

    photo = cv2.resize(face_image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    mesh, current = read_face(photo)
    striped = photo.copy()
    columns = (np.arange(photo.shape[1]) // 2) % 2 == 0
    for upper, (fold, _) in zip(UPPER_LIDS, UPPER_LID_SKIN):
        lid = np.zeros(photo.shape[:2], np.uint8)
        cv2.fillPoly(lid, [np.rint(np.vstack([mesh[list(upper), :2], mesh[list(fold)[::-1], :2]])).astype(np.int32)], 1)
        striped[(lid == 1) & columns[None, :]] //= 3
    target = with_au(current, "AU45", blink)
    moved = rig.displace(mesh, motion_aus(current, target, rig))

    def streaks(image: np.ndarray) -> float:
        zone = np.zeros(photo.shape[:2], bool)
        for eye, (fold, _) in enumerate(UPPER_LID_SKIN):
            width = eyes.eye_width(moved, eye)
            lash_top = moved[list(UPPER_LIDS[eye]), :2] - (0, 2 * eyes.LASH_BAND * width)
            mask = np.zeros(photo.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.rint(np.vstack([lash_top, moved[list(fold)[::-1], :2]])).astype(np.int32)], 1)
            zone |= mask == 1
        luma = image.astype(float) @ [0.299, 0.587, 0.114]
        return float(np.abs(np.diff(luma, axis=1))[zone[:, 1:]].mean())

    smoothed, _ = move_face(striped, mesh, current, target, rig)
    monkeypatch.setattr(eyes, "smooth_lid", lambda *args: None)
    streaked, _ = move_face(striped, mesh, current, target, rig)
    assert streaks(smoothed) < 0.5 * streaks(streaked)
