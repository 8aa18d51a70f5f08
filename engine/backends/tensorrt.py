"""TensorRT runner: the plans written by `stylert build-engine --backend tensorrt`.

Kept thin (../shared/notes/tensorrt.md): everything that does not need libnvinfer (shape
checks, mixing math, manifests) lives elsewhere and is tested there. tensorrt and
cuda-python are imported when the runner loads, never at module import.

Buffers have one owner, this runner: device buffers sized for the profile's maximum shape
(image in, latent, mixed latent, image out), pinned host buffers for the copies, all freed in
close(). One execution context per engine per thread (thread-local state), each with its own
stream and buffers, so concurrent callers never share a context (TensorRT's rule).

run_adain keeps the latent on the device: encoder -> AdaIN kernel (cuda_mix) into the
decoder's input buffer -> decoder, captured once per input shape as a CUDA graph and
replayed; when capture fails (execute_async_v3 returns False while capturing) the capture is
ended and the plain enqueue path is used for that shape.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..contract import ModelContract
from ..cuda_mix import _ok
from ..errors import StyleRTError
from .base import Runner


class TensorRTRunner(Runner):
    name = "tensorrt"
    thread_safe = True  # per-thread contexts, streams and buffers

    def __init__(self, encoder: str | os.PathLike, decoder: str | os.PathLike, contract: ModelContract,
                 precision: str = "fp16", max_batch: int = 1, side_range: tuple[int, int] | None = None,
                 cuda_graphs: bool = True):
        super().__init__(contract, "cuda", precision)
        self.paths = {"encoder": Path(encoder), "decoder": Path(decoder)}
        self.max_batch = max_batch
        self.side_range = side_range
        self.cuda_graphs = cuda_graphs
        self._tls = threading.local()
        self._all_state: list[dict] = []
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def load_impl(self) -> None:
        try:
            import tensorrt as trt
            from cuda.bindings import runtime as cudart
        except ImportError as e:
            raise StyleRTError(f"the tensorrt backend needs TensorRT and cuda-python: {e}.",
                               "pip install 'stylert[gpu]' on a machine with an NVIDIA GPU, or use backend='onnxruntime'.") from None
        self._trt, self._cudart = trt, cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self._engines = {}
        for role, path in self.paths.items():
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise StyleRTError(f"TensorRT could not deserialize the {role} plan.",
                                   "It was built by another TensorRT version or GPU; rebuild with `stylert build-engine`.", path=path)
            self._engines[role] = engine
        from ..cuda_mix import AdaINMixer

        self._mixer = AdaINMixer()

    def _state(self) -> dict:
        """This thread's contexts, stream and buffers (created on first use)."""
        st = getattr(self._tls, "state", None)
        if st is None:
            cudart = self._cudart
            st = {"ctx": {r: e.create_execution_context() for r, e in self._engines.items()},
                  "stream": int(_ok(cudart.cudaStreamCreate(), "cudaStreamCreate")), "bufs": {}, "graphs": {}}
            lo_hi = self.side_range or (self.contract.downsample, 4096)
            n, side, c, d = self.max_batch, lo_hi[1], self.contract.latent_channels, self.contract.downsample
            sizes = {"image_in": n * 3 * side * side, "latent": n * c * (side // d) ** 2,
                     "latent_mix": n * c * (side // d) ** 2, "image_out": n * 3 * side * side}
            for k, floats in sizes.items():
                st["bufs"][k] = int(_ok(cudart.cudaMalloc(4 * floats), "cudaMalloc"))
            st["host_in"] = int(_ok(cudart.cudaMallocHost(4 * sizes["image_in"]), "cudaMallocHost"))
            st["host_out"] = int(_ok(cudart.cudaMallocHost(4 * sizes["image_out"]), "cudaMallocHost"))
            self._tls.state = st
            with self._state_lock:
                self._all_state.append(st)
        return st

    # ------------------------------------------------------------------ enqueue pieces
    def _enqueue(self, st, role: str, in_ptr: int, out_ptr: int, in_shape) -> None:
        ctx = st["ctx"][role]
        eng = self._engines[role]
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        inp = next(n for n in names if eng.get_tensor_mode(n) == self._trt.TensorIOMode.INPUT)
        out = next(n for n in names if n != inp)
        ctx.set_input_shape(inp, tuple(in_shape))
        ctx.set_tensor_address(inp, in_ptr)
        ctx.set_tensor_address(out, out_ptr)
        if not ctx.execute_async_v3(st["stream"]):
            raise RuntimeError(f"execute_async_v3 failed for the {role}")

    def _h2d(self, st, host_arr: np.ndarray, dst: int) -> None:
        cudart = self._cudart
        pinned = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * host_arr.size).from_address(st["host_in"]))
        pinned[:] = host_arr.reshape(-1)
        _ok(cudart.cudaMemcpyAsync(dst, st["host_in"], host_arr.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                   st["stream"]), "cudaMemcpyAsync")

    def _d2h(self, st, src: int, shape) -> np.ndarray:
        cudart = self._cudart
        nbytes = 4 * int(np.prod(shape))
        _ok(cudart.cudaMemcpyAsync(st["host_out"], src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                   st["stream"]), "cudaMemcpyAsync")
        _ok(cudart.cudaStreamSynchronize(st["stream"]), "cudaStreamSynchronize")
        view = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * int(np.prod(shape))).from_address(st["host_out"]))
        return view.reshape(shape).copy()

    def encode_impl(self, x):
        st, b = self._state(), None
        b = st["bufs"]
        self._h2d(st, x, b["image_in"])
        self._enqueue(st, "encoder", b["image_in"], b["latent"], x.shape)
        return self._d2h(st, b["latent"], self.contract.latent_shape(x.shape[0], x.shape[2], x.shape[3]))

    def decode_impl(self, z):
        st = self._state()
        b = st["bufs"]
        self._h2d(st, z, b["latent"])
        d = self.contract.downsample
        self._enqueue(st, "decoder", b["latent"], b["image_out"], z.shape)
        return self._d2h(st, b["image_out"], (z.shape[0], 3, z.shape[2] * d, z.shape[3] * d))

    def run_adain_impl(self, x, sm, ss, strength):
        st = self._state()
        b = st["bufs"]
        zshape = self.contract.latent_shape(x.shape[0], x.shape[2], x.shape[3])
        self._h2d(st, x, b["image_in"])
        stride = self._mixer.set_style(sm, ss, st["stream"])  # outside the graph: pageable copy

        def body():
            self._enqueue(st, "encoder", b["image_in"], b["latent"], x.shape)
            self._mixer.launch(b["latent"], b["latent_mix"], zshape, stride, strength, st["stream"])
            self._enqueue(st, "decoder", b["latent_mix"], b["image_out"], zshape)

        key = (x.shape, stride, strength)
        graph = st["graphs"].get(key) if self.cuda_graphs else None
        if self.cuda_graphs and key not in st["graphs"]:
            graph = st["graphs"][key] = self._capture(st, body)
        if graph:
            _ok(self._cudart.cudaGraphLaunch(graph, st["stream"]), "cudaGraphLaunch")
        else:
            body()
        return self._d2h(st, b["image_out"], x.shape)

    def _capture(self, st, body):
        """Run once outside capture (TensorRT's lazy setup), then capture; None on failure."""
        cudart = self._cudart
        body()
        _ok(cudart.cudaStreamSynchronize(st["stream"]), "cudaStreamSynchronize")
        _ok(cudart.cudaStreamBeginCapture(st["stream"], cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
            "cudaStreamBeginCapture")
        try:
            body()
        except RuntimeError:
            cudart.cudaStreamEndCapture(st["stream"])
            return None
        graph = _ok(cudart.cudaStreamEndCapture(st["stream"]), "cudaStreamEndCapture")
        err, exe = cudart.cudaGraphInstantiate(graph, 0)
        cudart.cudaGraphDestroy(graph)
        return exe if int(err) == 0 else None

    def close_impl(self) -> None:
        cudart = self._cudart
        with self._state_lock:
            for st in self._all_state:
                for g in st["graphs"].values():
                    if g:
                        cudart.cudaGraphExecDestroy(g)
                for p in st["bufs"].values():
                    cudart.cudaFree(p)
                cudart.cudaFreeHost(st["host_in"])
                cudart.cudaFreeHost(st["host_out"])
                cudart.cudaStreamDestroy(st["stream"])
                st["ctx"].clear()
            self._all_state.clear()
        self._tls = threading.local()
        self._mixer.close()
        self._engines = {}

    def info_impl(self) -> dict:
        return {"tensorrt": self._trt.__version__, "cuda_graphs": self.cuda_graphs, "max_batch": self.max_batch,
                "files": {k: str(v) for k, v in self.paths.items()}}
