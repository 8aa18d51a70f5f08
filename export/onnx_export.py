"""`stylert export-onnx`: the VAE's encoder (mean) and decoder (clamped) to ONNX, verified
against PyTorch in ONNX Runtime before anything is written to the output folder."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from stylert.engine.artifacts import EXPORT_KIND, sha256_file
from stylert.engine.compare import compare
from stylert.engine.contract import DECODER_FILE, ENCODER_FILE, MANIFEST_FILE, METADATA_KEY, OPSET, ModelContract, __version__
from stylert.engine.errors import StyleRTError
from stylert.engine.images import atomic_write_bytes, center_crop, list_images, load_image, to_array

from .checkpoint import CONFIG_FILE, DEFAULT_MODEL_DIR, WEIGHTS_FILE, load_model
from .model import VAE


class EncoderMean(torch.nn.Module):
    """image (N, 3, H, W) in [0, 1] -> latent (N, C, H/8, W/8): the posterior mean."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, image):
        h = self.encoder.body(image)
        return self.encoder.mu(h)  # the log-variance head is not exported: inference uses the mean


class DecoderImage(torch.nn.Module):
    """latent (N, C, h, w) -> image (N, 3, 8h, 8w) in [0, 1]."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.decoder = vae.decoder

    def forward(self, latent):
        return self.decoder.image(latent)


def _export_one(module: torch.nn.Module, example: torch.Tensor, path: Path, in_name: str, out_name: str,
                in_axes: tuple[str, ...], out_axes: tuple[str, ...], opset: int, meta: dict[str, str]) -> None:
    import onnx

    N = torch.export.Dim("N", min=1, max=4096)
    h = torch.export.Dim("h", min=1, max=4096)
    w = torch.export.Dim("w", min=1, max=4096)
    if in_name == "image":  # spatial dims are multiples of the downsampling factor
        shapes = {in_name: {0: N, 2: 8 * h, 3: 8 * w}}
    else:
        shapes = {in_name: {0: N, 2: h, 3: w}}
    # The exporter logs a warning per missing torchvision op and warns about deprecations.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[in_name], output_names=[out_name],
                          opset_version=opset, dynamic_shapes=shapes, dynamo=True, external_data=False, verbose=False)
    model = onnx.load(str(path))
    # Readable, contract-named dynamic axes on the graph's I/O (the exporter names them "8*h").
    for value, axes in ((model.graph.input[0], in_axes), (model.graph.output[0], out_axes)):
        for dim, name in zip(value.type.tensor_type.shape.dim, axes):
            if not name.isdigit():
                dim.Clear()
                dim.dim_param = name
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name, model.producer_version = "stylert", __version__
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _real_inputs(folder: Path | None, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """A few real images (centre crops) for verification, when a folder of them is at hand."""
    if folder is None or not folder.is_dir():
        return []
    out = []
    try:
        files = list_images(folder)[:3]
    except StyleRTError:
        return []
    for (H, W), f in zip(sizes, files):
        out.append(to_array(center_crop(load_image(f), H, W))[None])
    return out


def verify(out: Path, vae: VAE, contract: ModelContract, real_dir: Path | None, log=print) -> dict:
    """Run both graphs in ONNX Runtime and the model in PyTorch on random and real inputs at
    several batch sizes and image sizes; max |difference| per output must be <= tolerance."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    enc = ort.InferenceSession(str(out / ENCODER_FILE), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / DECODER_FILE), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    cases = [("random", rng.random((n, 3, H, W), dtype=np.float32)) for n, H, W in [(1, 64, 64), (3, 96, 128), (2, 256, 256)]]
    cases += [(f"real {x.shape[2]}x{x.shape[3]}", x) for x in _real_inputs(real_dir, [(128, 128), (256, 192)])]
    worst = {"latent": 0.0, "image": 0.0}
    rows = []
    with torch.no_grad():
        for label, x in cases:
            z_ref = vae.encoder.mu(vae.encoder.body(torch.from_numpy(x))).numpy()
            z = enc.run(None, {contract.image.name: x})[0]
            row = {"input": label, "shape": list(x.shape), "latent_max_abs": compare(z, z_ref, peak=None).max_abs}
            # The decoder is checked on the encoded latent and on a prior sample N(0, I).
            for zlabel, zin in (("encoded", z_ref), ("prior", rng.standard_normal(z_ref.shape, dtype=np.float32))):
                y_ref = vae.decoder.image(torch.from_numpy(zin)).numpy()
                y = dec.run(None, {contract.latent.name: zin})[0]
                row[f"image_max_abs_{zlabel}"] = compare(y, y_ref).max_abs
            img_err = max(row["image_max_abs_encoded"], row["image_max_abs_prior"])
            worst["latent"] = max(worst["latent"], row["latent_max_abs"])
            worst["image"] = max(worst["image"], img_err)
            rows.append(row)
            log(f"  verify {label:>12} N={x.shape[0]} {x.shape[2]}x{x.shape[3]}: "
                f"latent max|d| {row['latent_max_abs']:.2e}, image max|d| {img_err:.2e}")
    tol = contract.export_tolerance
    passed = all(v <= tol for v in worst.values())
    log(f"  max abs error per output: latent {worst['latent']:.2e}, image {worst['image']:.2e} (tolerance {tol:.0e}) "
        f"-> {'PASS' if passed else 'FAIL'}")
    return {"passed": passed, "tolerance": tol, "max_abs": worst, "cases": rows}


