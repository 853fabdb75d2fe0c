"""``animator morph``: one photo moving smoothly from one AU target to another.

The faces (``--select``: the largest by default) are found once and the AU vector eased from A
to B. With motion, each frame first moves every face from its own AUs (the estimator's reading)
to that frame's vector (:mod:`animator.motion`) and is cropped again; without, the generator runs
on the same crops. Each result is pasted back at full resolution. OUT is a
video (.mp4/.mov/.mkv/.webm, through the same encoder as render), an animated .gif (Pillow),
or a folder of PNGs with frames.json (any OUT without one of those suffixes).
"""

from __future__ import annotations

import time as clock
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from animator import aus
from animator.errors import AnimatorError
from animator.media.decode import VideoFrame, VideoInfo
from animator.media.encode import CONTAINERS, EncodeOptions, VideoWriter, plan_encoding
from animator.media.images import read_image
from animator.motion import WARP_ONLY_NOTE
from animator.outputs import atomic_output, check_output
from animator.progress import progress
from pipelines.render import (FaceJob, FrameExport, FrameJob, Summary,
                              composite_faces, edit_faces, motion_setup, move_faces)

EASINGS = ("linear", "in", "out", "in-out")
GIF_SUFFIX = ".gif"
MAX_FPS = 240.0
MAX_FRAMES = 10_000  # every frame of a GIF is held in memory until it is written


@dataclass
class MorphOptions:
    image: Path
    source: str  # --from: a preset, AU=value list or JSON
    target: str  # --to
    out: Path
    frames: int = 48
    fps: float = 24.0
    ease: str = "in-out"
    pingpong: bool = False
    checkpoint: Path | None = None
    device: str = "auto"
    batch_size: int = 16
    select: str | int = "largest"  # "largest" | "all" | a face ID from ``animator faces``
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    mattes: bool = False
    motion: str | None = None  # "warp" | "none"; None: the model config's choice
    overwrite: bool = False
    quiet: bool = False


def ease(t: np.ndarray, kind: str) -> np.ndarray:
    """Easing curves on [0, 1] (cubic ``in``/``out``, smoothstep ``in-out``)."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    if kind == "linear":
        return t
    if kind == "in":
        return t ** 3
    if kind == "out":
        return 1.0 - (1.0 - t) ** 3
    if kind == "in-out":
        return t * t * (3.0 - 2.0 * t)
    raise AnimatorError(f"--ease: {kind!r} is not one of {', '.join(EASINGS)}")


def morph_targets(a: np.ndarray, b: np.ndarray, frames: int, kind: str, pingpong: bool) -> np.ndarray:
    """(N, 17) AU vectors from ``a`` to ``b`` (and back without repeating the ends)."""
    t = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    w = ease(t, kind)[:, None]
    vectors = (a[None] * (1.0 - w) + b[None] * w).astype(np.float32)
    if pingpong and frames > 2:
        vectors = np.concatenate([vectors, vectors[-2:0:-1]])
    return np.clip(vectors, aus.AU_MIN, aus.AU_MAX)


def output_kind(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in CONTAINERS:
        return "video"
    if suffix == GIF_SUFFIX:
        return "gif"
    if suffix:
        raise AnimatorError(f"{out}: unsupported output {suffix!r}: use .mp4, .mov, .mkv, .webm, "
                            ".gif, or a folder name (no suffix) for PNGs")
    return "folder"


def morph(opts: MorphOptions) -> Summary:
    from animator.faces.track import parse_selection  # noqa: PLC0415

    began = clock.perf_counter()
    select = parse_selection(opts.select)
    if Path(opts.image).is_dir():
        raise AnimatorError(f"{opts.image}: is a folder; morph animates one photo "
                            f"(.jpg, .png ...)")
    if not 2 <= opts.frames <= MAX_FRAMES:
        raise AnimatorError(f"--frames: {opts.frames} must be in 2-{MAX_FRAMES}")
    if not 0 < opts.fps <= MAX_FPS:
        raise AnimatorError(f"--fps: {opts.fps:g} must be in (0, {MAX_FPS:g}]")
    kind = output_kind(Path(opts.out))
    if opts.mattes and kind != "folder":
        raise AnimatorError("--mattes: only a folder OUT holds mattes")
    a = aus.parse_target(opts.source, "--from")
    b = aus.parse_target(opts.target, "--to")
    vectors = morph_targets(a, b, opts.frames, opts.ease, opts.pingpong)
    image = read_image(opts.image)
    h, w = image.shape[:2]
    fps = Fraction(opts.fps).limit_denominator(1001)
    info = VideoInfo(path=Path(opts.image), width=w, height=h, fps=fps, time_base=1 / fps,
                     start_pts=0, frames=len(vectors), duration=len(vectors) / float(fps),
                     rotation=0, codec="image", pix_fmt=None, colorspace=None, color_range=None,
                     has_audio=False)
    notes: list[str] = []
    if kind == "video":
        notes += plan_encoding(opts.out, w, h, opts.encode).notes
    inputs = [opts.image] + ([opts.checkpoint] if opts.checkpoint else [])
    check_output(opts.out, inputs, opts.overwrite, directory=kind == "folder")
    rig, editor = motion_setup(opts.motion, opts.checkpoint, opts.device, opts.batch_size)
    faces = find_faces(image, editor.crop_policy if editor else None, opts.image, select)

    summary = Summary(input=str(opts.image), output=str(opts.out),
                      notes=notes + ([] if editor else [WARP_ONLY_NOTE]))
    jobs = edit_frames(image, faces, vectors, editor, rig, fps, opts.batch_size, opts.mattes)
    with progress(len(vectors), "morphing", opts.quiet) as bar, \
            atomic_output(opts.out, inputs, opts.overwrite, directory=kind == "folder") as tmp:
        if kind == "video":
            with VideoWriter(tmp, info, opts.encode, audio=False) as writer:
                for job in jobs:
                    writer.write(job.frame.rgb, job.frame.pts)
                    bar.update(1)
        elif kind == "gif":
            write_gif(tmp, (job.frame.rgb for job in _counted(jobs, bar)), float(fps))
        else:
            with FrameExport(tmp, opts.mattes, float(fps), str(opts.image), "absolute",
                             motion=rig is not None) as export:
                for job in jobs:
                    export.add(job)
                    bar.update(1)
    summary.frames = len(vectors)
    summary.faces_edited = len(vectors) * len(faces)
    summary.frames_dir = str(opts.out) if kind == "folder" else None
    summary.seconds = clock.perf_counter() - began
    return summary


def find_faces(image: np.ndarray, policy, source: Path, select: str | int = "largest") -> list[FaceJob]:
    """The selected faces' meshes, crops and transforms (``--select`` as in render: IDs from
    ``animator faces``), aligned on the face mesh's five points as the renderer's tracker and
    ``animator prepare`` align them, so the model sees the crops it was trained on; without a
    ``policy`` (no generator) only the faces' meshes and points."""
    from animator.faces.align import crop_transform, warp_crop  # noqa: PLC0415
    from animator.faces.track import image_faces  # noqa: PLC0415

    found = image_faces(image, select)
    if not found:
        raise AnimatorError(f"{source}: no face found in the image")
    jobs = []
    for face in found:
        M = crop_transform(policy, face.points, face.box) if policy else None
        jobs.append(FaceJob(track_id=face.track_id, box=np.asarray(face.box), score=float(face.score),
                            points=np.asarray(face.points), M=M,
                            crop=warp_crop(image, M, policy.size) if policy else None,
                            target=np.zeros(aus.N_AUS, np.float32), mesh=face.mesh))
    return jobs


