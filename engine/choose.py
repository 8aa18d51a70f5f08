"""Which runner a model folder gets: an engine folder runs on the backend it was built for
(checked against this machine), an export folder on ONNX Runtime (CPU or CUDA) or OpenVINO,
a checkpoint on PyTorch. `Engine.load` calls `choose_runner`; `info["reason"]` says why."""

from __future__ import annotations

from pathlib import Path

from .artifacts import read_export
from .backends import BACKENDS as REGISTRY
from .contract import ModelContract
from .errors import StyleRTError
from .manifest import ENGINE_MANIFEST_FILE

BACKENDS = ("auto", *REGISTRY)  # engine/backends/__init__.py


def choose_runner(folder: Path, backend: str, precision: str | None, device: str, threads: int | None, ropts: dict):
    """Pick the runner for `folder` -> (runner, info with the reason)."""
    from .cuda_mix import cuda_device_count

    if backend not in BACKENDS:
        raise StyleRTError(f"unknown backend '{backend}'.", f"Choose one of {', '.join(BACKENDS)}.")
    if device not in ("auto", "cpu", "cuda"):
        raise StyleRTError(f"unknown device '{device}'.", "Choose auto, cpu or cuda.")
    if not folder.is_dir():
        raise StyleRTError("model folder does not exist.",
                           "Pass an export folder (`stylert export-onnx --out DIR`) or an engine folder (`stylert build-engine`).",
                           path=folder)
    info: dict = {"folder": str(folder)}
    if (folder / ENGINE_MANIFEST_FILE).is_file():
        return _choose_engine(folder, backend, precision, device, threads, info, ropts)
    if (folder / "manifest.json").is_file():
        m = read_export(folder, check_hashes=True)  # a swapped ONNX file must not run
        contract = ModelContract.from_dict(m["contract"])
        info["kind"] = "export"
        if backend == "tensorrt":
            raise StyleRTError("TensorRT runs engines, and this is an export folder.",
                               f"Build one: stylert build-engine {folder} --backend tensorrt --precision fp16", path=folder)
        if backend == "torch":
            return _torch(folder / m["checkpoint"]["path"], contract, precision, device, threads, info,
                          "torch requested: the reference PyTorch model from the export's checkpoint", ropts)
        if precision not in (None, "fp32"):
            raise StyleRTError(f"an export folder holds FP32 models; precision '{precision}' needs an engine.",
                               f"Build one: stylert build-engine {folder} --precision {precision}", path=folder)
        files = m["files"]
        if backend == "openvino":
            if device == "cuda":
                raise StyleRTError("OpenVINO runs on the CPU here, and device='cuda' was asked for.",
                                   "Use device='cpu' or 'auto' with backend='openvino'.")
            info.update(reason="openvino requested: the export's FP32 ONNX models on the CPU, computed in f32 "
                               f"(for bf16 or int8 build an engine: stylert build-engine {folder} --backend openvino --bf16)")
            return REGISTRY["openvino"].runner_class()(folder / files["encoder"]["path"], folder / files["decoder"]["path"],
                                                       contract, device="cpu", precision="fp32", threads=threads,
                                                       **ropts), info
        from .backends.onnxrt.runner import available_providers

        OnnxRuntimeRunner = REGISTRY["onnxruntime"].runner_class()

        gpu = cuda_device_count() > 0
        cuda_ep = "CUDAExecutionProvider" in available_providers()
        if device == "cuda" or (device == "auto" and gpu and cuda_ep):
            dev, why = "cuda", "ONNX Runtime's CUDA execution provider with IO binding (a GPU and onnxruntime-gpu are present)"
        else:
            dev = "cpu"
            why = ("ONNX Runtime on the CPU: " + ("device='cpu' was asked for" if device == "cpu" else
                   "no CUDA GPU here" if not gpu else "onnxruntime has no CUDA provider (install onnxruntime-gpu)"))
        if backend == "auto":
            why = "auto: the export's FP32 ONNX models in " + why
            if gpu:
                why += f"; for TensorRT build an engine: stylert build-engine {folder} --backend tensorrt"
        info.update(reason=why)
        return OnnxRuntimeRunner(folder / files["encoder"]["path"], folder / files["decoder"]["path"], contract,
                                 device=dev, precision="fp32", threads=threads, **ropts), info
    if (folder / "model.safetensors").is_file():
        info["kind"] = "checkpoint"
        if backend not in ("auto", "torch"):
            raise StyleRTError(f"a checkpoint folder runs on the torch backend only, not '{backend}'.",
                               f"Export it first: stylert export-onnx --checkpoint {folder} --out EXPORT_DIR", path=folder)
        return _torch(folder, None, precision, device, threads, info, "a checkpoint folder: the PyTorch reference", ropts)
    raise StyleRTError("is not a StyleRT model folder (no manifest.json, engine.json or model.safetensors).",
                       "Pass an export folder (`stylert export-onnx --out DIR`) or an engine folder (`stylert build-engine`).",
                       path=folder)


def _torch(ckpt: Path, contract, precision, device, threads, info, why, ropts):
    TorchRunner = REGISTRY["torch"].runner_class()

    if device == "auto":
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"  # the runner's load() raises the clear error
        why += f"; device auto -> {device}"
    precision = precision or ("fp16" if device == "cuda" else "fp32")
    info.update(reason=why + f", {precision}")
    return TorchRunner(ckpt, contract, device=device, precision=precision, threads=threads, **ropts), info


def _choose_engine(folder: Path, backend, precision, device, threads, info, ropts):
    from .manifest import backend_version, check_engine, current_device, read_engine_manifest

    m = read_engine_manifest(folder)
    info["kind"] = "engine"
    eb, ep = m["backend"], m["precision"]
    if backend not in ("auto", eb):
        raise StyleRTError(f"this is a {eb} engine, backend '{backend}' was asked for.",
                           f"Pass backend='{eb}' or 'auto', or load the export folder it was built from.", path=folder)
    if precision not in (None, ep):
        raise StyleRTError(f"this engine is {ep}, precision '{precision}' was asked for.",
                           f"Build a {precision} engine with `stylert build-engine --precision {precision}`.", path=folder)
    built = m.get("device") or {}
    flavour = built.get("flavour")
    try:
        here = current_device(eb)
    except Exception as e:  # no TensorRT / cuda-python / GPU here
        where = (f"a GPU of compute capability {', '.join(built['targets'])} with {flavour}" if built.get("targets")
                 else "the machine it was built on")
        raise StyleRTError(f"cannot run a {eb} engine on this machine: {e}.",
                           f"Run it on {where}, or load the export folder with backend='onnxruntime'.", path=folder) from None
    check_engine(m, backend_version(eb, flavour), here, folder=folder)
    runner, why = REGISTRY[eb].runner_class().from_engine(folder, m, ModelContract.from_dict(m["contract"]), device, threads, ropts)
    info.update(reason=why)
    return runner, info
