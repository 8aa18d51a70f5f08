"""Which configurations exist on this machine, and each one's pipeline of stages.

A configuration is a backend + precision (+ options) that a user could deploy. Every one runs
the same pipeline on the same batch:

  preprocess   uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]
  h2d          host -> device (on CPU: nothing to copy, ~0 and reported as such)
  encode       image -> latent (N, C, H/d, W/d) and style code (N, 2K)
  mix          AdaIN of the latent and the style offset (style code - own; the style is
               encoded once, outside the timed loop)
  decode       (latent, offset) -> image in [0, 1]
  d2h          device -> host (~0 on CPU)
  postprocess  float32 -> uint8 (N, H, W, 3)

Every row goes through the runtime's runners, so it measures what a service gets: the ONNX
Runtime rows through stylert.engine.runtime.Engine on the export or on a build-engine folder,
the "+option" rows through the same runner with one session option changed (tuning
experiments, `--configs all`), the OpenVINO rows through Engine on the export (fp32) or on a
build-engine folder built for OpenVINO (bf16, int8: the same calibrated Q/DQ files as ONNX
Runtime's, its float parts in bf16 where native), the PyTorch peers through Engine's torch runner with its
options (compile, channels_last, bf16 autocast, CUDA graphs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from stylert.engine.precisions import PRECISIONS

from .harness import Stage

BASELINE = "torch-eager-fp32"
# PSNR (dB) against the FP32 reference that a configuration must reach to count: tolerances
# depend on the precision (fp16 is never bit-exact; int8 loses more). StyleRT's engines are
# held to build-engine's gates (the precision table, stylert.engine.precisions); the torch
# peers that only bench runs, to their own (a torch BF16 autocast row is not an engine build).
PEER_GATE_DB = {"bf16": 35.0}


def accuracy_gate(cfg: "Config") -> float:
    """The PSNR gate (dB) of one configuration's row."""
    if cfg.backend == "torch" and cfg.precision in PEER_GATE_DB:
        return PEER_GATE_DB[cfg.precision]
    p = PRECISIONS.get(cfg.precision)
    return p.min_psnr if p is not None else 30.0


