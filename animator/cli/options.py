"""Click options that several commands share, declared once so their names, defaults and
ranges agree. Where the wording depends on the command, a factory takes the help text."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from animator.errors import AnimatorError

DEVICES = ("auto", "cpu", "cuda", "mps")  # as animator.model.inference (not imported: torch)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
# --model: the shipped generators (as animator.model.checkpoint.DEFAULT_MODEL_DIR; not imported: torch)
MODELS = {"full": ASSETS / "default_model", "fast": ASSETS / "fast_model"}

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")

score_threshold_option = click.option(
    "--score-threshold", type=click.FloatRange(0.0, 1.0), default=0.6, show_default=True,
    help="Minimum detector confidence for a face.")


def overwrite_option(help: str):
    return click.option("--overwrite", is_flag=True, help=help)


def select_option(help: str, default: str = "largest"):
    """``--select``: checked by :func:`animator.faces.track.parse_selection`."""
    return click.option("--select", default=default, show_default=True, help=help)


def landmarks_option(help: str):
    return click.option("--landmarks", type=click.Choice(["mesh", "fan"]), default="mesh",
                        show_default=True, help=help)


motion_option = click.option(
    "--motion", type=click.Choice(["warp", "warp+generator", "none"]), default=None,
    help="warp: an AU rig moves the face at full resolution, and the eyeball a raised lid uncovers "
         "and the opened mouth are painted; "
         "warp+generator: the generator then paints on the moved face; none: the generator "
         "alone (the paper's GANimation). Default: the model's config (warp for animator's "
         "models, none for imported checkpoints).")


def model_checkpoint(model: str | None, checkpoint: Path | None) -> Path | None:
    """The generator ``--model`` names, or ``--checkpoint`` (None: the default model)."""
    if model is None:
        return checkpoint
    if checkpoint is not None:
        raise AnimatorError("--model and --checkpoint both name a generator: give one of them")
    folder = MODELS[model]
    if not (folder / "config.json").is_file():
        raise AnimatorError(f"--model {model}: {folder} is not part of this installation "
                            f"(the {model} generator is not shipped yet); use --model full")
    return folder


def model_options(command):
    """--model, --checkpoint, --batch-size, --device (``animator render`` and ``morph``); the
    command receives the chosen generator as ``checkpoint``."""

    @functools.wraps(command)
    def with_model(*args, model: str | None, checkpoint: Path | None, **kwargs):
        return command(*args, checkpoint=model_checkpoint(model, checkpoint), **kwargs)

    func = click.option("--model", type=click.Choice(list(MODELS)), default=None,
                        help="A shipped generator: full (the default) or fast (small, distilled "
                             "from full for CPUs).")(with_model)
    func = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help="Where the generator runs.")(func)
    func = click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                        help="Faces generated per batch.")(func)
    return click.option("--checkpoint", type=click.Path(path_type=Path),
                        help="Generator weights (animator folder or a GANimation checkpoint); "
                             "default: the shipped model.")(func)


def encode_options(func):
    """--codec, --crf, --preset, --odd-size (``animator render`` and ``morph``)."""
    func = click.option("--odd-size", type=click.Choice(["pad", "crop", "keep444"]), default="pad",
                        show_default=True,
                        help="H.264/H.265 with an odd width or height: pad one edge pixel (or "
                             "crop one) for yuv420p, which browsers and phones play, or keep "
                             "the size as 4:4:4.")(func)
    func = click.option("--preset", default="veryfast", show_default=True,
                        help="x264/x265 speed preset.")(func)
    func = click.option("--crf", type=int, default=18, show_default=True,
                        help="Constant quality (lower is better; x264/x265/VP9).")(func)
    return click.option("--codec", help="h264 (default; vp9 for .webm), h265, vp9, or lossless "
                                        "ffv1 (.mkv) / png (.mov).")(func)


def output_options(func):
    """--overwrite, --quiet, --json (``animator render`` and ``morph``)."""
    func = click.option("--json", "as_json", is_flag=True,
                        help="Print the summary as JSON on stdout.")(func)
    func = quiet_option(func)
    return overwrite_option("Replace an existing output.")(func)
