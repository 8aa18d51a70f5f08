"""AdaIN on the device: kernels/adain.cu compiled at run time by NVRTC through cuda-python.

Compilation (`compile_ptx`) needs only the NVRTC library (pip: cuda-python and
nvidia-cuda-nvrtc), no GPU and no CUDA toolkit, so it is tested everywhere. The PTX is cached
in memory and on disk (~/.cache/stylert/kernels, keyed by the source's hash, the NVRTC
version, the architecture and the options). `AdaINMixer` loads it into the current CUDA
context and launches it on a caller's stream: it reads the content latent's device buffer,
computes the per-channel statistics and writes the mixed latent into another device buffer
(the decoder's input), so nothing goes through the host.

Every cuda-python call returns (err, *results); `_ok` checks err on every one. Handles and
pointers are passed around as plain ints (cuda-bindings 13 deprecates int() on handles).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import StyleRTError
from .mixing import EPS

KERNEL_FILE = "adain.cu"
KERNEL_NAME = "adain_mix"
CODE_KERNEL_NAME = "style_offset"  # the decoder's style input: strength x (style - own), (N, 2K)
BLOCK = 256  # threads per block; must match ADAIN_BLOCK (passed as a define below)
NVRTC_OPTIONS = ("--std=c++17", f"-DADAIN_BLOCK={BLOCK}")  # no fast math: must match NumPy
DEFAULT_ARCH = "compute_75"  # the oldest architecture NVRTC 13 targets; PTX JITs forward


def kernel_source() -> str:
    """The kernel's CUDA C++ source, shipped as package data."""
    return resources.files("stylert.engine").joinpath("kernels", KERNEL_FILE).read_text()


def _ok(result, what: str):
    """Check a cuda-python (err, *values) tuple; return the values."""
    err, *vals = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise StyleRTError(f"CUDA call {what} failed: {err!r}.",
                           "Check the driver and the GPU (nvidia-smi); the CPU path still works with device='cpu'.")
    return vals[0] if len(vals) == 1 else tuple(vals)


def nvrtc_version() -> tuple[int, int]:
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        raise ImportError(f"cuda-python is not installed ({e}); pip install cuda-python nvidia-cuda-nvrtc") from None
    try:
        return tuple(_ok(nvrtc.nvrtcVersion(), "nvrtcVersion"))
    except Exception as e:  # cuda.pathfinder raises when libnvrtc.so is absent
        if isinstance(e, StyleRTError):
            raise
        raise ImportError(f"NVRTC library not found ({type(e).__name__}); pip install nvidia-cuda-nvrtc") from None


def _cache_dir() -> Path:
    from .artifacts import cache_root

    return cache_root() / "kernels"


