"""Tracking and smoothing on a synthetic video: a real face photo pasted on a plain
background, moving, pausing, blanked out for 5 frames, with sensor noise on every frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from animator.errors import AnimatorError
from animator.faces.align import CropPolicy, crop_transform
from animator.faces.detect import FaceDetector
from animator.faces.landmarks import MeshLandmarker
from animator.faces.smooth import landmark_noise, smooth_meshes, smooth_series, smooth_tracks
from animator.faces.track import FaceObservation, FaceTracker, Tracks, box_iou, moved_box, track_video

FPS = 30.0
N_FRAMES = 60
MOVE_UNTIL = 25          # the face moves 4 px right and 1 px down per frame until here
BLANK = range(40, 45)    # then rests; these 5 frames show no face
STILL = [range(30, 40), range(48, N_FRAMES)]  # resting, before and after the blank


def face_patch(astronaut: np.ndarray, size: int = 120) -> np.ndarray:
    return cv2.resize(astronaut[20:230, 120:330], (size, size), interpolation=cv2.INTER_AREA)


def offset(i: int) -> tuple[int, int]:
    k = min(i, MOVE_UNTIL)
    return 20 + 4 * k, 60 + k


def synthetic_video(astronaut: np.ndarray, second_face_from: int | None = None):
    rng = np.random.default_rng(0)
    face = face_patch(astronaut)
    small = face_patch(astronaut, 70)
    for i in range(N_FRAMES):
        frame = np.full((240, 360, 3), (90, 110, 130), np.uint8)
        if i not in BLANK:
            x, y = offset(i)
            frame[y:y + 120, x:x + 120] = face
        if second_face_from is not None and i >= second_face_from:
            frame[10:80, 280:350] = small
        noisy = frame + rng.normal(0.0, 4.0, frame.shape)
        yield i, i / FPS, np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tracks(astronaut) -> Tracks:
    return track_video(synthetic_video(astronaut), FaceDetector(), MeshLandmarker(), max_gap=10)


def crop_params(obs: FaceObservation) -> np.ndarray:
    """(centre x, centre y, scale, angle in degrees) of the aligned crop in frame terms."""
    M = crop_transform(CropPolicy(), obs.points, obs.box)
    centre = cv2.invertAffineTransform(M) @ np.array([63.5, 63.5, 1.0])
    scale = float(np.sqrt(np.linalg.det(M[:, :2])))
    return np.array([centre[0], centre[1], scale, np.degrees(np.arctan2(M[1, 0], M[0, 0]))])


def test_one_stable_id_and_the_gap_is_bridged(tracks):
    assert tracks.track_ids == [0]
    assert [i for i, _ in tracks.frames] == list(range(N_FRAMES))
    for i in range(N_FRAMES):
        faces = tracks.for_frame(i)
        assert len(faces) == 1, f"frame {i}"
        assert faces[0].interpolated == (i in BLANK), f"frame {i}"
        assert faces[0].mesh is not None and faces[0].mesh.shape == (478, 3)
    # the bridged boxes lie between the boxes around the gap
    before, after = tracks.for_frame(BLANK[0] - 1)[0], tracks.for_frame(BLANK[-1] + 1)[0]
    middle = tracks.for_frame(42)[0]
    assert np.all(middle.box >= np.minimum(before.box, after.box) - 1e-4)
    assert np.all(middle.box <= np.maximum(before.box, after.box) + 1e-4)


def test_detections_follow_the_moving_face(tracks, astronaut):
    # the face's box inside the pasted patch, from a clean detection of the patch alone
    canvas = np.full((240, 240, 3), (90, 110, 130), np.uint8)
    canvas[60:180, 60:180] = face_patch(astronaut)
    reference = FaceDetector().detect(canvas)[0].box - 60
    for i in range(MOVE_UNTIL + 5):
        obs = tracks.for_frame(i)[0]
        x, y = offset(i)
        assert np.abs(obs.box - (reference + [x, y, x, y])).max() < 6.0, f"frame {i}"


# A still face's smoothed crop, frame to frame: the centre moves < 0.25 px, the scale changes
# < 0.3 % and the angle < 0.1 degrees (raw mesh points step up to ~0.2 px, 0.7 %, 0.4 deg).
STILL_STEP_PX, STILL_STEP_SCALE, STILL_STEP_DEG = 0.25, 0.003, 0.1


def still_params(tracks: Tracks) -> list[np.ndarray]:
    """(centre x, centre y, relative scale, angle) per frame of each resting stretch."""
    stretches = []
    for stretch in STILL:
        params = np.stack([crop_params(tracks.for_frame(i)[0]) for i in stretch])
        params[:, 2] /= params[:, 2].mean()
        stretches.append(params)
    return stretches


def test_still_face_crop_does_not_jitter(tracks):
    raw, smooth = still_params(tracks), still_params(smooth_tracks(tracks))
    steps = np.max([np.abs(np.diff(p, axis=0)).max(0) for p in smooth], axis=0)
    assert steps[0] < STILL_STEP_PX and steps[1] < STILL_STEP_PX
    assert steps[2] < STILL_STEP_SCALE
    assert steps[3] < STILL_STEP_DEG
    # jitter (RMS second difference) drops at least 3x: the raw track does jitter
    jitter = lambda stretches: np.sqrt(np.mean([np.mean(np.diff(p, 2, axis=0) ** 2, axis=0)  # noqa: E731
                                                 for p in stretches], axis=0))
    assert np.all(jitter(smooth) < jitter(raw) / 3)


def test_moving_face_crop_does_not_lag(tracks):
    smooth = smooth_tracks(tracks)
    moving = range(4, MOVE_UNTIL - 4)
    raw = np.stack([crop_params(tracks.for_frame(i)[0])[:2] for i in moving])
    fit = np.stack([crop_params(smooth.for_frame(i)[0])[:2] for i in moving])
    # a causal filter would trail the 4 px/frame motion by several px; zero-phase does not
    assert abs(float(np.mean(fit[:, 0] - raw[:, 0]))) < 0.5
    assert abs(float(np.mean(fit[:, 1] - raw[:, 1]))) < 0.5
    # and the smoothed crop moves with the face: 4 px per frame in x
    slope = np.polyfit(np.array(list(moving), float), fit[:, 0], 1)[0]
    assert slope == pytest.approx(4.0, abs=0.25)


def test_smooth_series_is_zero_phase_and_removes_noise():
    t = np.arange(120) / 30.0
    ramp = np.stack([3.0 * t + 1.0, -2.0 * t], axis=1)
    np.testing.assert_allclose(smooth_series(t, ramp), ramp, atol=1e-3)  # no lag, no end effects
    noise = np.random.default_rng(1).normal(0.0, 1.0, (120, 2))
    assert smooth_series(t, noise)[10:-10].std() < 0.45
    short = np.ones((3, 2))
    assert np.array_equal(smooth_series(t[:3], short), short)


def test_new_face_gets_new_id_and_selection(astronaut):
    frames = [f for f in synthetic_video(astronaut, second_face_from=10) if f[0] < 30]
    tracks = track_video(frames, FaceDetector(), detect_every=8, mesh=False)
    assert tracks.track_ids == [0, 1]
    first_seen = min(o.frame_index for o in tracks.track(1))
    assert 10 <= first_seen <= 10 + 8  # found at the next periodic full detection
    assert all(o.mesh is None for o in tracks.observations)  # mesh=False
    assert tracks.select("largest").track_ids == [0]
    assert tracks.select("all").track_ids == [0, 1]
    assert tracks.select(1).track_ids == [1]
    with pytest.raises(AnimatorError, match="no face with ID 7"):
        tracks.select(7)
    doc = tracks.select("all").to_json("synthetic", FPS)
    assert doc["fps"] == FPS and len(doc["frames"]) == 30
    assert {f["id"] for f in doc["frames"][20]["faces"]} == {0, 1}
    face = doc["frames"][20]["faces"][0]
    assert set(face) >= {"id", "box", "score", "points"} and len(face["points"]) == 5


def test_a_face_lost_longer_than_max_gap_ends(astronaut):
    frames = list(synthetic_video(astronaut))
    # blank frames 40..44 with max_gap 3: the track ends and the face returns as a new ID
    tracks = track_video(frames, FaceDetector(), max_gap=3, mesh=False)
    assert tracks.track_ids == [0, 1]
    assert max(o.frame_index for o in tracks.track(0)) == BLANK[0] - 1
    assert min(o.frame_index for o in tracks.track(1)) == BLANK[-1] + 1
    assert not any(o.interpolated for o in tracks.observations)


class CountingDetector(FaceDetector):
    """YuNet that notes each frame it runs on (region re-checks and full detections alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.frame_index = -1
        self.frames_run: set[int] = set()

    def detect(self, frame_rgb, max_side=None):
        self.frames_run.add(self.frame_index)
        return super().detect(frame_rgb, max_side)


def detector_frames(frames, **options) -> tuple[set[int], Tracks]:
    detector = CountingDetector()
    tracker = FaceTracker(detector, MeshLandmarker(), **options)
    for index, time, rgb in frames:
        detector.frame_index = index
        tracker.update(index, time, rgb)
    return detector.frames_run, tracker.tracks


def test_detector_runs_only_when_presence_drops_or_periodically(astronaut):
    frames = list(synthetic_video(astronaut))
    ran, tracks = detector_frames(frames, detect_every=15)
    # the first frame, the periodic checks at 15 and 30, the blank frames (the landmark model's
    # presence drops at 40, the re-check fails, and the lost track asks for a full detection on
    # every frame) and 45, where the face is found again; moving (to 25) or resting, no YuNet
    assert ran == {0, 15, 30, *BLANK, BLANK[-1] + 1}
    assert tracks.track_ids == [0]
    held = [o for o in tracks.track(0) if o.frame_index not in ran and not o.interpolated]
    assert held and all(o.presence >= 0.5 for o in held)
    assert all(o.score == tracks.for_frame(0)[0].score for o in tracks.track(0)[:15])
    # without the presence gate YuNet re-checks every frame
    ungated, _ = detector_frames(frames, detect_every=15, presence_threshold=None)
    assert ungated == set(range(N_FRAMES))


def test_held_boxes_keep_the_detector_convention(astronaut):
    """A held face's box is the last one moved with the mesh: on YuNet's convention (as a
    detection every frame would place it, within YuNet's own jitter), steadier, and the crops,
    which align on the mesh, are the same."""
    frames = list(synthetic_video(astronaut))
    _, gated = detector_frames(frames, detect_every=15)
    _, ungated = detector_frames(frames, detect_every=15, presence_threshold=None)
    pairs = list(zip(gated.track(0), ungated.track(0)))
    assert [(a.frame_index, a.interpolated) for a, _ in pairs] == [(b.frame_index, b.interpolated) for _, b in pairs]
    iou = np.array([box_iou(a.box, b.box)[0, 0] for a, b in pairs])
    assert iou.min() > 0.8 and np.median(iou) > 0.92, iou.round(3)
    for a, b in pairs:
        np.testing.assert_allclose(crop_params(a), crop_params(b), atol=1e-3)
    still = [i for stretch in STILL for i in stretch]
    jitter = lambda tracks: np.abs(np.diff([tracks.for_frame(i)[0].box for i in still], axis=0)).mean()  # noqa: E731
    assert jitter(gated) < jitter(ungated) / 2


def test_moved_box_keeps_its_place_on_the_mesh_box():
    mesh = np.random.default_rng(2).normal(0.0, 30.0, (478, 3)).astype(np.float32) + [200, 150, 0]
    lo, hi = mesh[:468, :2].min(0), mesh[:468, :2].max(0)
    box = np.array([lo[0] + 5, lo[1] - 10, hi[0] - 5, hi[1] + 3], np.float32)
    later = mesh.copy()
    later[:, :2] = (mesh[:, :2] - lo) * [1.1, 1.3] + lo + [15, -5]  # moved, wider, and taller (a jaw drop)
    moved, size = moved_box(box, mesh, later)
    expected = np.tile(lo + [15, -5], 2) + np.tile([1.1, 1.3], 2) * (box - np.tile(lo, 2))
    np.testing.assert_allclose(moved, expected, atol=1e-3)
    assert size == pytest.approx(np.sqrt(1.1 * 1.3), rel=1e-5)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 1 / 3, 0.0], atol=1e-6)


