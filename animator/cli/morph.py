"""``animator morph``: animate one photo from one AU target to another."""

from __future__ import annotations

import json
from pathlib import Path

import click

from animator.cli.options import encode_options, model_options, motion_option, output_options

EASINGS = ("linear", "in", "out", "in-out")


@click.command("morph")
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--from", "source", required=True,
              help="Start target: a preset ('neutral'), 'AU12=3,AU25=1', JSON, or a .json file.")
@click.option("--to", "target", required=True, help="End target, same forms as --from.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Output: .mp4/.mov/.mkv/.webm video, .gif, or a folder (no suffix) of PNGs.")
@click.option("--frames", "frames", type=int, default=48, show_default=True,
              help="Frames from --from to --to (2-10000).")
@click.option("--fps", type=float, default=24.0, show_default=True, help="Frame rate of the output.")
@click.option("--ease", type=click.Choice(EASINGS), default="in-out", show_default=True,
              help="Easing of the transition.")
@click.option("--pingpong", is_flag=True, help="Go back to --from at the end (loops smoothly).")
@click.option("--mattes", is_flag=True,
              help="With a folder OUT, also write attention mattes (and motion fields, with motion).")
@model_options
@motion_option
@encode_options
@output_options
def command(image: Path, source: str, target: str, out: Path, frames: int, fps: float, ease: str,
            pingpong: bool, mattes: bool, checkpoint: Path | None, batch_size: int, device: str,
            motion: str | None, codec: str | None, crf: int, preset: str, overwrite: bool, quiet: bool,
            as_json: bool) -> None:
    """Animate the largest face in IMAGE from the --from expression to the --to expression."""
    from animator.media.encode import EncodeOptions  # noqa: PLC0415
    from pipelines.morph import MorphOptions, morph  # noqa: PLC0415

    summary = morph(MorphOptions(
        image=image, source=source, target=target, out=out, frames=frames, fps=fps, ease=ease,
        pingpong=pingpong, checkpoint=checkpoint, device=device, batch_size=batch_size,
        encode=EncodeOptions(codec=codec, crf=crf, preset=preset), mattes=mattes, motion=motion,
        overwrite=overwrite, quiet=quiet))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    elif not quiet:
        click.echo(summary.text(), err=True)
