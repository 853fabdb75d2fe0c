"""``animator prepare INPUT... --out DATA``: build a GANimation training set."""

from __future__ import annotations

import click


@click.command("prepare")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(), help="Data set folder (created; "
              "an interrupted run continues where it stopped).")
@click.option("--size", default=128, show_default=True, help="Crop size in pixels.")
@click.option("--crop", type=click.Choice(["aligned", "box"]), default="aligned", show_default=True,
              help="Crop policy (the renderer's).")
@click.option("--crop-scale", default=1.0, show_default=True, help="Crop context factor.")
@click.option("--every", default=5, show_default=True, help="Use every K-th video frame.")
@click.option("--openface", type=click.Path(file_okay=False),
              help="Folder of OpenFace CSVs (STEM.csv per photo/video) for the AU labels; "
                   "without it animator's estimator labels the faces.")
@click.option("--min-face", default=64.0, show_default=True,
              help="Drop faces whose detector box is smaller than this (frame pixels).")
@click.option("--blur-threshold", default=20.0, show_default=True,
              help="Drop crops whose variance of the Laplacian is below this (0: keep all).")
@click.option("--dedupe-threshold", default=1.0, show_default=True,
              help="Drop video frames whose 16x16 grey thumbnail differs from the last kept one "
                   "by less than this mean grey level (0: keep all).")
@click.option("--test-fraction", default=0.1, show_default=True, help="Share held out for testing.")
@click.option("--split-by", type=click.Choice(["file", "folder"]), default="file", show_default=True,
              help="Split key: each source file, or each parent folder (folders = identities).")
@click.option("--workers", default=1, show_default=True, help="Processes working in parallel.")
@click.option("--image-format", type=click.Choice(["jpg", "png", "webp"]), default="jpg",
              show_default=True, help="Crop files: JPEG as GANimation, lossless PNG, or WebP "
                                      "(about half the size of JPEG, for sets that must travel).")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG / WebP quality of the crops.")
@click.option("--overwrite", is_flag=True, help="Start again in an existing data folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def command(inputs: tuple[str, ...], out: str, size: int, crop: str, crop_scale: float, every: int,
            openface: str | None, min_face: float, blur_threshold: float, dedupe_threshold: float,
            test_fraction: float, split_by: str, workers: int, image_format: str, quality: int, overwrite: bool,
            quiet: bool) -> None:
    """Detect, align and crop the faces in photos and videos (folders are searched), label
    their AUs and write GANimation's layout: imgs/, aus_openface.pkl, train_ids.csv,
    test_ids.csv, plus manifest.json."""
    from pipelines.prepare import PrepareOptions, prepare

    options = PrepareOptions(size=size, crop=crop, crop_scale=crop_scale, every=every,
                             openface=openface, min_face=min_face, blur_threshold=blur_threshold,
                             dedupe_threshold=dedupe_threshold, test_fraction=test_fraction,
                             split_by=split_by, workers=workers, image_format=image_format,
                             quality=quality)
    manifest = prepare(list(inputs), out, options, overwrite=overwrite, quiet=quiet)
    if not quiet:
        counts = manifest["counts"]
        dropped = ", ".join(f"{k} {v}" for k, v in manifest["dropped"].items() if v) or "none"
        click.echo(f"{out}: {counts['total']} faces ({counts['train']} train, {counts['test']} test) "
                   f"from {counts['sources']} sources; dropped: {dropped}")
