"""What every front end shares (the stylize CLI, bench and the HTTP service): the cache, which
model folder to load, and how style arguments are read. Torch-free; the exporter is imported
only when the shipped model has to be exported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .artifacts import SHIPPED_MODEL_DIR, sha256_file
from .contract import MANIFEST_FILE
from .manifest import ENGINE_MANIFEST_FILE as ENGINE_MANIFEST
from .errors import StyleRTError
from .images import MAX_PIXELS_DEFAULT, load_image
from .mixing import StyleCode


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The one cache folder: `override`, else $STYLERT_CACHE, else ~/.cache/stylert. Exports
    of checkpoints, compiled kernels and bench's engines live in subfolders of it."""
    return Path(override or os.environ.get("STYLERT_CACHE") or Path.home() / ".cache" / "stylert")


def model_folder(model: str | os.PathLike | None, backend: str = "auto", cache: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print) -> Path:
    """A folder `Engine.load` can open for `model`: an export or engine folder as it is; a
    checkpoint folder (or None: the shipped model) as it is for the torch backend, else exported
    once into <cache>/exports/<weights sha256[:16]> and reused from there."""
    src = Path(model) if model is not None else SHIPPED_MODEL_DIR
    if model is not None and not (src / "model.safetensors").is_file():
        if not ((src / MANIFEST_FILE).is_file() or (src / ENGINE_MANIFEST).is_file()):
            raise StyleRTError(
                f"is neither an export folder ({MANIFEST_FILE}), an engine folder ({ENGINE_MANIFEST}) nor a checkpoint (model.safetensors).",
                "Pass the folder written by `stylert export-onnx`, `stylert build-engine` or `stylert train` (OUT/final).",
                path=src)
        return src  # Engine.load validates it
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise StyleRTError(f"no model given and the shipped model is absent ({SHIPPED_MODEL_DIR}).",
                           "Pass --model EXPORT_DIR (from `stylert export-onnx`) or an engine folder.")
    if backend == "torch":
        return src
    cached = cache_root(cache) / "exports" / sha256_file(weights)[:16]
    if (cached / MANIFEST_FILE).is_file():
        return cached
    try:
        from stylert.export.onnx_export import export_onnx
    except ImportError as e:
        raise StyleRTError(
            f"exporting {src} to ONNX needs the export extra ({e}).",
            "pip install 'stylert[export]' (torch, onnx) and rerun, or export elsewhere with "
            "`stylert export-onnx --out DIR` and pass --model DIR.") from None
    log(f"first use: exporting {src} to {cached} (once)")
    cached.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(cached, checkpoint=src, log=lambda *a: None, overwrite=True)  # the cache is ours: a partial entry is redone
    return cached


def parse_styles(specs: list[str], weights: list[float] | None) -> tuple[list[str], list[float] | None]:
    """'a.jpg:0.7' -> ('a.jpg', 0.7). Weights come from the suffixes or from `weights`."""
    paths, ws = [], []
    for s in specs:
        head, sep, tail = s.rpartition(":")
        try:
            w = float(tail) if sep and head else None
        except ValueError:
            w = None
        paths.append(head if w is not None else s)
        ws.append(w)
    given = [w for w in ws if w is not None]
    if weights is not None:
        if given:
            raise StyleRTError("weights given twice (PATH:WEIGHT and --style-weights).", "Use one of the two forms.")
        if len(weights) != len(paths):
            raise StyleRTError(f"{len(weights)} --style-weights for {len(paths)} styles.", "Give one weight per --style.")
        return paths, list(weights)
    if given and len(given) != len(ws):
        raise StyleRTError("some styles have a :WEIGHT and some do not.", "Give a weight to every style or to none.")
    return paths, (ws if given else None)


def read_style(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS_DEFAULT):
    """A style argument: a StyleCode from a .json file, else an image (PIL) to encode."""
    if str(path).lower().endswith(".json"):
        try:
            return StyleCode.from_json(Path(path).read_text())
        except OSError as e:
            raise StyleRTError(f"cannot read: {e.strerror}.", path=path) from None
        except StyleRTError as e:
            raise StyleRTError(e.what, e.note, path=path) from None
    return load_image(path, max_pixels=max_pixels)
