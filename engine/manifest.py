"""engine.json: what an engine folder holds and what it was built from, for, and with.

An engine is tied to its source ONNX, its precision, the backend version and the device it
was built on (a TensorRT plan runs only on the GPU architecture and TensorRT version that
built it; an ONNX Runtime model optimized at ORT_ENABLE_ALL carries CPU-specific layouts).
The runtime calls `check_engine` before it loads one and refuses a stale or mismatched engine
with the reason and the command that rebuilds it. Torch-free and TensorRT-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import os
import platform
import shlex
from pathlib import Path

from .artifacts import inside, read_json_manifest, sha256_file
from .backends import BACKENDS as ALL_BACKENDS
from .backends import ENGINE_BACKENDS
from .precisions import PRECISIONS as PRECISION_TABLE
from .errors import StyleRTError
from .images import atomic_write_bytes

ENGINE_MANIFEST_FILE = "engine.json"
ENGINE_KIND = "stylert-engine"
FORMAT_VERSION = 1
BACKENDS = ENGINE_BACKENDS  # the registries: engine/backends/__init__.py, engine/precisions.py
PRECISIONS = tuple(PRECISION_TABLE)

# The CPU features ONNX Runtime's kernels (MLAS) dispatch on; an optimized model can bake in
# a layout chosen for them (NCHWc block size 16 with AVX-512, 8 with AVX2).
CPU_FEATURES = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    # Arm (the "Features" line of /proc/cpuinfo)
    "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2", "fphp", "asimdhp",
)


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """{"model": str, "features": [relevant instruction-set flags], "arch": machine}."""
    model, flags = platform.processor() or "", set()
    try:
        text = Path(cpuinfo_path).read_text(errors="replace")
    except OSError:
        text = ""
    names = {}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model"):
            names.setdefault(key, val.strip())
        elif key in ("flags", "features") and not flags:
            flags = set(val.split())
    model = names.get("model name") or names.get("cpu model") or names.get("hardware") or model
    return {"type": "cpu", "model": model or platform.machine(), "arch": platform.machine(),
            "features": sorted(f for f in CPU_FEATURES if f in flags)}


def os_info() -> dict:
    return {"system": platform.system(), "release": platform.release()}


def backend_version(backend: str, flavour: str | None = None) -> str:
    """The installed version of a backend's library ("" when it does not import); for
    TensorRT, of the flavour named (an engine records which flavour built it)."""
    if backend not in ALL_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    if backend == "tensorrt" and flavour:
        from .backends.trt.flavour import installed_version

        return installed_version(flavour)
    return ALL_BACKENDS[backend].version()


def current_device(backend: str) -> dict:
    """The device an engine of `backend` would run on here: the CPU for ONNX Runtime and
    OpenVINO, the current CUDA GPU (name, compute capability) for TensorRT."""
    if ALL_BACKENDS[backend].device != "cuda":
        return cpu_info()
    from .cuda_mix import gpu_info  # lazy: needs cuda-python

    return gpu_info()


@dataclass
class BuildArtifacts:
    """What a backend's build-engine step returns (engine/build/onnxrt.py, openvino.py, tensorrt.py)."""

    files: dict  # role -> file_entry
    flags: dict  # the build settings, recorded in the manifest
    sessions: list  # ONNX Runtime sessions (encoder, decoder) for the accuracy check
    measured_with: str  # what those sessions run, for the report
    device: dict  # what the engine runs on (the manifest's "device")
    version: str  # the backend library's version (the manifest's versions.backend)


def file_entry(folder: Path, artifact: Path, role: str) -> dict:
    """An engine folder's `files` entry: the backend's artifact and the portable precision
    ONNX it was made from, each with its sha256 (checked when the engine loads)."""
    portable = folder / f"{role}.onnx"
    return {"path": artifact.name, "sha256": sha256_file(artifact), "portable": portable.name,
            "portable_sha256": sha256_file(portable)}


def rebuild_command(manifest: dict) -> str:
    """The `stylert build-engine` command that rebuilds this engine."""
    b = manifest.get("build", {})
    if b.get("command"):
        return b["command"]
    src = manifest.get("source", {}).get("export_dir", "EXPORT_DIR")
    return f"stylert build-engine {shlex.quote(src)} --precision {manifest.get('precision', 'fp16')} --backend {manifest.get('backend', 'auto')}"


