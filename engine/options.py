"""The options every verb that runs a model shares (stylize, serve, loadtest): which model,
backend and precision, on which device, with how many threads. Declared once here as a
dataclass that the verbs' configurations extend, and added to a parser once, as one group.
Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .backends import BACKENDS
from .config_args import add_fields
from .precisions import PRECISIONS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class EngineChoice:
    model: str | None = None  # export, engine or checkpoint folder; None = the shipped model
    backend: str = "auto"  # a name in engine/backends BACKENDS, or auto (engine/choose.py's rule)
    precision: str | None = None  # None = the model folder's own
    device: str = "auto"
    threads: int | None = None  # CPU threads for the backend; None = its own default


ENGINE_FIELDS = tuple(f.name for f in fields(EngineChoice))
HELP = {
    "model": "export folder, engine folder or checkpoint (default: the shipped model)",
    "backend": "auto: an engine folder's own backend; for the shipped model, OpenVINO BF16 on a CPU with native "
               "BF16 where OpenVINO is installed, else ONNX Runtime (a CUDA GPU: the runtime's own choice)",
    "precision": "default: the model folder's own",
    "device": "where the backend runs",
    "threads": "CPU threads for the backend (default: its own)",
}


def add_engine_options(p, help: dict[str, str] | None = None, **defaults) -> None:
    """The EngineChoice options as one argument group of parser `p`; `help` overrides a text,
    `defaults` a default (loadtest measures ONNX Runtime unless told otherwise)."""
    g = p.add_argument_group("model and engine")
    add_fields(g, EngineChoice, {**HELP, **(help or {})},
               choices={"backend": ("auto", *BACKENDS), "precision": tuple(PRECISIONS), "device": DEVICES},
               metavar={"model": "DIR"})
    if defaults:
        p.set_defaults(**defaults)
