"""``animator train``: turn command-line choices into a TrainConfig and run the loop.

Resuming: the run's saved config is the base and options given again must agree with it for
everything that decides what is learned (``RUN_DEFINING``); schedule, speed and bookkeeping
options (epochs, steps, max-minutes, workers, ...) may change between sessions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from animator.train.config import TrainConfig
from animator.train.loop import RunControl, saved_config, train


def run(data: str | os.PathLike, out: str | os.PathLike, options: Mapping[str, Any],
        control: RunControl = RunControl(), log: Callable[[str], None] | None = None) -> dict:
    """``options``: TrainConfig fields the user gave (None values are ignored)."""
    given = {k: v for k, v in options.items() if v is not None}
    base = saved_config(out) if control.resume else TrainConfig()
    if control.resume and "steps" not in given and ("epochs" in given or "decay_epochs" in given):
        given["steps"] = None  # an epoch-based schedule replaces a saved step count
    config = base.with_changes(**given)
    kwargs = {"log": log} if log is not None else {}
    return train(Path(data), Path(out), config, control, **kwargs)