def write_engine_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    atomic_write_bytes(Path(folder) / ENGINE_MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def read_engine_manifest(folder: str | os.PathLike) -> dict:
    """The validated engine.json of an engine folder (StyleRTError when missing/corrupt)."""
    folder = Path(folder)
    path = folder / ENGINE_MANIFEST_FILE
    try:
        m = read_json_manifest(folder, ENGINE_MANIFEST_FILE, ENGINE_KIND, f"no {ENGINE_MANIFEST_FILE}: this is not an engine folder.",
                               "Build one with `stylert build-engine EXPORT_DIR --precision fp16` (or --int8).")
        if m.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {m.get('format_version')!r}, this StyleRT reads {FORMAT_VERSION}")
        if m["backend"] not in BACKENDS or m["precision"] not in PRECISIONS:
            raise ValueError(f"backend {m['backend']!r} / precision {m['precision']!r} unknown")
        for role in ("encoder", "decoder"):
            inside(folder, m["files"][role]["path"])
            if not isinstance(m["files"][role]["sha256"], str) or not isinstance(m["source"][role]["sha256"], str):
                raise ValueError(f"{role} sha256 is not a string")
        m["device"], m["versions"]["backend"], m["contract"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise StyleRTError(
            f"is not a valid engine manifest: {e}.",
            "Rebuild the engine with `stylert build-engine` rather than editing its files.",
            path=path,
        ) from None
    return m


def _device_mismatch(built: dict, here: dict) -> str | None:
    """Why an engine built on `built` cannot run on `here`, or None."""
    if built.get("type") != here.get("type"):
        return f"it was built for a {built.get('type')} device, this machine offers a {here.get('type')}"
    if built.get("type") == "cuda" and built.get("targets") is not None:  # an ahead-of-time TensorRT-RTX plan
        from .backends.trt.flavour import cannot_run

        return cannot_run(built.get("flavour", ""), here.get("compute_capability", ""), built["targets"])
    if built.get("type") == "cuda":
        for k in ("name", "compute_capability"):
            if built.get(k) != here.get(k):
                return f"GPU {k} differs: built on {built.get(k)!r}, running on {here.get(k)!r}"
        return None
    if built.get("arch") != here.get("arch"):
        return f"CPU architecture differs: built on {built.get('arch')}, running on {here.get('arch')}"
    missing = sorted(set(built.get("features", [])) - set(here.get("features", [])))
    gained = sorted(set(here.get("features", [])) - set(built.get("features", [])))
    if missing or gained:
        return (f"CPU instruction sets differ (built with {', '.join(missing) or '-'} that this CPU lacks; "
                f"this CPU adds {', '.join(gained) or '-'}), and the optimized model's layout depends on them")
    return None


def check_engine(
    manifest: dict,
    backend_version: str,
    device: dict,
    *,
    export_manifest: dict | None = None,
    folder: str | os.PathLike | None = None,
    os_name: str | None = None,
) -> None:
    """Raise StyleRTError when the engine must not run here: the backend version or the
    device (or OS) differs from the build's, the source export changed (`export_manifest`:
    the export folder's manifest, when known), or (`folder`) an artifact file no longer
    matches its hash. The message says why and gives the rebuild command."""
    reasons = []
    built_version = manifest["versions"]["backend"]
    if built_version != backend_version:
        reasons.append(f"{manifest['backend']} version differs: built with {built_version}, installed is {backend_version or 'none'}")
    why = _device_mismatch(manifest["device"], device)
    if why:
        reasons.append(why)
    built_os = manifest.get("os", {}).get("system")
    here_os = os_name or platform.system()
    if built_os and built_os != here_os:
        reasons.append(f"operating system differs: built on {built_os}, running on {here_os}")
    if export_manifest is not None:
        for role in ("encoder", "decoder"):
            have, want = export_manifest["files"][role]["sha256"], manifest["source"][role]["sha256"]
            if have != want:
                reasons.append(f"the export's {role} changed since the build (sha256 {have[:12]}, engine built from {want[:12]})")
    if folder is not None:
        for role in ("encoder", "decoder"):
            p = Path(folder) / manifest["files"][role]["path"]
            if not p.is_file():
                reasons.append(f"{role} artifact {p.name} is missing")
            elif sha256_file(p) != manifest["files"][role]["sha256"]:
                reasons.append(f"{role} artifact {p.name} was modified after the build")
    if reasons:
        raise StyleRTError(
            f"stale or mismatched {manifest['precision']} {manifest['backend']} engine: " + "; ".join(reasons) + ".",
            f"Rebuild it on this machine: {rebuild_command(manifest)}",
            path=folder,
        )
