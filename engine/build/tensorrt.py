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

from ..cuda_mix import gpu_info
from ..errors import StyleRTError
from ..images import atomic_write_bytes


def build_artifacts(tmp: Path, cfg, shapes: dict, conv: dict, log=print):
    """build-engine's TensorRT step: one plan per model from its precision ONNX. The accuracy
    check runs the precision ONNX on ONNX Runtime: the plan's own numbers are checked by the
    runtime's GPU tests."""
    from . import precision as P
    from ..artifacts import cache_root
    from ..manifest import BuildArtifacts, file_entry
    from ..backends.trt.flavour import choose, installed_version

    f = choose(cfg.tensorrt_flavour)
    cache = (cfg.timing_cache or os.fspath(cache_root() / f"{f.name}-timing.cache")) if f.timing_cache else None
    gpu = _gpu_or_none()
    targets = list(cfg.compute_capability or ())
    if targets and not f.compute_capabilities:
        raise StyleRTError(f"--compute-capability selects TensorRT-RTX targets; {f.name} builds for the GPU it runs on.",
                           "Leave it out, or build with --tensorrt-flavour tensorrt_rtx.")
    files, flags, sizes = {}, {}, {}
    for role in ("encoder", "decoder"):
        log(f"  {role}: building a {f.name} plan ...")
        art = tmp / f"{role}.plan"
        flags = build_plan(tmp / f"{role}.onnx", art, shapes[role],
                           cfg.workspace_mb << 20 if cfg.workspace_mb else None, cache, log=log,
                           flavour=f.name, compute_capabilities=targets)
        if gpu is not None:
            load_and_check(art, f.name)
        files[role] = file_entry(tmp, art, role)
        sizes[role] = art.stat().st_size
        log(f"  {role}: {sizes[role] / 1e6:.1f} MB in {flags['seconds']:.1f} s")
    flags["plan_bytes"] = sizes
    if f.compute_capabilities:  # ahead-of-time: the plan names its targets, not this machine's GPU
        device = {"type": "cuda", "flavour": f.name, "targets": targets or list(f.compute_capabilities),
                  "built_on": gpu or "a machine without a GPU (ahead-of-time)"}
    else:
        device = {**(gpu or gpu_info()), "flavour": f.name}
    sessions = [P.session(tmp / f"{r}.onnx", threads=cfg.threads) for r in ("encoder", "decoder")]
    return BuildArtifacts(files, flags, sessions, "onnxruntime on the precision ONNX the plan was built from",
                          device, installed_version(f.name))


def _gpu_or_none() -> dict | None:
    try:
        return gpu_info()
    except Exception:  # no cuda-python, no driver, no device
        return None


def runs_here(flavour: str | None = None) -> bool:
    """A GPU is here and a plan of the flavour would run on it."""
    from ..backends.trt.flavour import cannot_run, choose

    gpu = _gpu_or_none()
    return gpu is not None and cannot_run(choose(flavour).name, gpu["compute_capability"]) is None


def available(flavour: str | None = None) -> tuple[bool, str]:
    """(usable for building, reason): a flavour imports, and a CUDA GPU is visible unless the
    flavour builds ahead of time without one (TensorRT-RTX)."""
    from ..backends.trt.flavour import choose, installed_version

    try:
        f = choose(flavour)
    except StyleRTError as e:
        return False, f"TensorRT is not installed ({e.what}) {e.note}"
    if not installed_version(f.name):
        return False, f"{f.name} is not installed; {f.install}"
    gpu = _gpu_or_none()
    if gpu is None and not f.builds_without_gpu:
        return False, f"{f.name} {installed_version(f.name)} imports but no CUDA GPU is usable"
    where = (f"GPU {gpu['name']} (compute capability {gpu['compute_capability']})" if gpu
             else "no GPU: an ahead-of-time build")
    return True, f"{f.name} {installed_version(f.name)}, {where}; its plans run on {f.runs_on}"


def build_plan(
    onnx_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    shapes: dict[str, dict[str, tuple[int, ...]]],
    workspace_bytes: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    optimization_level: int = 3,
    log=print,
    flavour: str | None = None,
    compute_capabilities: list[str] | None = None,
) -> dict:
    """Build a strongly typed engine from `onnx_path` with one optimization profile
    (`shapes`: {input name: {"min", "opt", "max"}}) and write the plan atomically to
    `plan_path`. workspace_bytes: a limit only when asked (a 2 GiB default made the FP32
    encoder's 32 x 512x512 profile fail). timing_cache: loaded and saved (datacenter flavour
    only). compute_capabilities: TensorRT-RTX targets, e.g. ["8.6", "8.9"]; none = its
    multi-architecture default. Returns the build flags."""
    import time

    from ..backends.trt.flavour import choose, module

    f = choose(flavour)
    trt = module(f)
    t0 = time.time()

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
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    config.builder_optimization_level = int(optimization_level)
    if compute_capabilities:
        config.num_compute_capabilities = len(compute_capabilities)
        for i, cc in enumerate(compute_capabilities):
            sm = getattr(trt.ComputeCapability, "SM" + cc.replace(".", ""), None)
            if sm is None or not config.set_compute_capability(sm, i):
                raise StyleRTError(f"{f.name} cannot target compute capability {cc}.",
                                   f"Its targets: {', '.join(f.compute_capabilities)}.")
    profile = builder.create_optimization_profile()
    for name, s in shapes.items():
        profile.set_shape(name, min=s["min"], opt=s["opt"], max=s["max"])
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if (timing_cache and f.timing_cache) else None
    if cache_path is not None:
        saved = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(saved), ignore_mismatch=False)
        if saved:
            log(f"  reusing timing cache {cache_path} ({len(saved)} bytes)")

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        limit = f"the workspace limit ({int(workspace_bytes) >> 20} MiB)" if workspace_bytes else "the GPU's memory"
        largest = {k: v["max"] for k, v in shapes.items()}
        raise StyleRTError(
            f"{f.name} could not build the engine for the profile's largest shapes {largest} "
            f"(see its messages above; an OutOfMemory there means {limit} is too small for them).",
            "Raise --workspace-mb (or leave it out: no limit), or lower --max-batch / --max-size.",
            path=onnx_path,
        )
    atomic_write_bytes(plan_path, bytes(plan))
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return {"flavour": f.name, "strongly_typed": True, "workspace_bytes": int(workspace_bytes) if workspace_bytes else None,
            "builder_optimization_level": int(optimization_level), "compute_capabilities": list(compute_capabilities or []),
            "timing_cache": os.fspath(cache_path) if cache_path else None, "seconds": round(time.time() - t0, 2)}


def load_and_check(plan_path: str | os.PathLike, flavour: str | None = None) -> None:
    """Deserialize a plan to prove it loads on this GPU (raises StyleRTError otherwise)."""
    from ..backends.trt.flavour import choose, module

    trt = module(choose(flavour))

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise StyleRTError("TensorRT could not deserialize the plan it just built.", path=plan_path)
