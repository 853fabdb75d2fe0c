"""``animator render``: change the expression of the faces in a video from AU keyframes.

Two passes over the video. Pass 1 decodes and tracks faces (cheap; the tracks are smoothed
with zero lag once all of them are known). Pass 2 decodes again and streams

    decode + move + crop  ->  generate (batches)  ->  composite  ->  encode (+ PNG export)

with each arrow a bounded queue between threads (:mod:`pipelines.stages`), so decoding,
generation and encoding overlap and memory does not grow with the video's length. "move" is
the motion stage (:mod:`animator.motion`, ``--motion``): the AU rig and a full-resolution warp
move each face from the actor's smoothed AUs to its target, on its smoothed mesh; with
``--motion warp`` the generator and the compositing then do not run. Every frame
is written, in order, with its own timestamp; frames without a face pass through untouched.
The AU trajectory is sampled at each frame's own time on the source video's clock (so keys
keep their meaning with ``--start``/``--end``).
"""

from __future__ import annotations

import contextlib
import json
import math
import time as clock
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from animator import aus
from animator.errors import AnimatorError
from animator.media.decode import DecodeStats, VideoFrame, iter_frames, probe
from animator.media.encode import EncodeOptions, VideoWriter, plan_encoding
from animator.media.images import write_image
from animator.outputs import atomic_output, check_output
from animator.motion import MOTION_MODES, WARP_ONLY_NOTE
from animator.motion.warp import frame_offsets
from animator.progress import progress
from pipelines.stages import Stages, batched_by

QUEUE_FRAMES = 8  # frames buffered between two stages


@dataclass
class RenderOptions:
    video: Path
    keyframes: Path
    out: Path
    checkpoint: Path | None = None
    batch_size: int = 16
    device: str = "auto"
    select: str = "largest"  # "largest" | "all" | a track id
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    frames_dir: Path | None = None
    mattes: bool = False
    motion: str | None = None  # "warp" | "none"; None: the model config's choice
    start: float | None = None
    end: float | None = None
    overwrite: bool = False
    quiet: bool = False