REAL_CLIPS = ("media/single_face.mp4", *(f"datasets/expression-clips/{n}.mp4"
                                         for n in ("d0", "d3", "d6", "d9", "d13", "d14")))


@pytest.mark.parametrize("clip", REAL_CLIPS)
def test_real_clips_keep_one_face_on_every_frame(shared_dir, clip):
    """The example clip and the six expression clips (first 45 frames, where smiles, blinks,
    brows and open jaws start): one ID and a face on every frame, as with YuNet re-checking
    every frame (the tracker before the presence gate), with the same crops; YuNet ran only for
    the periodic checks; the boxes are the ones a full-frame detection finds."""
    from animator.media.decode import iter_frames

    path = shared_dir / clip
    frames = [(f.index, f.time, f.rgb) for f, _ in zip(iter_frames(path), range(45))]
    ran, tracks = detector_frames(frames)
    _, ungated = detector_frames(frames, presence_threshold=None)
    assert ran == {0, 15, 30}
    for result in (tracks, ungated):
        assert result.track_ids == [0]
        assert [o.frame_index for o in result.track(0)] == [i for i, _, _ in frames]
        assert not any(o.interpolated for o in result.track(0))
    for a, b in zip(tracks.track(0), ungated.track(0)):
        np.testing.assert_allclose(crop_params(a), crop_params(b), atol=1e-3)
    detector = FaceDetector()
    full = np.stack([detector.detect(rgb)[0].box for _, _, rgb in frames])
    iou = np.diag(box_iou(np.stack([o.box for o in tracks.track(0)]), full))
    assert iou.min() >= 0.85 and np.median(iou) >= 0.93, iou.round(3)


