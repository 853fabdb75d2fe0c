"""``animator faces``: find and follow the faces of a photo or video, report and draw them.

A diagnostic for what ``render`` will edit: the JSON lists every frame's faces (ID, box,
score, 5 points; the README's faces JSON) and the preview draws boxes, IDs, the 5 points and
the landmarks onto the image, or onto every frame of the video (re-encoded with its audio).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from animator.errors import AnimatorError
from animator.faces.detect import FaceDetector
from animator.faces.landmarks import make_landmarker
from animator.faces.track import FaceObservation, Tracks, track_video
from animator.media.images import is_image, read_image, write_image
from animator.outputs import atomic_output, check_output
from animator.progress import progress

# RGB colours; the 5 points: eyes blue, nose yellow, mouth corners magenta
BOX_COLOR = (0, 230, 0)
BRIDGED_COLOR = (255, 170, 0)
POINT_COLORS = [(40, 120, 255), (40, 120, 255), (255, 230, 0), (255, 0, 200), (255, 0, 200)]
MESH_COLOR = (0, 220, 255)


@dataclass
class FacesOptions:
    input: Path
    json_out: Path | None = None
    preview: Path | None = None
    select: str | int = "all"
    score_threshold: float = 0.6
    landmarks: str = "mesh"
    max_gap: int = 10
    overwrite: bool = False
    quiet: bool = False


def faces(opts: FacesOptions) -> dict:
    """Run the diagnostic; returns the faces JSON document (also written to ``json_out``)."""
    image = is_image(opts.input)
    for out in (opts.json_out, opts.preview):
        if out is not None:
            check_output(out, [opts.input], opts.overwrite)
    if (opts.json_out is not None and opts.preview is not None
            and Path(opts.json_out).resolve() == Path(opts.preview).resolve()):
        raise AnimatorError(f"{opts.preview}: --json and --preview name the same file")
    if opts.preview is not None and image and not is_image(opts.preview):
        raise AnimatorError(f"{opts.preview}: the preview of an image is an image (.png, .jpg ...)")
    if opts.preview is not None and not image:
        from animator.media.encode import CONTAINERS  # noqa: PLC0415 (PyAV import)

        if Path(opts.preview).suffix.lower() not in CONTAINERS:
            raise AnimatorError(f"{opts.preview}: the preview of a video is a video "
                                f"({', '.join(CONTAINERS)})")
    detector = FaceDetector(score_threshold=opts.score_threshold)
    landmarker = make_landmarker(opts.landmarks)

    if image:
        rgb = read_image(opts.input)
        tracks = track_video([(0, 0.0, rgb)], detector, landmarker, max_gap=0).select(opts.select)
        document = tracks.to_json(str(opts.input), None)
        if opts.preview is not None:
            with atomic_output(opts.preview, [opts.input], opts.overwrite) as tmp:
                write_image(tmp, draw_faces(rgb, tracks.for_frame(0)))
    else:
        document, tracks = _video(opts, detector, landmarker)
    if opts.json_out is not None:
        with atomic_output(opts.json_out, [opts.input], opts.overwrite) as tmp:
            tmp.write_text(dumps_faces(document))
    return document


def dumps_faces(document: dict) -> str:
    """The faces JSON with one frame per line: compact, still easy to read and diff."""
    head = json.dumps({k: v for k, v in document.items() if k != "frames"})[:-1]
    frames = ",\n ".join(json.dumps(frame) for frame in document["frames"])
    return f'{head}, "frames": [\n {frames}\n]}}\n'


def _video(opts: FacesOptions, detector, landmarker) -> tuple[dict, Tracks]:
    from animator.media.decode import iter_frames, probe  # noqa: PLC0415 (PyAV import)

    info = probe(opts.input)
    with progress(info.frames, "tracking faces", opts.quiet) as bar:
        tracks = track_video(iter_frames(opts.input), detector, landmarker, max_gap=opts.max_gap,
                             on_frame=lambda _: bar.update(1))
    tracks = tracks.select(opts.select)
    if opts.preview is not None:
        from animator.media.encode import VideoWriter  # noqa: PLC0415

        with atomic_output(opts.preview, [opts.input], opts.overwrite) as tmp, \
                progress(len(tracks.frames), "drawing preview", opts.quiet) as bar:
            with VideoWriter(tmp, info) as writer:
                for frame in iter_frames(opts.input):
                    writer.write(draw_faces(frame.rgb, tracks.for_frame(frame.index)),
                                 frame.pts, frame.duration)
                    bar.update(1)
    return tracks.to_json(str(opts.input), info.fps_float), tracks


def draw_faces(rgb: np.ndarray, observations: list[FaceObservation]) -> np.ndarray:
    """A copy of ``rgb`` with each face's box and ID (orange when bridged by interpolation),
    landmarks (mesh or FAN points) and the 5 alignment points drawn on it."""
    out = rgb.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 360))
    shift = 4  # sub-pixel drawing: coordinates * 16
    scale = 1 << shift

    def pt(p) -> tuple[int, int]:
        return int(round(float(p[0]) * scale)), int(round(float(p[1]) * scale))

    for obs in observations:
        color = BRIDGED_COLOR if obs.interpolated else BOX_COLOR
        landmarks = obs.fan_points if obs.fan_points is not None else obs.mesh
        if landmarks is not None:
            radius = max(1, thick // 2) * scale
            for p in landmarks:
                cv2.circle(out, pt(p), radius, MESH_COLOR, -1, cv2.LINE_AA, shift)
        x0, y0, x1, y1 = obs.box
        cv2.rectangle(out, pt((x0, y0)), pt((x1, y1)), color, thick, cv2.LINE_AA, shift)
        for p, c in zip(obs.points, POINT_COLORS):
            cv2.circle(out, pt(p), (thick + 1) * scale, c, -1, cv2.LINE_AA, shift)
        label = f"{obs.track_id}" + (" (bridged)" if obs.interpolated else f" {obs.score:.2f}")
        font = 0.5 * thick
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        tx, ty = int(x0), int(y0) - base - 2
        if ty - th < 0:
            ty = int(y1) + th + 2
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), color, -1)
        cv2.putText(out, label, (tx + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
    return out
