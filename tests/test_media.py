"""Video decode/encode: timing, geometry, rotation, audio and lossless pixels survive a rewrite.

The videos are made here with PyAV (``make_video``, also used by test_render/test_morph).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from animator.errors import AnimatorError
from animator.media.decode import DecodeStats, iter_frames, probe
from animator.media.encode import EncodeOptions, VideoWriter, plan_encoding

TB = Fraction(1, 15360)
VFR_PTS = (0, 512, 1024, 2048, 2560, 3584, 4096, 5120)  # 30 fps with gaps: variable frame rate


def noise_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random pictures (compress well, differ per frame)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 6, 8, 3), dtype=np.uint8)
    import cv2

    return [cv2.resize(s, (width, height), interpolation=cv2.INTER_CUBIC) for s in small]


def make_video(path: Path, frames: list[np.ndarray], pts=None, time_base: Fraction = TB,
               codec: str = "libx264", audio_seconds: float | None = None, rotation: int = 0,
               rate: int = 30) -> Path:
    """Write ``frames`` (RGB) at ``pts`` with an optional 440 Hz mono AAC track."""
    h, w = frames[0].shape[:2]
    pts = list(pts) if pts is not None else [round(i / (rate * time_base)) for i in range(len(frames))]
    step = pts[1] - pts[0] if len(pts) > 1 else round(1 / (rate * time_base))
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = w, h
    stream.pix_fmt = {"ffv1": "bgr0", "png": "rgb24"}.get(
        codec, "yuv444p" if w % 2 or h % 2 else "yuv420p")
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    if rotation:
        stream.set_display_rotation(rotation)
    audio = container.add_stream("aac", rate=44100, layout="mono") if audio_seconds else None
    for i, (rgb, p) in enumerate(zip(frames, pts)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = p, time_base
        frame.duration = (pts[i + 1] - p) if i + 1 < len(pts) else step
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if audio is not None:
        sr = 44100
        t = np.arange(int(sr * audio_seconds)) / sr
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    container.close()
    return path


def rewrite(src: Path, out: Path, options: EncodeOptions = EncodeOptions(),
            start: float | None = None, end: float | None = None) -> VideoWriter:
    info = probe(src)
    with VideoWriter(out, info, options, audio_range=(start, end)) as writer:
        for frame in iter_frames(src, start, end):
            writer.write(frame.rgb, frame.pts, frame.duration)
    return writer


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        stream = container.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(stream) if p.size]


def times(path: Path) -> list[float]:
    return [f.time for f in iter_frames(path)]


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    """161x121 (odd), VFR, rotated 90 degrees, with audio."""
    path = tmp_path_factory.mktemp("media") / "vfr.mp4"
    return make_video(path, noise_frames(len(VFR_PTS), 161, 121), VFR_PTS,
                      audio_seconds=0.4, rotation=90)


def test_probe_reports_stream_facts(vfr_clip):
    info = probe(vfr_clip)
    assert (info.width, info.height) == (161, 121)
    assert info.rotation == 90
    assert info.has_audio and info.audio_codec == "aac"
    assert info.time_base == TB
    assert info.frames == len(VFR_PTS)
    assert info.codec == "h264"


def test_iter_frames_keeps_pts_and_times(vfr_clip):
    frames = list(iter_frames(vfr_clip))
    assert [f.index for f in frames] == list(range(len(VFR_PTS)))
    assert [f.pts for f in frames] == list(VFR_PTS)
    assert [f.time for f in frames] == pytest.approx([float(p * TB) for p in VFR_PTS])
    assert frames[0].rgb.shape == (121, 161, 3) and frames[0].rgb.dtype == np.uint8
    part = list(iter_frames(vfr_clip, start=0.05, end=0.2))
    assert [f.index for f in part] == [2, 3, 4]


def test_mp4_rewrite_reproduces_timing_size_rotation_and_audio(vfr_clip, tmp_path):
    out = tmp_path / "out.mp4"
    writer = rewrite(vfr_clip, out, EncodeOptions(odd_size="keep444"))
    assert any("yuv444p" in note for note in writer.notes)  # odd size kept, not padded
    src, dst = probe(vfr_clip), probe(out)
    assert (dst.width, dst.height, dst.rotation, dst.pix_fmt) == (161, 121, 90, "yuv444p")
    assert times(out) == times(vfr_clip)  # same time base: exact
    assert dst.duration == pytest.approx(src.duration, abs=1e-3)
    assert audio_packets(out) == audio_packets(vfr_clip)  # copied, not re-encoded


def test_ffv1_mkv_is_lossless_and_keeps_times(vfr_clip, tmp_path):
    out = tmp_path / "out.mkv"
    rewrite(vfr_clip, out, EncodeOptions(codec="ffv1"))
    for a, b in zip(iter_frames(vfr_clip), iter_frames(out), strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        assert b.time == pytest.approx(a.time, abs=1e-3)  # Matroska stores milliseconds
    assert probe(out).rotation == 90
    assert [data for _, data in audio_packets(out)] == [data for _, data in audio_packets(vfr_clip)]


def test_png_mov_is_lossless(vfr_clip, tmp_path):
    out = tmp_path / "out.mov"
    rewrite(vfr_clip, out, EncodeOptions(codec="png"))
    for a, b in zip(iter_frames(vfr_clip), iter_frames(out), strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        assert b.time == pytest.approx(a.time, abs=1e-9)


def test_webm_reencodes_audio_only_when_the_container_needs_it(vfr_clip, tmp_path):
    out = tmp_path / "out.webm"
    writer = rewrite(vfr_clip, out)
    assert any("re-encoded aac -> opus" in note for note in writer.notes)
    info = probe(out)
    assert info.codec == "vp9" and info.audio_codec == "opus"
    assert (info.width, info.height) == (161, 121)
    assert times(out) == pytest.approx(times(vfr_clip), abs=1e-3)


def test_part_starts_at_zero_and_trims_audio(vfr_clip, tmp_path):
    out = tmp_path / "part.mp4"
    rewrite(vfr_clip, out, start=0.05, end=0.2)
    source = [t for t in times(vfr_clip) if 0.05 <= t < 0.2]
    assert times(out) == pytest.approx([t - source[0] for t in source], abs=1e-6)
    packets = audio_packets(out)
    assert packets and packets[-1][0] < 0.2 - source[0]
    assert len(packets) < len(audio_packets(vfr_clip))


def test_corrupt_packets_are_skipped_and_counted(tmp_path):
    path = make_video(tmp_path / "c.mov", noise_frames(10, 64, 48), codec="png")
    with av.open(str(path)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    for pos, size in (spans[3], spans[6]):
        data[pos:pos + size] = bytes(size)
    broken = tmp_path / "broken.mov"
    broken.write_bytes(bytes(data))
    stats = DecodeStats()
    frames = list(iter_frames(broken, stats=stats))
    assert stats.corrupt_packets == 2 and len(frames) == stats.frames == 8


def test_unreadable_inputs_name_the_file(tmp_path):
    with pytest.raises(AnimatorError, match="missing.mp4: no such file"):
        probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video")
    with pytest.raises(AnimatorError, match="junk.mp4: not a readable video"):
        probe(junk)
    with pytest.raises(AnimatorError, match="junk.mp4"):
        list(iter_frames(junk))
    with pytest.raises(AnimatorError, match="not a file"):
        probe(tmp_path)


@pytest.mark.parametrize("name, codec, message", [
    ("a.avi", None, "unsupported video container"),
    ("a.mp4", "ffv1", "cannot go in .mp4"),
    ("a.webm", "h264", "cannot go in .webm"),
    ("a.mkv", "divx", "unknown codec"),
])
def test_encode_plan_rejects_bad_combinations(name, codec, message):
    with pytest.raises(AnimatorError, match=message):
        plan_encoding(name, 160, 120, EncodeOptions(codec=codec))


def test_encode_plan_checks_options():
    with pytest.raises(AnimatorError, match="--crf"):
        plan_encoding("a.mp4", 160, 120, EncodeOptions(crf=70))
    with pytest.raises(AnimatorError, match="--preset"):
        plan_encoding("a.mp4", 160, 120, EncodeOptions(preset="warp"))
    plan = plan_encoding("a.mp4", 160, 120)
    assert (plan.codec, plan.pix_fmt, plan.options["crf"], plan.options["preset"]) == (
        "libx264", "yuv420p", "18", "veryfast")
