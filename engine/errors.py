"""The one exception type for users' mistakes.

Messages read "what happened.\nNote: what was expected / what to do" (Polygraphy's habit), and
name the file involved when there is one. Asserts are kept for the project's own invariants.
"""

from __future__ import annotations

import os


class StyleRTError(Exception):
    """A problem the user can fix: bad input, a missing file, a stale engine, ..."""

    def __init__(self, what: str, note: str | None = None, path: str | os.PathLike | None = None):
        self.what = what
        self.note = note
        self.path = None if path is None else os.fspath(path)
        msg = f"{self.path}: {what}" if self.path else what
        if note:
            msg += f"\nNote: {note}"
        super().__init__(msg)
