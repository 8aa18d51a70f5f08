"""The thin TensorRT layer of build-engine: precision ONNX -> serialized plan.

Written from ../shared/notes/tensorrt.md (TensorRT 10.8+ and 11.x, one code path); nothing
here runs without libnvinfer, so it holds only the calls TensorRT needs. Precision comes from
the ONNX file (FP16 weights, or Q/DQ nodes), the network is always strongly typed and no
precision builder flag is set (TensorRT 11 removed them). Shapes come from profiles.py.
`import tensorrt` happens inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import StyleRTError
from ...images import atomic_write_bytes


def build_artifacts(tmp: Path, cfg, shapes: dict, conv: dict, log=print):
    """build-engine's TensorRT step: one plan per model from its precision ONNX. -> (files,
    flags, sessions for the accuracy check, what they measure). The check runs the precision
    ONNX on ONNX Runtime: the plan's own numbers are checked by the runtime's GPU tests."""
    from ... import precision as P
    from ...frontend import cache_root
    from ...manifest import file_entry

    cache = cfg.timing_cache or os.fspath(cache_root() / "tensorrt-timing.cache")
    files, flags = {}, {}
    for role in ("encoder", "decoder"):
        log(f"  {role}: building TensorRT plan (can take minutes) ...")
        art = tmp / f"{role}.plan"
        flags = build_plan(tmp / f"{role}.onnx", art, shapes[role], cfg.workspace_mb << 20, cache, log=log)
        load_and_check(art)
        files[role] = file_entry(tmp, art, role)
    sessions = [P.session(tmp / f"{r}.onnx", threads=cfg.threads) for r in ("encoder", "decoder")]
    return files, flags, sessions, "onnxruntime on the precision ONNX the plan was built from"


def available() -> tuple[bool, str]:
    """(usable, reason): TensorRT imports and a CUDA GPU is visible."""
    try:
        import tensorrt as trt
    except ImportError as e:
        return False, f"TensorRT is not installed ({e.msg}); install the `gpu` extra on an NVIDIA machine"
    try:
        info = gpu_info()
    except Exception as e:  # no driver, no device, no cuda-python: all mean "not here"
        return False, f"TensorRT {trt.__version__} imports but no CUDA GPU is usable ({e})"
    return True, f"TensorRT {trt.__version__} and GPU {info['name']} (compute capability {info['compute_capability']})"


def gpu_info(device: int = 0) -> dict:
    """{"type": "cuda", "name", "compute_capability", "driver"} of CUDA device `device`."""
    from cuda.bindings import runtime as cudart

    err, prop = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDeviceProperties: {err}")
    err, driver = cudart.cudaDriverGetVersion()
    name = prop.name.decode(errors="replace").rstrip("\0") if isinstance(prop.name, bytes) else str(prop.name)
    return {"type": "cuda", "name": name, "compute_capability": f"{prop.major}.{prop.minor}",
            "driver": int(driver) if err == cudart.cudaError_t.cudaSuccess else None}


def build_plan(
    onnx_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    shapes: dict[str, dict[str, tuple[int, ...]]],
    workspace_bytes: int = 2 << 30,
    timing_cache: str | os.PathLike | None = None,
    optimization_level: int = 3,
    log=print,
) -> dict:
    """Build a strongly typed engine from `onnx_path` with one optimization profile
    (`shapes`: {input name: {"min", "opt", "max"}}), write the plan atomically to
    `plan_path`, and load/save the timing cache at `timing_cache`. Returns the build flags."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            errors.append(f"node {e.node()} {e.node_name()} ({e.node_operator()}): {e.desc()}")
        raise StyleRTError(
            "TensorRT's ONNX parser rejected the model:\n  " + "\n  ".join(errors),
            "Report this with the model; a Q/DQ model must be int8 with zero-point 0.",
            path=onnx_path,
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    config.builder_optimization_level = int(optimization_level)
    profile = builder.create_optimization_profile()
    for name, s in shapes.items():
        profile.set_shape(name, min=s["min"], opt=s["opt"], max=s["max"])
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else None
    saved = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(saved)
    config.set_timing_cache(cache, ignore_mismatch=False)
    if saved:
        log(f"  reusing timing cache {cache_path} ({len(saved)} bytes)")

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise StyleRTError(
            "TensorRT could not build the engine (see the TensorRT messages above).",
            "A larger --workspace-mb or a smaller --max-batch/--max-size often helps.",
            path=onnx_path,
        )
    atomic_write_bytes(plan_path, bytes(plan))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return {"strongly_typed": True, "workspace_bytes": int(workspace_bytes),
            "builder_optimization_level": int(optimization_level), "timing_cache": os.fspath(cache_path) if cache_path else None}


def load_and_check(plan_path: str | os.PathLike) -> None:
    """Deserialize a plan to prove it loads on this GPU (raises StyleRTError otherwise)."""
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise StyleRTError("TensorRT could not deserialize the plan it just built.", path=plan_path)
