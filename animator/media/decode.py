"""Video decoding with PyAV: stream facts (:func:`probe`) and RGB frames with their own times.

Every frame keeps its presentation timestamp in the stream's time base, so the encoder can
write the same timestamps back (variable frame rate included). Frames are numbered in the
order the decoder returns them (presentation order); that numbering is the same on every pass
over a file, which is what lets a tracking pass and a rendering pass line up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.logging
import numpy as np

from animator.errors import AnimatorError


@dataclass(frozen=True)
class VideoInfo:
    """What a renderer needs to reproduce a video: geometry, timing, codecs, rotation."""

    path: Path
    width: int
    height: int
    fps: Fraction  # average frame rate (frames / second); nominal for VFR input
    time_base: Fraction
    start_pts: int  # pts of the stream start; frame times are relative to it
    frames: int | None  # from the container header, None when unknown
    duration: float | None  # seconds
    rotation: int  # display rotation in degrees, counter-clockwise (as VideoFrame.rotation)
    codec: str
    pix_fmt: str | None
    colorspace: int | None
    color_range: int | None
    has_audio: bool
    audio_codec: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def fps_float(self) -> float:
        return float(self.fps)


@dataclass
class VideoFrame:
    """One decoded frame: RGB pixels plus the timing needed to write it back unchanged."""

    index: int  # decode order, 0-based, counted from the start of the file
    time: float  # seconds from the stream start: (pts - start_pts) * time_base
    rgb: np.ndarray  # (H, W, 3) uint8
    pts: int  # in time_base units
    duration: int  # in time_base units (0 when the container does not say)
    time_base: Fraction


@dataclass
class DecodeStats:
    """Filled in while :func:`iter_frames` runs; read it after the loop.

    ``frames`` counts the frames yielded (within ``[start, end)``); the rest describe the whole
    file up to where decoding stopped, so damage can be reported against the header's promise.
    """

    frames: int = 0
    corrupt_packets: int = 0  # packets the decoder rejected (their frames are missing)
    damaged_frames: int = 0  # frames yielded that the decoder flagged or logged an error for
    decoded: int = 0  # frames decoded from the start of the file, before ``start`` included
    hidden: int = 0  # packets the container marks as decoded but not shown (an edit list's cut)
    decoded_until: float = 0.0  # seconds: the end of the last decoded frame
    reached_end: bool = False  # decoding ran to the end of the file (no ``end`` cut it short)

    def frames_lost(self, info: VideoInfo) -> int:
        """Frames the file's header promises that never decoded (0 unless decoding reached the
        end of the file): the header's frame count minus the frames decoded and those an edit
        list hides or, without a count, the stretch of the header's duration after the last
        decoded frame at the nominal rate (a truncated file keeps the header of the whole one)."""
        if not self.reached_end:
            return 0
        if info.frames:
            return max(0, info.frames - self.decoded - self.hidden)
        if info.duration:
            missing = (info.duration - self.decoded_until) * info.fps_float
            return round(missing) if missing >= 1.5 else 0  # below that: rounding, not loss
        return 0


def open_input(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a media file, turning every failure into one line that names the file."""
    path = Path(path)
    if not path.exists():
        raise AnimatorError(f"{path}: no such file")
    if not path.is_file():
        raise AnimatorError(f"{path}: not a file")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AnimatorError(f"{path}: not a readable video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise AnimatorError(f"{path}: has no video stream")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the video stream's facts; decodes the first frame to learn the display rotation.

    FFmpeg exposes the display matrix (rotation) as frame side data, so the first decodable
    frame is the reliable source; an old-style ``rotate`` stream tag is the fallback.
    """
    path = Path(path)
    container = open_input(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        tb = stream.time_base or Fraction(1, 90000)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        rotation, first = _first_frame_facts(container, stream, path)
        if not fps:
            raise AnimatorError(f"{path}: the video stream has no frame rate")
        duration = None
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / av.time_base
        start_pts = stream.start_time if stream.start_time is not None else (first or 0)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path, width=ctx.width, height=ctx.height, fps=Fraction(fps), time_base=Fraction(tb),
            start_pts=int(start_pts), frames=stream.frames or None, duration=duration,
            rotation=rotation, codec=ctx.codec.canonical_name, pix_fmt=ctx.pix_fmt,
            colorspace=_enum_value(getattr(ctx, "colorspace", None)),
            color_range=_enum_value(getattr(ctx, "color_range", None)),
            has_audio=audio is not None, audio_codec=audio.codec_context.codec.canonical_name if audio else None,
            metadata=dict(stream.metadata))
    finally:
        container.close()


def iter_frames(path: str | os.PathLike, start: float | None = None, end: float | None = None,
                stats: DecodeStats | None = None) -> Iterator[VideoFrame]:
    """Decode the first video stream as RGB frames with times in ``[start, end)`` seconds.

    Decoding always starts at the beginning so frame indices mean the same on every pass;
    frames before ``start`` are decoded but not converted. A packet the decoder rejects is
    skipped and counted in ``stats.corrupt_packets``; nothing else is dropped. Frames the
    decoder flags as corrupt or reports errors for are yielded (they are the best picture
    there is) and counted in ``stats.damaged_frames``.
    """
    path = Path(path)
    stats = stats if stats is not None else DecodeStats()
    container = open_input(path)
    try:
        stream = container.streams.video[0]
        # Slice threads only: with frame threads FFmpeg reports a corrupt packet late, during
        # draining, and PyAV then drops the frames still in flight; decoding is never the slow
        # stage next to encoding, so exact recovery wins.
        stream.thread_type = "SLICE"
        tb = Fraction(stream.time_base or Fraction(1, 90000))
        fps = stream.average_rate or stream.guessed_rate or Fraction(30)
        start_pts = stream.start_time
        step = max(1, round(1 / (tb * fps)))  # pts step used when a frame carries no pts
        index, last_pts = 0, None
        for frame, damaged in _decode(container, stream, stats, path):
            pts = frame.pts if frame.pts is not None else (
                last_pts + step if last_pts is not None else 0)
            if start_pts is None:
                start_pts = pts
            last_pts = pts
            time = float((pts - start_pts) * tb)
            index += 1
            stats.decoded = index
            stats.decoded_until = time + float((frame.duration or step) * tb)
            if start is not None and time < start - 1e-9:
                continue
            if end is not None and time >= end - 1e-9:
                break
            stats.frames += 1
            stats.damaged_frames += damaged
            yield VideoFrame(index=index - 1, time=time, rgb=frame.to_ndarray(format="rgb24"),
                             pts=int(pts), duration=int(frame.duration or 0), time_base=tb)
        else:
            stats.reached_end = True
    finally:
        container.close()


def _decode(container, stream, stats: DecodeStats,
            path: Path) -> Iterator[tuple[av.VideoFrame, bool]]:
    """Packets -> (frame, damaged) pairs; a packet that fails to decode is counted and skipped.

    A frame is damaged when the decoder flags it corrupt or logs an error while decoding its
    packet: H.264 and HEVC conceal a broken slice (the picture comes out, patched from its
    neighbours) and mostly say so only in their log. The log is captured per packet and the
    frame found by its pts (the decoder may return it a few packets later); only errors reach
    the capture, so healthy input costs nothing extra.
    """
    _hear_decoder_errors()
    decoder = stream.codec_context.codec.name  # the log's name for this decoder's messages
    flagged: set[int] = set()  # pts of packets whose decoding logged an error
    try:
        for packet in container.demux(stream):
            stats.hidden += bool(packet.size and packet.is_discard)
            # not thread-local: slice threads log from FFmpeg's own threads
            with av.logging.Capture(local=False) as logs:
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.PatchWelcomeError,
                        av.error.UndefinedError):
                    stats.corrupt_packets += 1
                    continue
            if packet.pts is not None and any(level <= av.logging.ERROR and name == decoder
                                              for level, name, _ in logs):
                flagged.add(packet.pts)
            for frame in frames:
                logged = frame.pts in flagged
                flagged.discard(frame.pts)
                yield frame, bool(frame.is_corrupt) or logged
    except av.error.EOFError:
        return
    except av.error.FFmpegError as exc:
        raise AnimatorError(f"{path}: read error while decoding ({_reason(exc)})") from None


def _hear_decoder_errors() -> None:
    """Let FFmpeg's error messages reach PyAV's log capture (PyAV drops every message by
    default) without printing them: animator reports damage in its own words. A level the
    application chose is kept; errors pass at any level."""
    if av.logging.get_level() is None:
        logging.getLogger("libav").addHandler(logging.NullHandler())
        av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # the same message for two frames: two damaged frames


def _first_frame_facts(container, stream, path: Path) -> tuple[int, int | None]:
    """(rotation degrees, first pts) from the first decodable frame (the container is left
    past it: the caller closes it)."""
    rotation, first_pts = 0, None
    for frame, _ in _decode(container, stream, DecodeStats(), path):
        rotation = int(round(frame.rotation or 0))
        first_pts = frame.pts
        break
    else:
        raise AnimatorError(f"{path}: the video stream has no decodable frames")
    tag = stream.metadata.get("rotate")
    if not rotation and tag:
        try:
            rotation = -int(float(tag))  # the old tag is clockwise; VideoFrame.rotation is not
        except ValueError:
            pass
    return _normalise_degrees(rotation), first_pts


def _normalise_degrees(degrees: int) -> int:
    """Map any angle to (-180, 180] like FFmpeg reports it."""
    degrees = int(degrees) % 360
    return degrees - 360 if degrees > 180 else degrees


def _enum_value(value) -> int | None:
    if value is None:
        return None
    return int(getattr(value, "value", value))


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
