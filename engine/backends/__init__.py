"""The backends, one folder each (Polygraphy's layout): `onnxrt/` (runner, session factory),
`openvino/` (runner), `trt/` (runner, which TensorRT is installed), all behind `base.Runner`;
the PyTorch reference runner lives with the model it runs (`export/runner.py`). Their
build-engine steps live in the build stage, `engine/build/` (one module per backend).

`BACKENDS` is the one table the runtime, build-engine, the manifest, the CLI choices and bench
read. Adding a backend is a new folder, one entry here and (if it builds engines) its step in
`engine/build/stage.py`'s BUILDERS. Nothing here imports a backend's library: the entries name
the module to import when it is needed, as absolute names (tests/test_layout.py follows them).
The torch backend's runner lives in the export stage beside the model it runs; the runtime
finds it through the package's entry point `stylert.runners` (pyproject.toml), not by name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    runner: str  # "stylert.module:Class" of its Runner, or "entry-point" (group stylert.runners, this name)
    builds_engines: bool  # a target of `stylert build-engine --backend` (its step: engine/build/stage.py)
    library: str  # the Python module whose version an engine records ("" for none)
    device: str  # where its engines run: "cpu" | "cuda" | "any"
    install: str  # how to get it, for error messages

    def runner_class(self):
        if self.runner == "entry-point":
            return _entry_point("stylert.runners", self.name, self.install).load()
        module, attr = self.runner.split(":")
        return getattr(importlib.import_module(module), attr)

    def version(self) -> str:
        """The installed version of its library ("" when it does not import)."""
        try:
            return importlib.import_module(self.library).__version__
        except ImportError:
            return ""


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("onnxruntime", "stylert.engine.backends.onnxrt.runner:OnnxRuntimeRunner", True, "onnxruntime", "any",
            "pip install stylert (onnxruntime), or onnxruntime-gpu for its CUDA provider"),
    Backend("openvino", "stylert.engine.backends.openvino.runner:OpenVINORunner", True, "openvino", "cpu",
            "pip install 'stylert[openvino]'"),
    Backend("tensorrt", "stylert.engine.backends.trt.runner:TensorRTRunner", True, "tensorrt", "cuda",
            "pip install 'stylert[gpu]' on an NVIDIA machine"),
    Backend("torch", "entry-point", False, "torch", "any", "pip install 'stylert[export]' (PyTorch)"),
)}
ENGINE_BACKENDS = tuple(n for n, b in BACKENDS.items() if b.builds_engines)  # build-engine's targets


def _entry_point(group: str, name: str, install: str):
    """The package's own entry point `name` of `group` (pyproject.toml); reading only this
    distribution's metadata costs a millisecond, not a scan of every installed package."""
    from importlib.metadata import PackageNotFoundError, distribution

    from ..errors import StyleRTError

    try:
        eps = distribution("stylert").entry_points
    except PackageNotFoundError:
        raise StyleRTError("the stylert package is not installed, so its entry points are unknown.",
                           "Install it: pip install -e . (from a clone).") from None
    for ep in eps:
        if ep.group == group and ep.name == name:
            return ep
    raise StyleRTError(f"no {group} entry point {name!r} in the installed stylert.",
                       f"Reinstall the package (pip install -e .); {install}.")
