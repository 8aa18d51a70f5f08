"""The backends, one folder each (Polygraphy's layout): `onnxrt/` (runner, session factory),
`openvino/` (runner), `trt/` (runner, which TensorRT is installed), all behind `base.Runner`;
the PyTorch reference runner lives with the model it runs (`export/runner.py`). Their
build-engine steps live in the build stage, `engine/build/` (one module per backend).

`BACKENDS` is the one table the runtime, build-engine, the manifest, the CLI choices and bench
read. Adding a backend is a new folder and one entry here. Nothing here imports a backend's
library: the entries name what to import, when it is needed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    runner: str  # "module:Class" of its Runner, relative to this package (or absolute: stylert.*)
    build: str  # "module:function" of its build-engine step in engine/build/ ("" if it builds no engines)
    library: str  # the Python module whose version an engine records ("" for none)
    device: str  # where its engines run: "cpu" | "cuda" | "any"
    install: str  # how to get it, for error messages

    @property
    def builds_engines(self) -> bool:  # a target of `stylert build-engine --backend`
        return bool(self.build)

    def runner_class(self):
        return _resolve(self.runner)

    def builder(self):
        """build-engine's step: (tmp folder, BuildConfig, profile shapes, conversions, log) ->
        (files, flags, ONNX Runtime sessions for the accuracy check, what they measure)."""
        return _resolve(self.build, "stylert.engine.build")

    def version(self) -> str:
        """The installed version of its library ("" when it does not import)."""
        try:
            return importlib.import_module(self.library).__version__
        except ImportError:
            return ""


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("onnxruntime", "onnxrt.runner:OnnxRuntimeRunner", "onnxrt:build_artifacts", "onnxruntime", "any",
            "pip install stylert (onnxruntime), or onnxruntime-gpu for its CUDA provider"),
    Backend("openvino", "openvino.runner:OpenVINORunner", "openvino:build_artifacts", "openvino", "cpu",
            "pip install 'stylert[openvino]'"),
    Backend("tensorrt", "trt.runner:TensorRTRunner", "tensorrt:build_artifacts", "tensorrt", "cuda",
            "pip install 'stylert[gpu]' on an NVIDIA machine"),
    Backend("torch", "stylert.export.runner:TorchRunner", "", "torch", "any",
            "pip install 'stylert[export]' (PyTorch)"),
)}
ENGINE_BACKENDS = tuple(n for n, b in BACKENDS.items() if b.builds_engines)  # build-engine's targets


def _resolve(spec: str, package: str = __name__):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module if module.startswith("stylert.") else f"{package}.{module}"), attr)

