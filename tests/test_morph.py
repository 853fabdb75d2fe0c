"""``animator morph`` on the astronaut photo with a small random generator (no download)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from animator import aus
from animator.errors import AnimatorError
from animator.media.decode import iter_frames, probe
from animator.media.images import write_image
from pipelines.morph import ease, find_face, morph_targets
from test_render import leftovers, run, tiny_model  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def photo(tmp_path_factory, face_image) -> Path:
    path = tmp_path_factory.mktemp("photo") / "face.png"
    write_image(path, face_image[:301, :255])  # odd size on purpose
    return path


def test_easing_and_targets():
    for kind in ("linear", "in", "out", "in-out"):
        assert ease(np.array([0.0, 1.0]), kind).tolist() == [0.0, 1.0]
    assert ease(np.array([0.5]), "in")[0] < 0.5 < ease(np.array([0.5]), "out")[0]
    a, b = aus.parse_target("neutral"), aus.parse_target("happy")
    vectors = morph_targets(a, b, 5, "linear", pingpong=True)
    assert len(vectors) == 8
    np.testing.assert_allclose(vectors[0], a)
    np.testing.assert_allclose(vectors[4], b)
    np.testing.assert_allclose(vectors[-1], vectors[1])  # back towards A without repeating it
    with pytest.raises(AnimatorError, match="--ease"):
        ease(np.zeros(1), "bounce")


def test_morph_crops_like_training_and_rendering(face_image):
    """The crop is aligned on the mesh's five points, as prepare and the tracker align it."""
    from animator.faces.align import CropPolicy, crop_transform
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker, five_points

    policy = CropPolicy()
    face = find_face(face_image, policy, Path("face.png"))
    detection = FaceDetector().detect(face_image)[0]
    points = five_points(MeshLandmarker().landmarks(face_image, detection))
    np.testing.assert_allclose(face.points, points)
    np.testing.assert_allclose(face.M, crop_transform(policy, points, detection.box))


def test_morph_to_mp4(photo, tiny_model, tmp_path):
    out = tmp_path / "morph.mp4"
    result = run("morph", photo, "--from", "neutral", "--to", "happy", "-o", out, "--frames", 6,
                 "--fps", 12, "--pingpong", "--checkpoint", tiny_model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 10
    info = probe(out)
    assert (info.width, info.height, info.fps) == (255, 301, 12)
    assert [round(f.time * 12) for f in iter_frames(out)] == list(range(10))


def test_morph_to_gif(photo, tiny_model, tmp_path):
    from PIL import Image

    out = tmp_path / "morph.gif"
    result = run("morph", photo, "--from", "AU12=0", "--to", "AU12=4,AU25=2", "-o", out,
                 "--frames", 4, "--checkpoint", tiny_model, "--quiet")
    assert result.exit_code == 0, result.output
    with Image.open(out) as gif:
        assert gif.n_frames == 4 and gif.size == (255, 301)


def test_morph_to_png_folder(photo, tiny_model, tmp_path):
    out = tmp_path / "frames"
    result = run("morph", photo, "--from", "neutral", "--to", '{"AU12": 3}', "-o", out,
                 "--frames", 3, "--ease", "linear", "--mattes", "--checkpoint", tiny_model, "--quiet")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["frame_000001.png", "frame_000002.png", "frame_000003.png", "frames.json",
                     "matte_000001.png", "matte_000002.png", "matte_000003.png",
                     "motion_000001.npy", "motion_000002.npy", "motion_000003.npy"]
    frames = json.loads((out / "frames.json").read_text())["frames"]
    assert [f["aus"]["AU12"] for f in frames] == [0.0, 1.5, 3.0]
    assert len(frames[0]["faces"]) == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["missing", "no face", "bad target", "exists", "suffix",
                                  "over input", "frames", "too many frames"])
def test_morph_bad_input(case, photo, tiny_model, tmp_path):
    image, out, extra, to = photo, tmp_path / "out.mp4", [], "happy"
    if case == "missing":
        image = tmp_path / "nope.png"
    elif case == "no face":
        image = tmp_path / "grey.png"
        write_image(image, np.full((120, 160, 3), 128, np.uint8))
    elif case == "bad target":
        to = "AU99=3"
    elif case == "exists":
        out.write_bytes(b"keep")
    elif case == "suffix":
        out = tmp_path / "out.avi"
    elif case == "over input":
        out = photo
    elif case == "frames":
        extra = ["--frames", "1"]
    elif case == "too many frames":  # was an out-of-memory kill
        extra = ["--frames", "100000000"]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("morph", image, "--from", "neutral", "--to", to, "-o", out,
                 "--checkpoint", tiny_model, *extra)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "exists":
        assert out.read_bytes() == b"keep"