def test_smoothed_meshes_keep_a_blink_and_lose_the_jitter():
    """A still mesh with the landmark model's jitter, one lid point of which closes for three
    frames: the jitter's level is measured, the smoothed mesh is nearer the truth than what was
    found, and the blink stays (a 2 Hz low-pass alone leaves the lid about 5 px open)."""
    rng = np.random.default_rng(3)
    n, lid, jitter = 60, 159, 0.2
    truth = np.repeat(rng.uniform(100, 300, (1, 478, 3)), n, axis=0)
    truth[:, [33, 263], :2] = [[150, 200], [250, 200]]              # the eye-corner span: 100 px
    truth[30:33, lid, 1] += 8.0
    found = truth + rng.normal(0, jitter, truth.shape)
    times = np.arange(n) / FPS
    assert landmark_noise(found) == pytest.approx(jitter / 100, rel=0.15)
    smooth = smooth_meshes(times, found)
    assert np.abs(smooth[30:33, lid, 1] - truth[30:33, lid, 1]).max() < 6 * jitter
    assert np.abs(smooth_series(times, found)[30:33, lid, 1] - truth[30:33, lid, 1]).max() > 3.0
    rest = np.arange(478) != lid
    rms = lambda error: np.sqrt(np.mean(error[:, rest] ** 2))  # noqa: E731
    assert rms(smooth - truth) < 0.6 * rms(found - truth)


@pytest.mark.parametrize("cutoff, padlen", [(0.13, 38), (0.5, 9), (0.9, 3)])
def test_numpy_filtfilt_matches_scipy(cutoff, padlen):
    signal = pytest.importorskip("scipy.signal", reason="scipy is the reference")
    from animator.faces.smooth import butter_lowpass, filtfilt

    b, a = butter_lowpass(cutoff)
    b_ref, a_ref = signal.butter(2, cutoff)
    np.testing.assert_allclose(b, b_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a, a_ref, rtol=1e-12, atol=1e-15)
    x = np.cumsum(np.random.default_rng(1).normal(size=(80, 5, 2)), axis=0)
    np.testing.assert_allclose(filtfilt(b, a, x, padlen),
                               signal.filtfilt(b_ref, a_ref, x, axis=0, padlen=padlen), rtol=1e-9, atol=1e-9)
