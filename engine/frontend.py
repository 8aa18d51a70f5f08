"""What every front end shares (the stylize CLI, bench and the HTTP service): the cache, which
model folder to load, and how style arguments are read. Torch-free, and nothing of export/."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

from .artifacts import SHIPPED_MODEL_DIR, cache_root  # noqa: F401 (cache_root: front ends import it here)
from .contract import MANIFEST_FILE
from .manifest import ENGINE_MANIFEST_FILE as ENGINE_MANIFEST
from .errors import StyleRTError
from .images import MAX_PIXELS_DEFAULT, load_image
from .mixing import StyleCode


def model_folder(model: str | os.PathLike | None, backend: str = "auto", cache: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print, precision: str | None = None) -> Path:
    """A folder `Engine.load` can open for `model`: an engine or export folder as it is; None:
    the shipped model, which carries its verified export, and with backend auto its fastest
    gated engine on this machine (`fastest_engine`); a checkpoint folder as it is (the torch
    backend runs it; the ONNX backends need `stylert export-onnx` first)."""
    folder = _model_folder(model, backend, cache, log)
    if model is None and backend == "auto" and precision is None and (folder / MANIFEST_FILE).is_file():
        return fastest_engine(folder, cache, log)
    return folder


# The instruction sets with which a CPU computes bf16 natively (x86: AVX512_BF16, AMX).
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


# The rule `--backend auto` follows for the shipped model in the front ends (stylize, serve),
# written down once: on a CPU with native BF16 and OpenVINO installed, its OpenVINO BF16 engine (2.3x ONNX
# Runtime FP32 on the shipped model, bench/RESULTS.md), built once into the cache through
# build-engine and its accuracy gate; where that build fails its gate, or OpenVINO or native
# BF16 is missing, the export itself on ONNX Runtime (FP32). GPUs: the runtime's own rule
# (Engine.load) on the export. Where only OpenVINO is missing, a tip says to install it.
def fastest_engine(export: Path, cache: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Path:
    from .backends import BACKENDS
    from .cuda_mix import cuda_device_count
    from .manifest import cpu_info

    if cuda_device_count() > 0:
        return export
    if not BACKENDS["openvino"].version():
        if NATIVE_BF16_FLAGS & set(cpu_info()["features"]):
            log("tip: this CPU computes bfloat16 natively: with OpenVINO installed (pip install "
                "'stylert[openvino]') the shipped model runs on its BF16 engine, 1.3-1.6x faster end to end "
                "on the CPUs in bench/RESULTS.md")
        return export
    from .backends.openvino.runner import native_bf16

    if not native_bf16():
        return export
    from .artifacts import read_export
    from .manifest import backend_version, check_engine, read_engine_manifest

    m = read_export(export)
    key = m["files"]["encoder"]["sha256"][:12] + m["files"]["decoder"]["sha256"][:12]
    out = cache_root(cache) / "engines" / key / "openvino-bf16"
    stale: list[str] = []

    def usable() -> bool:
        if not (out / ENGINE_MANIFEST).is_file():
            return False
        try:
            # export_manifest: the slot is named after this export, but only the engine's own
            # record of its source says which export it was built from (another model's engine
            # copied or left there must not run in its place)
            check_engine(read_engine_manifest(out), backend_version("openvino"), cpu_info(), export_manifest=m, folder=out)
            return True
        except StyleRTError as e:
            stale[:] = [e.what]
            return False  # built from another export, by another OpenVINO or CPU: rebuilt below

    if usable():
        return out
    from .artifacts import writable_dir
    from .build import BuildConfig, build_engine

    if writable_dir(out.parent, warn=False) is None:
        log(f"note: the engine cache {out.parent} cannot be written; running the export on ONNX Runtime without it "
            "(set STYLERT_CACHE to a writable folder for the faster OpenVINO BF16 engine)")
        return export
    if stale:
        log(f"the cached engine in {out} is not this model's to run ({stale[0]}); rebuilding it")
    # several processes may start at once (the replicas of `stylert serve` on one node): one
    # builds, the others wait for it and load what it built
    with _locked(out.parent / ".build.lock"):
        if usable():
            return out
        log(f"first use on this machine: building the OpenVINO BF16 engine of {export} (once, gated) into {out}")
        try:
            build_engine(BuildConfig(str(export), precision="bf16", backend="openvino", out=str(out), overwrite=True),
                         log=lambda *a: None)
        except StyleRTError as e:
            log(f"  not used: {e.what} Running the export on ONNX Runtime instead.")
            return export
    return out


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock between processes on `path` (POSIX flock; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _model_folder(model, backend, cache, log) -> Path:
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
    if (src / MANIFEST_FILE).is_file() or backend in ("auto", "torch"):
        # the shipped model carries its verified export; another checkpoint runs on the torch
        # backend as it is (Engine.load says so), or is exported first for the ONNX backends
        return src
    raise StyleRTError(f"a checkpoint folder runs on the torch backend only, not {backend!r}.",
                       f"Export it first: stylert export-onnx --checkpoint {src} --out DIR, then pass --model DIR.",
                       path=src)


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


# A StyleCode file is ~12 KB (512 numbers); more is not one, and is not read whole.
STYLE_CODE_MAX_BYTES = 1 << 20


def read_style(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS_DEFAULT):
    """A style argument: a StyleCode from a .json file, else an image (PIL) to encode. A .json
    that is a FIFO, a device or a huge file is refused before it is read (it would block or
    fill memory); its bytes must be UTF-8 JSON (StyleCode.from_json)."""
    from .images import read_regular_file

    if str(path).lower().endswith(".json"):
        try:
            return StyleCode.from_json(read_regular_file(path, STYLE_CODE_MAX_BYTES))
        except FileNotFoundError:
            raise StyleRTError("file does not exist.", "Pass a StyleCode .json written by --save-style, or a style image.",
                               path=path) from None
        except OSError as e:
            raise StyleRTError(f"cannot read: {e.strerror}.", path=path) from None
        except StyleRTError as e:
            raise StyleRTError(e.what, e.note, path=path) from None
    return load_image(path, max_pixels=max_pixels)
