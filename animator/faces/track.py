"""Follow faces through a video: stable IDs, short gaps bridged, selection of the face to edit.

A face followed in the previous frame is followed as MediaPipe's tracker does: the landmark
model re-crops it from the previous frame's mesh, and while its face-presence probability stays
at least ``presence_threshold`` (0.5) and the new mesh is plausible (eyes near the predicted
box, size within ``max_scale_step`` of the last), that is the whole cost of the frame: no
detector. The box then moves and scales with the mesh's bounding box, so it keeps YuNet's
convention. When presence drops or the mesh jumps, YuNet re-checks a region twice the size
of the last box, shrunk to ``recheck_side`` (160) pixels (about a quarter of a full-frame
detection's cost whatever the face size); a full-frame detection runs when there is nothing
to follow, when a face fails its re-check, and every ``detect_every`` frames to catch faces
that enter (a followed face it finds takes the detector's box again). Faces are matched to
tracks by box IoU (Hungarian assignment on a motion-predicted box); a track missing for more
than ``max_gap`` frames ends, and a face found later gets a new ID. Gaps of up to ``max_gap``
frames inside a track are filled by interpolation (``interpolated=True``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from animator.errors import AnimatorError
from animator.faces.detect import Detection, FaceDetector
from animator.faces.landmarks import N_MESH, FanLandmarker, MeshLandmarker, eye_centers, five_points


@dataclass
class FaceObservation:
    """One face in one frame, in frame pixels."""

    frame_index: int
    time: float
    track_id: int
    box: np.ndarray            # (4,) float32 [x0, y0, x1, y1]
    score: float
    points: np.ndarray         # (5, 2) float32, YuNet order (from the mesh when there is one)
    mesh: np.ndarray | None    # (478, 3) float32 landmarks: mesh + irises (None only with mesh=False)
    interpolated: bool = False
    fan_points: np.ndarray | None = None  # (68, 3) with --landmarks fan
    presence: float | None = None         # the landmark model's face-presence probability

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def best_assignment(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the one-to-one pairing with the highest total ``score`` (N, M).

    One track or one face (nearly every frame) is an argmax; only several of each need the
    Hungarian algorithm, so scipy.optimize is imported only then (it costs ~0.3 s).
    """
    if score.shape[0] == 1 or score.shape[1] == 1:
        flat = int(np.argmax(score))
        row, col = divmod(flat, score.shape[1])
        return np.array([row]), np.array([col])
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415

    return linear_sum_assignment(-score)


def _lerp(a: np.ndarray | None, b: np.ndarray | None, w: float) -> np.ndarray | None:
    if a is None or b is None:
        return None
    return ((1.0 - w) * a + w * b).astype(np.float32)


def parse_selection(value: str | int) -> str | int:
    """``--select``: ``largest``, ``all`` or a face ID (an integer >= 0)."""
    text = str(value).strip().lower()
    if text in ("largest", "all"):
        return text
    try:
        face_id = int(text)
    except ValueError:
        raise AnimatorError(f"--select: {value!r} is not largest, all or a face ID") from None
    if face_id < 0:
        raise AnimatorError(f"--select: face IDs start at 0, got {face_id}")
    return face_id


