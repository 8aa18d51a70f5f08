"""The one runner interface every backend implements (Polygraphy's BaseRunner shape).

Public methods (`load`, `encode`, `decode`, `stylize_batch`, `close`) check the runner's state and
validate inputs once; backends override only the small `*_impl` hooks. Arrays cross this
interface as host NumPy float32: image (N, 3, H, W) in [0, 1], latent (N, C, H/d, W/d) (d: the contract's downsample) and
style code or offset (N, 2K) (engine/contract.py).
What happens in between (device buffers, streams, graphs) never leaks to the caller.

Concurrency: a runner with `thread_safe = True` may be called from many threads at once
(its implementation keeps per-thread state or the library guarantees it); otherwise the base
serializes calls with one lock.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..contract import ModelContract
from ..errors import StyleRTError
from ..images import RANGE_TOLERANCE
from .. import mixing


class Runner:
    name = "base"
    # True: calls may overlap (ORT sessions' run() is thread-safe; TensorRT keeps one
    # execution context per thread). False: the base serializes calls with a lock.
    thread_safe = True

    def __init__(self, contract: ModelContract, device: str = "cpu", precision: str = "fp32"):
        self.contract = contract
        self.device = device
        self.precision = precision
        # Largest batch one call may hold (an engine's optimization profile); None: unbounded.
        self.max_batch: int | None = None
        # Image side range (pixels) the artifact accepts; None: any multiple of downsample.
        self.side_range: tuple[int, int] | None = None
        self._loaded = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def load(self) -> "Runner":
        if not self._loaded:
            self.load_impl()
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self.close_impl()
            self._loaded = False

    def __enter__(self):
        return self.load()

    def __exit__(self, *exc):
        self.close()

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """image (N, 3, H, W) float32 in [0, 1] -> (latent (N, C, H/d, W/d), style code (N, 2K))."""
        x = self._check_image(x)
        with self._guard():
            z, s = self.encode_impl(x)
        return (self._check_out(z, self.contract.latent_shape(*_nhw(x)), "encode"),
                self._check_out(s, self.contract.style_shape(x.shape[0]), "encode"))

    def decode(self, z: np.ndarray, s: np.ndarray) -> np.ndarray:
        """latent (N, C, h, w), style offset (N, 2K) float32 -> image (N, 3, d*h, d*w) in [0, 1]."""
        z = self._check_latent(z)
        s = self._check_code(s, z.shape[0])
        d = self.contract.downsample
        with self._guard():
            y = self.decode_impl(z, s)
        return self._check_out(y, (z.shape[0], 3, z.shape[2] * d, z.shape[3] * d), "decode")

    def stylize_batch(self, x: np.ndarray, style: np.ndarray, strength: float = 1.0) -> np.ndarray:
        """encode -> mix towards the style code ((2K,) or (N, 2K)) -> decode, in one call so a
        device backend can keep the latent on the device (and replay a CUDA graph)."""
        x = self._check_image(x)
        mixing.check_strength(strength)
        s = self._check_code(np.array(np.broadcast_to(np.asarray(style, np.float32).reshape(-1, self.contract.style_size),
                                                      (x.shape[0], self.contract.style_size))), x.shape[0])
        with self._guard():
            y = self.stylize_batch_impl(x, s, float(strength))
        return self._check_out(y, x.shape, "stylize_batch")

    @classmethod
    def from_engine(cls, folder, manifest: dict, contract: ModelContract, device: str, threads, options: dict):
        """The runner of a checked engine folder (engine.json read and verified by the
        runtime) -> (runner, the reason for the user). Backends that build engines override."""
        raise NotImplementedError(f"the {cls.name} backend builds no engine folders")

    def info(self) -> dict:
        """What this runner is running on: backend, device, precision, library versions."""
        return {"backend": self.name, "device": self.device, "precision": self.precision, **self.info_impl()}

    # ------------------------------------------------------------------ hooks
    def load_impl(self) -> None:
        raise NotImplementedError

    def encode_impl(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def decode_impl(self, z: np.ndarray, s: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def stylize_batch_impl(self, x: np.ndarray, style: np.ndarray, strength: float) -> np.ndarray:
        # Host composition; device backends override to stay on the device.
        z, own = self.encode_impl(x)
        t, s = mixing.mix_arrays(z, own, style, strength, self.contract.latent_channels)
        return self.decode_impl(t, s)

    def close_impl(self) -> None:
        pass

    def info_impl(self) -> dict:
        return {}

    # ------------------------------------------------------------------ validation
    @contextlib.contextmanager
    def _guard(self):
        if not self._loaded:
            raise StyleRTError(f"the {self.name} runner is not loaded.", "Call load() first (or use it as a context manager).")
        if self.thread_safe:
            yield
        else:
            with self._lock:
                yield

    def _check_batch(self, n: int) -> None:
        if n < 1:
            raise StyleRTError("empty batch.", "Pass at least one image.")
        if self.max_batch is not None and n > self.max_batch:
            raise StyleRTError(f"batch of {n} exceeds the engine's maximum batch {self.max_batch}.",
                               "Split the batch (Engine.stylize does), or rebuild with a larger --max-batch.")

    def _check_image(self, x) -> np.ndarray:
        x = np.asarray(x)
        d = self.contract.downsample
        if x.ndim != 4 or x.shape[1] != 3:
            raise StyleRTError(f"image batch has shape {x.shape}.", "Expected float32 (N, 3, H, W) in [0, 1].")
        if x.shape[2] % d or x.shape[3] % d or x.shape[2] == 0 or x.shape[3] == 0:
            raise StyleRTError(f"image size {x.shape[2]}x{x.shape[3]} is not a positive multiple of {d}.",
                               "Pad with stylert.engine.runtime.preprocess first (or call Engine.stylize, which does).")
        if not np.issubdtype(x.dtype, np.floating):
            raise StyleRTError(f"image batch has dtype {x.dtype}.", "Expected float32 in [0, 1] (stylert.engine.runtime.preprocess makes one).")
        self._check_batch(x.shape[0])
        _check_values(x, "image batch", 0.0, 1.0, "Scale images to [0, 1] (uint8 / 255); Engine.stylize does.")
        if self.side_range is not None:
            lo, hi = self.side_range
            if not (lo <= x.shape[2] <= hi and lo <= x.shape[3] <= hi):
                raise StyleRTError(f"image size {x.shape[2]}x{x.shape[3]} is outside the engine's profile {lo}..{hi}.",
                                   "Use tiling (Engine tile=) or rebuild the engine with --min-size/--max-size.")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _check_latent(self, z) -> np.ndarray:
        z = np.asarray(z)
        if z.ndim != 4 or z.shape[1] != self.contract.latent_channels or z.shape[2] == 0 or z.shape[3] == 0:
            raise StyleRTError(f"latent has shape {z.shape}.",
                               f"Expected (N, {self.contract.latent_channels}, h, w) from this model's encoder.")
        self._check_batch(z.shape[0])
        _check_values(z, "latent", None, None, "Pass latents from this model's encoder (Engine.encode / Engine.mix).")
        if self.side_range is not None:
            lo, hi = (v // self.contract.downsample for v in self.side_range)
            if not (lo <= z.shape[2] <= hi and lo <= z.shape[3] <= hi):
                raise StyleRTError(f"latent size {z.shape[2]}x{z.shape[3]} is outside the engine's profile {lo}..{hi}.",
                                   "Use tiling or rebuild the engine with a wider size range.")
        return np.ascontiguousarray(z, dtype=np.float32)

    def _check_code(self, s, n: int) -> np.ndarray:
        s = np.asarray(s)
        if s.shape != self.contract.style_shape(n):
            raise StyleRTError(f"style code has shape {s.shape}.",
                               f"Expected {self.contract.style_shape(n)} from this model's encoder.")
        if not np.all(np.isfinite(s)):
            raise StyleRTError("style code holds non-finite values.", "Re-encode the style with this engine.")
        return np.ascontiguousarray(s, dtype=np.float32)

    def _check_out(self, y, shape, what: str) -> np.ndarray:
        y = np.asarray(y)
        # The contract comes from a manifest beside the graphs, a file a user can edit: a graph
        # whose outputs disagree with it (an edited downsample or channel count) is refused here,
        # for every backend, whatever its load-time checks saw.
        if tuple(y.shape) != tuple(shape):
            raise StyleRTError(f"the {self.name} {what} returned shape {tuple(y.shape)} where the model's contract "
                               f"(downsample {self.contract.downsample}, {self.contract.latent_channels} latent channels, "
                               f"style code of {self.contract.style_size}) promises {tuple(shape)}.",
                               "The folder's manifest (manifest.json / engine.json) was edited or belongs to other files: "
                               "re-export with `stylert export-onnx` (and rebuild engines).")
        return y.astype(np.float32, copy=False)


def check_graph_shapes(contract: ModelContract, role: str, shapes: dict, path) -> None:
    """Refuse a graph whose fixed channel dimensions disagree with the contract that describes
    it (a manifest edited, or files of two models in one folder): it would run and give a
    wrong picture, or fail deep inside the backend. `shapes`: tensor name -> dims (ints for
    fixed dimensions, anything else for dynamic ones)."""
    want = {contract.image.name: 3, contract.latent.name: contract.latent_channels, contract.style.name: contract.style_size}
    for name, dims in shapes.items():
        got = dims[1] if len(dims) > 1 else None
        if isinstance(got, int) and got > 0 and name in want and got != want[name]:
            raise StyleRTError(f"the {role}'s {name} has {got} channels, its contract says {want[name]}.",
                               "The folder mixes files of two models or its manifest was edited; re-export it.", path=path)




def _check_values(a: np.ndarray, what: str, lo: float | None, hi: float | None, note: str) -> None:
    """Refuse NaN or infinite values, and values outside [lo, hi] (a wrong scale, e.g. 0..255)."""
    amin, amax = float(a.min()), float(a.max())  # NaN and +-inf show up in these (one pass each)
    if not (np.isfinite(amin) and np.isfinite(amax)):
        raise StyleRTError(f"{what} holds NaN or infinite values.", note)
    if lo is not None and (amin < lo - RANGE_TOLERANCE or amax > hi + RANGE_TOLERANCE):
        raise StyleRTError(f"{what} values span [{amin:.4g}, {amax:.4g}], outside [{lo:g}, {hi:g}].", note)


def _nhw(x: np.ndarray) -> tuple[int, int, int]:
    return x.shape[0], x.shape[2], x.shape[3]
