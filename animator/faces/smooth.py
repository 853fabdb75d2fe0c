"""Zero-lag smoothing of face tracks, possible because rendering tracks the whole video first.

A second-order Butterworth low-pass run forwards and backwards (what ``scipy.signal.filtfilt``
does, in a few lines of numpy here: importing scipy.signal costs more start-up time than
smoothing a whole video) has zero phase: a still face's detector jitter (white, up to half the frame rate) is removed,
while a turning head (motion below ~2 Hz) keeps its timing — no lag, only very fast starts and
stops are rounded a little. Boxes and the 5 points are smoothed, so every crop policy
computed from them (``align.crop_transform``) is smooth too.

Meshes (which the motion stage warps from) are smoothed so too, but each point is then held
within :data:`MESH_HOLD` noise levels of where the landmark model found it: a blink closes an
eye within a frame or two and lips move as fast in speech, and a mesh smoothed past them puts
lids and lips where the picture does not have them, so the warp would tear the wrong pixels.
The noise level is measured on each track (:func:`landmark_noise`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from animator.faces.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from animator.faces.track import FaceObservation, Tracks

DEFAULT_CUTOFF_HZ = 2.0
ORDER = 2  # the closed forms below are for this order
MESH_HOLD = 3.0  # a smoothed mesh point stays within this many noise levels of the found one
NOISE_FRAMES = 1000  # ... measured on at most this many frames of a track, spread over it


def butter_lowpass(cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of the second-order digital Butterworth low-pass with ``cutoff`` a fraction of
    the Nyquist rate (0, 1): the bilinear transform with pre-warping, as scipy.signal.butter."""
    k = np.tan(np.pi * cutoff / 2)
    norm = 1 + np.sqrt(2) * k + k * k
    b = np.array([k * k, 2 * k * k, k * k]) / norm
    a = np.array([1.0, 2 * (k * k - 1) / norm, (1 - np.sqrt(2) * k + k * k) / norm])
    return b, a


def biquad(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Second-order IIR filter along axis 0 (transposed direct form II), started in the steady
    state of a constant input equal to ``x[0]`` (scipy's ``lfilter_zi`` start)."""
    steady = np.linalg.solve([[1 + a[1], -1.0], [a[2], 1.0]], [b[1] - a[1] * b[0], b[2] - a[2] * b[0]])
    z0, z1 = steady[0] * x[0], steady[1] * x[0]
    y = np.empty_like(x)
    for n, value in enumerate(x):
        y[n] = b[0] * value + z0
        z0, z1 = b[1] * value - a[1] * y[n] + z1, b[2] * value - a[2] * y[n]
    return y


def filtfilt(b: np.ndarray, a: np.ndarray, x: np.ndarray, padlen: int) -> np.ndarray:
    """Forward-backward filtering along axis 0 after odd reflection of ``padlen`` samples at
    each end (scipy.signal.filtfilt's default method)."""
    head = 2 * x[0] - x[padlen:0:-1]
    tail = 2 * x[-1] - x[-2:-padlen - 2:-1]
    y = biquad(b, a, np.concatenate([head, x, tail]))
    y = biquad(b, a, y[::-1])[::-1]
    return y[padlen:len(y) - padlen]


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
    b, a = butter_lowpass(cutoff_hz / nyquist)
    # pad (odd reflection, which continues a trend) for 2.5 cutoff periods so the filter
    # settles before the real samples: the ends neither lag nor bend
    padlen = min(n - 1, max(3 * (ORDER + 1), int(np.ceil(2.5 / (cutoff_hz * step)))))
    return filtfilt(b, a, values, padlen)


def smooth_track_points(times: np.ndarray, points: np.ndarray, cutoff_hz: float = DEFAULT_CUTOFF_HZ) -> np.ndarray:
    """(N, 5, 2) face points of one track -> smoothed float32 copy."""
    return smooth_series(times, points, cutoff_hz).astype(np.float32)


def eye_span(meshes: np.ndarray) -> np.ndarray:
    """(N,) frame pixels between the outer eye corners of (N, P, D) meshes: the face's scale."""
    return np.linalg.norm(meshes[:, LEFT_EYE_OUTER, :2] - meshes[:, RIGHT_EYE_OUTER, :2], axis=-1)


def landmark_noise(meshes: np.ndarray) -> float:
    """The landmark model's jitter on one track of (N >= 3, P, D) meshes, as a fraction of the
    eye-corner span: a robust (median-based) standard deviation of each point's departure from
    the midpoint of its neighbours in time, which white noise of variance v gives variance 1.5 v
    (real motion is smooth over three frames, or -- blinks -- too rare to move the median)."""
    centre = np.unique(np.linspace(1, len(meshes) - 2, min(len(meshes) - 2, NOISE_FRAMES)).astype(int))
    departure = meshes[centre] - (meshes[centre - 1] + meshes[centre + 1]) / 2
    departure /= eye_span(meshes[centre])[:, None, None]
    return float(1.4826 * np.median(np.abs(departure)) / np.sqrt(1.5))


def smooth_meshes(times: np.ndarray, meshes: np.ndarray, cutoff_hz: float = DEFAULT_CUTOFF_HZ) -> np.ndarray:
    """(N, P, D) face meshes of one track -> smoothed float32 copy: :func:`smooth_series`, with
    every point held within :data:`MESH_HOLD` noise levels (:func:`landmark_noise`) of where it
    was found, so that jitter is removed but blinks and speech are kept."""
    meshes = np.asarray(meshes, dtype=np.float64)
    smooth = smooth_series(times, meshes, cutoff_hz)
    if len(meshes) < 3:
        return smooth.astype(np.float32)
    hold = (MESH_HOLD * landmark_noise(meshes) * eye_span(meshes))[:, None, None]
    smooth -= meshes                                   # in place: a long track's meshes are large
    np.clip(smooth, -hold, hold, out=smooth)
    smooth += meshes
    return smooth.astype(np.float32)


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
                meshes = smooth_meshes(times, np.stack([o.mesh for o in run]), cutoff_hz)
            for k, o in enumerate(run):
                smoothed.append(replace(o, box=boxes[k].astype(np.float32), points=points[k],
                                        mesh=meshes[k] if meshes is not None else o.mesh))
    return Tracks(tracks.frames, smoothed)
