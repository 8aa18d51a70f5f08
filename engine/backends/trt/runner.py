"""TensorRT runner: the plans written by `stylert build-engine --backend tensorrt`.

Kept thin (../shared/notes/tensorrt.md): everything that does not need libnvinfer (shape
checks, mixing math, manifests) lives elsewhere and is tested there. tensorrt and
cuda-python are imported when the runner loads, never at module import.

Buffers have one owner, this runner: device buffers sized for the profile's maximum shape
(image in, latent and style code, mixed latent and code, image out), pinned host buffers for
the copies, all freed in
close(). One execution context per engine per thread (thread-local state), each with its own
stream and buffers, so concurrent callers never share a context (TensorRT's rule).

stylize_batch keeps the latent on the device: encoder -> AdaIN and code kernels (cuda_mix) into
the decoder's input buffers -> decoder, captured once per input shape as a CUDA graph and
replayed; when capture fails (execute_async_v3 returns False while capturing) the capture is
ended and the plain enqueue path is used for that shape.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ...contract import ModelContract
from ...cuda_mix import _ok
from ...errors import StyleRTError
from ..base import Runner


class TensorRTRunner(Runner):
    name = "tensorrt"
    thread_safe = True  # per-thread contexts, streams and buffers

    def __init__(self, encoder: str | os.PathLike, decoder: str | os.PathLike, contract: ModelContract,
                 precision: str = "fp16", max_batch: int = 1, side_range: tuple[int, int] | None = None,
                 cuda_graphs: bool = True, flavour: str | None = None):
        super().__init__(contract, "cuda", precision)
        self.paths = {"encoder": Path(encoder), "decoder": Path(decoder)}
        self.max_batch = max_batch
        self.side_range = side_range
        self.cuda_graphs = cuda_graphs
        self.flavour = flavour  # tensorrt | tensorrt_rtx: the library that built the plans
        self._tls = threading.local()
        self._all_state: list[dict] = []
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def load_impl(self) -> None:
        try:
            from cuda.bindings import runtime as cudart

            from .flavour import FLAVOURS, choose, module

            trt = module(FLAVOURS[self.flavour] if self.flavour in FLAVOURS else choose())
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
        self._runtime_configs = self._load_runtime_caches() if self.flavour == "tensorrt_rtx" else {}
        from ...cuda_mix import AdaINMixer

        self._mixer = AdaINMixer()

    # TensorRT-RTX compiles kernels just in time on the first run on a GPU (seconds, and again
    # per new shape); its runtime cache keeps them. Saved per machine (GPU, driver, library
    # version in the file name) beside the other caches and reused at every start.
    def _runtime_cache_path(self, role: str):
        from ...artifacts import cache_root
        from ...cuda_mix import gpu_info

        g = gpu_info()
        tag = f"{g['name']}-cc{g['compute_capability']}-drv{g['driver']}-rtx{self._trt.__version__}".replace(" ", "_")
        return cache_root() / "tensorrt_rtx-runtime" / f"{self.paths[role].stem}-{tag}.cache"

    def _load_runtime_caches(self) -> dict:
        configs = {}
        for role, engine in self._engines.items():
            rc = engine.create_runtime_config()
            cache = rc.create_runtime_cache()
            path = self._runtime_cache_path(role)
            if path.is_file() and not cache.deserialize(path.read_bytes()):
                path.unlink(missing_ok=True)  # another GPU, driver or version: rebuilt on this run
            rc.set_runtime_cache(cache)
            configs[role] = (rc, cache, path)
        return configs

    def _save_runtime_caches(self) -> None:
        from ...images import atomic_write_bytes

        for rc, cache, path in self._runtime_configs.values():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, bytes(cache.serialize()))
            except OSError:
                pass  # a read-only home: compiled again next start

    @classmethod
    def from_engine(cls, folder, manifest, contract, device, threads, options):
        files, p, prof = manifest["files"], manifest["precision"], manifest.get("profile") or {}
        side = (prof["min_size"], prof["max_size"]) if "min_size" in prof and "max_size" in prof else None
        runner = cls(Path(folder) / files["encoder"]["path"], Path(folder) / files["decoder"]["path"], contract,
                     precision=p, max_batch=int(prof.get("max_batch", 1)), side_range=side,
                     flavour=(manifest.get("device") or {}).get("flavour"), **options)
        return runner, f"a {p} TensorRT engine folder, checked against this GPU and this TensorRT version"

    def _state(self) -> dict:
        """This thread's contexts, stream and buffers (created on first use)."""
        st = getattr(self._tls, "state", None)
        if st is None:
            cudart = self._cudart
            st = {"ctx": {r: (e.create_execution_context(self._runtime_configs[r][0]) if r in self._runtime_configs
                              else e.create_execution_context()) for r, e in self._engines.items()},
                  "stream": int(_ok(cudart.cudaStreamCreate(), "cudaStreamCreate")), "bufs": {}, "graphs": {}}
            lo_hi = self.side_range or (self.contract.downsample, 4096)
            n, side, c, d = self.max_batch, lo_hi[1], self.contract.latent_channels, self.contract.downsample
            sizes = {"image_in": n * 3 * side * side, "latent": n * c * (side // d) ** 2,
                     "latent_mix": n * c * (side // d) ** 2, "image_out": n * 3 * side * side,
                     "code": n * self.contract.style_size, "code_mix": n * self.contract.style_size}
            for k, floats in sizes.items():
                st["bufs"][k] = int(_ok(cudart.cudaMalloc(4 * floats), "cudaMalloc"))
            st["host_in"] = int(_ok(cudart.cudaMallocHost(4 * sizes["image_in"]), "cudaMallocHost"))
            st["host_out"] = int(_ok(cudart.cudaMallocHost(4 * sizes["image_out"]), "cudaMallocHost"))
            self._tls.state = st
            with self._state_lock:
                self._all_state.append(st)
        return st

    # ------------------------------------------------------------------ enqueue pieces
    def _enqueue(self, st, role: str, ptrs: dict[str, int], in_shapes: dict[str, tuple]) -> None:
        """Bind the role's tensors by their contract names (ptrs) and enqueue it."""
        ctx = st["ctx"][role]
        for name, shape in in_shapes.items():
            ctx.set_input_shape(name, tuple(shape))
        for name, ptr in ptrs.items():
            ctx.set_tensor_address(name, ptr)
        if not ctx.execute_async_v3(st["stream"]):
            raise RuntimeError(f"execute_async_v3 failed for the {role}")

    def _encoder(self, st, x_shape, image: int, latent: int, code: int) -> None:
        c = self.contract
        self._enqueue(st, "encoder", {c.image.name: image, c.latent.name: latent, c.style.name: code},
                      {c.image.name: x_shape})

    def _decoder(self, st, z_shape, latent: int, code: int, image: int) -> None:
        c = self.contract
        self._enqueue(st, "decoder", {c.latent.name: latent, c.style.name: code, c.image.name: image},
                      {c.latent.name: z_shape, c.style.name: c.style_shape(z_shape[0])})

    def _h2d(self, st, host_arr: np.ndarray, dst: int, offset: int = 0) -> None:
        """Stage through the pinned buffer at `offset` floats: two copies in flight on one
        stream (latent and code) must not share staging memory."""
        cudart = self._cudart
        src = st["host_in"] + 4 * offset
        pinned = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * host_arr.size).from_address(src))
        pinned[:] = host_arr.reshape(-1)
        _ok(cudart.cudaMemcpyAsync(dst, src, host_arr.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
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
        st = self._state()
        b = st["bufs"]
        self._h2d(st, x, b["image_in"])
        self._encoder(st, x.shape, b["image_in"], b["latent"], b["code"])
        z = self._d2h(st, b["latent"], self.contract.latent_shape(x.shape[0], x.shape[2], x.shape[3]))
        return z, self._d2h(st, b["code"], self.contract.style_shape(x.shape[0]))

    def decode_impl(self, z, s):
        st = self._state()
        b = st["bufs"]
        self._h2d(st, z, b["latent"])
        self._h2d(st, s, b["code"], offset=z.size)  # the staging buffer holds an image: room for both
        d = self.contract.downsample
        self._decoder(st, z.shape, b["latent"], b["code"], b["image_out"])
        return self._d2h(st, b["image_out"], (z.shape[0], 3, z.shape[2] * d, z.shape[3] * d))

    def stylize_batch_impl(self, x, style, strength):
        st = self._state()
        b = st["bufs"]
        n, k = x.shape[0], style.shape[1] // 2
        zshape = self.contract.latent_shape(n, x.shape[2], x.shape[3])
        self._h2d(st, x, b["image_in"])
        stride = self._mixer.set_style(style[:, :k].copy(), style[:, k:].copy(), st["stream"])  # outside the graph

        def body():
            self._encoder(st, x.shape, b["image_in"], b["latent"], b["code"])
            self._mixer.launch(b["latent"], b["latent_mix"], zshape, stride, strength, st["stream"])
            self._mixer.launch_code(b["code"], b["code_mix"], n, k, stride, strength, st["stream"])
            self._decoder(st, zshape, b["latent_mix"], b["code_mix"], b["image_out"])

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
        self._save_runtime_caches()
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
