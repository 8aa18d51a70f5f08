"""The style bank: StyleCodes by id, one JSON file per style in a folder.

The folder is the store: every replica that points at the same folder (a shared filesystem
across machines: NFS, a mounted bucket) sees the same styles. Reads go to the folder when an
id is not in memory, so a style added through one replica is found by the others. Files are
written atomically and never half-written; a file that does not parse (or was encoded by
another model) is skipped with a warning, not served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import StyleRTError
from ..images import atomic_write_bytes, read_regular_file
from ..mixing import StyleCode

log = logging.getLogger("stylert.serve")

ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
MAX_STYLE_FILE = 1 << 20  # a StyleCode JSON is ~20 KB; anything far larger is not one
NAME_PATTERN = re.compile(r"^[\w .,()+-]{1,64}$")


def style_id(code: StyleCode) -> str:
    """Content address of a style: the first 16 hex digits of the SHA-256 of its statistics
    and model. The same image encoded twice gets the same id."""
    h = hashlib.sha256(code.model.encode())
    h.update(np.ascontiguousarray(code.vector, np.float32).tobytes())
    return h.hexdigest()[:16]


class StyleBank:
    def __init__(self, folder: str | os.PathLike, model: str):
        self.folder = Path(folder)
        self.model = model
        self._lock = threading.Lock()
        self._codes: dict[str, tuple[StyleCode, str]] = {}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StyleRTError(f"cannot create the style bank folder: {e.strerror}.",
                               "Pass a writable folder with --styles-dir.", path=self.folder) from None
        for f in sorted(self.folder.glob("*.json")):
            self._read(f.stem)

    def _read(self, sid: str) -> tuple[StyleCode, str] | None:
        path = self.folder / f"{sid}.json"
        try:
            # regular files of bounded size only: a FIFO planted in the folder must not block
            doc = json.loads(read_regular_file(path, MAX_STYLE_FILE))
            code = StyleCode.from_json(json.dumps(doc["code"]))
            name = str(doc.get("name", ""))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, StyleRTError) as e:
            log.warning("style bank: skipping %s: %s", path, e)
            return None
        if code.model and self.model and code.model != self.model:
            log.warning("style bank: skipping %s: encoded by another model", path)
            return None
        with self._lock:
            self._codes[sid] = (code, name)
        return code, name

    def add(self, code: StyleCode, name: str = "") -> tuple[str, bool]:
        """Store `code`; returns (id, created). Adding the same style again is not an error."""
        if name and not NAME_PATTERN.match(name):
            raise StyleRTError(f"style name {name!r} is not allowed.",
                               "Use up to 64 letters, digits, spaces and . , ( ) + - _")
        sid = style_id(code)
        doc = {"id": sid, "name": name, "code": json.loads(code.to_json())}
        try:
            atomic_write_bytes(self.folder / f"{sid}.json", json.dumps(doc).encode(), exclusive=True)
            created = True
        except FileExistsError:
            created = False
        with self._lock:
            self._codes[sid] = (code, name)
        return sid, created

    def get(self, sid: str) -> tuple[StyleCode, str]:
        if not ID_PATTERN.match(sid):
            raise KeyError(sid)
        with self._lock:
            hit = self._codes.get(sid)
        if hit is None and (hit := self._read(sid)) is None:
            raise KeyError(sid)
        if not (self.folder / f"{sid}.json").exists():  # deleted through another replica
            with self._lock:
                self._codes.pop(sid, None)
            raise KeyError(sid)
        return hit

    def delete(self, sid: str) -> None:
        self.get(sid)
        (self.folder / f"{sid}.json").unlink(missing_ok=True)
        with self._lock:
            self._codes.pop(sid, None)

    def describe(self, sid: str) -> dict:
        code, name = self.get(sid)
        return describe(sid, code, name)

    def list(self) -> list[dict]:
        for f in self.folder.glob("*.json"):
            if f.stem not in self._codes and ID_PATTERN.match(f.stem):
                self._read(f.stem)
        with self._lock:
            items = list(self._codes.items())
        return [describe(sid, code, name) for sid, (code, name) in sorted(items)
                if (self.folder / f"{sid}.json").exists()]


def describe(sid: str, code: StyleCode, name: str) -> dict:
    return {"id": sid, "name": name, "model": code.model, "channels": code.channels, "sources": list(code.sources)}