def export_onnx(out_dir: str | Path, checkpoint: str | Path | None = None, verify_outputs: bool = True,
                opset: int = OPSET, real_dir: str | Path | None = None, log=print) -> dict:
    """Export the checkpoint (default: the shipped model) to OUT_DIR; returns the manifest.

    Files are written to a temporary folder beside OUT_DIR and moved in only after the
    verification passed, so a failed export leaves nothing behind."""
    t0 = time.time()
    ckpt = Path(checkpoint) if checkpoint is not None else DEFAULT_MODEL_DIR
    vae, sha = load_model(ckpt)
    contract = ModelContract(latent_channels=vae.cfg.latent_channels, downsample=vae.cfg.downsample,
                             opset=opset, checkpoint_sha256=sha)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise StyleRTError(f"cannot write the output folder: {e.strerror}.", "Choose a writable --out folder.", path=out) from None
    try:
        meta = {METADATA_KEY: contract.to_json()}
        log(f"exporting {ckpt} (sha256 {sha[:12]}) -> {out}  [opset {opset}, latent {contract.latent_channels} ch, 1/{contract.downsample}]")
        C = contract.latent_channels
        _export_one(EncoderMean(vae).eval(), torch.rand(2, 3, 64, 64), tmp / ENCODER_FILE, "image", "latent",
                    ("N", "3", "H", "W"), ("N", str(C), "h", "w"), opset, {**meta, "stylert.role": "encoder"})
        _export_one(DecoderImage(vae).eval(), torch.randn(2, C, 8, 8), tmp / DECODER_FILE, "latent", "image",
                    ("N", str(C), "h", "w"), ("N", "3", "H", "W"), opset, {**meta, "stylert.role": "decoder"})
        report = None
        if verify_outputs:
            rd = Path(real_dir) if real_dir else Path(__file__).resolve().parent.parent / "calib_data"
            report = verify(tmp, vae, contract, rd, log=log)
            if not report["passed"]:
                raise StyleRTError(
                    f"ONNX Runtime and PyTorch disagree: max abs error latent {report['max_abs']['latent']:.2e}, "
                    f"image {report['max_abs']['image']:.2e} > {contract.export_tolerance:.0e}.",
                    "Nothing was written. This is an exporter problem; report it with the checkpoint.",
                )
        shutil.copytree(ckpt, tmp / "checkpoint", ignore=lambda d, names: [n for n in names if n not in (WEIGHTS_FILE, CONFIG_FILE)])
        import onnx
        import onnxruntime

        manifest = {
            "kind": EXPORT_KIND,
            "contract": asdict(contract),
            "files": {role: {"path": f, "sha256": sha256_file(tmp / f), "ops": _op_types(tmp / f)}
                      for role, f in (("encoder", ENCODER_FILE), ("decoder", DECODER_FILE))},
            "checkpoint": {"path": "checkpoint", "source": str(ckpt.resolve()), "sha256": sha,
                           "config": json.loads((ckpt / CONFIG_FILE).read_text())["model"]},
            "verification": report,
            "versions": {"stylert": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
            "export_seconds": round(time.time() - t0, 2),
        }
        atomic_write_bytes(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
        # Move in: the manifest last, so a reader never sees a manifest without its files.
        if (out / "checkpoint").exists():
            shutil.rmtree(out / "checkpoint")
        for name in (ENCODER_FILE, DECODER_FILE, "checkpoint", MANIFEST_FILE):
            (tmp / name).replace(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out / ENCODER_FILE}, {out / DECODER_FILE}, {out / MANIFEST_FILE} in {time.time() - t0:.1f} s")
    return manifest


def _op_types(path: Path) -> list[str]:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path)).graph.node})
