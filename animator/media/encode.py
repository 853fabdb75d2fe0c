"""Video encoding with PyAV that reproduces the input's timing, geometry, rotation and audio.

Decisions (see the README's rendering section):

* Timestamps: the output video stream and its encoder use the input stream's time base and
  every frame keeps its input pts (minus the start of a ``--start`` part), so variable frame
  rates survive. MP4/MOV may raise the time scale and Matroska/WebM store milliseconds; times
  then match to the container's precision.
* Odd sizes: libx264/libx265 need even sizes for 4:2:0 chroma (``yuv420p``), the only H.264 /
  H.265 that browsers and phones play. By default (``odd_size="pad"``) an odd width or height
  gets one more column or row, a copy of the edge pixels; ``"crop"`` drops the last one instead,
  and ``"keep444"`` keeps the exact size as 4:4:4 (``yuv444p``, for editing software). VP9,
  FFV1 and PNG take odd sizes as they are. A note in the summary says what was done.
* Lossless: ``ffv1`` stores RGB (``bgr0``) and ``png`` stores ``rgb24``, so the pixels written
  are the pixels decoded back, bit for bit.
* Audio: the first audio stream is copied packet for packet (no re-encode). Only when the
  container cannot hold that codec (e.g. AAC in WebM) it is re-encoded to the container's
  audio codec (Opus for WebM), and a note says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from animator.errors import AnimatorError
from animator.media.decode import VideoInfo, open_input

CONTAINERS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}

# user-facing codec names -> FFmpeg encoder
CODEC_ALIASES: dict[str, str] = {
    "h264": "libx264", "x264": "libx264", "libx264": "libx264",
    "h265": "libx265", "hevc": "libx265", "x265": "libx265", "libx265": "libx265",
    "vp9": "libvpx-vp9", "libvpx-vp9": "libvpx-vp9",
    "ffv1": "ffv1", "png": "png",
}
CODECS_BY_CONTAINER: dict[str, tuple[str, ...]] = {
    "mp4": ("libx264", "libx265", "libvpx-vp9"),
    "mov": ("libx264", "libx265", "png"),
    "matroska": ("libx264", "libx265", "libvpx-vp9", "ffv1"),
    "webm": ("libvpx-vp9",),
}
DEFAULT_CODEC: dict[str, str] = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264",
                                 "webm": "libvpx-vp9"}
LOSSLESS_PIX_FMT: dict[str, str] = {"ffv1": "bgr0", "png": "rgb24"}
ODD_SIZE_POLICIES = ("pad", "crop", "keep444")
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")
_AUDIO_LEAD = 0.5  # seconds of audio muxed ahead of the video, so interleaving stays tight


@dataclass(frozen=True)
class EncodeOptions:
    """``codec`` None picks by container (libx264, or VP9 for .webm); CRF/preset are lossy-only."""

    codec: str | None = None
    crf: int = 18
    preset: str = "veryfast"  # ~half the CPU of medium at CRF 18, same size, -0.5 dB (bench/encode.py)
    odd_size: str = "pad"  # x264/x265 with an odd width or height: pad, crop or keep444


@dataclass(frozen=True)
class EncodePlan:
    """The resolved encoder settings for one output path."""

    container: str
    codec: str
    pix_fmt: str
    options: dict[str, str]
    notes: tuple[str, ...] = ()
    size_change: tuple[int, int] = (0, 0)  # columns, rows added (+1, pad) or removed (-1, crop)


def fit_size(rgb: np.ndarray, change: tuple[int, int]) -> np.ndarray:
    """Apply a plan's size change: repeat the last column / row (+1) or drop it (-1)."""
    columns, rows = change
    if columns < 0 or rows < 0:  # a crop: both are 0 or -1
        return rgb[:rgb.shape[0] + rows, :rgb.shape[1] + columns]
    if columns or rows:
        return np.pad(rgb, ((0, rows), (0, columns), (0, 0)), mode="edge")
    return rgb


