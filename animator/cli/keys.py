"""``animator keys``: see what a keyframe file animates before rendering anything."""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np

from animator import aus
from animator.errors import AnimatorError
from animator.keyframes import load_keyframes
from animator.outputs import atomic_output, check_output

MAX_ROWS = 1_000_000  # frames one table may hold (over 9 hours at 30 fps)


@click.command("keys")
@click.argument("keyframes", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fps", type=float, help="Frame rate of the table [default: the file's \"fps\"].")
@click.option("--duration", type=float,
              help="Seconds to cover; frames start at 0 s [default: up to the last key].")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the table to this CSV file instead of printing it.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the AU curves (keys marked) to this image (.png, .svg, .pdf).")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def command(keyframes: Path, fps: float | None, duration: float | None, csv_out: Path | None,
            plot: Path | None, overwrite: bool) -> None:
    """Sample KEYFRAMES at every frame: CSV 'frame,time,AU01,...,AU45' (relative-mode files give
    offsets)."""
    from animator.trajectory import sample_trajectory

    animation = load_keyframes(keyframes, fps)
    rate = fps if fps is not None else animation.fps
    if rate is None:
        raise AnimatorError(f"{keyframes}: has no \"fps\": pass --fps")
    if not (math.isfinite(rate) and rate > 0):
        raise AnimatorError(f"--fps: {rate:g} is not a positive frame rate")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise AnimatorError(f"--duration: {duration:g} is not a positive number of seconds")
    for out in (csv_out, plot):
        if out is not None:
            check_output(out, [keyframes], overwrite)
    if csv_out is not None and plot is not None and csv_out.resolve() == plot.resolve():
        raise AnimatorError(f"{plot}: --csv and --plot name the same file")
    if plot is not None:
        from animator.plots import plot_format

        plot_format(plot)

    if duration is None:  # up to and including the frame at the last key
        count = math.floor(animation.end_time(rate) * rate + 1e-9) + 1
    else:  # every frame that starts before the end
        count = max(1, math.ceil(duration * rate - 1e-9))
    if count > MAX_ROWS:
        what = (f"--duration {duration:g} s" if duration is not None
                else f"{keyframes}: up to the last key ({animation.end_time(rate):g} s)")
        raise AnimatorError(f"{what} at {rate:g} fps is {count} frames; a table holds at most "
                            f"{MAX_ROWS} (pass a shorter --duration or a lower --fps)")
    times = np.arange(count) / rate
    values = sample_trajectory(animation, times, rate)

    table = format_table(times, values)
    if csv_out is None:
        click.echo(table, nl=False)
    else:
        with atomic_output(csv_out, [keyframes], overwrite) as tmp:
            tmp.write_text(table)
    if plot is not None:
        from animator.plots import plot_au_curves

        kind = "offsets, relative mode" if animation.mode == "relative" else f"{rate:g} fps"
        plot_au_curves(times, values, plot, animation.channel_keys(rate),
                       title=f"{keyframes.name} ({kind})", overwrite=overwrite, inputs=[keyframes])


def format_table(times: np.ndarray, values: np.ndarray) -> str:
    lines = [",".join(["frame", "time", *aus.AU_NAMES])]
    for i, (t, row) in enumerate(zip(times, values)):
        lines.append(",".join([str(i), f"{t:.6f}", *(f"{round(float(v), 4) + 0.0:.4f}" for v in row)]))
    return "\n".join(lines) + "\n"
