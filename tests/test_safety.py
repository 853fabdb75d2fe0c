"""A careful and a hostile user: nothing but the command's own output is ever replaced or
deleted, no data file runs code, bad input and a hostile environment (read-only or full disk,
SIGTERM) end in one line with nothing left behind."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from animator.errors import AnimatorError
from animator.media.images import read_image, write_image
from animator.outputs import MARKER, atomic_output, check_output
from test_render import clip, keys, leftovers, run, tiny_model  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under ``folder``: a file's bytes, or the kind of anything else."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        found[str(path.relative_to(folder))] = path.read_bytes() if stat.S_ISREG(mode) else oct(mode)
    return found


def one_line_error(result, *words: str) -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def photo(tmp_path, face_image) -> Path:
    path = tmp_path / "pics" / "photo.png"
    path.parent.mkdir()
    write_image(path, face_image[:256, :256])
    return path


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A real tmpfs mounted at ``path`` (skips where mounting is not allowed)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a read-only or a full filesystem) needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)  # lazy: even if still busy


# ---------------------------------------------------------------- never lose a file

def test_render_frames_dot_overwrite_keeps_the_folder(clip, keys, tiny_model, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(clip, work / "v.mp4")
    shutil.copy(keys, work / "k.json")
    (work / "notes.txt").write_text("mine")
    before = snapshot(work)
    monkeypatch.chdir(work)
    result = run("render", "v.mp4", "-k", "k.json", "-o", "out.mp4", "--frames", ".",
                 "--checkpoint", tiny_model, "--overwrite")
    one_line_error(result, "holds the input")
    assert snapshot(work) == before


def test_render_frames_overwrite_spares_a_folder_animator_did_not_write(clip, keys, tiny_model,
                                                                       tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "holiday.png").write_bytes(b"precious")
    result = run("render", clip, "-k", keys, "-o", tmp_path / "out.mp4", "--frames", frames,
                 "--checkpoint", tiny_model, "--overwrite")
    one_line_error(result, "did not write")
    assert snapshot(tmp_path) == {"frames": oct(frames.lstat().st_mode),
                                  "frames/holiday.png": b"precious"}


def test_morph_to_the_folder_holding_the_photo_keeps_it(photo, tiny_model, tmp_path):
    before = snapshot(tmp_path)
    result = run("morph", photo, "--from", "neutral", "--to", "happy", "-o", photo.parent,
                 "--frames", 3, "--checkpoint", tiny_model, "--overwrite")
    one_line_error(result, "holds the input")
    assert snapshot(tmp_path) == before


def test_convert_into_the_folder_holding_the_input_keeps_it(tiny_model, tmp_path):
    from animator.model.checkpoint import load_generator, save_generator

    models = tmp_path / "m"
    models.mkdir()
    save_generator(*load_generator(tiny_model), models / "mine.safetensors")
    before = snapshot(tmp_path)
    result = run("convert", models / "mine.safetensors", "-o", models, "--overwrite")
    one_line_error(result, "holds the input")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["holds the input", "not made by animator"])
def test_prepare_overwrite_spares_folders_it_did_not_make(case, photo, tmp_path):
    """prepare writes into its folder in place: --overwrite may clear only its own files."""
    folder = photo.parent if case == "holds the input" else tmp_path / "data"
    (folder / "imgs").mkdir(parents=True)
    (folder / "imgs" / "holiday.jpg").write_bytes(b"precious")
    before = snapshot(tmp_path)
    one_line_error(run("prepare", photo.parent, "-o", folder, "--overwrite"), case)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_own_and_empty_folders_only(tmp_path):
    own = tmp_path / "own"
    for content in ("first", "second"):  # the second run replaces the first's folder
        with atomic_output(own, overwrite=True, directory=True) as tmp:
            (tmp / "a.txt").write_text(content)
    assert snapshot(own) == {MARKER: (own / MARKER).read_bytes(), "a.txt": b"second"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_output(empty, overwrite=True, directory=True) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (empty / "a.txt").read_text() == "new"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(AnimatorError, match="did not write"):
        with atomic_output(foreign, overwrite=True, directory=True):
            pass
    assert snapshot(foreign) == {"thesis.tex": b"years of work"}
    with pytest.raises(AnimatorError, match="is a folder"):  # a file output onto a folder
        check_output(own, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "foreign", "own"]


@pytest.mark.parametrize("name", [".", "..", "/"])
def test_an_output_needs_a_name(name, tmp_path, monkeypatch):
    """``-o .`` in an empty folder: the temporary would go inside the folder it replaces."""
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(AnimatorError, match="name the output"):
        check_output(name, overwrite=True, directory=True)


@pytest.mark.parametrize("kind", ["FIFO", "character device"])
def test_overwrite_never_replaces_a_device_or_fifo(kind, keys, tmp_path):
    out = tmp_path / "table.csv"
    if kind == "FIFO":
        os.mkfifo(out)
    else:
        try:  # the same device as /dev/null, made here so nothing outside tmp_path is at stake
            os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    mode = out.lstat().st_mode
    result = run("keys", keys, "--fps", 10, "--duration", 1, "--csv", out, "--overwrite")
    one_line_error(result, str(out), kind)
    assert out.lstat().st_mode == mode and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


@pytest.mark.parametrize("directory", [False, True], ids=["file", "folder"])
def test_output_created_meanwhile_is_not_replaced(directory, tmp_path):
    """Two commands writing the same new output: the one finishing second must not silently
    replace the first's result (it was checked absent only at the start)."""
    out = tmp_path / ("frames" if directory else "out.mp4")
    with pytest.raises(AnimatorError, match="another process"):
        with atomic_output(out, directory=directory) as tmp:
            (tmp / "a.png" if directory else tmp).write_bytes(b"second")
            if directory:  # the first command finishes its folder now
                out.mkdir()
                (out / "a.png").write_bytes(b"first")
            else:
                out.write_bytes(b"first")
    assert (out / "a.png" if directory else out).read_bytes() == b"first"
    assert leftovers(tmp_path) == []


