"""``animator render`` end to end on a synthetic clip: a face photo moving through the frame,
frames without a face, variable frame rate, a rotation tag and an audio track. The generator
is randomly initialised (small) and saved into a temporary folder; nothing is downloaded."""

from __future__ import annotations

import json
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from animator.cli import cli
from animator.errors import AnimatorError
from animator.media.decode import iter_frames, probe
from animator.outputs import MARKER
from pipelines.stages import Stages, batched_by
from test_media import audio_packets, make_video

TB = Fraction(1, 15360)
N_FRAMES = 16
NO_FACE = {0, 1, 2, 14, 15}  # at the ends, so the tracker cannot bridge them
# variable frame rate: 30 fps with two longer gaps
PTS = [i * 512 + (512 if i >= 6 else 0) + (1024 if i >= 11 else 0) for i in range(N_FRAMES)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from animator.model.checkpoint import ModelConfig, save_generator
    from animator.model.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    config = GeneratorConfig(image_size=64, conv_dim=8, repeat_num=1)
    # motion then generator: both stages run in every render and morph test
    return save_generator(Generator(config), ModelConfig(generator=config, motion="warp+generator"),
                          tmp_path_factory.mktemp("model") / "tiny")


def face_frames(face_image: np.ndarray, n: int, no_face: set[int], size=(320, 240)) -> list[np.ndarray]:
    """A gradient background with the astronaut's head sliding left to right."""
    w, h = size
    head = cv2.resize(face_image[0:260, 110:370], (110, 110), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        frame = np.full((h, w, 3), 90, np.uint8)
        frame[:, :, 1] = np.linspace(40, 200, w).astype(np.uint8)[None]
        if i not in no_face:
            x = 10 + i * 10
            frame[50:160, x:x + 110] = head
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory, face_image) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return make_video(path, face_frames(face_image, N_FRAMES, NO_FACE), PTS,
                      audio_seconds=0.7, rotation=90)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_text(json.dumps({"version": 1, "keys": [
        {"time": 0, "aus": {"AU12": 0, "AU25": 0}},
        {"time": 0.5, "aus": {"AU12": 4, "AU25": 2}}]}))
    return path


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def leftovers(folder: Path) -> list[str]:
    """Temporary outputs left behind (atomic_output names them .NAME.*tmp*)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and "tmp" in p.name)


def test_render_keeps_frames_times_audio_and_metadata(clip, keys, tiny_model, tmp_path):
    out = tmp_path / "out.mp4"
    result = run("render", clip, "--keyframes", keys, "-o", out, "--checkpoint", tiny_model,
                 "--json", "--device", "cpu", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames"] == N_FRAMES
    assert summary["frames_without_face"] == len(NO_FACE)
    assert summary["faces_edited"] == N_FRAMES - len(NO_FACE)
    assert summary["corrupt_packets_skipped"] == 0
    src, dst = probe(clip), probe(out)
    assert (dst.width, dst.height, dst.rotation, dst.fps) == (src.width, src.height, 90, src.fps)
    assert dst.duration == pytest.approx(src.duration, abs=1e-3)
    assert [f.time for f in iter_frames(out)] == [f.time for f in iter_frames(clip)]
    assert audio_packets(out) == audio_packets(clip)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["smile.json", "relative_smile.json", "surprise_blink.json"])
def test_every_shipped_example_renders_on_the_example_clip(name, tmp_path):
    """The examples as users first run them: the shipped model and motion, the example clip.
    Each one starts from the actor's own face (a neutral key on a near-neutral face moves
    nothing) and edits the face by its peak."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    out = tmp_path / "out.mkv"
    result = run("render", examples / "single_face.mp4", "-k", examples / name, "-o", out,
                 "--codec", "ffv1", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["faces_edited"] == 72
    source = [f.rgb for f in iter_frames(examples / "single_face.mp4")]
    edited = [f.rgb for f in iter_frames(out)]
    change = [np.abs(a.astype(int) - b).max() for a, b in zip(source, edited)]
    assert len(edited) == 72 and max(change[25:45]) > 40


def test_lossless_render_touches_only_the_face(clip, keys, tiny_model, tmp_path):
    out, frames_dir = tmp_path / "out.mkv", tmp_path / "frames"
    result = run("render", clip, "--keyframes", keys, "-o", out, "--checkpoint", tiny_model,
                 "--codec", "ffv1", "--frames", frames_dir, "--mattes", "--quiet")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((frames_dir / "frames.json").read_text())
    changed_somewhere = False
    for n, (a, b) in enumerate(zip(iter_frames(clip), iter_frames(out), strict=True), start=1):
        matte = cv2.imread(str(frames_dir / f"matte_{n:06d}.png"), cv2.IMREAD_GRAYSCALE)
        png = cv2.cvtColor(cv2.imread(str(frames_dir / f"frame_{n:06d}.png")), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(png, b.rgb)  # the export holds the frames that were encoded
        if a.index in NO_FACE:
            np.testing.assert_array_equal(a.rgb, b.rgb)
            assert not matte.any() and sidecar["frames"][n - 1]["faces"] == []
            continue
        motion = np.load(frames_dir / f"motion_{n:06d}.npy")
        outside = (matte == 0) & ~np.any(motion != 0, axis=-1)  # neither painted nor moved
        np.testing.assert_array_equal(a.rgb[outside], b.rgb[outside])
        x0, y0, x1, y1 = sidecar["frames"][n - 1]["faces"][0]["box"]
        pad = max(x1 - x0, y1 - y0)  # the edit stays near the face
        far = np.ones(matte.shape, bool)
        far[max(0, int(y0 - pad)):int(y1 + pad), max(0, int(x0 - pad)):int(x1 + pad)] = False
        assert not matte[far].any() and not motion[far].any()
        changed_somewhere |= bool((a.rgb != b.rgb).any())
    assert changed_somewhere


def test_frame_export_sidecar(clip, keys, tiny_model, tmp_path):
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    result = run("render", clip, "--keyframes", keys, "-o", out, "--checkpoint", tiny_model,
                 "--frames", frames_dir, "--quiet")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in frames_dir.iterdir())
    assert names == sorted([MARKER, "frames.json"] + [f"frame_{i:06d}.png" for i in range(1, N_FRAMES + 1)])
    sidecar = json.loads((frames_dir / "frames.json").read_text())
    frames = sidecar["frames"]
    assert [f["index"] for f in frames] == list(range(N_FRAMES))
    assert [f["time"] for f in frames] == pytest.approx([float(p * TB) for p in PTS], abs=1e-6)
    assert set(frames[0]["aus"]) == {f"AU{c:02d}" for c in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15,
                                                              17, 20, 23, 25, 26, 45)}
    assert frames[0]["aus"]["AU12"] == 0 and frames[-1]["aus"]["AU12"] == 4
    face = frames[5]["faces"][0]
    assert set(face) >= {"id", "box", "score", "points", "aus"} and len(face["points"]) == 5


