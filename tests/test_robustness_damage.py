"""Damaged videos render what can be rendered and the summary says exactly how much was lost:
a file cut in half (its header still promises every frame) and a file with flipped bytes (the
decoder flags the frames it could only partly rebuild)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from animator.media.decode import DecodeStats, iter_frames, probe
from test_media import make_video, noise_frames
from test_render import N_FRAMES, NO_FACE, PTS, face_frames, keys, run, tiny_model  # noqa: F401

SIZE = (64, 48)


def faststart(src: Path, out: Path) -> Path:
    """``src`` remuxed with its index (moov) first, as web-ready MP4s are: cut, it still opens."""
    with av.open(str(src)) as source, av.open(str(out), "w", options={"movflags": "faststart"}) as sink:
        stream = sink.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                sink.mux(packet)
    return out


def cut_in_half(src: Path, out: Path) -> Path:
    data = src.read_bytes()
    out.write_bytes(data[:len(data) // 2])
    return out


def flip_bytes(src: Path, out: Path, packets: slice) -> Path:
    """XOR the second half of the chosen video packets' payloads (headers stay parseable)."""
    with av.open(str(src)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(src.read_bytes())
    for pos, size in spans[packets]:
        for k in range(size // 2, size, 7):
            data[pos + k] ^= 0x5A
    out.write_bytes(bytes(data))
    return out


def decode(path: Path) -> tuple[int, DecodeStats]:
    stats = DecodeStats()
    return sum(1 for _ in iter_frames(path, stats=stats)), stats


def test_a_healthy_file_reports_no_damage(tmp_path):
    for name in ("a.mp4", "a.mkv"):
        path = make_video(tmp_path / name, noise_frames(30, *SIZE))
        count, stats = decode(path)
        assert count == 30
        assert (stats.frames_lost(probe(path)), stats.damaged_frames, stats.corrupt_packets) == (0, 0, 0)


def test_frames_an_edit_list_hides_are_not_lost(tmp_path):
    """A lossless trim keeps the frames from the keyframe before the cut and hides them with
    an edit list (negative times here): the header counts them, the decoder never shows them."""
    source = make_video(tmp_path / "a.mp4", noise_frames(30, *SIZE))
    trimmed = tmp_path / "trimmed.mp4"
    with av.open(str(source)) as original, av.open(str(trimmed), "w") as sink:
        stream = sink.add_stream_from_template(original.streams.video[0])
        shift = 5 * 512  # five frames at 30 fps in 1/15360
        for packet in original.demux(original.streams.video[0]):
            if packet.dts is not None:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, stream
                sink.mux(packet)
    info = probe(trimmed)
    count, stats = decode(trimmed)
    assert (info.frames, count) == (30, 25)
    assert stats.frames_lost(info) == 0


def test_a_truncated_mp4_counts_the_frames_its_header_promised(tmp_path):
    whole = faststart(make_video(tmp_path / "raw.mp4", noise_frames(40, *SIZE)), tmp_path / "w.mp4")
    cut = cut_in_half(whole, tmp_path / "cut.mp4")
    info = probe(cut)
    count, stats = decode(cut)
    assert info.frames == 40 and 0 < count < 40
    assert stats.frames_lost(info) == 40 - count


def test_a_truncated_mkv_counts_lost_frames_from_its_duration(tmp_path):
    cut = cut_in_half(make_video(tmp_path / "w.mkv", noise_frames(40, *SIZE)), tmp_path / "cut.mkv")
    info = probe(cut)
    count, stats = decode(cut)
    assert info.frames is None and 0 < count < 40
    assert stats.frames_lost(info) == 40 - count


def test_a_part_that_stops_early_claims_no_loss(tmp_path):
    cut = cut_in_half(make_video(tmp_path / "w.mkv", noise_frames(40, *SIZE)), tmp_path / "cut.mkv")
    stats = DecodeStats()
    list(iter_frames(cut, end=0.2, stats=stats))
    assert stats.frames == 6 and stats.frames_lost(probe(cut)) == 0


def frames_with_decode_errors(path: Path) -> tuple[int, int]:
    """(frames the decoder flags corrupt, frames it flags or reports an error for while
    decoding their packet), counted apart from iter_frames: by PyAV's running error count."""
    flagged, corrupt, errors_before = set(), set(), av.logging.get_last_error()[0]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                frames = []  # a rejected packet: no frame to count
            else:
                if av.logging.get_last_error()[0] > errors_before:
                    flagged.add(packet.pts)
            errors_before = av.logging.get_last_error()[0]
            corrupt |= {frame.pts for frame in frames if frame.is_corrupt}
    return len(corrupt), len(corrupt | flagged)


def test_flipped_bytes_count_the_frames_the_decoder_flags(tmp_path):
    """H.264 conceals most broken slices and says so only in its log: is_corrupt alone misses
    them."""
    whole = make_video(tmp_path / "w.mp4", noise_frames(30, 320, 240))
    broken = flip_bytes(whole, tmp_path / "flipped.mp4", slice(1, 29, 2))
    count, stats = decode(broken)
    assert av.logging.get_level() is not None  # decoding routed FFmpeg's errors to PyAV
    flagged_corrupt, with_errors = frames_with_decode_errors(broken)
    assert stats.damaged_frames == with_errors > flagged_corrupt
    assert stats.corrupt_packets > 0
    assert count + stats.frames_lost(probe(broken)) == 30  # every frame accounted for


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory, face_image) -> Path:
    folder = tmp_path_factory.mktemp("damaged")
    return make_video(folder / "clip.mp4", face_frames(face_image, N_FRAMES, NO_FACE), PTS)


def test_render_of_a_truncated_video_says_how_many_frames_were_lost(face_clip, keys, tiny_model,
                                                                     tmp_path):
    cut = cut_in_half(faststart(face_clip, tmp_path / "fs.mp4"), tmp_path / "cut.mp4")
    decoded, _ = decode(cut)
    out = tmp_path / "out.mp4"
    result = run("render", cut, "-k", keys, "-o", out, "--checkpoint", tiny_model, "--json")
    summary = json.loads(result.stdout)
    assert summary["frames"] == decoded == len(list(iter_frames(out)))
    assert summary["frames_lost"] == N_FRAMES - decoded > 0
    text = run("render", cut, "-k", keys, "-o", tmp_path / "o2.mp4", "--checkpoint", tiny_model)
    assert f"damaged input: {N_FRAMES - decoded} frames lost" in text.stderr


def test_render_of_flipped_bytes_says_how_many_frames_were_damaged(face_clip, keys, tiny_model,
                                                                   tmp_path):
    broken = flip_bytes(face_clip, tmp_path / "flipped.mp4", slice(5, 8))
    _, stats = decode(broken)
    summary = json.loads(run("render", broken, "-k", keys, "-o", tmp_path / "out.mp4",
                             "--checkpoint", tiny_model, "--json").stdout)
    assert summary["frames_damaged"] == stats.damaged_frames
    assert summary["corrupt_packets_skipped"] == stats.corrupt_packets
    assert summary["frames_damaged"] + summary["corrupt_packets_skipped"] > 0
    assert summary["frames"] + summary["frames_lost"] == N_FRAMES