class Tracks:
    """All observations of a video (or image), by frame and by track."""

    def __init__(self, frames: list[tuple[int, float]], observations: list[FaceObservation]):
        self.frames = frames  # (index, time) of every frame seen, in order
        self.observations = sorted(observations, key=lambda o: (o.frame_index, o.track_id))
        self._by_frame: dict[int, list[FaceObservation]] = {}
        self._by_track: dict[int, list[FaceObservation]] = {}
        for obs in self.observations:
            self._by_frame.setdefault(obs.frame_index, []).append(obs)
            self._by_track.setdefault(obs.track_id, []).append(obs)

    @property
    def track_ids(self) -> list[int]:
        return sorted(self._by_track)

    def track(self, track_id: int) -> list[FaceObservation]:
        """One track's observations in frame order."""
        return list(self._by_track.get(track_id, []))

    def for_frame(self, index: int) -> list[FaceObservation]:
        return list(self._by_frame.get(index, []))

    def select(self, which: str | int) -> "Tracks":
        """``largest`` (the track with the largest mean box), ``all``, or one track ID."""
        which = parse_selection(which)
        if which == "all":
            return self
        if which == "largest":
            if not self.observations:
                return self
            ids = self.track_ids
            keep = max(ids, key=lambda i: (np.mean([o.area for o in self.track(i)]), -i))
        else:
            keep = which
            if keep not in self.track_ids:
                found = ", ".join(map(str, self.track_ids)) or "none"
                raise AnimatorError(f"--select: no face with ID {keep} (IDs found: {found})")
        return Tracks(self.frames, [o for o in self.observations if o.track_id == keep])

    def bridged(self, max_gap: int) -> "Tracks":
        """A copy with each track's gaps of at most ``max_gap`` frames filled by linear
        interpolation in time (box, points, mesh); the filled observations say so."""
        position = {index: pos for pos, (index, _) in enumerate(self.frames)}
        filled = list(self.observations)
        for track_id in self.track_ids:
            obs = self.track(track_id)
            for a, b in zip(obs, obs[1:]):
                missing = self.frames[position[a.frame_index] + 1:position[b.frame_index]]
                if not missing or len(missing) > max_gap:
                    continue
                for i, time in missing:
                    span = b.time - a.time
                    w = (time - a.time) / span if span > 0 else 0.5
                    filled.append(FaceObservation(
                        frame_index=i, time=time, track_id=track_id,
                        box=_lerp(a.box, b.box, w), score=float(min(a.score, b.score)),
                        points=_lerp(a.points, b.points, w), mesh=_lerp(a.mesh, b.mesh, w),
                        interpolated=True, fan_points=_lerp(a.fan_points, b.fan_points, w),
                        presence=None if a.presence is None or b.presence is None
                        else min(a.presence, b.presence)))
        return Tracks(self.frames, filled)

    def to_json(self, source: str, fps: float | None) -> dict[str, Any]:
        """The ``animator faces --json`` document (an image is a one-frame video)."""
        frames = []
        for index, time in self.frames:
            faces = [{"id": o.track_id,
                      "box": [round(float(v), 2) for v in o.box],
                      "score": round(float(o.score), 4),
                      "points": [[round(float(x), 2), round(float(y), 2)] for x, y in o.points],
                      "interpolated": bool(o.interpolated)}
                     for o in self.for_frame(index)]
            frames.append({"index": index, "time": round(float(time), 6), "faces": faces})
        return {"source": source, "fps": fps, "frames": frames}


def moved_box(box: np.ndarray, previous_mesh: np.ndarray, mesh: np.ndarray) -> tuple[np.ndarray, float]:
    """``box`` carried from ``previous_mesh`` to ``mesh``: moved and scaled, per axis, as the
    face mesh's bounding box moved and scaled, so that it keeps its place on the face's outline
    as a detector box does (on a turning head the outline moves less than the nose; an opening
    jaw stretches it). Returns the box and the change of size (the root of the area ratio)."""
    before = np.asarray(previous_mesh, dtype=np.float64)[:N_MESH, :2]
    after = np.asarray(mesh, dtype=np.float64)[:N_MESH, :2]
    lo0, lo1 = before.min(0), after.min(0)
    stretch = (after.max(0) - lo1) / np.maximum(before.max(0) - lo0, 1e-6)
    moved = np.tile(lo1, 2) + np.tile(stretch, 2) * (np.asarray(box, dtype=np.float64) - np.tile(lo0, 2))
    return moved.astype(np.float32), float(np.sqrt(stretch[0] * stretch[1]))


@dataclass
class _Track:
    track_id: int
    last: FaceObservation
    velocity: np.ndarray  # box change per frame
    missed: int = 0


@dataclass
class _Followed:
    """A face followed from the previous frame: its landmarks re-cropped from the last mesh."""

    mesh: np.ndarray
    presence: float
    box: np.ndarray  # the last box moved with the mesh
    held: bool       # sure enough to skip the detector


