"""The one place ONNX Runtime sessions are made: the runner, build-engine (calibration,
accuracy, the saved optimized models), the exporter's verification and bench all call
`make_session`, so a session option is decided once."""

from __future__ import annotations

import os

# Worker threads sleep instead of spinning between ops: measured faster on 2 cores idle and
# much faster when another process shares them (bench rows "+spin", bench/RESULTS.md), and
# an embedding service's idle threads stop burning CPU.
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}
LEVELS = ("disable", "basic", "extended", "all")


def make_session(model: str | os.PathLike | bytes, threads: int | None = 0, level: str = "all",
                 optimized_path: str | os.PathLike | None = None, providers=("CPUExecutionProvider",),
                 config: dict | None = None, **attributes):
    """An InferenceSession of `model` (a path or serialized bytes).

    threads: intra-op threads (0 or None: all cores). level: graph optimization, one of
    LEVELS. optimized_path: also save the optimized model there. config: session config
    entries over SESSION_CONFIG. attributes: other SessionOptions attributes (e.g.
    enable_profiling=True)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.intra_op_num_threads = int(threads or 0)
    for k, v in {**SESSION_CONFIG, **(config or {})}.items():
        so.add_session_config_entry(k, str(v))
    if optimized_path is not None:
        so.optimized_model_filepath = os.fspath(optimized_path)
    for k, v in attributes.items():
        setattr(so, k, v)
    src = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(src, so, providers=list(providers))
