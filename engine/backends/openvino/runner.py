"""OpenVINO runner: the CPU path of choice on x86 (and Intel GPUs where present).

Reads the same ONNX files as ONNX Runtime: an export's FP32 models or an engine folder's
precision models (INT8 Q/DQ from the one calibration every backend shares). The float parts
run in the precision `hint` asks for: bf16 where the CPU computes it natively (AVX512_BF16 or
AMX: OpenVINO reports BF16 among its capabilities), else f32. Compiled models are cached in
<cache>/openvino, so a second start skips compilation.

Thread safety: a compiled model is shared; each thread gets its own infer request (OpenVINO's
documented pattern), so the runner is `thread_safe`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ...contract import ModelContract
from ...errors import StyleRTError
from ..base import Runner, check_graph_shapes

INSTALL = "pip install 'stylert[openvino]'"


def native_bf16(core=None, device: str = "CPU") -> bool:
    """Whether OpenVINO computes bf16 natively on this device (not emulated)."""
    import openvino as ov

    core = core or ov.Core()
    try:
        return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def float_hint(precision: str, core=None, device: str = "CPU") -> str:
    """The INFERENCE_PRECISION_HINT for an artifact of `precision`: fp32 files run exactly
    (f32); bf16 engines, and the float parts of int8 engines, in bf16 where it is native."""
    if precision == "fp32":
        return "f32"
    if precision in ("bf16", "int8") and native_bf16(core, device):
        return "bf16"
    return "f32"


def check_io(compiled, contract: ModelContract, role: str, path) -> tuple[list[str], list[str]]:
    """The (input, output) names of a compiled model as the contract names them, or
    StyleRTError. A tensor has a set of names in OpenVINO: when the graph folds a constant into
    an input (the decoder of a model whose style head is still zero, as the VAE stage leaves
    it, multiplies `style` by zeros), `style` gains a second name ("mul"), so the contract's
    name is looked for in the set, not compared with whichever name comes first. build-engine's
    gate and the runtime both check here, so an engine that passes its gate loads."""
    want_in, want_out = ([t.name for t in specs] for specs in contract.io(role))
    got_in = [w if w in p.get_names() else p.get_any_name() for p, w in zip(compiled.inputs, want_in + [""] * len(compiled.inputs))]
    got_out = [w if w in p.get_names() else p.get_any_name() for p, w in zip(compiled.outputs, want_out + [""] * len(compiled.outputs))]
    if (got_in, got_out) != (want_in, want_out):
        raise StyleRTError(f"{role} has inputs {got_in} and outputs {got_out}, expected {want_in} and {want_out}.",
                           "Re-export with `stylert export-onnx`.", path=path)
    return got_in, got_out


class OpenVINORunner(Runner):
    name = "openvino"
    thread_safe = True

    def __init__(self, encoder: str | os.PathLike, decoder: str | os.PathLike, contract: ModelContract,
                 device: str = "cpu", precision: str = "fp32", threads: int | None = None,
                 ov_device: str = "CPU", hint: str | None = None, cache: str | os.PathLike | None = None):
        """ov_device: OpenVINO's device name (CPU, GPU for an Intel GPU). hint: f32 | bf16 |
        f16 (None: float_hint(precision)). cache: the compiled-model cache folder (None:
        <cache_root>/openvino; "" turns it off)."""
        super().__init__(contract, device, precision)
        self.paths = {"encoder": Path(encoder), "decoder": Path(decoder)}
        self.threads, self.ov_device, self.hint = threads, ov_device, hint
        self.cache = cache
        self._compiled: dict = {}
        self._local = threading.local()
        self._load_seconds = None

    @classmethod
    def from_engine(cls, folder, manifest, contract, device, threads, options):
        if device == "cuda":
            raise StyleRTError("an OpenVINO engine runs on the CPU (or an Intel GPU), not CUDA.",
                               "Use device='cpu' or 'auto'.", path=folder)
        files, p = manifest["files"], manifest["precision"]
        opts = {"hint": manifest.get("build", {}).get("flags", {}).get("inference_precision_hint"), **options}
        runner = cls(Path(folder) / files["encoder"]["path"], Path(folder) / files["decoder"]["path"], contract,
                     device="cpu", precision=p, threads=threads, **opts)
        return runner, f"a {p} OpenVINO engine folder built for this CPU"

    def load_impl(self) -> None:
        import time

        try:
            import openvino as ov
        except ImportError:
            raise StyleRTError("the openvino backend needs OpenVINO, which is not installed.", INSTALL) from None
        from ...artifacts import cache_root, writable_dir

        core = ov.Core()
        if self.cache != "":
            # a cache folder that cannot be written: compiled at every start instead (a warning says so)
            folder = writable_dir(Path(self.cache) if self.cache else cache_root() / "openvino")
            if folder is not None:
                core.set_property({"CACHE_DIR": os.fspath(folder)})
        if self.ov_device not in core.available_devices:
            raise StyleRTError(f"OpenVINO has no device {self.ov_device!r} here (it has {', '.join(core.available_devices)}).",
                               "Use ov_device='CPU'.")
        self.hint = self.hint or float_hint(self.precision, core, self.ov_device)
        config = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        t0 = time.perf_counter()
        for role, path in self.paths.items():
            if not path.is_file():
                raise StyleRTError(f"{role} model is missing.", "Re-run `stylert export-onnx` / `stylert build-engine`.", path=path)
            try:
                compiled = core.compile_model(os.fspath(path), self.ov_device, config)
            except RuntimeError as e:
                raise StyleRTError(f"OpenVINO cannot load the {role}: {str(e).strip().splitlines()[0]}.",
                                   "The file is corrupt or not an ONNX model; re-export it.", path=path) from None
            got_in, got_out = check_io(compiled, self.contract, role, path)
            dims = {name: [d.get_length() if d.is_static else None for d in p.get_partial_shape()]
                    for name, p in zip(got_in + got_out, (*compiled.inputs, *compiled.outputs))}
            check_graph_shapes(self.contract, role, dims, path)
            self._compiled[role] = compiled
        self._load_seconds = time.perf_counter() - t0

    def _request(self, role: str):
        reqs = getattr(self._local, "requests", None)
        if reqs is None or reqs.get("_owner") is not self._compiled.get(role):
            reqs = self._local.requests = {"_owner": self._compiled.get(role)}
        if role not in reqs:
            reqs[role] = self._compiled[role].create_infer_request()
        return reqs[role]

    def _run(self, role: str, *arrays: np.ndarray) -> list[np.ndarray]:
        req = self._request(role)
        req.infer(list(arrays))
        # the request's output tensors are reused by its next call: copy them out
        return [np.array(req.get_output_tensor(i).data, copy=True) for i in range(len(self._compiled[role].outputs))]

    def encode_impl(self, x):
        z, s = self._run("encoder", x)
        return z, s

    def decode_impl(self, z, s):
        return self._run("decoder", z, s)[0]

    def close_impl(self) -> None:
        self._compiled.clear()
        self._local = threading.local()

    def info_impl(self) -> dict:
        import openvino as ov

        return {"openvino": ov.__version__, "ov_device": self.ov_device, "inference_precision_hint": self.hint,
                "compile_seconds": None if self._load_seconds is None else round(self._load_seconds, 3),
                "files": {k: str(v) for k, v in self.paths.items()}}


class Session:
    """An OpenVINO compiled model behind the one method build-engine's accuracy check and
    precision.run_batched call on ONNX Runtime sessions: run(None, feeds) -> outputs."""

    def __init__(self, path: str | os.PathLike, hint: str, threads: int | None = None,
                 contract: ModelContract | None = None, role: str | None = None):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled = ov.Core().compile_model(os.fspath(path), "CPU", config)
        if contract is not None:  # the runtime's own check: what passes the gate loads
            check_io(self._compiled, contract, role, path)
        self._req = self._compiled.create_infer_request()

    def run(self, _names, feeds: dict) -> list[np.ndarray]:
        self._req.infer(feeds)
        return [np.array(self._req.get_output_tensor(i).data, copy=True) for i in range(len(self._compiled.outputs))]
