"""Zero-lag smoothing of face tracks, possible because rendering tracks the whole video first.

A low-order Butterworth low-pass run forwards and backwards (``scipy.signal.filtfilt``) has
zero phase: a still face's detector jitter (white, up to half the frame rate) is removed,
while a turning head (motion below ~2 Hz) keeps its timing — no lag, only very fast starts and
stops are rounded a little. Boxes and the 5 points are smoothed, so every crop policy
computed from them (``align.crop_transform``) is smooth too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.signal import butter, filtfilt

from animator.faces.track import FaceObservation, Tracks

DEFAULT_CUTOFF_HZ = 2.0
ORDER = 2


def smooth_series(times: np.ndarray, values: np.ndarray, cutoff_hz: float = DEFAULT_CUTOFF_HZ) -> np.ndarray:
    """Zero-phase low-pass of ``values`` (N, ...) sampled at ``times`` (N,) seconds, along axis 0.

    The sampling rate is taken from the median frame interval; series too short to filter,
    or a cutoff at or above the Nyquist rate, come back unchanged (as float copies).
    """
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    n = len(values)
    if n < 4:
        return values.copy()
    step = float(np.median(np.diff(times)))
    if not np.isfinite(step) or step <= 0:
        return values.copy()
    nyquist = 0.5 / step
    if cutoff_hz >= nyquist:
        return values.copy()
    b, a = butter(ORDER, cutoff_hz / nyquist)
    # pad (odd reflection, which continues a trend) for 2.5 cutoff periods so the filter
    # settles before the real samples: the ends neither lag nor bend
    padlen = min(n - 1, max(3 * (ORDER + 1), int(np.ceil(2.5 / (cutoff_hz * step)))))
    return filtfilt(b, a, values, axis=0, padlen=padlen)


def smooth_track_points(times: np.ndarray, points: np.ndarray, cutoff_hz: float = DEFAULT_CUTOFF_HZ) -> np.ndarray:
    """(N, 5, 2) face points of one track -> smoothed float32 copy."""
    return smooth_series(times, points, cutoff_hz).astype(np.float32)


def _runs(tracks: Tracks, obs: list[FaceObservation]) -> list[list[FaceObservation]]:
    """Split a track's observations where frames are missing (gaps longer than were bridged)."""
    position = {index: pos for pos, (index, _) in enumerate(tracks.frames)}
    runs: list[list[FaceObservation]] = []
    for o in obs:
        if runs and position[o.frame_index] == position[runs[-1][-1].frame_index] + 1:
            runs[-1].append(o)
        else:
            runs.append([o])
    return runs


def smooth_tracks(tracks: Tracks, cutoff_hz: float = DEFAULT_CUTOFF_HZ, mesh: bool = False) -> Tracks:
    """A copy of ``tracks`` with every track's boxes and points (and meshes, if asked)
    smoothed over time. Raw detections stay in the input object."""
    smoothed: list[FaceObservation] = []
    for track_id in tracks.track_ids:
        for run in _runs(tracks, tracks.track(track_id)):
            times = np.array([o.time for o in run])
            boxes = smooth_series(times, np.stack([o.box for o in run]), cutoff_hz)
            points = smooth_track_points(times, np.stack([o.points for o in run]), cutoff_hz)
            meshes = None
            if mesh and all(o.mesh is not None for o in run):
                meshes = smooth_series(times, np.stack([o.mesh for o in run]), cutoff_hz).astype(np.float32)
            for k, o in enumerate(run):
                smoothed.append(replace(o, box=boxes[k].astype(np.float32), points=points[k],
                                        mesh=meshes[k] if meshes is not None else o.mesh))
    return Tracks(tracks.frames, smoothed)