def plan_encoding(out: str | os.PathLike, width: int, height: int,
                  options: EncodeOptions = EncodeOptions()) -> EncodePlan:
    """Check codec/container/options before any work starts; errors name the option."""
    out = Path(out)
    container = CONTAINERS.get(out.suffix.lower())
    if container is None:
        raise AnimatorError(f"{out}: unsupported video container {out.suffix or '(none)'!r}: "
                            f"use one of {', '.join(CONTAINERS)}")
    if options.codec is None:
        codec = DEFAULT_CODEC[container]
    else:
        codec = CODEC_ALIASES.get(options.codec.strip().lower())
        if codec is None:
            raise AnimatorError(f"--codec: unknown codec {options.codec!r}: expected one of "
                                "h264, h265, vp9, ffv1, png")
    if codec not in CODECS_BY_CONTAINER[container]:
        fits = [s for s, c in CONTAINERS.items() if codec in CODECS_BY_CONTAINER[c]]
        raise AnimatorError(f"{out}: codec {codec} cannot go in {out.suffix} (use {' or '.join(fits)})")
    if codec not in av.codecs_available:
        raise AnimatorError(f"--codec: this FFmpeg build has no {codec} encoder")
    if not 0 <= options.crf <= 63 or (codec in ("libx264", "libx265") and options.crf > 51):
        raise AnimatorError(f"--crf: {options.crf} is out of range for {codec} "
                            f"(0-{51 if codec in ('libx264', 'libx265') else 63})")
    if options.odd_size not in ODD_SIZE_POLICIES:
        raise AnimatorError(f"--odd-size: {options.odd_size!r} is not one of {', '.join(ODD_SIZE_POLICIES)}")
    if codec in LOSSLESS_PIX_FMT:
        return EncodePlan(container, codec, LOSSLESS_PIX_FMT[codec], {}, ())
    pix_fmt, notes, size_change = "yuv420p", [], (0, 0)
    if codec in ("libx264", "libx265") and (width % 2 or height % 2):
        pix_fmt, size_change, note = _odd_size_plan(width, height, codec, options.odd_size)
        notes.append(note)
    if codec in ("libx264", "libx265"):
        if options.preset not in X26X_PRESETS:
            raise AnimatorError(f"--preset: unknown preset {options.preset!r}: expected one of "
                                f"{', '.join(X26X_PRESETS)}")
        opts = {"crf": str(options.crf), "preset": options.preset}
        if codec == "libx265":  # x265 writes its own info lines to stderr, past FFmpeg's log level
            opts["x265-params"] = "log-level=error"
    else:  # VP9 in constant-quality mode; x264 presets do not apply
        opts = {"crf": str(options.crf), "b": "0", "row-mt": "1", "deadline": "good",
                "cpu-used": "4"}
    return EncodePlan(container, codec, pix_fmt, opts, tuple(notes), size_change)


def _odd_size_plan(width: int, height: int, codec: str, policy: str) -> tuple[str, tuple[int, int], str]:
    """(pix_fmt, size change, note) for an odd-sized x264/x265 output."""
    if policy == "keep444":
        return "yuv444p", (0, 0), (f"odd size {width}x{height}: encoded as {codec} yuv444p to keep "
                                   f"the resolution (many browsers and phones cannot play it)")
    sign = 1 if policy == "pad" else -1
    change = (sign * (width % 2), sign * (height % 2))
    how = "padded with a copy of the edge pixels" if sign > 0 else "cropped by one pixel"
    return "yuv420p", change, (f"odd size {width}x{height}: {how} to {width + change[0]}x"
                               f"{height + change[1]} for yuv420p (--odd-size keep444 keeps the "
                               f"size as 4:4:4)")


