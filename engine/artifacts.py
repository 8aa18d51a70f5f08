"""Torch-free readers for the artifacts the pipeline writes: an export folder
(encoder.onnx, decoder.onnx, manifest.json, checkpoint/)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .contract import DECODER_FILE, ENCODER_FILE, MANIFEST_FILE, METADATA_KEY, ModelContract
from .errors import StyleRTError

EXPORT_KIND = "stylert-export"

# What ships with StyleRT. A source checkout has models/ and calib_data/ beside engine/; the
# wheel installs them as stylert/models and stylert/calib_data beside stylert/engine (see
# pyproject.toml), so one path serves both.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL_DIR = PACKAGE_ROOT / "models" / "default"
SHIPPED_CALIB_DIR = PACKAGE_ROOT / "calib_data"
# The development photographs and paintings beside a checkout (never shipped); used when present.
DEV_DATA_DIR = PACKAGE_ROOT.parent / "shared" / "data"


# Openly licensed photographs inside the scikit-image wheel (`pip install scikit-image`, the
# `bench` extra), read as files without importing skimage: a fresh machine without
# ../shared/data still measures accuracy on photographs. Licences (skimage.data docstrings):
# astronaut (NASA) and rocket (SpaceX) public domain; chelsea and coffee CC0 (the
# photographers, Stefan van der Walt and Rachel Michetti); hubble_deep_field (NASA) public
# domain.
SAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
SAMPLE_STYLE = "hubble_deep_field.jpg"  # a texture-rich image to stylize with


def sample_photo_dir() -> Path | None:
    """scikit-image's data folder when the package is installed (None otherwise)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "data"
    return d if all((d / f).is_file() for f in SAMPLE_PHOTOS) else None


def inside(folder: Path, name) -> str:
    """A manifest's file name, checked to be a plain name in `folder` (a manifest may come
    from elsewhere: a path that leaves the folder must not be read). Raises ValueError."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"file entry {name!r} is not a plain file name inside the folder")
    return name


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """The one cache folder: `override`, else $STYLERT_CACHE, else ~/.cache/stylert. Exports
    of checkpoints, compiled kernels and bench's engines live in subfolders of it."""
    return Path(override or os.environ.get("STYLERT_CACHE") or Path.home() / ".cache" / "stylert")


class CacheWarning(UserWarning):
    """The cache folder cannot be written: the run goes on without it."""


def writable_dir(path: str | os.PathLike, warn: bool = True) -> Path | None:
    """`path`, created if missing, when a file can be written in it; else None, with a
    CacheWarning (warn) that says what to do. A cache is a speed-up: one that cannot be used
    (read-only, a file in its place, a full disk) is skipped, never fatal."""
    import tempfile
    import warnings

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return path
    except OSError as e:
        if warn:
            warnings.warn(f"{path}: the cache folder cannot be written ({e.strerror or e}); running without it. "
                          "Set STYLERT_CACHE to a writable folder to keep compiled models between runs.",
                          CacheWarning, stacklevel=2)
        return None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_manifest(folder: Path, name: str, kind: str, missing: str, fix: str) -> dict:
    """folder/name as a JSON object whose "kind" is `kind`. StyleRTError(missing, fix) when the
    file is absent; ValueError (json.JSONDecodeError is one) when it is not such an object, for
    the caller to report with its own remedy beside its own checks."""
    path = folder / name
    if not path.is_file():
        raise StyleRTError(missing, fix, path=folder)
    m = json.loads(path.read_text())
    if not isinstance(m, dict):
        raise ValueError("the top level is not an object")
    if m.get("kind") != kind:
        raise ValueError(f"kind is {m.get('kind')!r}, expected {kind!r}")
    return m


def read_export(folder: str | os.PathLike, check_hashes: bool = False) -> dict:
    """The validated manifest of an export folder. Raises StyleRTError when it is missing,
    corrupt, or (check_hashes) when an ONNX file no longer matches its recorded hash."""
    folder = Path(folder)
    mpath = folder / MANIFEST_FILE
    try:
        m = read_json_manifest(folder, MANIFEST_FILE, EXPORT_KIND, f"no {MANIFEST_FILE}: this is not a StyleRT export folder.",
                               "Create one with `stylert export-onnx --out FOLDER`.")
        ModelContract.from_dict(m["contract"])
        files = m["files"]
        for role in ("encoder", "decoder"):
            inside(folder, files[role]["path"])
            if not isinstance(files[role]["sha256"], str):
                raise ValueError(f"{role} sha256 is not a string")
        if m["checkpoint"]["path"] != ".":  # "." : the export sits in its checkpoint's folder (the shipped model)
            inside(folder, m["checkpoint"]["path"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise StyleRTError(f"is not a valid export manifest: {e}.", "Re-run `stylert export-onnx`.", path=mpath) from None
    for role in ("encoder", "decoder"):
        p = folder / files[role]["path"]
        if not p.is_file():
            raise StyleRTError(f"{role} model is missing.", "Re-run `stylert export-onnx` into this folder.", path=p)
        if check_hashes and sha256_file(p) != files[role]["sha256"]:
            raise StyleRTError(
                f"{role} model changed since export (sha256 differs from {MANIFEST_FILE}).",
                "Re-run `stylert export-onnx` rather than editing exported files.",
                path=p,
            )
    return m


def contract_of(folder: str | os.PathLike) -> ModelContract:
    """The model contract recorded in an export folder's manifest."""
    return ModelContract.from_dict(read_export(folder)["contract"])


def contract_from_onnx_metadata(metadata: dict[str, str], path: str | os.PathLike | None = None) -> ModelContract:
    """The contract stored in an ONNX model's metadata_props (as ORT's
    `session.get_modelmeta().custom_metadata_map` returns them)."""
    if METADATA_KEY not in metadata:
        raise StyleRTError(
            f"ONNX model carries no '{METADATA_KEY}' metadata: it was not exported by StyleRT.",
            "Export with `stylert export-onnx`; the runtime does not guess tensor names or layouts.",
            path=path,
        )
    return ModelContract.from_json(metadata[METADATA_KEY])


__all__ = ["read_export", "contract_of", "contract_from_onnx_metadata", "sha256_file", "ENCODER_FILE", "DECODER_FILE"]