def test_output_created_meanwhile_on_a_filesystem_without_hard_links(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "out.csv"
    with atomic_output(out) as tmp:
        tmp.write_text("mine")
    assert out.read_text() == "mine"  # the fallback writes
    out2 = tmp_path / "out2.csv"
    with pytest.raises(AnimatorError, match="another process"):
        with atomic_output(out2) as tmp:
            tmp.write_text("second")
            out2.write_text("first")
    assert out2.read_text() == "first" and leftovers(tmp_path) == []


def test_render_keeps_an_output_another_render_wrote_meanwhile(clip, keys, tiny_model, tmp_path,
                                                                monkeypatch):
    """The race of two renders started together on the same new output, made deterministic:
    the other one finishes while this one is generating."""
    import pipelines.render as render

    out, generate = tmp_path / "out.mp4", render.edit_faces

    def other_render_finishes(editor, faces):
        if not out.exists():
            out.write_bytes(b"the other render's video")
        generate(editor, faces)

    monkeypatch.setattr(render, "edit_faces", other_render_finishes)
    result = run("render", clip, "-k", keys, "-o", out, "--checkpoint", tiny_model, "--quiet")
    one_line_error(result, str(out), "another process")
    assert out.read_bytes() == b"the other render's video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# ---------------------------------------------------------------- never run foreign code

class Payload:
    """Unpickling this creates ``marker``: the proof that a loader ran foreign code."""

    def __init__(self, marker: Path, shell: bool = False) -> None:
        self.marker, self.shell = marker, shell

    def __reduce__(self):
        if self.shell:
            return (os.system, (f"touch {shlex.quote(str(self.marker))}",))
        return (open, (str(self.marker), "w"))


def ganimation_set(root: Path, labels: dict) -> Path:
    """A two-face training set in GANimation's layout with ``labels`` as its AU pickle."""
    (root / "imgs").mkdir(parents=True)
    for name in ("a", "b"):
        write_image(root / "imgs" / f"{name}.jpg", np.full((32, 32, 3), 128, np.uint8))
    (root / "train_ids.csv").write_text("a.jpg\n")
    (root / "test_ids.csv").write_text("b.jpg\n")
    (root / "aus_openface.pkl").write_bytes(pickle.dumps(labels, protocol=4))
    return root


def test_train_reads_the_au_pickle_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    data = ganimation_set(tmp_path / "DATA", {"a": np.zeros(17), "b": Payload(marker)})
    result = run("train", data, "--out", tmp_path / "run", "--device", "cpu", "--quiet")
    one_line_error(result, "aus_openface.pkl", "refused")
    assert not marker.exists()


def test_au_pickles_of_every_protocol_and_numpy_still_load(tmp_path):
    from animator.train.data import read_aus

    labels = {"a": np.linspace(0, 5, 17), "b": np.ones(17, np.float32)}
    path = tmp_path / "aus.pkl"
    for protocol in (2, 3, 4, 5):
        path.write_bytes(pickle.dumps(labels, protocol=protocol))
        read = read_aus(path)
        np.testing.assert_allclose(read["a"], labels["a"], rtol=1e-6)
        assert read["a"].dtype == np.float32
    # numpy 1.x spells the array constructor numpy.core.* (2.x: numpy._core.*)
    old = pickle.dumps(labels, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    path.write_bytes(old)
    np.testing.assert_allclose(read_aus(path)["b"], 1.0)
    path.write_bytes(pickle.dumps({"a": np.array([None] * 17, dtype=object)}))
    with pytest.raises(AnimatorError, match="refused dtype object"):
        read_aus(path)


TINY_TRAIN = ("--device", "cpu", "--quiet", "--image-size", "32", "--g-conv-dim", "8",
              "--g-repeat-num", "1", "--d-conv-dim", "8", "--d-repeat-num", "5",
              "--batch-size", "1", "--steps", "1")


@pytest.mark.parametrize("case", ["the data set", "holds the data set", "not made by animator"])
def test_train_overwrite_spares_folders_it_did_not_make(case, tmp_path):
    """train writes its run folder in place: --overwrite may clear only a run folder it made."""
    data = ganimation_set(tmp_path / "DATA", {"a": np.zeros(17), "b": np.ones(17)})
    out = {"the data set": data, "holds the data set": tmp_path,
           "not made by animator": tmp_path / "mine"}[case]
    if case == "not made by animator":  # the user's own files that happen to share train's names
        out.mkdir()
        (out / "summary.json").write_text("{\"my\": \"notes\"}")
        (out / "samples").mkdir()
        (out / "samples" / "holiday.png").write_bytes(b"precious")
    before = snapshot(tmp_path)
    result = run("train", data, "-o", out, "--overwrite", *TINY_TRAIN)
    one_line_error(result, str(out), "did not write" if case == "not made by animator" else "input")
    assert snapshot(tmp_path) == before


def test_train_overwrite_starts_again_in_its_own_run_folder(tmp_path):
    data = ganimation_set(tmp_path / "DATA", {"a": np.zeros(17), "b": np.ones(17)})
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is as good as none
    assert run("train", data, "-o", out, *TINY_TRAIN).exit_code == 0
    assert (out / MARKER).is_file() and (out / "checkpoint.pt").is_file()
    (out / "notes.txt").write_text("kept")
    one_line_error(run("train", data, "-o", out, *TINY_TRAIN), "already exists")
    (out / "summary.json").unlink()
    assert run("train", data, "-o", out, "--overwrite", *TINY_TRAIN).exit_code == 0
    assert (out / "summary.json").is_file() and (out / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize("shell", [False, True], ids=["open", "system"])
def test_malicious_torch_checkpoint_refusal_names_the_cause(shell, tmp_path):
    torch = pytest.importorskip("torch")
    path, marker = tmp_path / "net_epoch_30_id_G.pth", tmp_path / "pwned"
    torch.save({"main.0.weight": torch.zeros(2), "evil": Payload(marker, shell)}, path)
    result = run("convert", path, "-o", tmp_path / "model")
    called = f"{os.system.__module__}.system" if shell else "io.open"
    line = one_line_error(result, str(path), called)
    assert "weights_only" not in line and "trusted source" not in line
    assert not marker.exists() and not (tmp_path / "model").exists()


# ---------------------------------------------------------------- one line, not a traceback

def test_read_only_output_folder(clip, keys, tiny_model, photo, tmp_path):
    data = ganimation_set(tmp_path / "DATA", {"a": np.zeros(17), "b": np.ones(17)})
    with tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        result = run("keys", keys, "--fps", 10, "--duration", 1, "--csv", folder / "t.csv")
        one_line_error(result, "not writable")
        result = run("render", clip, "-k", keys, "-o", folder / "out.mp4", "--checkpoint",
                     tiny_model)
        one_line_error(result, "not writable")
        # prepare writes its folder in place; train checks its run folder as every output
        one_line_error(run("prepare", photo, "-o", folder / "data"), "Read-only file system")
        one_line_error(run("train", data, "--out", folder / "run", "--device", "cpu"),
                       str(folder / "run"), "not writable")


def test_disk_full_during_a_render(clip, keys, tiny_model, tmp_path):
    with tmpfs(tmp_path / "small", "size=96k") as folder:
        result = run("render", clip, "-k", keys, "-o", folder / "out.mkv", "--codec", "ffv1",
                     "--frames", folder / "frames", "--checkpoint", tiny_model, "--quiet")
        one_line_error(result, "No space left on device")
        assert list(folder.iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_disk_full_during_prepare_stops_with_one_line(workers, clip, tmp_path):
    """A crop that does not fit is the disk's fault, not the video's: prepare stops and says
    so instead of counting the video as unreadable and going on."""
    other = tmp_path / "other.mp4"  # two videos: with two workers, the failure comes from one
    shutil.copyfile(clip, other)
    with tmpfs(tmp_path / "small", "size=96k") as folder:
        out = folder / "data"
        result = run("prepare", clip, other, "-o", out, "--every", "1", "--size", "256",
                     "--image-format", "png", "--min-face", "32", "--blur-threshold", "0",
                     "--dedupe-threshold", "0", "--workers", workers, "--quiet")
        line = one_line_error(result, str(out / "imgs"), "No space left on device")
        assert "unreadable" not in line
        assert leftovers(out / "imgs") == [] and not (out / "manifest.json").exists()


@pytest.mark.parametrize("command", ["faces", "morph", "estimate", "prepare"])
def test_zero_length_image(command, tiny_model, tmp_path):
    image = tmp_path / "empty.jpg"
    image.touch()
    args = {"faces": ["faces", image],
            "morph": ["morph", image, "--from", "neutral", "--to", "happy", "-o",
                      tmp_path / "m.gif", "--checkpoint", tiny_model],
            "estimate": ["estimate", image, "-o", tmp_path / "e.csv"],
            "prepare": ["prepare", image, "-o", tmp_path / "data"]}[command]
    one_line_error(run(*args), str(image), "empty file")


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(100_000, 100_000), (13_000, 12_000)])
def test_image_too_large_is_refused_from_its_header(size, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(*size))
    with pytest.raises(AnimatorError, match="header claims"):
        read_image(path)
    one_line_error(run("faces", path), str(path), "megapixels")


def test_existing_folder_as_output_is_refused_before_rendering(clip, keys, tiny_model, tmp_path,
                                                                monkeypatch):
    import pipelines.render as render

    def must_not_run(*args, **kwargs):
        raise AssertionError("the render started although its output cannot be written")

    monkeypatch.setattr(render, "follow_faces", must_not_run)
    (tmp_path / "out.mp4").mkdir()
    result = run("render", clip, "-k", keys, "-o", tmp_path / "out.mp4", "--checkpoint",
                 tiny_model, "--overwrite")
    one_line_error(result, "is a folder")


# ---------------------------------------------------------------- interrupted work

SLOW_RENDER = """
import sys, time
from pathlib import Path
import pipelines.render as render
edit, started = render.edit_faces, Path(sys.argv.pop(1))
def slow_edit(editor, faces):
    started.touch()
    time.sleep(0.3)
    edit(editor, faces)
render.edit_faces = slow_edit
from animator.cli import main
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_mid_render_cleans_up(signum, clip, keys, tiny_model, tmp_path):
    """A real process, signalled while it writes its outputs (the generator is slowed down so
    that the signal surely lands in the middle)."""
    started = tmp_path / "started"
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RENDER, str(started), "render", str(clip), "-k", str(keys),
         "-o", str(out / "out.mp4"), "--frames", str(out / "fr"), "--checkpoint", str(tiny_model),
         "--batch-size", "2", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the render never reached the generator"
            time.sleep(0.02)
        assert len(leftovers(out)) == 2  # the video's and the frames folder's temporaries
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and signal.Signals(signum).name in lines[0], err
    assert list(out.iterdir()) == []


WORKER_STOPPED_MID_CROP = """
import os, signal, sys, time
from pathlib import Path
from animator.outputs import atomic_output
from pipelines.prepare import PrepareOptions, _init_worker

out = Path(sys.argv[1])
_init_worker(PrepareOptions(openface=str(out)), out)
with atomic_output(out / "crop.png") as tmp:
    tmp.write_bytes(b"half a crop")
    os.kill(os.getpid(), signal.SIGTERM)  # as Pool.terminate does
    time.sleep(30)
"""


def test_a_prepare_worker_ended_by_pool_terminate_removes_its_temporary(tmp_path):
    """When one prepare worker fails (a full disk) or the command is stopped, the pool SIGTERMs
    the others: the crop each is writing must not stay behind as a hidden temporary."""
    done = subprocess.run([sys.executable, "-c", WORKER_STOPPED_MID_CROP, str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert list(tmp_path.iterdir()) == []