@dataclass
class Summary:
    """What a render or morph did; printed on stderr, or as JSON with ``--json``."""

    input: str
    output: str
    frames: int = 0
    faces_edited: int = 0
    frames_without_face: int = 0
    corrupt_packets: int = 0  # packets the decoder rejected
    frames_lost: int = 0  # frames the input's header promises that could not be decoded
    frames_damaged: int = 0  # rendered although the decoder flagged them or logged errors
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    frames_dir: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        data = {"input": self.input, "output": self.output, "frames": self.frames,
                "faces_edited": self.faces_edited, "frames_without_face": self.frames_without_face,
                "corrupt_packets_skipped": self.corrupt_packets, "frames_lost": self.frames_lost,
                "frames_damaged": self.frames_damaged, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 2), "notes": self.notes}
        if self.frames_dir:
            data["frames_dir"] = self.frames_dir
        if self.timings:
            data["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        return data

    def text(self) -> str:
        lines = [f"{self.output}: {self.frames} frames, {self.faces_edited} faces edited, "
                 f"{self.frames_without_face} frames without a face, "
                 f"{self.seconds:.1f} s ({self.fps:.1f} frames/s)"]
        if self.frames_lost or self.frames_damaged or self.corrupt_packets:
            lines.append(f"damaged input: {self.frames_lost} frames lost, {self.frames_damaged} "
                         f"frames damaged (rendered as decoded), {self.corrupt_packets} corrupt "
                         f"packets skipped")
        if self.frames_dir:
            lines.append(f"frames exported to {self.frames_dir}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class FaceJob:
    """One face of one frame on its way through the pipeline."""

    track_id: int
    box: np.ndarray
    score: float
    points: np.ndarray
    M: np.ndarray  # frame -> crop
    crop: np.ndarray  # (s, s, 3) uint8
    target: np.ndarray  # (17,) AUs 0-5
    attention: np.ndarray | None = None
    color: np.ndarray | None = None
    mesh: np.ndarray | None = None  # (478, 3) frame px, where the motion stage needs it


@dataclass
class FrameJob:
    frame: VideoFrame
    aus: np.ndarray  # the trajectory sample at this frame's time (offsets in relative mode)
    faces: list[FaceJob]
    matte: np.ndarray | None = None
    fields: list = field(default_factory=list)  # the faces' motion fields (animator.motion.warp)


def check_range(start: float | None, end: float | None) -> None:
    for name, value in (("--start", start), ("--end", end)):
        if value is not None and not math.isfinite(value):
            raise AnimatorError(f"{name}: {value:g} is not a finite time in seconds")
    if start is not None and start < 0:
        raise AnimatorError(f"--start: {start:g} is negative")
    if end is not None and end <= (start or 0.0):
        raise AnimatorError(f"--end: {end:g} is not after --start ({start or 0:g})")


def render(opts: RenderOptions) -> Summary:
    """Run the whole render; outputs appear only if everything succeeded."""
    from animator.faces.track import parse_selection  # noqa: PLC0415

    began = clock.perf_counter()
    select = parse_selection(opts.select)
    check_range(opts.start, opts.end)
    if opts.batch_size < 1:
        raise AnimatorError(f"--batch-size: {opts.batch_size} must be >= 1")
    if opts.mattes and opts.frames_dir is None:
        raise AnimatorError("--mattes: needs --frames DIR to write the mattes into")
    info = probe(opts.video)
    from animator.keyframes import load_keyframes  # noqa: PLC0415 (keeps --help fast)

    keyframes = load_keyframes(opts.keyframes, fps=info.fps_float)
    plan = plan_encoding(opts.out, info.width, info.height, opts.encode)
    inputs = [opts.video, opts.keyframes] + ([opts.checkpoint] if opts.checkpoint else [])
    check_output(opts.out, inputs, opts.overwrite)
    if opts.frames_dir is not None:
        check_output(opts.frames_dir, inputs, opts.overwrite, directory=True)
        frames, out = Path(opts.frames_dir).resolve(), Path(opts.out).resolve()
        if frames == out or frames in out.parents:
            raise AnimatorError(f"{opts.frames_dir}: --frames names -o's path or a folder holding it")

    summary = Summary(input=str(opts.video), output=str(opts.out), notes=list(plan.notes))
    summary.timings["setup"] = clock.perf_counter() - began
    with ThreadPoolExecutor(1, "animator-load") as loader:  # torch and the models load during pass 1
        loading = loader.submit(motion_setup, opts.motion, opts.checkpoint, opts.device, opts.batch_size)
        followed, times = follow_faces(opts.video, opts.start, opts.end, opts.quiet,
                                       total=info.frames if opts.start is None and opts.end is None else None,
                                       alongside=loading)
        rig, editor = loading.result()
    tracks = smoothed(followed, select, smooth_mesh=rig is not None)
    if not times:
        raise AnimatorError(f"{opts.video}: no frames between --start and --end")
    from animator.trajectory import sample_trajectory  # noqa: PLC0415

    samples = sample_trajectory(keyframes, np.asarray(times, dtype=np.float64), info.fps_float)
    targets = FaceTargets(keyframes.mode, samples, tracks, actor=rig is not None)

    summary.timings["tracking"] = clock.perf_counter() - began - summary.timings["setup"]
    stats = DecodeStats()
    rendering = clock.perf_counter()
    with contextlib.ExitStack() as stack:
        out_tmp = stack.enter_context(atomic_output(opts.out, inputs, opts.overwrite))
        export = None
        if opts.frames_dir is not None:
            frames_tmp = stack.enter_context(
                atomic_output(opts.frames_dir, inputs, opts.overwrite, directory=True))
            export = stack.enter_context(FrameExport(frames_tmp, opts.mattes, info.fps_float,
                                                     str(opts.video), keyframes.mode,
                                                     motion=rig is not None))
        writer = stack.enter_context(VideoWriter(out_tmp, info, opts.encode,
                                                 audio_range=(opts.start, opts.end)))
        bar = stack.enter_context(progress(len(times), "rendering", opts.quiet))
        stages = stack.enter_context(Stages())  # left first: threads stop before files close
        jobs = _pass_two(opts, editor, rig, tracks, targets, stats, stages)
        for job in jobs:
            writer.write(job.frame.rgb, job.frame.pts, job.frame.duration)
            if export is not None:
                export.add(job)
            summary.frames += 1
            summary.faces_edited += len(job.faces)
            summary.frames_without_face += not job.faces
            bar.update(1)
        if summary.frames != len(times):
            raise AnimatorError(f"{opts.video}: the second pass decoded {summary.frames} frames, "
                                f"the first {len(times)}; the file changed while rendering?")
        summary.notes = list(writer.notes) + ([] if editor else [WARP_ONLY_NOTE])
        if editor is None and keyframes.mode == "relative":
            from animator.motion.move import LOWERED  # noqa: PLC0415 (torch import)

            kept = [name for k, name in enumerate(aus.AU_NAMES) if k not in LOWERED and (samples[:, k] < 0).any()]
            if kept:
                summary.notes.append(f"relative keyframes lower {', '.join(kept)}: motion never takes back the "
                                     "mouth's speech shapes or blinks, so with --motion warp they stay as the "
                                     "actor has them (lowering them needs --motion warp+generator or none)")
    summary.timings["rendering"] = clock.perf_counter() - rendering
    summary.corrupt_packets = stats.corrupt_packets
    summary.frames_lost = stats.frames_lost(info)
    summary.frames_damaged = stats.damaged_frames
    summary.frames_dir = str(opts.frames_dir) if opts.frames_dir else None
    summary.seconds = clock.perf_counter() - began
    return summary


def _load_editor(checkpoint: Path | None, device: str, batch_size: int):
    from animator.model.inference import FaceEditor  # noqa: PLC0415 (torch import)

    return FaceEditor.from_checkpoint(checkpoint, device=device, batch_size=batch_size)


def motion_setup(motion: str | None, checkpoint: Path | None, device: str, batch_size: int):
    """(rig, editor) for ``--motion`` (or, when not given, the model config's choice): the AU
    rig when faces move (None for ``none``), the generator when it paints (None for ``warp``,
    whose model is then not even loaded)."""
    from animator.model.checkpoint import load_config  # noqa: PLC0415

    choice = motion or load_config(checkpoint).motion
    if choice not in MOTION_MODES:
        raise AnimatorError(f"--motion: {choice!r} is not one of {', '.join(MOTION_MODES)}")
    rig = None
    if choice != "none":
        from animator.motion.rig import AURig  # noqa: PLC0415

        rig = AURig.default()
    return rig, None if choice == "warp" else _load_editor(checkpoint, device, batch_size)


def track_faces(video: Path, start: float | None, end: float | None, select: str | int,
                quiet: bool, total: int | None = None, smooth_mesh: bool = False):
    """Pass 1: :func:`follow_faces`, then :func:`smoothed`; returns the tracks and every
    frame's time."""
    tracks, times = follow_faces(video, start, end, quiet, total)
    return smoothed(tracks, select, smooth_mesh), times


def follow_faces(video: Path, start: float | None, end: float | None, quiet: bool,
                 total: int | None = None, alongside: Future | None = None):
    """Decode and track every face; returns the tracks and every frame's time. Every
    observation carries its face mesh (the tracker aligns on it, and the actor's AUs are
    estimated from it). An error of the work running ``alongside`` (the model loading) stops
    the tracking at once."""
    from animator.faces.track import track_video  # noqa: PLC0415

    times: list[float] = []

    def frames() -> Iterator[VideoFrame]:
        for frame in iter_frames(video, start, end):
            if alongside is not None and alongside.done():
                alongside.result()  # raises its error, if any
            times.append(frame.time)
            bar.update(1)
            yield frame

    with progress(total, "tracking faces", quiet) as bar:
        tracks = track_video(frames())
    return tracks, times


def smoothed(tracks, select: str | int, smooth_mesh: bool = False):
    """The selected faces with their alignment points (and meshes, with ``smooth_mesh``: the
    motion stage warps from them) smoothed with zero lag."""
    from animator.faces.smooth import smooth_tracks  # noqa: PLC0415

    return smooth_tracks(tracks.select(select), mesh=smooth_mesh)


class FaceTargets:
    """The AU target of each face on each frame: the trajectory sample (absolute mode), or the
    actor's own AUs, smoothed over time, plus the sample's offsets (relative mode). The actor's
    AUs are estimated in relative mode, and whenever ``actor`` is asked for (motion)."""

    def __init__(self, mode: str, samples: np.ndarray, tracks, actor: bool = False):
        self.mode = mode
        self.samples = samples
        self._actor: dict[tuple[int, int], np.ndarray] = {}
        if mode == "relative" or actor:
            self._actor = actor_aus(tracks)

    def actor(self, frame_index: int, track_id: int) -> np.ndarray:
        """The actor's own (smoothed) AUs; zeros where none could be estimated."""
        actor = self._actor.get((frame_index, track_id))
        if actor is None or not np.isfinite(actor).all():
            return np.zeros(aus.N_AUS, np.float32)
        return actor

    def target(self, position: int, frame_index: int, track_id: int) -> np.ndarray:
        sample = self.samples[position]
        if self.mode != "relative":
            return sample
        actor = self.actor(frame_index, track_id)
        return np.clip(actor + sample, aus.AU_MIN, aus.AU_MAX).astype(np.float32)


def actor_aus(tracks) -> dict[tuple[int, int], np.ndarray]:
    """Per (frame, track) AUs estimated from each observation's 478 landmarks (the tracker's
    ``mesh``: no second landmark model runs) in the estimator's video mode (each track against
    its own resting face), smoothed per track in time with zero lag
    (:func:`animator.estimate.smooth_au_series`); observations without landmarks are filled
    from their neighbours."""
    from animator.estimate import AUEstimator, smooth_au_series  # noqa: PLC0415

    estimator = AUEstimator.default()
    result: dict[tuple[int, int], np.ndarray] = {}
    for track_id in tracks.track_ids:
        observations = tracks.track(track_id)
        values = np.full((len(observations), aus.N_AUS), np.nan)
        with_mesh = [i for i, o in enumerate(observations) if o.mesh is not None]
        if with_mesh:
            values[with_mesh] = estimator.estimate_track(np.stack([observations[i].mesh for i in with_mesh]))
        smooth_values = smooth_au_series(np.array([o.time for o in observations]), values)
        for obs, value in zip(observations, smooth_values):
            result[(obs.frame_index, track_id)] = value
    return result


def _pass_two(opts: RenderOptions, editor, rig, tracks, targets: FaceTargets, stats: DecodeStats,
              stages: Stages) -> Iterator[FrameJob]:
    """decode+move+crop -> generate -> composite, each on its own thread (without an
    ``editor``, nothing is cropped, generated or composited)."""
    from animator.faces.align import crop_transform, warp_crop  # noqa: PLC0415

    policy = editor.crop_policy if editor else None
    if rig is not None:
        from animator.motion.move import motion_aus  # noqa: PLC0415
        from animator.motion.rims import TrackRims  # noqa: PLC0415

        rims = TrackRims()

    def decode_and_crop() -> Iterator[FrameJob]:
        for position, frame in enumerate(iter_frames(opts.video, opts.start, opts.end, stats)):
            observed = tracks.for_frame(frame.index)
            wanted = [targets.target(position, frame.index, o.track_id) for o in observed]
            fields = []
            if rig is not None:
                current = [targets.actor(o.frame_index, o.track_id) for o in observed]
                # a face's rims are looked for only on the frames that move it
                face_rims = [rims.of(o.track_id, frame.rgb, o.mesh) if np.any(motion_aus(now, want, rig)) else None
                             for o, now, want in zip(observed, current, wanted)]
                frame.rgb, fields = move_faces(frame.rgb, [o.mesh for o in observed], current, wanted, rig,
                                               face_rims)
            faces = []
            for obs, target in zip(observed, wanted):
                M = crop_transform(policy, obs.points, obs.box) if policy else None
                faces.append(FaceJob(track_id=obs.track_id, box=np.asarray(obs.box),
                                     score=float(obs.score), points=np.asarray(obs.points), M=M,
                                     crop=warp_crop(frame.rgb, M, policy.size) if policy else None,
                                     target=target))
            yield FrameJob(frame=frame, aus=targets.samples[position], faces=faces, fields=fields)

    def generate(jobs: Iterator[FrameJob]) -> Iterator[FrameJob]:
        for group in batched_by(jobs, lambda job: len(job.faces), opts.batch_size):
            edit_faces(editor, [face for job in group for face in job.faces])
            yield from group

    def paste(jobs: Iterator[FrameJob]) -> Iterator[FrameJob]:
        for job in jobs:
            composite_faces(job, opts.mattes)
            yield job

    decoded = stages.thread(decode_and_crop(), QUEUE_FRAMES, "decode")
    generated = stages.thread(generate(decoded), QUEUE_FRAMES, "generate")
    return stages.thread(paste(generated), QUEUE_FRAMES, "composite")


def move_faces(rgb: np.ndarray, meshes: list[np.ndarray | None], current: list[np.ndarray],
               wanted: list[np.ndarray], rig, rims: list) -> tuple[np.ndarray, list]:
    """The motion stage: every face moved on its mesh from its ``current`` AUs to the
    ``wanted`` ones behind its spectacle ``rims`` (:func:`animator.motion.move.move_face`;
    None: no glasses); faces without a mesh stay as they are. Returns the frame and the fields
    applied."""
    from animator.motion.move import move_face  # noqa: PLC0415

    fields = []
    for mesh, now, target, face_rims in zip(meshes, current, wanted, rims):
        if mesh is None:
            continue
        rgb, field_ = move_face(rgb, mesh, now, target, rig, face_rims)
        if field_ is not None:
            fields.append(field_)
    return rgb, fields


def edit_faces(editor, faces: list[FaceJob]) -> None:
    """Run the generator on all ``faces`` at once (the editor batches internally); without an
    editor, nothing is painted."""
    if not faces or editor is None:
        return
    result = editor.edit(np.stack([f.crop for f in faces]), np.stack([f.target for f in faces]))
    for face, attention, color in zip(faces, result.attention, result.color):
        face.attention, face.color = attention, color
        face.crop = None  # the crop is no longer needed; free it early


def composite_faces(job: FrameJob, mattes: bool) -> None:
    """Paste every edited face back into the frame; optionally build the frame's matte."""
    from animator.faces.composite import attention_matte, composite  # noqa: PLC0415

    rgb = job.frame.rgb
    matte = np.zeros(rgb.shape[:2], np.uint8) if mattes else None
    for face in job.faces:
        if face.attention is None:  # nothing painted (motion alone)
            continue
        rgb, _ = composite(rgb, face.M, face.attention, face.color)
        if matte is not None:
            np.maximum(matte, attention_matte(matte.shape, face.M, face.attention), out=matte)
        face.attention = face.color = None
    job.frame.rgb = rgb
    job.matte = matte


def face_record(face: FaceJob) -> dict:
    """A face as in ``animator faces --json`` (id, box, score, points), plus the AU target it
    was rendered with."""
    return {"id": int(face.track_id), "box": [round(float(v), 2) for v in face.box],
            "score": round(float(face.score), 4),
            "points": [[round(float(x), 2), round(float(y), 2)] for x, y in face.points],
            "aus": aus.vector_to_dict(face.target)}


class FrameExport:
    """``--frames DIR``: frame_000001.png ..., matte_000001.png with ``--mattes``, frames.json.

    frames.json is written as frames arrive (one record per line inside the array), so an
    export of any length needs no memory for it.
    """

    def __init__(self, folder: Path, mattes: bool, fps: float | None, source: str, mode: str,
                 motion: bool = False):
        self.folder = Path(folder)
        self.mattes = mattes
        self.motion = motion
        self.count = 0
        self._json = open(self.folder / "frames.json", "w", encoding="utf-8")
        head = {"source": source, "fps": round(fps, 6) if fps else None, "mode": mode}
        self._json.write(json.dumps(head)[:-1] + ', "frames": [\n')

    def add(self, job: FrameJob, faces: list[dict] | None = None) -> None:
        self.count += 1
        write_image(self.folder / f"frame_{self.count:06d}.png", job.frame.rgb)
        if self.mattes and job.matte is not None:
            write_image(self.folder / f"matte_{self.count:06d}.png", job.matte)
        if self.mattes and self.motion:
            np.save(self.folder / f"motion_{self.count:06d}.npy",
                    frame_offsets(job.frame.rgb.shape, job.fields).astype(np.float16))
        record = {"index": job.frame.index, "file": f"frame_{self.count:06d}.png",
                  "time": round(job.frame.time, 6), "aus": aus.vector_to_dict(job.aus),
                  "faces": faces if faces is not None else [face_record(f) for f in job.faces]}
        self._json.write(("" if self.count == 1 else ",\n") + json.dumps(record))

    def close(self) -> None:
        if not self._json.closed:
            self._json.write("\n]}\n")
            self._json.close()

    def __enter__(self) -> "FrameExport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
