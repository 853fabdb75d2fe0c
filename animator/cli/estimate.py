"""``animator estimate``: AU intensities per video frame or per image, as an OpenFace CSV."""

from __future__ import annotations

from pathlib import Path

import click

from animator.cli.options import overwrite_option, quiet_option, score_threshold_option, select_option


@click.command("estimate")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="CSV to write: frame, timestamp, face_id, confidence, AU01_r ... AU45_r "
                   "(a folder of images adds a leading 'file' column).")
@click.option("--plot", type=click.Path(path_type=Path),
              help="Also draw the AU curves over time (.png, .svg, .pdf).")
@select_option("Video faces to report: 'largest' (the biggest track), 'all', or a face ID.")
@score_threshold_option
@overwrite_option("Replace existing outputs.")
@quiet_option
def command(input_path: Path, output: Path, plot: Path | None, select: str,
            score_threshold: float, overwrite: bool, quiet: bool) -> None:
    """Estimate the 17 AU intensities (0-5) of INPUT: a video (one row per frame and face), a
    folder of images (one row per image, largest face) or one photo (one row).

    Frames are numbered from 1 as in OpenFace; rows where no face was found have
    confidence 0 and all AUs 0. The AUs come from MediaPipe's landmarks and blendshapes,
    calibrated against OpenFace: see docs/au_estimation.md for how far to trust each.
    """
    from animator.faces.track import parse_selection  # noqa: PLC0415
    from pipelines.estimate import EstimateOptions, estimate  # noqa: PLC0415

    rows = estimate(EstimateOptions(input=input_path, output=output, plot=plot,
                                    select=parse_selection(select),
                                    score_threshold=score_threshold, overwrite=overwrite,
                                    quiet=quiet))
    if not quiet:
        found = sum(row.confidence > 0 for row in rows)
        click.echo(f"{output}: {len(rows)} row(s), a face in {found}", err=True)