class VideoWriter:
    """Write RGB frames at given input pts; copies the input's audio alongside.

    ``offset`` is the start time (seconds, on the input's clock) of the part being written:
    video pts and audio timestamps are shifted by it so a part starts at 0.
    """

    def __init__(self, out: str | os.PathLike, info: VideoInfo,
                 options: EncodeOptions = EncodeOptions(), audio: bool = True,
                 audio_range: tuple[float | None, float | None] = (None, None)) -> None:
        self.path = Path(out)
        self.info = info
        self.plan = plan_encoding(self.path, info.width, info.height, options)
        self.notes: list[str] = list(self.plan.notes)
        self.frames_written = 0
        self._offset_pts: int | None = None
        self._durations: dict[int, int] = {}  # output pts -> input frame duration
        self._audio_range = audio_range
        self._container = av.open(str(self.path), mode="w", format=self.plan.container)
        try:
            self._stream = self._add_video_stream()
            self._audio = _AudioCopy(self._container, info, self.notes) if audio and info.has_audio else None
        except BaseException:
            self._container.close()
            raise

    def _add_video_stream(self):
        info, plan = self.info, self.plan
        stream = self._container.add_stream(plan.codec, rate=info.fps, options=plan.options)
        columns, rows = plan.size_change
        stream.width, stream.height, stream.pix_fmt = info.width + columns, info.height + rows, plan.pix_fmt
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        stream.codec_context.thread_type = "AUTO"
        if plan.pix_fmt.startswith("yuv"):
            if info.colorspace not in (None, 2):  # 2 = unspecified
                stream.codec_context.colorspace = info.colorspace
            if info.color_range:
                stream.codec_context.color_range = info.color_range
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        if "language" in info.metadata:
            stream.metadata["language"] = info.metadata["language"]
        return stream

    def write(self, rgb: np.ndarray, pts: int, duration: int = 0) -> None:
        """Encode one frame that had ``pts`` (input time base) in the source."""
        if self._offset_pts is None:
            start = self._audio_range[0]
            self._offset_pts = pts if start is not None else 0
            if self._audio:
                self._audio.start(float(self._offset_pts * self.info.time_base), self._audio_range[1])
        rgb = fit_size(rgb, self.plan.size_change)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = self._to_stream_format(frame)
        frame.pts = pts - self._offset_pts
        frame.time_base = self.info.time_base
        if duration:
            frame.duration = duration
            self._durations[frame.pts] = duration
        self._mux(self._stream.encode(frame))
        self.frames_written += 1
        if self._audio:
            self._audio.copy_until(float(frame.pts * self.info.time_base) + _AUDIO_LEAD)

    def _to_stream_format(self, frame: av.VideoFrame) -> av.VideoFrame:
        fmt = self.plan.pix_fmt
        if fmt == "rgb24":
            return frame
        if fmt.startswith("yuv") and self.info.colorspace not in (None, 2):
            return frame.reformat(format=fmt, dst_colorspace=self.info.colorspace,
                                  dst_color_range=self.info.color_range or None)
        return frame.reformat(format=fmt)

    def _mux(self, packets) -> None:
        # Encoders such as libx264 leave packet durations at 0 and the muxer then guesses the
        # last frame's from the nominal rate; the input's own duration keeps the length exact.
        for packet in packets:
            duration = self._durations.pop(packet.pts, 0) if packet.pts is not None else 0
            if duration and not packet.duration:
                packet.duration = duration
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio and finish the file."""
        try:
            self._mux(self._stream.encode(None))
            if self._audio:
                self._audio.finish()
        finally:
            if self._audio:
                self._audio.close()
            self._container.close()

    def abort(self) -> None:
        """Close without flushing (the caller discards the file)."""
        if self._audio:
            self._audio.close()
        try:
            self._container.close()
        except (av.error.FFmpegError, OSError):
            pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _AudioCopy:
    """Moves the input's first audio stream into the output, interleaved with the video."""

    def __init__(self, out: av.container.OutputContainer, info: VideoInfo, notes: list[str]) -> None:
        self._out = out
        self._tb = Fraction(1)
        self._offset = 0.0
        self._end: float | None = None
        self._packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._done = False
        self._input = open_input(info.path)
        try:
            self._in_stream = self._input.streams.audio[0]
            name = self._in_stream.codec_context.codec.canonical_name  # "mp3", not decoder "mp3float"
            self._reencode = name not in out.supported_codecs
            if self._reencode:
                target = out.default_audio_codec
                rate = self._in_stream.codec_context.sample_rate
                rate = 48000 if target in ("libopus", "opus") else rate  # Opus runs at 48 kHz only
                self._stream = out.add_stream(target, rate=rate)
                self._stream.layout = self._in_stream.codec_context.layout
                notes.append(f"audio re-encoded {name} -> {target}: "
                             f"the {out.format.name} container cannot hold {name}")
            else:
                self._stream = out.add_stream_from_template(self._in_stream)
            if "language" in self._in_stream.metadata:
                self._stream.metadata["language"] = self._in_stream.metadata["language"]
            self._tb = Fraction(self._in_stream.time_base)
        except BaseException:
            self._input.close()
            raise

    def start(self, offset: float, end: float | None) -> None:
        self._offset, self._end = offset, end
        if offset > 0:
            self._input.seek(int(offset / self._tb), stream=self._in_stream, backward=True)
        self._packets = iter(self._input.demux(self._in_stream))

    def copy_until(self, until: float) -> None:
        """Mux input audio whose output time is below ``until`` seconds."""
        while not self._done:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None or packet.size == 0 and packet.pts is None:
                self._finish_stream()
                return
            if packet.pts is None:
                continue
            time = float(packet.pts * self._tb)
            if self._end is not None and time >= self._end:
                self._finish_stream()
                return
            if time - self._offset >= until:
                self._pending = packet
                return
            if self._offset and time + float((packet.duration or 0) * self._tb) <= self._offset:
                continue  # before the part
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        shift = round(self._offset / self._tb)
        if self._reencode:
            for frame in packet.decode():
                frame.pts = frame.pts - shift if frame.pts is not None else None
                for out_packet in self._stream.encode(frame):
                    self._out.mux(out_packet)
            return
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self._stream
        self._out.mux(packet)

    def _finish_stream(self) -> None:
        if self._done:
            return
        self._done = True
        if self._reencode:
            for out_packet in self._stream.encode(None):
                self._out.mux(out_packet)
        self._input.close()

    def finish(self) -> None:
        if self._packets is None:  # no video frame was written
            self._done = True
            self._input.close()
            return
        self.copy_until(float("inf"))
        self._finish_stream()

    def close(self) -> None:
        """Close the input (idempotent); after an error the rest of the audio is not copied."""
        self._done = True
        self._input.close()
