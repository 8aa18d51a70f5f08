"""Every file a run writes: one rule for creating it and one place that names it.

The rule (`write_output`, `RunOutputs.write`): an output is written whole to a temporary file
and linked into place, which fails if the name exists, even when another process created it a
moment ago (images.atomic_write_bytes, exclusive); only --overwrite replaces, and never an
input. It is checked when the file is written, not only when the run starts.

The names (`RunOutputs.name`): every output of one run asks here, in a fixed order (named
outputs like --save-style and the --grid sheet first, then videos, frame folders, images), and
the first to ask for a name keeps it; a later output that would land on the same path (a
content named grid.png beside the sheet, frames a.png and a.jpg, a.jpg from two folders) gets
NAME_2, NAME_3, ... So no output of a run replaces another, with or without --overwrite, and
"skipped existing" means a file that was there before the run (or another process's).
Torch-free.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable

from .errors import StyleRTError
from .images import IMAGE_SUFFIXES, atomic_write_bytes


def _key(path: str | os.PathLike) -> str:
    """One spelling per file: resolved (links, `..`) and case-folded, since a.PNG and a.png
    are one file on the case-insensitive disks of macOS and Windows."""
    return os.fspath(Path(path).resolve()).casefold()


def check_output(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = (),
                 option: str = "the output", data: bool = True, made: str | os.PathLike | None = None) -> Path:
    """A single named output (--json, --save-style), checked before any work: StyleRTError
    when it is one of the inputs, an existing file without `overwrite`, a folder, in a folder
    that does not exist (other than `made`, the run's own --out, created later), or (data: a
    JSON or text file) named like an image or video, which it would replace. Returns it as a Path."""
    from .video import VIDEO_SUFFIXES

    p = Path(path)
    if _key(p) in {_key(i) for i in inputs}:
        raise StyleRTError(f"{option} names one of the inputs: writing it would replace it.",
                           "Give the output a new file name.", path=p)
    if data and p.suffix.lower() in IMAGE_SUFFIXES | set(VIDEO_SUFFIXES):
        raise StyleRTError(f"{option} names an image or video file ({p.suffix}), and what is written there is JSON.",
                           "Give it a name ending in .json (an image named there would be replaced).", path=p)
    if p.is_dir() or (made is not None and _key(p) == _key(made)):
        raise StyleRTError(f"{option} is a folder (or the run's --out).", "Give a file name.", path=p)
    if not p.parent.is_dir() and not (made is not None and _key(p.parent) == _key(made)):
        raise StyleRTError(f"{option}'s folder {p.parent} does not exist.", "Create it first, or write elsewhere.", path=p)
    if (p.exists() or p.is_symlink()) and not overwrite:
        raise StyleRTError(f"{option} would replace an existing file.", "Pick a new name, or pass --overwrite.", path=p)
    return p


def check_before_run(parser, path: str | os.PathLike | None, overwrite: bool, option: str) -> None:
    """check_output for a `python -m` tool's output option, before its long run: a refusal is
    the parser's usage error (the message, exit 2)."""
    if path:
        try:
            check_output(path, overwrite, option=option)
        except StyleRTError as e:
            parser.error(str(e))


def write_output(path: str | os.PathLike, data: bytes, overwrite: bool, inputs: Iterable[str | os.PathLike] = (),
                 option: str = "the output") -> Path:
    """check_output, then the write itself: created exclusively unless `overwrite` (a file
    another process made since the check is kept: StyleRTError), errors of the disk as
    StyleRTError naming the file."""
    p = check_output(path, overwrite, inputs, option, data=False)
    try:
        atomic_write_bytes(p, data, exclusive=not overwrite)
    except FileExistsError:
        raise StyleRTError(f"{option} was created by another program while this one ran; it is kept.",
                           "Pick a new name, or pass --overwrite.", path=p) from None
    except OSError as e:
        raise StyleRTError(f"{option} cannot be written: {e.strerror or e}.", "Choose a writable place.", path=p) from None
    return p


class RunOutputs:
    """The names and writes of one run's outputs (see the module docstring).

    folder: where outputs go by default; overwrite: --overwrite; inputs: every file the run
    reads (never written). `written`, `skipped` (existed before: kept) and `renamed` ((the
    name asked for, the one given)) are what the run's summary counts. Thread-safe."""

    def __init__(self, folder: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()):
        self.folder = Path(folder)
        self.overwrite = overwrite
        self.inputs = {_key(p) for p in inputs}
        self.written: list[str] = []
        self.skipped: list[str] = []
        self.renamed: list[tuple[str, str]] = []
        self._taken: set[str] = set()
        self._lock = threading.Lock()

    def name(self, stem: str, suffix: str, folder: str | os.PathLike | None = None) -> Path:
        """folder/STEM+SUFFIX, or STEM_2+SUFFIX, STEM_3+SUFFIX, ... when an earlier output of
        this run (or an input) has that path. suffix "" names a folder (frame sequences)."""
        where = Path(folder) if folder is not None else self.folder
        with self._lock:
            p, k = where / f"{stem}{suffix}", 2
            while _key(p) in self._taken or _key(p) in self.inputs:
                p, k = where / f"{stem}_{k}{suffix}", k + 1
            self._taken.add(_key(p))
        if p.name != f"{stem}{suffix}":
            self.renamed.append((f"{stem}{suffix}", os.fspath(p)))
        return p

    def claim(self, path: str | os.PathLike) -> None:
        """Take `path` for an output named elsewhere (--save-style): no other output gets it."""
        with self._lock:
            self._taken.add(_key(path))

    def exists(self, path: Path) -> bool:
        """Whether `path` is there from before and would be kept (no --overwrite)."""
        return not self.overwrite and (path.exists() or path.is_symlink())

    def write(self, path: str | os.PathLike, data: bytes) -> bool:
        """Write one output named by `name`: True when written, False when a file was there
        (kept without --overwrite: counted as skipped). OSError (a full disk, no permission)
        passes to the caller, which reports that file and goes on."""
        path = Path(path)
        if _key(path) in self.inputs:  # name() never gives one; a caller's own path might
            raise StyleRTError("is one of the inputs: it is never written.", "Choose another --out.", path=path)
        try:
            atomic_write_bytes(path, data, exclusive=not self.overwrite)
        except FileExistsError:
            self.skipped.append(os.fspath(path))
            return False
        self.written.append(os.fspath(path))
        return True

    def save_image(self, img, path: str | os.PathLike, **kwargs) -> bool:
        """An image encoded in the format of its suffix, then `write`."""
        from .images import encode_image

        return self.write(path, encode_image(img, path, **kwargs))

    def summary(self) -> str:
        """"wrote N file(s) to FOLDER; skipped M existing (use --overwrite)", plus the
        outputs named apart from another of this run's."""
        s = f"wrote {len(self.written)} file(s) to {self.folder}"
        if self.skipped:
            s += f"; skipped {len(self.skipped)} that existed before this run (use --overwrite)"
        if self.renamed:
            s += "; named apart (another output of this run has the name): " + ", ".join(
                f"{a} -> {Path(b).name}" for a, b in self.renamed)
        return s
