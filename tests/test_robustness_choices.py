"""Commands agree with each other: face IDs and --select mean the same in faces, render, morph
and estimate; a folder of images survives one bad image; a photo is not a folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from animator.cli import cli
from animator.media.images import read_image, write_image
from test_render import run, tiny_model  # noqa: F401 (fixture)
from test_train import toy_set  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory, face_image) -> Path:
    """The astronaut's head, and beside it the same head smaller and mirrored: faces 0 and 1."""
    head = face_image[0:300, 100:400]
    canvas = np.full((300, 620, 3), 100, np.uint8)
    canvas[:, :300] = head
    canvas[50:250, 360:560] = cv2.resize(head, (200, 200), interpolation=cv2.INTER_AREA)[:, ::-1]
    path = tmp_path_factory.mktemp("two") / "two.png"
    write_image(path, canvas)
    return path


def face_ids(result) -> list[int]:
    return [face["id"] for face in json.loads(result.output)["frames"][0]["faces"]]


def test_faces_reports_every_face_by_default(two_faces):
    assert face_ids(run("faces", two_faces)) == [0, 1]
    assert face_ids(run("faces", two_faces, "--select", "largest")) == [0]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("select, ids", [(None, ["0"]), ("all", ["0", "1"]), ("1", ["1"])])
def test_estimate_honours_select_for_a_photo(two_faces, tmp_path, select, ids):
    out = tmp_path / "aus.csv"
    result = run("estimate", two_faces, "-o", out, "-q", *(["--select", select] if select else []))
    assert result.exit_code == 0, result.output
    assert [row["face_id"] for row in read_rows(out)] == ids


def test_morph_select_animates_the_chosen_face_only(two_faces, tiny_model, tmp_path):
    out = tmp_path / "frames"
    result = run("morph", two_faces, "--from", "neutral", "--to", "happy", "-o", out, "--frames", 2,
                 "--select", "1", "--checkpoint", tiny_model, "-q")
    assert result.exit_code == 0, result.output
    frames = json.loads((out / "frames.json").read_text())["frames"]
    assert [face["id"] for face in frames[-1]["faces"]] == [1]
    before, after = read_image(two_faces), read_image(out / "frame_000002.png")
    changed = np.any(before != after, axis=2)
    assert not changed[:, :300].any() and changed[:, 330:].any()
    missing = CliRunner().invoke(cli, ["morph", str(two_faces), "--from", "neutral", "--to", "happy",
                                       "-o", str(tmp_path / "m.gif"), "--select", "5",
                                       "--checkpoint", str(tiny_model)])
    assert missing.exit_code == 1 and "no face with ID 5" in missing.output


def test_morph_of_a_folder_says_it_takes_one_photo(tmp_path, tiny_model):
    result = CliRunner().invoke(cli, ["morph", str(tmp_path), "--from", "neutral", "--to", "happy",
                                      "-o", str(tmp_path / "out.gif"), "--checkpoint", str(tiny_model)])
    assert result.exit_code == 1
    assert "is a folder; morph animates one photo" in result.output
    assert "no such file" not in result.output


