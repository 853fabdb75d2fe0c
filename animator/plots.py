"""AU curves over time as an image, so a user can see an animation (or an estimate) at a glance."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from animator import aus
from animator.errors import AnimatorError
from animator.outputs import atomic_output


def plot_au_curves(times: np.ndarray, values: np.ndarray, path: str | os.PathLike,
                   keys: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                   title: str | None = None, *, overwrite: bool = False,
                   inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Draw one line per AU that is ever non-zero, its key points marked, to ``path``.

    ``values`` is (N, 17) in AU order; ``keys`` maps AU names to (time, value) points. Colours
    are fixed per AU so plots compare; AUs with identical curves share the line in alternating
    dashes, so none hides another. The format follows the suffix (.png, .svg, .pdf ...).
    """
    from matplotlib.figure import Figure  # Figure without pyplot: Agg canvas, no global state
    from matplotlib.lines import Line2D

    times = np.asarray(times, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(times.size, aus.N_AUS)
    keys = {aus.canonical_au_name(au): points for au, points in (keys or {}).items()}
    fmt = plot_format(path)
    fig = Figure(figsize=(10, 4.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    colours = [_colour(i) for i in range(aus.N_AUS)]
    order = np.argsort(times, kind="stable")
    groups: dict[bytes, list[int]] = {}  # AUs with identical curves
    for i in range(aus.N_AUS):
        if np.any(values[:, i] != 0):
            groups.setdefault(values[order, i].tobytes(), []).append(i)
    legend: dict[int, Line2D] = {}  # solid swatches: a dashed line's legend sample can look empty
    dash = 6.0  # points
    for members in groups.values():
        for j, i in enumerate(members):
            style = (j * dash, (dash, dash * (len(members) - 1))) if len(members) > 1 else "-"
            name = aus.AU_NAMES[i]
            ax.plot(times[order], values[order, i], color=colours[i], lw=1.8, ls=style)
            legend[i] = Line2D([], [], color=colours[i], lw=2.5, label=f"{name} {aus.FACS_NAMES[name]}")
            if len(keys.get(name, ())):
                kt, kv = np.asarray(keys[name], dtype=np.float64).reshape(-1, 2).T
                ax.plot(kt, kv, "o", color=colours[i], ms=6, mec="black", mew=0.6)
    legend_names = [aus.AU_NAMES[i] for i in sorted(legend)]
    if legend:
        ax.legend(handles=[legend[i] for i in sorted(legend)], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no AU is animated (all 0)", ha="center", va="center",
                transform=ax.transAxes, color="gray")
    low = -aus.AU_MAX if values.size and values.min() < 0 else aus.AU_MIN
    ax.set_ylim(low - 0.15, aus.AU_MAX + 0.15)
    marked = [t for name in legend_names for t, _ in keys.get(name, ())]
    span = np.concatenate([times, np.asarray(marked, dtype=np.float64)])
    if span.size:  # keys outside the sampled times still show, so the user sees where they are
        ax.set_xlim(span.min(), max(span.max(), span.min() + 1e-3))
    ax.axhline(0, color="black", lw=0.6)
    ax.grid(alpha=0.3)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("AU intensity (0-5)" if low == 0 else "AU offset (-5..5)")
    if title:
        ax.set_title(title)
    with atomic_output(path, inputs, overwrite) as tmp:
        fig.savefig(tmp, format=fmt)
    return Path(path)


def plot_format(path: str | os.PathLike) -> str:
    """The image format named by ``path``'s suffix; check it before the work that precedes a plot."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise AnimatorError(f"{path}: can't draw a plot as {fmt or 'a file without suffix'!r}: "
                            f"use .png, .svg or .pdf")
    return fmt


def _colour(index: int) -> tuple[float, float, float, float]:
    from matplotlib import colormaps

    # tab20 is 10 hues in dark/light pairs: dark ones first, so AUs next in order differ in hue.
    return colormaps["tab20"]((2 * index) % 20 + (2 * index) // 20)