def preprocess(u8: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1] (engine.images.to_array, batched)."""
    return np.ascontiguousarray(u8.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1.0 / 255.0)


def postprocess(y: np.ndarray) -> np.ndarray:
    """float32 (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3) (engine.images.to_pil's rounding)."""
    return np.clip(y.transpose(0, 2, 3, 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _identity(x):
    return x


def _host_mix(ctx: "Context", channels: int):
    """The mix stage on the host: (latent, own code) -> (mixed latent, style offset) for the
    bench's style (NumPy, mixing.mix_arrays)."""
    from stylert.engine.mixing import mix_arrays

    return lambda zc: mix_arrays(zc[0], zc[1], np.broadcast_to(ctx.style, zc[1].shape), 1.0, channels)


@dataclass
class Context:
    """What every configuration shares: the export folder, the batch and the style."""

    export: Path
    batch: int
    size: int
    threads: int
    style: np.ndarray  # (2K,) the style's code (StyleCode.vector)
    cache: Path
    log: Callable[[str], None] = print


@dataclass
class Config:
    name: str
    backend: str  # torch | onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | int8 | bf16
    device: str = "cpu"
    peer: bool = False  # a framework a user would pick instead of StyleRT
    default: bool = True  # in the default set (False: a tuning experiment, `--configs all`)
    options: dict = field(default_factory=dict)
    unavailable: str | None = None  # why it cannot run here
    # set by load()
    stages: list[Stage] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    note: str = ""

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def load(self, ctx: Context) -> None:
        """Build the pipeline (the cold start: sessions, weights, compilation)."""
        loader = {"torch": _load_torch, "onnxruntime": _load_ort, "openvino": _load_openvino}[self.backend]
        self.stages = loader(self, ctx)

    def to_dict(self) -> dict:
        return {"name": self.name, "backend": self.backend, "precision": self.precision, "device": self.device,
                "peer": self.peer, "options": self.options, "info": self.info, "note": self.note}


# ----------------------------------------------------------------------------- discovery
def discover() -> list[Config]:
    """Every configuration, available or not (an unavailable one carries the reason)."""
    out: list[Config] = []
    try:
        import torch

        has_torch, cuda = True, torch.cuda.is_available()
    except ImportError:
        has_torch, cuda = False, False
    no_torch = None if has_torch else "not measured: PyTorch is not installed"
    out.append(Config(BASELINE, "torch", "fp32", peer=True, unavailable=no_torch))
    out.append(Config("torch-compile-fp32", "torch", "fp32", peer=True, options={"compile": True}, unavailable=no_torch))
    out.append(Config("torch-eager-fp32+channels_last", "torch", "fp32", peer=True, default=False,
                      options={"channels_last": True}, unavailable=no_torch))
    out.append(Config("torch-eager-bf16+channels_last", "torch", "bf16", peer=True, default=False,
                      options={"channels_last": True, "dtype": "bfloat16"}, unavailable=no_torch))
    if cuda:
        out.append(Config("torch-cuda-fp32", "torch", "fp32", device="cuda", peer=True))
        out.append(Config("torch-cuda-fp16+cudagraph", "torch", "fp16", device="cuda", peer=True,
                          options={"dtype": "float16", "cuda_graph": True, "channels_last": True}))
    for p, prec in PRECISIONS.items():
        if not prec.backends or "onnxruntime" in prec.backends:
            out.append(Config(f"onnxruntime-{p}", "onnxruntime", p))
    try:
        import openvino  # noqa: F401

        no_ov = None
    except ImportError:
        no_ov = "not measured: OpenVINO is not installed (pip install 'stylert[openvino]')"
    for p in ("fp32", "bf16", "int8"):
        out.append(Config(f"openvino-{p}", "openvino", p, unavailable=no_ov))
    # Tuning experiments: one session option each, on the FP32 and INT8 graphs.
    for p in ("fp32", "int8"):
        out.append(Config(f"onnxruntime-{p}+spin", "onnxruntime", p, default=False,
                          options={"session.intra_op.allow_spinning": "1"}))
        out.append(Config(f"onnxruntime-{p}+basic-opt", "onnxruntime", p, default=False,
                          options={"graph_optimization_level": "basic"}))
        # "extended" = everything but the NCHWc layout transform (level 3), which runs the
        # nearest Upsample in the blocked layout.
        out.append(Config(f"onnxruntime-{p}+extended-opt", "onnxruntime", p, default=False,
                          options={"graph_optimization_level": "extended"}))
    out += [Config(f"tensorrt-{p}", "tensorrt", p, device="cuda", unavailable=_tensorrt_unavailable()) for p in ("fp16", "int8")]
    return out


def _tensorrt_unavailable() -> str:
    """Exactly why the TensorRT rows are not measured on this machine."""
    from stylert.engine.build import tensorrt as trt_build

    ok, why = trt_build.available()
    if not ok:
        return f"not measured: TensorRT unavailable ({why})"
    if not trt_build.runs_here():
        return (f"not measured: TensorRT plans build here but no GPU here runs them ({why}); "
                "`stylert build-engine EXPORT --backend tensorrt` builds them and records their size and build time")
    return "not measured: the TensorRT path of bench is not written yet (run the engine with stylert.engine.Engine)"


def select(configs: list[Config], patterns: list[str] | None) -> list[Config]:
    """Filter by comma/space-separated patterns: a configuration's exact name selects just
    it, any other pattern every name containing it; 'all' keeps the tuning experiments too.
    The baseline is always kept (every figure is a ratio to it)."""
    if not patterns:
        return [c for c in configs if c.default]
    pats = [p for s in patterns for p in s.replace(",", " ").split() if p]
    if "all" in pats:
        return configs
    names = {c.name for c in configs}

    def hit(p: str, name: str) -> bool:
        return p == name if p in names else p in name

    return [c for c in configs if c.name == BASELINE or any(hit(p, c.name) for p in pats)]


# ----------------------------------------------------------------------------- torch
def _load_torch(cfg: Config, ctx: Context) -> list[Stage]:
    """The PyTorch peers through the runtime's torch runner, with its options: what a service
    embedding StyleRT on PyTorch runs. Arrays cross as host NumPy (the runner copies to and
    from the device inside encode/decode: h2d and d2h are part of those stages here)."""
    from stylert.engine.mixing import StyleCode
    from stylert.engine.runtime import Engine

    precision = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[cfg.options.get("dtype", "float32")]
    ropts = {"compile": bool(cfg.options.get("compile")), "channels_last": bool(cfg.options.get("channels_last")),
             "cuda_graphs": bool(cfg.options.get("cuda_graph"))}
    eng = Engine.load(ctx.export, backend="torch", precision=precision, device=cfg.device, threads=ctx.threads,
                      runner_options=ropts, batch_size=max(ctx.batch, 64))
    c, k = eng.contract.latent_channels, len(ctx.style) // 2
    cfg.info = {"via": "stylert.engine.runtime.Engine (torch runner)", "threads": ctx.threads,
                "engine": {k_: v for k_, v in eng.info.items() if isinstance(v, (str, int, float, bool, type(None)))}}
    if cfg.options.get("cuda_graph"):
        # the runner's fused path: one CUDA graph of encode -> mix -> decode per shape
        style = StyleCode(ctx.style[:k], ctx.style[k:])
        fused = [Stage("encode+mix+decode", lambda x: eng.stylize_batch(x, style), True)]
    else:
        fused = [Stage("encode", eng.encode, cfg.cuda),
                 Stage("mix", _host_mix(ctx, c)),
                 Stage("decode", lambda ts: eng.decode(*ts), cfg.cuda)]
    return [Stage("preprocess", preprocess), Stage("h2d", _identity), *fused, Stage("d2h", _identity),
            Stage("postprocess", postprocess)]


# ----------------------------------------------------------------------------- onnxruntime
def artifact_paths(cfg: Config, ctx: Context) -> tuple[Path, Path, Path, str]:
    """(folder for Engine.load, portable encoder, portable decoder, origin).

    fp32: the export itself. Other precisions: a build-engine output folder for the row's
    backend in the cache, built on first use (stylert.engine.build)."""
    if cfg.precision == "fp32":
        return ctx.export, ctx.export / "encoder.onnx", ctx.export / "decoder.onnx", "export"
    from .artifacts import engine_folder

    folder, origin = engine_folder(ctx.export, cfg.precision, ctx.cache, size=ctx.size, log=ctx.log, backend=cfg.backend)
    from stylert.engine.manifest import read_engine_manifest

    files = read_engine_manifest(folder)["files"]
    # Graph-optimization experiments start from the portable ONNX (the runtime's file is
    # already optimized offline, e.g. INT8's CPU form with ReLU folded into uint8 Q/DQ);
    # other session options are tried on the runtime's own file.
    key = "portable" if "graph_optimization_level" in cfg.options else "path"
    return folder, folder / files["encoder"].get(key, files["encoder"]["path"]), \
        folder / files["decoder"].get(key, files["decoder"]["path"]), origin


def _load_ort(cfg: Config, ctx: Context) -> list[Stage]:
    import onnxruntime as ort

    from stylert.engine.artifacts import contract_of

    folder, enc_path, dec_path, origin = artifact_paths(cfg, ctx)
    c = contract_of(ctx.export).latent_channels
    if cfg.options:
        encode, decode, info = _tuned_sessions(ort, enc_path, dec_path, cfg, ctx)
    else:
        encode, decode, info = _runtime_engine(folder, cfg, ctx)
    cfg.info = {"onnxruntime": ort.__version__, "artifacts": origin, "encoder": str(enc_path), "decoder": str(dec_path), **info}
    mix = _host_mix(ctx, c)
    return [Stage("preprocess", preprocess), Stage("h2d", _identity), Stage("encode", encode), Stage("mix", mix),
            Stage("decode", decode), Stage("d2h", _identity), Stage("postprocess", postprocess)]


def _load_openvino(cfg: Config, ctx: Context) -> list[Stage]:
    import openvino as ov

    from stylert.engine.artifacts import contract_of

    folder, enc_path, dec_path, origin = artifact_paths(cfg, ctx)
    encode, decode, info = _runtime_engine(folder, cfg, ctx)
    cfg.info = {"openvino": ov.__version__, "artifacts": origin, "encoder": str(enc_path), "decoder": str(dec_path), **info}
    mix = _host_mix(ctx, contract_of(ctx.export).latent_channels)
    return [Stage("preprocess", preprocess), Stage("h2d", _identity), Stage("encode", encode), Stage("mix", mix),
            Stage("decode", decode), Stage("d2h", _identity), Stage("postprocess", postprocess)]


def _runtime_engine(folder: Path, cfg: Config, ctx: Context):
    """The runtime's Engine on the row's backend: exactly what a service gets."""
    from stylert.engine.runtime import Engine

    eng = Engine.load(folder, backend=cfg.backend, device="cpu", threads=ctx.threads, batch_size=max(ctx.batch, 64))
    return eng.encode, lambda ts: eng.decode(*ts), {"via": "stylert.engine.runtime.Engine", "threads": ctx.threads,
                                    "engine": {k: v for k, v in eng.info.items() if isinstance(v, (str, int, float, bool, type(None)))}}


def _tuned_sessions(ort, enc_path, dec_path, cfg: Config, ctx: Context):
    """The runtime's ONNX Runtime runner with one session option changed from its defaults
    (ORT_ENABLE_ALL, intra_op=threads, SESSION_CONFIG), on the files the option applies to."""
    from stylert.engine.artifacts import contract_of
    from stylert.engine.backends.onnxrt.runner import OnnxRuntimeRunner

    extra = {"execution_mode": ort.ExecutionMode.ORT_PARALLEL} if cfg.options.get("execution_mode") == "parallel" else {}
    config = {k: v for k, v in cfg.options.items() if k.startswith("session.")}
    runner = OnnxRuntimeRunner(enc_path, dec_path, contract_of(ctx.export), precision=cfg.precision, threads=ctx.threads,
                               level=cfg.options.get("graph_optimization_level", "all"), config=config, **extra).load()
    return (runner.encode, lambda ts: runner.decode(*ts),
            {"via": "OnnxRuntimeRunner with a session option (tuning experiment)", "threads": ctx.threads,
             "session_options": cfg.options})


def reference_fp32(ctx: Context, x_u8: np.ndarray) -> np.ndarray:
    """The FP32 reference output (float, before postprocess): PyTorch eager FP32 when torch is
    importable, else ONNX Runtime FP32 on the export (which the exporter verified against it)."""
    try:
        cfg = Config(BASELINE, "torch", "fp32")
        cfg.load(ctx)
    except ImportError:
        cfg = Config("onnxruntime-fp32", "onnxruntime", "fp32")
        cfg.load(ctx)
    out = x_u8
    for st in cfg.stages:
        if st.name == "postprocess":
            break
        out = st.fn(out)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                want = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "fma", "f16c"}
                return sorted(want & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
