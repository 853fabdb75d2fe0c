"""``animator render``: change the expression in a video from AU keyframes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from animator.cli.options import (encode_options, model_options, motion_option, output_options,
                                  select_option)


@click.command("render")
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--keyframes", "-k", "keyframes", required=True, type=click.Path(path_type=Path),
              help="Keyframe JSON file (absolute AU values, or offsets with mode 'relative').")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Output video (.mp4, .mov, .mkv or .webm).")
@model_options
@motion_option
@select_option("Which faces to edit: 'largest', 'all', or a face id from 'animator faces'.")
@encode_options
@click.option("--frames", "frames_dir", type=click.Path(path_type=Path),
              help="Also export the frames as PNGs (frame_000001.png ...) with frames.json here.")
@click.option("--mattes", is_flag=True, help="With --frames, also write attention mattes (matte_000001.png) "
                                              "and, with motion, motion fields (motion_000001.npy).")
@click.option("--start", type=float, help="Render from this time (seconds on the video's clock).")
@click.option("--end", type=float, help="Render up to this time (seconds, exclusive).")
@output_options
def command(video: Path, keyframes: Path, out: Path, checkpoint: Path | None, batch_size: int,
            device: str, motion: str | None, select: str, codec: str | None, crf: int, preset: str,
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
        frames_dir=frames_dir, mattes=mattes, motion=motion, start=start, end=end, overwrite=overwrite,
        quiet=quiet))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    elif not quiet:
        click.echo(summary.text(), err=True)
