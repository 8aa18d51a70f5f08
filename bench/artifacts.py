"""Precision artifacts for bench: FP16 and INT8 engine folders of an export, built once with
`build-engine` (stylert.engine.build) for ONNX Runtime, and cached by the export's ONNX sha256s,
so a second bench run starts at once and two exports never share a cache entry. Where the
build module is absent, the same issue-3 functions (stylert.engine.precision) make bare files.

The cache holds build outputs only; delete it to rebuild. Calibration images: the
repository's calib_data/ when present, else ../shared/data/content, else the bench inputs
(synthetic), which the manifest line printed here says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

CALIB_IMAGES = 16


def calibration_batch(size: int, inputs: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """(N, 3, size, size) float32 in [0, 1] calibration images and where they came from."""
    from stylert.engine.images import list_images
    from stylert.engine.precision import load_batch

    root = Path(__file__).resolve().parent.parent
    for d in (root / "calib_data", root.parent / "shared" / "data" / "content"):
        try:
            paths = list_images(d)[:CALIB_IMAGES] if d.is_dir() else []
        except Exception:  # noqa: BLE001  an empty or unreadable folder: try the next one
            paths = []
        if paths:
            return load_batch(paths, size), str(d)
    if inputs is not None:
        return inputs, "bench inputs"
    from .suite import _synthetic

    u8 = _synthetic(CALIB_IMAGES, size, seed=2)
    return np.ascontiguousarray(u8.transpose(0, 3, 1, 2), np.float32) / 255.0, "synthetic gradients (no calibration photos found)"



def precision_artifacts(export: Path, precision: str, cache: Path, size: int = 256, log: Callable = print) -> tuple[Path, Path, str]:
    """(encoder.onnx, decoder.onnx, origin) of `precision` for the export, built on first use."""
    from stylert.engine.artifacts import read_export
    from stylert.engine.images import atomic_write_bytes
    from stylert.engine.precision import convert_fp16, quantize_int8, run_batched, session

    man = read_export(export)
    key = man["files"]["encoder"]["sha256"][:16] + "-" + man["files"]["decoder"]["sha256"][:16]
    out = Path(cache) / key / precision
    enc, dec, info = out / "encoder.onnx", out / "decoder.onnx", out / "bench-build.json"
    if enc.is_file() and dec.is_file() and info.is_file():
        return enc, dec, f"cached {precision} build ({out})"
    out.mkdir(parents=True, exist_ok=True)
    calib, src = calibration_batch(size)
    log(f"  building {precision} artifacts into {out} (calibration: {len(calib)} images from {src}) ...")
    latents = run_batched(session(export / "encoder.onnx"), calib, batch=4)
    if precision == "fp16":
        r = {"encoder": convert_fp16(export / "encoder.onnx", enc, calib, log=log),
             "decoder": convert_fp16(export / "decoder.onnx", dec, latents, log=log)}
    elif precision == "int8":
        r = {"encoder": quantize_int8(export / "encoder.onnx", enc, calib),
             "decoder": quantize_int8(export / "decoder.onnx", dec, latents)}
    else:
        raise ValueError(f"no artifact recipe for precision {precision!r}")
    atomic_write_bytes(info, json.dumps({"precision": precision, "export": os.fspath(export), "calibration": src,
                                         "settings": r}, indent=2, default=str).encode())
    return enc, dec, f"built {precision} with stylert.engine.precision ({out})"


def calibration_dir() -> Path | None:
    """The first folder with calibration images: calib_data/, else ../shared/data/content."""
    from stylert.engine.images import list_images

    root = Path(__file__).resolve().parent.parent
    for d in (root / "calib_data", root.parent / "shared" / "data" / "content"):
        try:
            if d.is_dir() and list_images(d):
                return d
        except Exception:  # noqa: BLE001  empty or unreadable: try the next one
            continue
    return None


def engine_folder(export: Path, precision: str, cache: Path, size: int = 256, log: Callable = print) -> tuple[Path, str]:
    """A build-engine output folder (engine.json) of `precision` for ONNX Runtime, built on first use."""
    from stylert.engine.artifacts import read_export
    from stylert.engine.build import BuildConfig, build_engine

    man = read_export(export)
    key = man["files"]["encoder"]["sha256"][:16] + "-" + man["files"]["decoder"]["sha256"][:16]
    out = Path(cache) / key / f"engine-{precision}"
    if (out / "engine.json").is_file():
        return out, f"cached build-engine output ({out})"
    cdir = calibration_dir()
    if cdir is None:
        raise FileNotFoundError("no calibration images (calib_data/ is empty and ../shared/data/content is absent)")
    log(f"  build-engine {export} --precision {precision} --backend onnxruntime -> {out} (calibration: {cdir}) ...")
    build_engine(BuildConfig(str(export), precision=precision, backend="onnxruntime", out=str(out), calib_dir=str(cdir),
                             calib_size=size, calib_count=16, eval_count=4), log=lambda m: log("    " + m))
    return out, f"built with build-engine ({out})"
