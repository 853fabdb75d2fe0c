"""The one exception type users see: a problem with their input, said in one line."""


class AnimatorError(Exception):
    """Bad input or an impossible request. The CLI prints it as one line and exits 1.

    Messages name the file (or JSON path / option) and the problem, e.g.
    ``keys.json: keys[2].time: 1.5 is not after the previous key (2.0)``.
    """
