"""The torch backend's runner (`BACKENDS["torch"]`): the reference, beside the model it runs.
FP32 on CPU or CUDA; on CUDA also FP16 with channels_last,
and CUDA graphs of encode -> mix -> decode per input shape.

Loads the checkpoint folder (model.safetensors + config.json) of an export
(`EXPORT/checkpoint`) through checkpoint.load_model; torch is imported only when the runner
loads. The runtime never imports this module: the backend table names it.

Thread safety: not declared thread-safe. The module itself is read-only under inference_mode,
but CUDA graphs own static input/output buffers, so the base serializes calls with a lock.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stylert.engine.contract import ModelContract
from stylert.engine.errors import StyleRTError
from stylert.engine.mixing import EPS
from stylert.engine.backends.base import Runner


def adain_tensor(z, sm, ss, strength=1.0):
    """mixing.adain on torch tensors (population variance, eps inside the sqrt), computed in
    FP32 and returned in z's dtype. z (N, C, h, w); sm, ss broadcastable to (N, C, 1, 1);
    strength a float or a 0-d tensor (a CUDA graph's static input)."""
    zf = z.float()
    mu = zf.mean(dim=(2, 3), keepdim=True)
    sigma = (zf.var(dim=(2, 3), keepdim=True, unbiased=False) + EPS).sqrt()
    t = (zf - mu) / sigma * ss + sm
    return (strength * t + (1.0 - strength) * zf).to(z.dtype)


class TorchRunner(Runner):
    name = "torch"
    thread_safe = False

    def __init__(self, checkpoint: str | os.PathLike, contract: ModelContract | None, device: str = "cpu",
                 precision: str = "fp32", threads: int | None = None, cuda_graphs: bool = True,
                 channels_last: bool | None = None, compile: bool = False):
        """precision: fp32; fp16 (CUDA: half weights); bf16 (CPU: bf16 autocast, float32
        weights). channels_last: None = on CUDA only. compile: torch.compile the encoder and
        decoder (the first call per shape compiles)."""
        if precision not in ("fp32", "fp16", "bf16"):
            raise StyleRTError(f"the torch backend has no precision '{precision}'.", "Use fp32 (fp16 on CUDA, bf16 on the CPU).")
        if precision == "fp16" and device != "cuda":
            raise StyleRTError("torch FP16 runs on CUDA only.", "Use precision='fp32' on the CPU.")
        super().__init__(contract, device, precision)  # contract may be None until load()
        self.checkpoint = Path(checkpoint)
        self.threads = threads
        self.cuda_graphs = cuda_graphs and device == "cuda" and not compile
        self.channels_last = (device == "cuda") if channels_last is None else channels_last
        self.compile = compile
        self._graphs: dict = {}
        self.model = None
        self.sha256 = ""

    def load_impl(self) -> None:
        try:
            import torch
            from stylert.export.checkpoint import load_model
        except ImportError as e:
            raise StyleRTError(f"the torch backend needs PyTorch: {e}.",
                               "pip install 'stylert[export]', or use backend='onnxruntime'.") from None
        from stylert.export.checkpoint import contract_for

        model, sha = load_model(self.checkpoint)
        if model.decoder.style is None:
            raise StyleRTError("is a reconstruction-only model (no style head): it cannot stylize.",
                               "Train its style stage: `stylert train --stage style --init MODEL ...`.", path=self.checkpoint)
        if self.contract is None:
            self.contract = contract_for(model, sha)
        elif self.contract.checkpoint_sha256 and self.contract.checkpoint_sha256 != sha:
            raise StyleRTError("checkpoint weights differ from the ones the export was made from (sha256 mismatch).",
                               "Re-run `stylert export-onnx` so the folder holds one model.", path=self.checkpoint)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise StyleRTError("torch sees no CUDA device.", "Use device='cpu', or install a CUDA build of torch.")
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.sha256 = sha
        self._torch = torch
        self._dev = torch.device(self.device)
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self._autocast = self.precision == "bf16"
        m = model.to(self._dev, self._dtype)
        if self.channels_last:
            m = m.to(memory_format=torch.channels_last)
        self.model = m
        self._enc_fn, self._dec_fn = m.encoder.encode_with_style, m.decoder.image
        if self.compile:
            self._enc_fn, self._dec_fn = torch.compile(self._enc_fn), torch.compile(self._dec_fn)

    # --- the three pieces, as tensors
    def _enc(self, t):  # -> (latent, code)
        with self._torch.autocast(self._dev.type, dtype=self._torch.bfloat16, enabled=self._autocast):
            z, s = self._enc_fn(t)
        return z.float() if self._autocast else z, s.float() if self._autocast else s

    def _dec(self, z, s):
        with self._torch.autocast(self._dev.type, dtype=self._torch.bfloat16, enabled=self._autocast):
            y = self._dec_fn(z, s)
        return y.float() if self._autocast else y

    def _mix(self, z, own, style, strength):
        """mixing.mix_arrays on tensors: style (N, 2K); strength a float or a 0-d tensor."""
        c, k = self.contract.latent_channels, style.shape[1] // 2
        t = adain_tensor(z, style[:, :c, None, None], style[:, k:k + c, None, None], strength)
        return t, (strength * (style - own.float())).to(own.dtype)

    def _in(self, a: np.ndarray):
        t = self._torch.from_numpy(a).to(self._dev, self._dtype)
        return t.contiguous(memory_format=self._torch.channels_last) if (self.channels_last and t.ndim == 4) else t

    def _out(self, t) -> np.ndarray:
        return t.float().contiguous().cpu().numpy()

    def encode_impl(self, x):
        with self._torch.inference_mode():
            z, s = self._enc(self._in(x))
            return self._out(z), self._out(s)

    def decode_impl(self, z, s):
        with self._torch.inference_mode():
            return self._out(self._dec(self._in(z), self._in(s)))

    def stylize_batch_impl(self, x, style, strength):
        torch = self._torch
        if not self.cuda_graphs:
            with torch.inference_mode():
                z, own = self._enc(self._in(x))
                return self._out(self._dec(*self._mix(z, own, torch.from_numpy(style).to(self._dev), strength)))
        g = self._graphs.get(x.shape) or self._capture(x.shape)
        g["x"].copy_(self._in(x))
        g["style"].copy_(torch.from_numpy(style))
        g["a"].fill_(strength)
        g["graph"].replay()
        return self._out(g["y"])

    def _capture(self, shape):
        """One CUDA graph per input shape: static buffers in, encode -> mix -> decode, static
        buffer out. Warm-up on a side stream first, as torch.cuda.graphs requires."""
        torch = self._torch
        n = shape[0]
        x = torch.zeros(shape, device=self._dev, dtype=self._dtype).contiguous(memory_format=torch.channels_last)
        style = torch.ones(n, self.contract.style_size, device=self._dev)
        a = torch.ones((), device=self._dev)

        def body():
            z, own = self._enc(x)
            t, s = self._mix(z, own, style, a)
            return self._dec(t, s.to(self._dtype))

        with torch.inference_mode():
            st = torch.cuda.Stream()
            st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                for _ in range(2):
                    body()
            torch.cuda.current_stream().wait_stream(st)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                y = body()
        self._graphs[shape] = {"graph": graph, "x": x, "style": style, "a": a, "y": y}
        return self._graphs[shape]

    def close_impl(self) -> None:
        self._graphs.clear()
        self.model = None

    def info_impl(self) -> dict:
        torch = self._torch
        d = {"torch": torch.__version__, "checkpoint": str(self.checkpoint), "cuda_graphs": self.cuda_graphs,
             "memory_format": "channels_last" if self.channels_last else "contiguous (NCHW)", "compiled": self.compile,
             "autocast": "bf16" if self._autocast else None}
        if self.device == "cuda":
            d["gpu"] = torch.cuda.get_device_name()
        else:
            d["threads"] = torch.get_num_threads()
        return d
