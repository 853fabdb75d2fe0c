"""Staged jobs that compose the library: render, morph, prepare, train, estimate; and the
scripts that measure them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

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
