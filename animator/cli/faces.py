"""``animator faces``: detect and track faces; report them as JSON and draw a preview."""

from __future__ import annotations

from pathlib import Path

import click

from animator.cli.options import (landmarks_option, overwrite_option, quiet_option,
                                  score_threshold_option, select_option)


@click.command("faces")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path),
              help="Write the faces of every frame (id, box, score, 5 points) to this JSON file. "
                   "Without --json or --preview the JSON goes to stdout.")
@click.option("--preview", type=click.Path(path_type=Path),
              help="Draw boxes, IDs and landmarks: an image for an image, a video (.mp4, .mkv ...) for a video.")
@select_option("Which faces to report: 'all' (the IDs that render, morph and estimate "
               "--select take), 'largest' (the biggest track), or a face ID.", default="all")
@score_threshold_option
@landmarks_option("Landmarks drawn in the preview: the shipped 468-point face mesh, or 68-point "
                  "FAN (needs 'pip install animator[fan]' and a network to fetch its weights once).")
@click.option("--max-gap", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="Frames a face may go missing and keep its ID (the gap is interpolated).")
@overwrite_option("Replace existing outputs.")
@quiet_option
def command(input_path: Path, json_out: Path | None, preview: Path | None, select: str,
            score_threshold: float, landmarks: str, max_gap: int, overwrite: bool, quiet: bool) -> None:
    """Find the faces in INPUT (a photo or a video) and follow them through the video."""
    from animator.faces.track import parse_selection  # noqa: PLC0415
    from pipelines.faces import FacesOptions, dumps_faces, faces  # noqa: PLC0415

    document = faces(FacesOptions(input=input_path, json_out=json_out, preview=preview,
                                  select=parse_selection(select), score_threshold=score_threshold,
                                  landmarks=landmarks, max_gap=max_gap, overwrite=overwrite,
                                  quiet=quiet))
    if json_out is None and preview is None:
        click.echo(dumps_faces(document), nl=False)
        return
    if not quiet:
        ids = sorted({f["id"] for frame in document["frames"] for f in frame["faces"]})
        with_face = sum(bool(frame["faces"]) for frame in document["frames"])
        click.echo(f"{input_path}: {len(document['frames'])} frame(s), faces in {with_face}, "
                   f"IDs {', '.join(map(str, ids)) or 'none'}", err=True)