class FaceTracker:
    """Online tracker; feed frames in order with :meth:`update`, then take :attr:`tracks`.

    Every face gets the 478 landmarks (mesh + irises, about 13 ms) unless ``mesh=False``, and its 5
    alignment points then come from the mesh (:func:`five_points`): YuNet's own points ignore
    a rolled head (10-17 px off at 25-40 degrees of roll) and follow the pupils, which would
    make crops swim with the gaze. ``landmarker`` may add FAN's 68 points. With the mesh, a
    followed face skips the detector while ``presence_threshold`` holds (``None``: never, the
    detector re-checks every frame); its ``score`` is then the detector's last score for it.
    """

    def __init__(self, detector: FaceDetector | None = None,
                 landmarker: MeshLandmarker | FanLandmarker | None = None,
                 max_gap: int = 10, detect_every: int = 15, iou_threshold: float = 0.3,
                 search_margin: float = 2.0, mesh: bool = True, recheck_side: int = 160,
                 presence_threshold: float | None = 0.5, max_scale_step: float = 1.25,
                 eye_margin: float = 0.25):
        self.detector = detector or FaceDetector()
        self.mesh = landmarker if isinstance(landmarker, MeshLandmarker) else (MeshLandmarker() if mesh else None)
        self.fan = landmarker if isinstance(landmarker, FanLandmarker) else None
        self.max_gap = max_gap
        self.detect_every = max(1, detect_every)
        self.iou_threshold = iou_threshold
        self.search_margin = search_margin
        self.recheck_side = recheck_side
        self.presence_threshold = presence_threshold
        self.max_scale_step = max_scale_step  # the most a held face's size may change in a frame
        self.eye_margin = eye_margin          # a held face's eyes lie in its predicted box grown by this
        self._active: list[_Track] = []
        self._next_id = 0
        self._last_full: int | None = None
        self._frames: list[tuple[int, float]] = []
        self._observations: list[FaceObservation] = []

    @property
    def tracks(self) -> Tracks:
        """Everything seen so far, with gaps of at most ``max_gap`` frames bridged."""
        return Tracks(list(self._frames), self._observations).bridged(self.max_gap)

    def _predicted_box(self, track: _Track) -> np.ndarray:
        return track.last.box + track.velocity * (track.missed + 1)

    def _search_region(self, box: np.ndarray) -> np.ndarray:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = self.search_margin * max(box[2] - box[0], box[3] - box[1]) / 2
        return np.array([cx - half, cy - half, cx + half, cy + half])

    def _assign(self, boxes: dict[int, np.ndarray], found: list[Detection]) -> dict[int, int]:
        """Track position -> detection position, for tracks expected at ``boxes``."""
        if not boxes or not found:
            return {}
        positions = list(boxes)
        iou = box_iou(np.stack([boxes[p] for p in positions]), np.stack([d.box for d in found]))
        rows, cols = best_assignment(iou)
        return {positions[r]: int(c) for r, c in zip(rows, cols) if iou[r, c] >= self.iou_threshold}

    def _follow(self, frame: np.ndarray, track: _Track) -> _Followed:
        """Re-crop the landmarks from the track's last mesh and judge whether they hold."""
        mesh, presence = self.mesh.locate_from_mesh(frame, track.last.mesh)
        box, scale = moved_box(track.last.box, track.last.mesh, mesh)
        x0, y0, x1, y1 = self._predicted_box(track)
        grow = self.eye_margin * max(x1 - x0, y1 - y0)
        eyes = eye_centers(mesh)
        held = (self.presence_threshold is not None and presence >= self.presence_threshold
                and 1.0 / self.max_scale_step <= scale <= self.max_scale_step
                and bool(np.all((eyes >= [x0 - grow, y0 - grow]) & (eyes <= [x1 + grow, y1 + grow]))))
        return _Followed(mesh, presence, box, held)

    def _mesh_on(self, frame: np.ndarray, det: Detection, followed: _Followed | None):
        """(mesh, presence) for a detected face: the followed mesh when it still sits on the
        detected face, else landmarks located from the detection."""
        if self.mesh is None:
            return None, None
        if followed is not None:
            x0, y0, x1, y1 = det.box
            inner = np.array([x0, y0, x1, y1]) + 0.25 * np.array([x1 - x0, y1 - y0, x0 - x1, y0 - y1])
            centre = eye_centers(followed.mesh).mean(0)
            if inner[0] <= centre[0] <= inner[2] and inner[1] <= centre[1] <= inner[3]:
                return followed.mesh, followed.presence
        return self.mesh.locate(frame, det)

    def _observation(self, frame_index: int, time: float, frame: np.ndarray, track_id: int,
                     box: np.ndarray, score: float, mesh: np.ndarray | None, presence: float | None,
                     detector_points: np.ndarray | None = None) -> FaceObservation:
        fan = self.fan.landmarks(frame, box) if self.fan is not None else None
        points = five_points(mesh) if mesh is not None else detector_points
        return FaceObservation(frame_index, float(time), track_id, box, score, points, mesh, False, fan, presence)

    def _detected(self, frame_index: int, time: float, frame: np.ndarray, det: Detection, track_id: int,
                  followed: _Followed | None = None) -> FaceObservation:
        mesh, presence = self._mesh_on(frame, det, followed)
        return self._observation(frame_index, time, frame, track_id, det.box, det.score, mesh, presence, det.points)

    def update(self, frame_index: int, time: float, frame_rgb: np.ndarray) -> list[FaceObservation]:
        """Track one frame; returns the faces observed in it (not the interpolated ones)."""
        self._frames.append((frame_index, float(time)))
        seen = [pos for pos, t in enumerate(self._active) if t.missed == 0]
        follow = {pos: self._follow(frame_rgb, self._active[pos]) for pos in seen
                  if self.mesh is not None and self._active[pos].last.mesh is not None}
        held = {pos for pos, f in follow.items() if f.held}
        full = (not seen or len(seen) < len(self._active) or self._last_full is None
                or frame_index - self._last_full >= self.detect_every)
        pairs: dict[int, int] = {}
        found: list[Detection] = []
        if not full:
            recheck = {pos: self._predicted_box(self._active[pos]) for pos in seen if pos not in held}
            for box in recheck.values():
                local = self.detector.detect_region(frame_rgb, self._search_region(box), self.recheck_side)
                found.extend(d for d in local if not any(box_iou(d.box, f.box)[0, 0] > 0.7 for f in found))
            pairs = self._assign(recheck, found)
            full = len(pairs) < len(recheck)  # a followed face failed its re-check
        if full:
            self._last_full = frame_index
            found = self.detector.detect(frame_rgb)
            expected = {pos: follow[pos].box if pos in held else self._predicted_box(t)
                        for pos, t in enumerate(self._active)}
            pairs = self._assign(expected, found)
        unmatched = [j for j in range(len(found)) if j not in pairs.values()] if full else []

        observed = []
        for pos, track in enumerate(self._active):
            if pos in pairs:
                obs = self._detected(frame_index, time, frame_rgb, found[pairs[pos]], track.track_id, follow.get(pos))
            elif pos in held:
                f = follow[pos]
                obs = self._observation(frame_index, time, frame_rgb, track.track_id, f.box, track.last.score,
                                        f.mesh, f.presence)
            else:
                track.missed += 1
                continue
            steps = track.missed + 1
            track.velocity = 0.5 * track.velocity + 0.5 * (obs.box - track.last.box) / steps
            track.last, track.missed = obs, 0
            observed.append(obs)
        for j in unmatched:
            obs = self._detected(frame_index, time, frame_rgb, found[j], self._next_id)
            self._active.append(_Track(self._next_id, obs, np.zeros(4, np.float32)))
            self._next_id += 1
            observed.append(obs)
        self._active = [t for t in self._active if t.missed <= self.max_gap]
        self._observations.extend(observed)
        return observed


