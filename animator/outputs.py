"""Safe output paths: never write over an input, never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from animator.errors import AnimatorError


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = False) -> Path:
    """Validate an output path before any work starts, so a bad path fails fast."""
    out = Path(out)
    if any(Path(source).resolve() == out.resolve() for source in inputs):
        raise AnimatorError(f"{out}: refusing to write over the input")
    if out.exists() and not overwrite:
        raise AnimatorError(f"{out}: already exists (pass --overwrite to replace it)")
    if not out.parent.exists():
        raise AnimatorError(f"{out}: folder {out.parent} does not exist")
    return out


def usual_mode(directory: bool = False) -> int:
    """The permissions a new file (or folder) gets from the user's umask, e.g. 0o644."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                  overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; rename it onto ``out`` only if the block succeeds.

    The temporary name keeps ``out``'s suffix (encoders pick the container from it). On any
    exception, Ctrl-C included, the temporary file or folder is removed and ``out`` is untouched.
    """
    out = check_output(out, inputs, overwrite)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}", dir=out.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create private (0600/0700) entries; outputs get the user's usual mode.
    tmp.chmod(usual_mode(directory))
    try:
        yield tmp
        if directory and out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
