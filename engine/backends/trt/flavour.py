"""Which TensorRT: the datacenter `tensorrt` or TensorRT for RTX (`tensorrt_rtx`), with the
same Python API (../shared/notes/tensorrt.md). Facts about each flavour are data here; the
library is imported only by `module()`. Chosen by argument, else $STYLERT_TENSORRT (tensorrt |
tensorrt_rtx | auto), else auto: `tensorrt` when it imports, else `tensorrt_rtx`."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from ...errors import StyleRTError

ENV = "STYLERT_TENSORRT"


@dataclass(frozen=True)
class Flavour:
    name: str  # the import name
    builds_without_gpu: bool  # ahead-of-time builds on a CPU-only machine
    timing_cache: bool  # a timing cache means something (a no-op in TensorRT-RTX)
    compute_capabilities: tuple[str, ...]  # the GPUs its plans run on ("" = any the build GPU allows)
    runs_on: str
    install: str


FLAVOURS = {f.name: f for f in (
    Flavour("tensorrt", False, True, (), "NVIDIA GPUs of compute capability 7.5 and newer, H100/H200 (9.0) included; "
            "a plan runs on the GPU model it was built on",
            "pip install 'stylert[gpu]' (the tensorrt packages download from NVIDIA's index, pypi.nvidia.com)"),
    Flavour("tensorrt_rtx", True, False, ("8.0", "8.6", "8.9", "12.0", "12.1"),
            "compute capability 8.0, 8.6, 8.9 and 12.x (A100, A10/A40, L4/L40S, RTX 30/40/50), not 9.0 (H100/H200) "
            "nor 10.x; kernels are compiled on the first run on the target GPU",
            "pip install 'stylert[tensorrt-rtx]' (real wheels on PyPI; builds on a CPU-only machine)"),
)}


def choose(requested: str | None = None) -> Flavour:
    """The flavour to use: `requested`, else $STYLERT_TENSORRT, else the first that imports."""
    want = requested or os.environ.get(ENV) or "auto"
    if want != "auto":
        if want not in FLAVOURS:
            raise StyleRTError(f"unknown TensorRT flavour {want!r}.", f"Use auto, {' or '.join(FLAVOURS)} (option or ${ENV}).")
        return FLAVOURS[want]
    for f in FLAVOURS.values():
        if importable(f):
            return f
    raise StyleRTError("no TensorRT is installed.", " Or: ".join(f.install for f in FLAVOURS.values()))


def importable(f: Flavour) -> bool:
    try:
        importlib.import_module(f.name)
        return True
    except ImportError:
        return False


def module(f: Flavour):
    try:
        return importlib.import_module(f.name)
    except ImportError as e:
        raise StyleRTError(f"TensorRT flavour {f.name} is not installed ({e}).", f.install) from None


def installed_version(name: str) -> str:
    """The installed version of flavour `name` ("" when it does not import)."""
    try:
        return importlib.import_module(name).__version__
    except ImportError:
        return ""


def cannot_run(flavour: str, compute_capability: str, targets: list[str] | None = None) -> str | None:
    """Why a plan of `flavour` (built for `targets`, or the flavour's default set) cannot run on
    a GPU of `compute_capability`, naming the flavour that can; None when it can."""
    f = FLAVOURS.get(flavour)
    if f is None or not f.compute_capabilities:
        return None
    allowed = targets or list(f.compute_capabilities)
    if compute_capability in allowed:
        return None
    other = "the datacenter flavour (tensorrt)" if f.name == "tensorrt_rtx" else "another flavour"
    return (f"{f.name} plans built for compute capability {', '.join(allowed)} cannot run on this GPU "
            f"(compute capability {compute_capability}); build with {other} on this machine")
