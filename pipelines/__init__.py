"""Staged jobs that compose the library: render, morph, prepare, train, estimate; and the
scripts that measure them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from animator.errors import AnimatorError


def print_report(measure: Callable[[], dict]) -> int:
    """The end of a measuring script: ``measure()``'s report printed as JSON (exit status 0),
    or its error as one line on stderr (1)."""
    try:
        report = measure()
    except AnimatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


def measure_clips(description: str, measure: Callable[[argparse.Namespace], dict],
                  argv: list[str] | None = None) -> int:
    """The command line of a script that measures tracked clips (``CLIP... [--cache DIR]``,
    the clips tracked as :mod:`pipelines.fit_rig` tracks them), ending in :func:`print_report`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, help="Keep each clip's tracked meshes here (as fit_rig).")
    args = parser.parse_args(argv)
    return print_report(lambda: measure(args))