def test_start_end_renders_a_part(clip, keys, tiny_model, tmp_path):
    out = tmp_path / "part.mp4"
    result = run("render", clip, "--keyframes", keys, "-o", out, "--checkpoint", tiny_model,
                 "--start", "0.1", "--end", "0.3", "--json")
    assert result.exit_code == 0, result.output
    expected = [float(p * TB) for p in PTS if 0.1 <= float(p * TB) < 0.3]
    got = [f.time for f in iter_frames(out)]
    assert got == pytest.approx([t - expected[0] for t in expected], abs=1e-6)
    assert json.loads(result.stdout)["frames"] == len(expected)


def test_relative_keyframes_add_offsets_to_the_actor(clip, tiny_model, tmp_path):
    pytest.importorskip("animator.estimate")
    rel = tmp_path / "rel.json"
    rel.write_text(json.dumps({"version": 1, "mode": "relative", "keys": [
        {"time": 0, "aus": {"AU12": 1.5}}]}))
    frames_dir = tmp_path / "frames"
    result = run("render", clip, "--keyframes", rel, "-o", tmp_path / "out.mp4", "--checkpoint",
                 tiny_model, "--frames", frames_dir, "--quiet")
    assert result.exit_code == 0, result.output
    frames = json.loads((frames_dir / "frames.json").read_text())["frames"]
    faces = [face for f in frames for face in f["faces"]]
    assert faces and all(1.5 <= face["aus"]["AU12"] <= 5 for face in faces)
    assert all(f["aus"]["AU12"] == 1.5 for f in frames)  # the offsets themselves


@pytest.fixture()
def junk(tmp_path) -> Path:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"not a video at all")
    return path


@pytest.mark.parametrize("case", [
    "missing video", "junk video", "missing keys", "bad keys", "exists", "over input",
    "bad container", "bad codec", "mattes alone", "end before start", "bad select",
    "missing checkpoint", "frames exists"])
def test_bad_input_is_one_line_and_leaves_nothing(case, clip, keys, tiny_model, junk, tmp_path):
    out = tmp_path / "out.mp4"
    bad_keys = tmp_path / "bad.json"
    bad_keys.write_text('{"version": 1, "keys": [{"time": 0, "aus": {"AU99": 1}}]}')
    video, keyfile, extra = clip, keys, []
    if case == "missing video":
        video = tmp_path / "nope.mp4"
    elif case == "junk video":
        video = junk
    elif case == "missing keys":
        keyfile = tmp_path / "nope.json"
    elif case == "bad keys":
        keyfile = bad_keys
    elif case == "exists":
        out.write_bytes(b"keep me")
    elif case == "over input":
        out = clip
    elif case == "bad container":
        out = tmp_path / "out.avi"
    elif case == "bad codec":
        extra = ["--codec", "ffv1"]
    elif case == "mattes alone":
        extra = ["--mattes"]
    elif case == "end before start":
        extra = ["--start", "0.3", "--end", "0.1"]
    elif case == "bad select":
        extra = ["--select", "biggest"]
    elif case == "frames exists":
        (tmp_path / "frames").mkdir()
        extra = ["--frames", tmp_path / "frames"]
    checkpoint = tmp_path / "nomodel" if case == "missing checkpoint" else tiny_model
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("render", video, "--keyframes", keyfile, "-o", out, "--checkpoint", checkpoint,
                 *extra)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "exists":
        assert out.read_bytes() == b"keep me"


