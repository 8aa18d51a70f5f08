"""The style bank: StyleCodes by id, one JSON file per style in a folder, with the style's
image beside it (`<id>.jpg`, its longer side at most the style scale) for thumbnails and for
colour preservation, which recolours the style image to each photo before encoding it.

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
MAX_IMAGE_FILE = 4 << 20  # a kept style image is a JPEG at the style scale (512 px by default), ~50-150 KB
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

    def add(self, code: StyleCode, name: str = "", image: bytes | None = None) -> tuple[str, bool]:
        """Store `code` (and `image`, the style's JPEG bytes, when given and none is stored
        yet); returns (id, created). Adding the same style again is not an error."""
        if name and not NAME_PATTERN.match(name):
            raise StyleRTError(f"style name {name!r} is not allowed.",
                               "Use up to 64 letters, digits, spaces and . , ( ) + - _")
        sid = style_id(code)
        doc = {"id": sid, "name": name, "code": json.loads(code.to_json())}
        if image is not None:  # before the JSON: a replica that finds the style finds its image
            try:
                atomic_write_bytes(self.folder / f"{sid}.jpg", image, exclusive=True)
            except FileExistsError:
                pass
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

    def image(self, sid: str) -> bytes | None:
        """The style's stored JPEG, or None for a style stored without one (banks written
        before images were kept, codes added from JSON). KeyError for an unknown style."""
        self.get(sid)
        try:
            return read_regular_file(self.folder / f"{sid}.jpg", MAX_IMAGE_FILE)
        except FileNotFoundError:
            return None
        except StyleRTError as e:
            log.warning("style bank: skipping the image of %s: %s", sid, e)
            return None

    def delete(self, sid: str) -> None:
        self.get(sid)
        (self.folder / f"{sid}.json").unlink(missing_ok=True)
        (self.folder / f"{sid}.jpg").unlink(missing_ok=True)
        with self._lock:
            self._codes.pop(sid, None)

    def describe(self, sid: str) -> dict:
        code, name = self.get(sid)
        return describe(sid, code, name, self._has_image(sid))

    def _has_image(self, sid: str) -> bool:
        return (self.folder / f"{sid}.jpg").is_file()

    def list(self) -> list[dict]:
        for f in self.folder.glob("*.json"):
            if f.stem not in self._codes and ID_PATTERN.match(f.stem):
                self._read(f.stem)
        with self._lock:
            items = list(self._codes.items())
        return [describe(sid, code, name, self._has_image(sid)) for sid, (code, name) in sorted(items)
                if (self.folder / f"{sid}.json").exists()]


def describe(sid: str, code: StyleCode, name: str, image: bool) -> dict:
    """A style as the API lists it; `image`: whether GET /v1/styles/{id}/image has one."""
    return {"id": sid, "name": name, "model": code.model, "channels": code.channels, "sources": list(code.sources),
            "image": image}
