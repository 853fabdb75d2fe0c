"""JSON written by users (keyframes, targets, model configs), read so every failure is one line.

Python's parser fails in more ways than :class:`json.JSONDecodeError`: a document nested a few
thousand levels deep raises :class:`RecursionError`, and an integer longer than Python's
conversion limit (4300 digits) raises a plain :class:`ValueError` whose advice is meant for
programmers. Integers are read with a far shorter limit of our own (no value in these files
needs more than a float's range), and every failure is an :class:`AnimatorError` that names
the file, as a syntax error is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from animator.errors import AnimatorError

MAX_INT_DIGITS = 100  # 1e100 is far beyond every count, size and time these files hold


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"a {digits}-digit integer (at most {MAX_INT_DIGITS} digits are read)")
    return int(text)


def parse_json(text: str, source: str,
               object_pairs_hook: Callable[[list[tuple[str, object]]], object] | None = None) -> object:
    """``json.loads`` with ``source`` (a file name or option) at the start of every error."""
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise AnimatorError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise AnimatorError(f"{source}: invalid JSON: nested too deeply to read") from None
    except ValueError as exc:  # _integer's or object_pairs_hook's complaint
        raise AnimatorError(f"{source}: invalid JSON: {exc}") from None


def read_json(path: str | Path, kind: str = "JSON file",
              object_pairs_hook: Callable[[list[tuple[str, object]]], object] | None = None) -> object:
    """Read and parse a UTF-8 JSON file; ``kind`` says what the file should have been."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnimatorError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnimatorError(f"{path}: is a folder, not a {kind}") from None
    except UnicodeDecodeError:
        raise AnimatorError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise AnimatorError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_json(text, str(path), object_pairs_hook)