def test_failure_mid_render_leaves_no_output(clip, keys, tiny_model, tmp_path, monkeypatch):
    import pipelines.render as render

    calls = []

    def failing(editor, faces):
        calls.append(len(faces))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle
        return original(editor, faces)

    original = render.edit_faces
    monkeypatch.setattr(render, "edit_faces", failing)
    result = run("render", clip, "--keyframes", keys, "-o", tmp_path / "out.mp4", "--checkpoint",
                 tiny_model, "--frames", tmp_path / "frames", "--batch-size", "2")
    assert result.exit_code != 0 and "Aborted" in result.stderr  # click's answer to Ctrl-C
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("animator-")]


def test_stages_keep_order_and_bound_the_queue():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    consumed = []
    with Stages() as stages:
        for item in stages.thread(source(), maxsize=3):
            time.sleep(0.001)
            consumed.append(item)
            assert len(produced) - len(consumed) <= 3 + 2  # queue + one in hand on each side
    assert consumed == list(range(50))


def test_stages_reraise_and_stop_every_producer():
    closed = []

    def failing():
        try:
            yield 1
            raise ValueError("broken stage")
        finally:
            closed.append("failing")

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append("endless")

    def pair(a, b):
        for x, y in zip(a, b):
            yield x + y

    with pytest.raises(ValueError, match="broken stage"):
        with Stages() as stages:
            list(stages.thread(pair(stages.thread(failing(), 2), stages.thread(endless(), 2)), 2))
    assert sorted(closed) == ["endless", "failing"]
    assert not [t for t in threading.enumerate() if t.name.startswith("animator-")]


def test_batched_by_respects_limits():
    groups = list(batched_by([2, 0, 1, 3, 0, 0, 0, 0, 5], lambda n: n, limit=3, max_items=3))
    assert [g for g in groups] == [[2, 0, 1], [3, 0, 0], [0, 0], [5]]


def test_render_with_model_fast_uses_the_fast_folder(clip, keys, tiny_model, tmp_path, monkeypatch):
    import pipelines.render
    from animator.cli import options

    monkeypatch.setitem(options.MODELS, "fast", tiny_model)
    loaded = []
    load = pipelines.render._load_editor
    monkeypatch.setattr(pipelines.render, "_load_editor", lambda path, *a: loaded.append(path) or load(path, *a))
    result = run("render", clip, "--keyframes", keys, "-o", tmp_path / "out.mp4", "--model", "fast",
                 "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert loaded == [tiny_model] and json.loads(result.stdout)["faces_edited"] > 0
    refused = run("render", clip, "--keyframes", keys, "-o", tmp_path / "again.mp4", "--model", "fast",
                  "--checkpoint", tiny_model)
    assert refused.exit_code == 1 and "give one of them" in refused.output


def test_model_option_names_a_shipped_generator(tmp_path, monkeypatch):
    from animator.cli import options

    assert options.model_checkpoint(None, None) is None
    assert options.model_checkpoint(None, tmp_path) == tmp_path
    assert options.model_checkpoint("full", None) == options.MODELS["full"]
    monkeypatch.setitem(options.MODELS, "fast", tmp_path / "fast_model")
    with pytest.raises(AnimatorError, match="--model fast: .*fast_model is not part of this installation"):
        options.model_checkpoint("fast", None)
    (tmp_path / "fast_model").mkdir()
    (tmp_path / "fast_model" / "config.json").write_text("{}")
    assert options.model_checkpoint("fast", None) == tmp_path / "fast_model"
    with pytest.raises(AnimatorError, match="give one of them"):
        options.model_checkpoint("fast", tmp_path)


def test_a_model_loading_error_stops_pass_one_at_once(clip):
    """The models load on a thread while pass 1 tracks; when loading fails, tracking stops at
    the next frame with that error instead of running through the video first."""
    from concurrent.futures import Future

    import pipelines.render as render

    failed: Future = Future()
    failed.set_exception(AnimatorError("broken model"))
    with pytest.raises(AnimatorError, match="broken model"):
        render.follow_faces(clip, None, None, quiet=True, alongside=failed)
    tracks, times = render.follow_faces(clip, None, None, quiet=True)
    assert len(times) == len(tracks.frames) > 1
