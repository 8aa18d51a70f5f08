"""ONNX Runtime runner: the CPU execution provider everywhere; the CUDA provider with IO
binding when onnxruntime-gpu and a GPU are present (the latent then stays on the device and
the AdaIN kernel of cuda_mix.py mixes it there when cuda-python is installed).

Thread safety: `InferenceSession.run` (and run_with_iobinding with a binding per call) is
safe to call from several threads on one session, so the runner is `thread_safe`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...artifacts import contract_from_onnx_metadata
from ...contract import ModelContract
from ...errors import StyleRTError
from ..base import Runner, check_graph_shapes
from .session import SESSION_CONFIG, make_session  # noqa: F401  (SESSION_CONFIG: bench reads it here)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    thread_safe = True

    def __init__(self, encoder: str | os.PathLike, decoder: str | os.PathLike, contract: ModelContract,
                 device: str = "cpu", precision: str = "fp32", threads: int | None = None, level: str = "all",
                 config: dict | None = None, **session_attributes):
        """level, config, session_attributes: session options (session.make_session); the
        defaults are what the runtime ships with, bench's tuning rows change one each."""
        super().__init__(contract, device, precision)
        self.paths = {"encoder": Path(encoder), "decoder": Path(decoder)}
        self.threads = threads
        self.session_options = {"level": level, "config": config or {}, **session_attributes}
        self._sess: dict = {}
        self._mixer = None  # cuda_mix.AdaINMixer on CUDA when cuda-python is importable

    @classmethod
    def from_engine(cls, folder, manifest, contract, device, threads, options):
        if device == "cuda":
            raise StyleRTError("this ONNX Runtime engine was built for the CPU.", "Use device='cpu' or 'auto'.", path=folder)
        files, p = manifest["files"], manifest["precision"]
        runner = cls(Path(folder) / files["encoder"]["path"], Path(folder) / files["decoder"]["path"], contract,
                     device="cpu", precision=p, threads=threads, **options)
        return runner, f"a {p} ONNX Runtime engine folder built for this CPU"

    def load_impl(self) -> None:
        import onnxruntime as ort

        if self.device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise StyleRTError("ONNX Runtime has no CUDA execution provider here.",
                                   "Install onnxruntime-gpu in place of onnxruntime, or use device='cpu'.")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        for role, path in self.paths.items():
            if not path.is_file():
                raise StyleRTError(f"{role} model is missing.", "Re-run `stylert export-onnx` / `stylert build-engine`.", path=path)
            try:
                sess = make_session(path, self.threads, providers=providers, **self.session_options)
            except Exception as e:  # ORT raises its own exception types for corrupt files
                raise StyleRTError(f"ONNX Runtime cannot load the {role}: {str(e).splitlines()[0]}.",
                                   "The file is corrupt or not an ONNX model; re-export it.", path=path) from None
            meta = contract_from_onnx_metadata(sess.get_modelmeta().custom_metadata_map, path)
            for field in ("latent_channels", "downsample", "style_channels"):  # what shapes the graph's tensors
                if getattr(meta, field) != getattr(self.contract, field):
                    raise StyleRTError(f"{role} was exported with {field} {getattr(meta, field)}, the manifest says "
                                       f"{getattr(self.contract, field)}.",
                                       "The manifest was edited, or the folder mixes files of two models; re-export it.", path=path)
            want_in, want_out = ([t.name for t in specs] for specs in self.contract.io(role))
            got_in, got_out = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
            if (got_in, got_out) != (want_in, want_out):
                raise StyleRTError(f"{role} has inputs {got_in} and outputs {got_out}, expected {want_in} and {want_out}.",
                                   "Re-export with `stylert export-onnx`.", path=path)
            check_graph_shapes(self.contract, role, {t.name: t.shape for t in (*sess.get_inputs(), *sess.get_outputs())}, path)
            self._sess[role] = sess
        if self.device == "cuda":
            try:
                from ...cuda_mix import AdaINMixer

                self._mixer = AdaINMixer()
            except (ImportError, StyleRTError):
                self._mixer = None  # mix on the host: the latent is 1/12 of the image's bytes

    def _run(self, role: str, *arrays: np.ndarray) -> list[np.ndarray]:
        sess = self._sess[role]
        feeds = {i.name: a for i, a in zip(sess.get_inputs(), arrays)}
        if self.device != "cuda":
            return sess.run(None, feeds)
        b = sess.io_binding()
        for name, a in feeds.items():
            b.bind_cpu_input(name, a)
        for o in sess.get_outputs():
            b.bind_output(o.name, "cuda")
        sess.run_with_iobinding(b)
        return b.copy_outputs_to_cpu()

    def encode_impl(self, x):
        z, s = self._run("encoder", x)
        return z, s

    def decode_impl(self, z, s):
        return self._run("decoder", z, s)[0]

    def stylize_batch_impl(self, x, style, strength):
        if self.device != "cuda" or self._mixer is None:
            return super().stylize_batch_impl(x, style, strength)
        import onnxruntime as ort

        enc, dec = self._sess["encoder"], self._sess["decoder"]
        k = style.shape[1] // 2
        b = enc.io_binding()
        b.bind_cpu_input(enc.get_inputs()[0].name, x)
        for o in enc.get_outputs():
            b.bind_output(o.name, "cuda")
        enc.run_with_iobinding(b)  # synchronizes its outputs before returning
        z, own = b.get_outputs()
        zmix = ort.OrtValue.ortvalue_from_shape_and_type(z.shape(), np.float32, "cuda", 0)
        smix = ort.OrtValue.ortvalue_from_shape_and_type(own.shape(), np.float32, "cuda", 0)
        # the latent kernel reads the first C of each K-row of means and stds
        stride = self._mixer.set_style(style[:, :k].copy(), style[:, k:].copy(), stream=0)
        self._mixer.launch(z.data_ptr(), zmix.data_ptr(), z.shape(), stride, strength, stream=0)
        self._mixer.launch_code(own.data_ptr(), smix.data_ptr(), x.shape[0], k, stride, strength, stream=0)
        self._mixer.synchronize(0)
        b2 = dec.io_binding()
        b2.bind_ortvalue_input(dec.get_inputs()[0].name, zmix)
        b2.bind_ortvalue_input(dec.get_inputs()[1].name, smix)
        b2.bind_output(dec.get_outputs()[0].name, "cuda")
        dec.run_with_iobinding(b2)
        return b2.copy_outputs_to_cpu()[0]

    def close_impl(self) -> None:
        self._sess.clear()
        if self._mixer is not None:
            self._mixer.close()
            self._mixer = None

    def info_impl(self) -> dict:
        import onnxruntime as ort

        prov = self._sess["encoder"].get_providers() if self._sess else []
        return {"providers": prov, "onnxruntime": ort.__version__, "device_mixing": self._mixer is not None,
                "files": {k: str(v) for k, v in self.paths.items()}}