@functools.lru_cache(maxsize=8)
def compile_ptx(arch: str = DEFAULT_ARCH, use_disk_cache: bool = True) -> bytes:
    """Compile the AdaIN kernel to PTX for `arch` (e.g. "compute_90"). Raises ImportError
    when cuda-python or the NVRTC library is missing, StyleRTError with NVRTC's log when the
    source does not compile."""
    from cuda.bindings import nvrtc

    ver = nvrtc_version()
    src = kernel_source()
    opts = (*NVRTC_OPTIONS, f"--gpu-architecture={arch}")
    key = hashlib.sha256("\0".join([src, repr(ver), *opts]).encode()).hexdigest()[:24]
    cached = _cache_dir() / f"adain-{key}.ptx"
    if use_disk_cache and cached.is_file():
        return cached.read_bytes()
    prog = _ok(nvrtc.nvrtcCreateProgram(src.encode(), KERNEL_FILE.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        err, = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
        if int(err) != 0:
            size = _ok(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            _ok(nvrtc.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
            raise StyleRTError(f"NVRTC could not compile {KERNEL_FILE} for {arch}: {log.decode(errors='replace').strip()}",
                               "The kernel source or the architecture is wrong; this is a bug, please report it.")
        size = _ok(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
        ptx = b" " * size
        _ok(nvrtc.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    ptx = ptx.rstrip(b"\0 ") + b"\0"
    if use_disk_cache:
        try:
            from .images import atomic_write_bytes

            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cached, ptx)
        except OSError:
            pass  # a read-only home: compile again next time
    return ptx


def cuda_device_count() -> int:
    """Number of CUDA devices cuda-python sees; 0 when cuda-python, the driver or a GPU is
    missing (never raises)."""
    if sys.platform == "linux" and not any(os.path.exists(d) for d in ("/dev/nvidiactl", "/dev/dxg")):
        return 0  # no NVIDIA driver (WSL2's is /dev/dxg): skip cuda-python's 80 ms import
    try:
        from cuda.bindings import runtime as cudart

        err, n = cudart.cudaGetDeviceCount()
        return int(n) if int(err) == 0 else 0
    except Exception:
        return 0


class AdaINMixer:
    """The compiled kernel loaded into the current device's primary context.

    Owns one small device buffer for the style statistics (2 x N x C float32), grown on
    demand and freed by close(). `set_style` copies statistics in (not capturable into a CUDA
    graph from pageable memory: call it before the graph launch); `launch` only enqueues the
    kernel and may be captured.
    """

    def __init__(self, device: int = 0):
        from cuda.bindings import driver, runtime as cudart

        self._driver, self._cudart = driver, cudart
        if cuda_device_count() == 0:
            raise StyleRTError("no CUDA device for the AdaIN kernel.", "Mixing falls back to NumPy on the host.")
        _ok(cudart.cudaSetDevice(device), "cudaSetDevice")
        _ok(cudart.cudaFree(0), "cudaFree(0)")  # creates the primary context the driver API then uses
        major = _ok(cudart.cudaDeviceGetAttribute(cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, device), "attr")
        minor = _ok(cudart.cudaDeviceGetAttribute(cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, device), "attr")
        self.arch = f"compute_{major}{minor}"
        ptx = compile_ptx(self.arch)
        self._module = _ok(driver.cuModuleLoadData(ptx), "cuModuleLoadData")
        self._func = _ok(driver.cuModuleGetFunction(self._module, KERNEL_NAME.encode()), "cuModuleGetFunction")
        self._code_func = _ok(driver.cuModuleGetFunction(self._module, CODE_KERNEL_NAME.encode()), "cuModuleGetFunction")
        self._stats_ptr = 0
        self._stats_cap = 0  # floats

    def _ensure_stats(self, n_floats: int) -> None:
        if n_floats > self._stats_cap:
            if self._stats_ptr:
                _ok(self._cudart.cudaFree(self._stats_ptr), "cudaFree")
            self._stats_ptr = int(_ok(self._cudart.cudaMalloc(4 * n_floats), "cudaMalloc"))
            self._stats_cap = n_floats

    def set_style(self, style_mean: np.ndarray, style_std: np.ndarray, stream: int = 0) -> int:
        """Copy (N, C) or (C,) statistics to the device; returns the style stride (C or 0)."""
        sm = np.ascontiguousarray(style_mean, np.float32)
        ss = np.ascontiguousarray(style_std, np.float32)
        both = np.concatenate([sm.reshape(-1), ss.reshape(-1)])
        self._ensure_stats(both.size)
        self._half = sm.size
        _ok(self._cudart.cudaMemcpyAsync(self._stats_ptr, both.ctypes.data, both.nbytes,
                                         self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync")
        # pageable source: the copy is staged before cudaMemcpyAsync returns, `both` may go
        return sm.shape[-1] if sm.ndim == 2 and sm.shape[0] > 1 else 0

    def launch(self, src: int, dst: int, shape, style_stride: int, strength: float, stream: int = 0) -> None:
        """Enqueue AdaIN of the (N, C, h, w) float32 latent at `src` into `dst` (may equal src)."""
        n, c, h, w = (int(v) for v in shape)
        args = (
            (src, dst, self._stats_ptr, self._stats_ptr + 4 * self._half, c, h * w, style_stride, float(strength), float(EPS)),
            (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
             ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float),
        )
        _ok(self._driver.cuLaunchKernel(self._func, n * c, 1, 1, BLOCK, 1, 1, 0, stream, args, 0), "cuLaunchKernel")

    def launch_code(self, own: int, dst: int, n: int, k: int, style_stride: int, strength: float, stream: int = 0) -> None:
        """Enqueue the decoder's style input: dst (N, 2K) = strength * (style - own), the style
        being the statistics last given to `set_style` as (N or 1, K) rows."""
        args = (
            (own, dst, self._stats_ptr, self._stats_ptr + 4 * self._half, int(n), int(k), style_stride, float(strength)),
            (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
             ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float),
        )
        grid = (2 * n * k + BLOCK - 1) // BLOCK
        _ok(self._driver.cuLaunchKernel(self._code_func, grid, 1, 1, BLOCK, 1, 1, 0, stream, args, 0), "cuLaunchKernel")

    def synchronize(self, stream: int = 0) -> None:
        _ok(self._cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def mix_device(self, src: int, dst: int, shape, style_mean, style_std, strength: float,
                   stream: int = 0, sync: bool = False) -> None:
        stride = self.set_style(style_mean, style_std, stream)
        self.launch(src, dst, shape, stride, strength, stream)
        if sync:
            self.synchronize(stream)

    def close(self) -> None:
        if self._stats_ptr:
            self._cudart.cudaFree(self._stats_ptr)
            self._stats_ptr, self._stats_cap = 0, 0
        if getattr(self, "_module", None) is not None:
            self._driver.cuModuleUnload(self._module)
            self._module = None


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
