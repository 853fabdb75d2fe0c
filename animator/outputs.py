"""Safe output paths: never write over an input or anything that is not the command's own
output, never leave a half-written file behind.

``--overwrite`` replaces a regular file, a symbolic link (the link, never what it points to),
or a folder that animator wrote (it holds :data:`MARKER`) or that is empty. Devices, FIFOs,
sockets and other people's folders are refused, and so is any output that is or contains an
input. Without ``--overwrite`` the final rename never replaces anything, even a file another
process created while this one ran.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from animator import __version__
from animator.errors import AnimatorError

# Written inside every output folder: the mark that lets --overwrite replace the folder later.
MARKER = ".animator-output"
# Errors that say the output cannot be written (not that an input cannot be read).
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
# What os.link answers on filesystems without hard links.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}
_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))


class OutputError(AnimatorError):
    """The output cannot be written (full disk, read-only filesystem, no permission): a command
    working through many inputs stops here, as every later write would fail the same way."""


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = False, directory: bool = False) -> Path:
    """Validate an output path before any work starts, so a bad path fails fast.

    ``directory``: the output is a folder (a file otherwise).
    """
    out = Path(out)
    target = out.resolve()
    for source in inputs:
        source = Path(source).resolve()
        if source == target:
            raise AnimatorError(f"{out}: refusing to write over the input")
        if target in source.parents:
            raise AnimatorError(f"{out}: refusing to replace a folder that holds the input {source}")
    if out.name in ("", ".."):  # "." or "/" or "..": the temporary could not sit beside it
        raise AnimatorError(f"{out}: name the output itself (a path ending in its name)")
    if os.path.lexists(out):
        problem = _replace_problem(out, directory)
        if problem:
            raise AnimatorError(f"{out}: {problem}")
        if not overwrite:
            raise AnimatorError(f"{out}: already exists (pass --overwrite to replace it)")
    if not out.parent.is_dir():
        raise AnimatorError(f"{out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise AnimatorError(f"{out}: folder {out.parent} is not writable")
    return out


def _replace_problem(out: Path, directory: bool) -> str | None:
    """Why the existing ``out`` must not be replaced even with --overwrite; None if it may."""
    mode = os.lstat(out).st_mode
    for test, kind in _KINDS:
        if test(mode):
            return f"is a {kind}, not a file animator may replace"
    if not stat.S_ISDIR(mode):
        return None  # a regular file, or a link (replaced itself; its target is untouched)
    if not directory:
        return "is a folder; name a file to write"
    marker = out / MARKER
    if any(out.iterdir()) and not (marker.is_file() and not marker.is_symlink()):
        return (f"is a folder animator did not write (no {MARKER} in it) and is not empty; "
                "refusing to replace it (choose another name or empty it)")
    return None


@contextlib.contextmanager
def writing(out: str | os.PathLike) -> Iterator[None]:
    """Report a failure to create or write ``out`` (read-only, full, not permitted) as one
    line; for blocks that only write."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{out}: cannot write: {exc.strerror}") from None


def mark_folder(folder: Path) -> None:
    """Write :data:`MARKER` into ``folder``: the sign that --overwrite may replace it later."""
    (folder / MARKER).write_text(f"written by animator {__version__}; "
                                 "--overwrite may replace this folder\n")


def usual_mode(directory: bool = False) -> int:
    """The permissions a new file (or folder) gets from the user's umask, e.g. 0o644."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                  overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; move it onto ``out`` only if the block succeeds.

    The temporary name keeps ``out``'s suffix (encoders pick the container from it). A folder
    gets :data:`MARKER`. On any exception, Ctrl-C included, the temporary file or folder is
    removed and ``out`` is untouched; a full disk or read-only filesystem is reported as one
    line naming ``out``.
    """
    out = check_output(out, inputs, overwrite, directory)
    with writing(out):
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}",
                                        dir=out.parent)
            os.close(fd)
            tmp = Path(name)
    try:
        # mkstemp/mkdtemp create private (0600/0700) entries; outputs get the user's usual mode.
        tmp.chmod(usual_mode(directory))
        if directory:
            mark_folder(tmp)
        yield tmp
        _move_into_place(tmp, out, overwrite, directory)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
            raise OutputError(f"{out}: cannot write: {exc.strerror}") from None
        raise


def _move_into_place(tmp: Path, out: Path, overwrite: bool, directory: bool) -> None:
    """The last step of :func:`atomic_output`. It looks at ``out`` again: another process may
    have created or changed it since :func:`check_output` did."""
    if not overwrite:
        try:
            _rename_no_replace(tmp, out, directory)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
            raise AnimatorError(f"{out}: was created by another process while this one ran; "
                                "kept it (pass --overwrite to replace it)") from None
        return
    exists = os.path.lexists(out)
    problem = _replace_problem(out, directory) if exists else None
    if problem:
        raise AnimatorError(f"{out}: {problem}")
    if directory and exists:
        _replace_with_folder(tmp, out)
    else:
        os.replace(tmp, out)


def _rename_no_replace(tmp: Path, out: Path, directory: bool) -> None:
    """Rename that fails (EEXIST and kin) when ``out`` appeared in the meantime."""
    if directory:
        os.rename(tmp, out)  # refuses a file or a non-empty folder; an empty one is replaceable
        return
    try:
        os.link(tmp, out)  # atomic, and never replaces an existing name
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(out):  # no hard links here: the last check is as late as it gets
            raise FileExistsError(errno.EEXIST, "File exists", str(out)) from None
        os.rename(tmp, out)
        return
    os.unlink(tmp)


def _replace_with_folder(tmp: Path, out: Path) -> None:
    """Put folder ``tmp`` where ``out`` is (a file, link or folder): the old one is moved
    aside first and restored if the swap fails, so a failure never loses both."""
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, aside / "old")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(aside / "old", out)
        raise
    shutil.rmtree(aside)