def edit_frames(image: np.ndarray, faces: list[FaceJob], vectors: np.ndarray, editor, rig,
                fps: Fraction, batch_size: int, mattes: bool) -> Iterator[FrameJob]:
    """Generate in batches (of the same crops with changing AUs, or of the moved faces' crops);
    composite each result."""
    from animator.faces.align import warp_crop  # noqa: PLC0415

    if rig is not None:
        from animator.estimate import AUEstimator  # noqa: PLC0415
        from animator.motion.rims import RimFinder  # noqa: PLC0415

        meshes = [face.mesh for face in faces]
        current = list(AUEstimator.default().estimate(np.stack(meshes)))
        finder = RimFinder()
        rims = [finder.find(image, mesh) for mesh in meshes]
    for first in range(0, len(vectors), batch_size):
        batch = []
        for i in range(first, min(first + batch_size, len(vectors))):
            rgb, fields = image, []
            if rig is not None:
                rgb, fields = move_faces(image, meshes, current, [vectors[i]] * len(faces), rig, rims)
            job_faces = [FaceJob(track_id=face.track_id, box=face.box, score=face.score,
                                 points=face.points, M=face.M,
                                 crop=(warp_crop(rgb, face.M, len(face.crop)) if fields else face.crop)
                                 if editor else None, target=vectors[i])
                         for face in faces]
            frame = VideoFrame(index=i, time=float(i / fps), rgb=rgb, pts=i, duration=1,
                               time_base=1 / fps)
            batch.append(FrameJob(frame=frame, aus=vectors[i], faces=job_faces, fields=fields))
        edit_faces(editor, [face for job in batch for face in job.faces])
        for job in batch:
            composite_faces(job, mattes)
            yield job


def _counted(jobs: Iterator[FrameJob], bar) -> Iterator[FrameJob]:
    for job in jobs:
        bar.update(1)
        yield job


def write_gif(path: Path, frames: Iterator[np.ndarray], fps: float) -> None:
    """An endlessly looping GIF (Pillow, adaptive palette per frame)."""
    from PIL import Image  # noqa: PLC0415 (only GIF output needs Pillow)

    images = [Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE) for rgb in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, round(1000 / fps)), loop=0, disposal=1)
