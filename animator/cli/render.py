"""``animator render``: change the expression in a video from AU keyframes."""

from __future__ import annotations

import json
from pathlib import Path

import click

DEVICES = ("auto", "cpu", "cuda", "mps")


def model_options(func):
    """--checkpoint, --batch-size, --device (shared with ``animator morph``)."""
    func = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help="Where the generator runs.")(func)
    func = click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                        help="Faces generated per batch.")(func)
    return click.option("--checkpoint", type=click.Path(path_type=Path),
                        help="Generator weights (animator folder or a GANimation checkpoint); "
                             "default: the shipped model.")(func)


def encode_options(func):
    func = click.option("--preset", default="medium", show_default=True,
                        help="x264/x265 speed preset.")(func)
    func = click.option("--crf", type=int, default=18, show_default=True,
                        help="Constant quality (lower is better; x264/x265/VP9).")(func)
    return click.option("--codec", help="h264 (default; vp9 for .webm), h265, vp9, or lossless "
                                        "ffv1 (.mkv) / png (.mov).")(func)


def output_options(func):
    func = click.option("--json", "as_json", is_flag=True,
                        help="Print the summary as JSON on stdout.")(func)
    func = click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")(func)
    return click.option("--overwrite", is_flag=True, help="Replace an existing output.")(func)


@click.command("render")
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--keyframes", "-k", "keyframes", required=True, type=click.Path(path_type=Path),
              help="Keyframe JSON file (absolute AU values, or offsets with mode 'relative').")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Output video (.mp4, .mov, .mkv or .webm).")
@model_options
@click.option("--select", default="largest", show_default=True,
              help="Which faces to edit: 'largest', 'all', or a face id from 'animator faces'.")
@encode_options
@click.option("--frames", "frames_dir", type=click.Path(path_type=Path),
              help="Also export the frames as PNGs (frame_000001.png ...) with frames.json here.")
@click.option("--mattes", is_flag=True, help="With --frames, also write attention mattes (matte_000001.png).")
@click.option("--start", type=float, help="Render from this time (seconds on the video's clock).")
@click.option("--end", type=float, help="Render up to this time (seconds, exclusive).")
@output_options
def command(video: Path, keyframes: Path, out: Path, checkpoint: Path | None, batch_size: int,
            device: str, select: str, codec: str | None, crf: int, preset: str,
            frames_dir: Path | None, mattes: bool, start: float | None, end: float | None,
            overwrite: bool, quiet: bool, as_json: bool) -> None:
    """Render VIDEO with the faces' expressions following the --keyframes file.

    The output keeps the input's frames, timestamps, size, rotation and audio; faces are
    tracked first, then edited in batches and pasted back.
    """
    from animator.media.encode import EncodeOptions  # noqa: PLC0415
    from pipelines.render import RenderOptions, render  # noqa: PLC0415

    summary = render(RenderOptions(
        video=video, keyframes=keyframes, out=out, checkpoint=checkpoint, batch_size=batch_size,
        device=device, select=select, encode=EncodeOptions(codec=codec, crf=crf, preset=preset),
        frames_dir=frames_dir, mattes=mattes, start=start, end=end, overwrite=overwrite,
        quiet=quiet))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    elif not quiet:
        click.echo(summary.text(), err=True)
