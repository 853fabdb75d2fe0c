"""The one exception type users see: a problem with their input, said in one line."""

# control characters (line breaks, terminal escapes) that user text quoted into a message may
# carry, e.g. a JSON key or a target spec; they are shown escaped so a message stays one line
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}


class AnimatorError(Exception):
    """Bad input or an impossible request. The CLI prints it as one line and exits 1.

    Messages name the file (or JSON path / option) and the problem, e.g.
    ``keys.json: keys[2].time: 1.5 is not after the previous key (2.0)``.
    """

    def __init__(self, message: object) -> None:
        super().__init__(str(message).translate(_ESCAPES))