def test_estimate_folder_skips_a_bad_image_and_keeps_the_good_ones(two_faces, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(two_faces.read_bytes())
    (folder / "b_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "c.png").write_bytes(two_faces.read_bytes())
    out = tmp_path / "aus.csv"
    result = CliRunner().invoke(cli, ["estimate", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [row["file"] for row in read_rows(out)] == ["a.png", "c.png"]
    assert "b_broken.jpg: not a readable image: skipped" in result.output
    assert "1 image(s) skipped" in result.output
    for name in ("a.png", "c.png"):
        (folder / name).write_bytes(b"not an image either")
    nothing = CliRunner().invoke(cli, ["estimate", str(folder), "-o", str(tmp_path / "none.csv")])
    assert nothing.exit_code == 1 and "none of its 3 images could be estimated" in nothing.output
    assert not (tmp_path / "none.csv").exists()


# ---- odd sizes: playable H.264 by default, 4:4:4 on request -----------------------------------

@pytest.mark.parametrize("policy, size, pix_fmt", [("pad", (162, 122), "yuv420p"),
                                                   ("crop", (160, 120), "yuv420p"),
                                                   ("keep444", (161, 121), "yuv444p")])
def test_odd_sizes_follow_the_policy(tmp_path, policy, size, pix_fmt):
    from animator.media.decode import iter_frames, probe
    from animator.media.encode import EncodeOptions
    from test_media import make_video, noise_frames, rewrite

    source = make_video(tmp_path / "odd.mp4", noise_frames(3, 161, 121))
    out = tmp_path / "out.mp4"
    writer = rewrite(source, out, EncodeOptions(odd_size=policy))
    info = probe(out)
    assert ((info.width, info.height), info.pix_fmt) == (size, pix_fmt)
    assert any("odd size 161x121" in note for note in writer.notes)
    decoded = next(iter_frames(out)).rgb.astype(int)
    original = next(iter_frames(source)).rgb.astype(int)
    common = np.s_[:120, :160]
    assert np.abs(decoded[common] - original[common]).mean() < 6  # the picture is where it was
    if policy == "pad":  # the added column and row repeat the edge
        assert np.abs(decoded[:, 161] - decoded[:, 160]).mean() < 6
        assert np.abs(decoded[121] - decoded[120]).mean() < 6


def test_odd_size_note_reaches_the_summary(two_faces, tiny_model, tmp_path):
    photo = tmp_path / "odd.png"
    write_image(photo, read_image(two_faces)[:299, :599])
    result = run("morph", photo, "--from", "neutral", "--to", "happy", "-o", tmp_path / "m.mp4", "--frames", 2,
                 "--checkpoint", tiny_model, "--json")
    notes = json.loads(result.stdout)["notes"]
    assert any("padded with a copy of the edge pixels to 600x300" in note for note in notes)


def test_quiet_silences_x265(tmp_path, capfd):
    from animator.media.encode import EncodeOptions
    from test_media import make_video, noise_frames, rewrite

    source = make_video(tmp_path / "a.mp4", noise_frames(3, 64, 48))
    capfd.readouterr()
    rewrite(source, tmp_path / "h265.mp4", EncodeOptions(codec="h265"))
    assert "x265 [info]" not in capfd.readouterr().err


# ---- train: honest metrics, and a failure leaves nothing that blocks the retry -----------------

def _train(data: Path, out: Path, lines: list[str] | None = None) -> dict:
    from animator.train.config import TrainConfig
    from animator.train.loop import RunControl, train
    from test_train import TINY

    config = TrainConfig(**{**TINY, "steps": 4})
    return train(data, out, config, RunControl(device="cpu", quiet=True),
                 log=(lines.append if lines is not None else lambda line: None))


def test_train_without_test_faces_says_there_is_no_held_out_split(toy_set, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(toy_set, data)
    (data / "test_ids.csv").write_text("")
    lines: list[str] = []
    _train(data, tmp_path / "run", lines)
    assert any("no held-out split" in line for line in lines)
    assert not any("held-out AU err" in line for line in lines)
    assert any("training-face (no held-out split) AU err" in line for line in lines)


def test_a_failed_train_leaves_no_run_folder_behind(toy_set, tmp_path, monkeypatch):
    from animator.train.loop import Trainer

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    run_folder = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", broken)
        with pytest.raises(RuntimeError, match="simulated"):
            _train(toy_set, run_folder)
    assert not run_folder.exists()
    assert _train(toy_set, run_folder)["iterations"] == 4  # the retry just works
    mine = tmp_path / "mine"
    mine.mkdir()  # a folder the user made stays, without what the failed session wrote into it
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", broken)
        with pytest.raises(RuntimeError):
            _train(toy_set, mine)
    assert mine.is_dir() and not any(mine.iterdir())
    assert _train(toy_set, mine)["iterations"] == 4
