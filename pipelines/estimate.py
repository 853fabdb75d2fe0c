"""``animator estimate``: AU intensities per video frame, per image of a folder, or for a photo,
written in OpenFace's CSV convention so tools made for OpenFace output can read it.

Columns: ``frame`` (1-based, as OpenFace), ``timestamp`` (s), ``face_id``, ``confidence``
(the detector's score; 0 where no face was found), ``AU01_r`` ... ``AU45_r``; a folder adds a
leading ``file`` column. AUs come from MediaPipe's 478 landmarks and blendshapes, the same
landmarks the tracker follows the face with (docs/au_estimation.md).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animator.aus import AU_NAMES, N_AUS
from animator.errors import AnimatorError
from animator.estimate import AUEstimator
from animator.media.images import is_image, read_image
from animator.outputs import atomic_output, check_output
from animator.progress import progress

AU_COLUMNS = [f"{name}_r" for name in AU_NAMES]


@dataclass
class EstimateOptions:
    input: Path
    output: Path
    plot: Path | None = None
    select: str | int = "largest"
    score_threshold: float = 0.6
    overwrite: bool = False
    quiet: bool = False
    warn: Callable[[str], None] = lambda line: None  # an image of a folder that was skipped


@dataclass
class Row:
    frame: int          # 1-based
    timestamp: float
    face_id: int
    confidence: float
    aus: np.ndarray     # (17,)
    file: str | None = None


def estimate(opts: EstimateOptions) -> list[Row]:
    """Estimate, write the CSV (and the plot); returns the rows written."""
    source = opts.input
    if not source.exists():
        raise AnimatorError(f"{source}: no such file or folder")
    check_output(opts.output, [source], opts.overwrite)
    if opts.plot is not None:
        from animator.plots import plot_format

        check_output(opts.plot, [source, opts.output], opts.overwrite)
        plot_format(opts.plot)  # a bad suffix fails now, not after the CSV is written
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker

    detector = FaceDetector(score_threshold=opts.score_threshold)
    landmarker = MeshLandmarker()
    estimator = AUEstimator.default()
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.is_file() and is_image(p))
        if not paths:
            raise AnimatorError(f"{source}: no images (.jpg, .png ...) in this folder")
        rows = _images(paths, detector, landmarker, estimator, opts, folder=True)
        if not rows:
            raise AnimatorError(f"{source}: none of its {len(paths)} images could be estimated")
    elif is_image(source):
        rows = _images([source], detector, landmarker, estimator, opts, folder=False)
    else:
        rows = _video(source, detector, landmarker, estimator, opts)
    write_csv(rows, opts.output, [source], opts.overwrite, with_file=source.is_dir())
    if opts.plot is not None:
        _plot(rows, opts, folder=source.is_dir())
    return rows


def _images(paths: list[Path], detector, landmarker, estimator: AUEstimator,
            opts: EstimateOptions, folder: bool) -> list[Row]:
    """Rows for the selected faces of each image (one row with confidence 0 where none is
    found). In a folder an image that fails is skipped with a warning, not the whole folder."""
    from animator.faces.track import image_faces

    rows = []
    with progress(len(paths), "estimate", opts.quiet, unit="image") as bar:
        for number, path in enumerate(paths, start=1):
            name = path.name if folder else None
            try:
                faces = [f for f in image_faces(read_image(path), opts.select, detector, landmarker)
                         if f.mesh is not None]
            except AnimatorError as exc:
                if not folder:
                    raise
                opts.warn(f"{exc}: skipped")
                continue
            finally:
                bar.update()
            if not faces:
                rows.append(Row(number, 0.0, 0, 0.0, np.zeros(N_AUS, np.float32), name))
            rows += [Row(number, 0.0, face.track_id, float(face.score),
                         estimator.estimate(face.mesh), name) for face in faces]
    return rows


def _video(path: Path, detector, landmarker, estimator: AUEstimator, opts: EstimateOptions) -> list[Row]:
    from animator.faces.track import track_video
    from animator.media.decode import iter_frames, probe

    total = probe(path).frames
    with progress(total, "track faces", opts.quiet) as bar:
        tracks = track_video(iter_frames(path), detector, landmarker,
                             on_frame=lambda _: bar.update()).select(opts.select)
    ids = tracks.track_ids
    missing_id = ids[0] if len(ids) == 1 else 0
    by_frame: dict[int, list[Row]] = {}
    for track_id in ids:  # video mode: each track read against its own resting face
        observed = [o for o in tracks.track(track_id) if o.mesh is not None]
        estimated = estimator.estimate_track(np.stack([o.mesh for o in observed])) if observed else []
        for face, aus in zip(observed, estimated):
            by_frame.setdefault(face.frame_index, []).append(
                Row(face.frame_index + 1, face.time, face.track_id, float(face.score), aus))
    rows = []
    for index, time in tracks.frames:
        found = sorted(by_frame.get(index, []), key=lambda row: row.face_id)
        rows.extend(found or [Row(index + 1, time, missing_id, 0.0, np.zeros(N_AUS, np.float32))])
    return rows


def write_csv(rows: list[Row], out: Path, inputs: list[Path], overwrite: bool, with_file: bool) -> None:
    header = (["file"] if with_file else []) + ["frame", "timestamp", "face_id", "confidence"] + AU_COLUMNS
    with atomic_output(out, inputs, overwrite) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            values = [row.frame, f"{row.timestamp:.3f}", row.face_id, f"{row.confidence:.2f}"]
            values += [f"{v:.2f}" for v in row.aus]
            writer.writerow(([row.file] if with_file else []) + values)


def _plot(rows: list[Row], opts: EstimateOptions, folder: bool) -> None:
    from animator.plots import plot_au_curves

    ids = [row.face_id for row in rows]
    shown = max(set(ids), key=ids.count)  # one face's curves: the one seen in most rows
    picked = [row for row in rows if row.face_id == shown]
    times = np.array([row.frame if folder else row.timestamp for row in picked], dtype=np.float64)
    what = "image number" if folder else f"face {shown}"
    plot_au_curves(times, np.stack([row.aus for row in picked]), opts.plot,
                   title=f"estimated AUs: {opts.input.name} ({what})",
                   overwrite=opts.overwrite, inputs=[opts.input, opts.output])
