"""Progress bars for long work: frames/s and ETA on a terminal, silent otherwise."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int | None, desc: str, quiet: bool = False, unit: str = "frame") -> tqdm:
    """A tqdm bar on stderr, disabled with ``quiet`` or when stderr is not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                disable=quiet or not sys.stderr.isatty())