def track_video(frames: Iterable[Any], detector: FaceDetector | None = None,
                landmarker: MeshLandmarker | FanLandmarker | None = None,
                max_gap: int = 10, detect_every: int = 15, mesh: bool = True,
                on_frame=None) -> Tracks:
    """Track every frame of ``frames`` — ``(index, time, rgb)`` tuples or objects with
    ``.index``, ``.time`` and ``.rgb`` (``animator.media.decode.VideoFrame``); see
    :class:`FaceTracker` for the options. ``on_frame(observations)`` runs after each frame."""
    tracker = FaceTracker(detector, landmarker, max_gap=max_gap, detect_every=detect_every, mesh=mesh)
    for item in frames:
        index, time, rgb = (item.index, item.time, item.rgb) if hasattr(item, "rgb") else item
        observed = tracker.update(index, time, rgb)
        if on_frame is not None:
            on_frame(observed)
    return tracker.tracks


def image_faces(rgb: np.ndarray, select: str | int = "all", detector: FaceDetector | None = None,
                landmarker: MeshLandmarker | FanLandmarker | None = None) -> list[FaceObservation]:
    """The selected faces of one photo, tracked as a one-frame video so that their IDs are
    the ones ``animator faces`` reports for it; in ID order."""
    return track_video([(0, 0.0, rgb)], detector, landmarker, max_gap=0).select(select).for_frame(0)
