"""`stylert export-onnx`: the VAE's encoder (mean) and decoder (clamped) to ONNX, verified
against PyTorch in ONNX Runtime before anything is written to the output folder."""

from __future__ import annotations

import contextlib
import dataclasses
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

from .checkpoint import CONFIG_FILE, DEFAULT_MODEL_DIR, WEIGHTS_FILE, contract_for, load_model
from .model import VAE


class EncoderGraph(torch.nn.Module):
    """image (N, 3, H, W) in [0, 1] -> latent (N, C, H/8, W/8), the posterior mean (the
    log-variance head is not exported: inference uses the mean), and style (N, 2K)."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, image):
        return self.encoder.encode_with_style(image)


class DecoderGraph(torch.nn.Module):
    """latent (N, C, h, w), style offset (N, 2K) -> image (N, 3, 8h, 8w) in [0, 1]."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.decoder = vae.decoder

    def forward(self, latent, style):
        return self.decoder.image(latent, style)


def _export_one(module: torch.nn.Module, examples: tuple[torch.Tensor, ...], path: Path, contract: ModelContract,
                role: str, meta: dict[str, str]) -> None:
    """Export one graph with the contract's tensor names and dynamic axes."""
    import onnx

    inputs, outputs = contract.io(role)
    dims = {"N": torch.export.Dim("N", min=1, max=4096)}
    h = torch.export.Dim("h", min=1, max=4096)
    w = torch.export.Dim("w", min=1, max=4096)
    d = contract.downsample
    # image sides are multiples of the downsampling factor; latent sides are free
    spatial = {"H": d * h, "W": d * w, "h": h, "w": w}
    shapes = {spec.name: {i: dims.get(a, spatial.get(a)) for i, a in enumerate(spec.layout) if a in dims or a in spatial}
              for spec in inputs}
    # The exporter logs a warning per missing torchvision op and warns about deprecations.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, examples, str(path), input_names=[t.name for t in inputs],
                          output_names=[t.name for t in outputs], opset_version=contract.opset, dynamic_shapes=shapes,
                          dynamo=True, external_data=False, verbose=False)
    model = onnx.load(str(path))
    # Readable, contract-named dynamic axes on the graph's I/O (the exporter names them "8*h").
    for values, specs in ((model.graph.input, inputs), (model.graph.output, outputs)):
        for value, spec in zip(values, specs):
            for dim, name in zip(value.type.tensor_type.shape.dim, contract.axes(spec)):
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
    from stylert.engine.backends.onnxrt.session import make_session

    enc, dec = make_session(out / ENCODER_FILE), make_session(out / DECODER_FILE)
    rng = np.random.default_rng(0)
    cases = [("random", rng.random((n, 3, H, W), dtype=np.float32)) for n, H, W in [(1, 64, 64), (3, 96, 128), (2, 256, 256)]]
    cases += [(f"real {x.shape[2]}x{x.shape[3]}", x) for x in _real_inputs(real_dir, [(128, 128), (256, 192)])]
    worst = {"latent": 0.0, "style": 0.0, "image": 0.0}
    rows = []
    with torch.no_grad():
        for label, x in cases:
            z_ref, s_ref = (t.numpy() for t in vae.encoder.encode_with_style(torch.from_numpy(x)))
            z, s = enc.run(None, {contract.image.name: x})
            row = {"input": label, "shape": list(x.shape), "latent_max_abs": compare(z, z_ref, peak=None).max_abs,
                   # relative: a code's stds and means span orders of magnitude
                   "style_max_rel": float(np.max(np.abs(s - s_ref) / (np.abs(s_ref) + 1.0)))}
            # The decoder is checked on the encoded latent with no offset (reconstruction) and
            # on a prior sample N(0, I) with the offset towards another image's code (styling).
            prior = rng.standard_normal(z_ref.shape, dtype=np.float32)
            for zlabel, zin, sin in (("encoded", z_ref, np.zeros_like(s_ref)), ("prior", prior, s_ref[::-1] - s_ref)):
                y_ref = vae.decoder.image(torch.from_numpy(zin), torch.from_numpy(sin)).numpy()
                y = dec.run(None, {contract.latent.name: zin, contract.style.name: sin})[0]
                row[f"image_max_abs_{zlabel}"] = compare(y, y_ref).max_abs
            img_err = max(row["image_max_abs_encoded"], row["image_max_abs_prior"])
            worst["latent"] = max(worst["latent"], row["latent_max_abs"])
            worst["style"] = max(worst["style"], row["style_max_rel"])
            worst["image"] = max(worst["image"], img_err)
            rows.append(row)
            log(f"  verify {label:>12} N={x.shape[0]} {x.shape[2]}x{x.shape[3]}: latent max|d| {row['latent_max_abs']:.2e}, "
                f"style max rel {row['style_max_rel']:.2e}, image max|d| {img_err:.2e}")
    tol = contract.export_tolerance
    passed = all(v <= tol for v in worst.values())
    log(f"  max error per output: latent {worst['latent']:.2e}, style {worst['style']:.2e} (relative), "
        f"image {worst['image']:.2e} (tolerance {tol:.0e}) -> {'PASS' if passed else 'FAIL'}")
    return {"passed": passed, "tolerance": tol, "max_abs": worst, "cases": rows}


OUTPUTS = (ENCODER_FILE, DECODER_FILE, "checkpoint", MANIFEST_FILE)  # what an export writes into OUT


def export_onnx(out_dir: str | Path, checkpoint: str | Path | None = None, verify_outputs: bool = True,
                opset: int = OPSET, real_dir: str | Path | None = None, log=print, overwrite: bool = False) -> dict:
    """Export the checkpoint (default: the shipped model) to OUT_DIR; returns the manifest.

    Files are written to a temporary folder beside OUT_DIR and moved in only after the
    verification passed, so a failed export leaves nothing behind. An existing file or folder
    of an export's names in OUT_DIR is replaced only with `overwrite`; nothing else there is
    touched."""
    import onnx

    t0 = time.time()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StyleRTError("is a file, not a folder.", "Pass a folder for --out (it is created if missing).", path=out)
    ckpt = Path(checkpoint) if checkpoint is not None else DEFAULT_MODEL_DIR
    # exported into the checkpoint's own folder (how the shipped model carries its ONNX): the
    # weights stay where they are and the manifest points at them as "."
    in_place = out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve()
    outputs = tuple(n for n in OUTPUTS if not (in_place and n == "checkpoint"))
    taken = [n for n in outputs if (out / n).exists() or (out / n).is_symlink()]
    if taken and not overwrite:
        raise StyleRTError(f"already holds {', '.join(taken)}.",
                           "Pass --overwrite to replace them (nothing else in the folder is touched), or choose another --out.",
                           path=out)
    newest = onnx.defs.onnx_opset_version()
    if not (OPSET <= opset <= newest):
        # the dynamo exporter writes opset 18 or newer: an older request would be ignored
        raise StyleRTError(f"opset {opset} cannot be exported: the exporter writes opsets {OPSET}..{newest}.",
                           f"Use --opset between {OPSET} and {newest} (default {OPSET}: TensorRT 10.8+ and ONNX Runtime 1.17+ run it).")
    vae, sha = load_model(ckpt)
    if vae.decoder.style is None:
        raise StyleRTError("is a reconstruction-only model (no style head): it cannot stylize.",
                           "Train its style stage first: `stylert train --stage style --init MODEL ...`.", path=ckpt)
    contract = contract_for(vae, sha, opset)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise StyleRTError(f"cannot write the output folder: {e.strerror}.", "Choose a writable --out folder.", path=out) from None
    try:
        meta = {METADATA_KEY: contract.to_json()}
        log(f"exporting {ckpt} (sha256 {sha[:12]}) -> {out}  [opset {opset}, latent {contract.latent_channels} ch, 1/{contract.downsample}]")
        z, code = vae.encoder.encode_with_style(torch.rand(2, 3, 64, 64))
        _export_one(EncoderGraph(vae).eval(), (torch.rand(2, 3, 64, 64),), tmp / ENCODER_FILE, contract, "encoder",
                    {**meta, "stylert.role": "encoder"})
        _export_one(DecoderGraph(vae).eval(), (z.detach(), code.detach().flip(0) - code.detach()), tmp / DECODER_FILE, contract, "decoder",
                    {**meta, "stylert.role": "decoder"})
        # the range of the encoder's codes, measured with the exported encoder itself (ONNX
        # Runtime: 5x torch's speed here), then declared in both graphs' contract
        limit, ranges = style_ranges(tmp / ENCODER_FILE, contract)
        contract = dataclasses.replace(contract, style_limit=limit, style_ranges=ranges)
        for f in (ENCODER_FILE, DECODER_FILE):
            _set_contract(tmp / f, contract)
        report = None
        if verify_outputs:
            rd = Path(real_dir) if real_dir else Path(__file__).resolve().parent.parent / "calib_data"
            report = verify(tmp, vae, contract, rd, log=log)
            if not report["passed"]:
                raise StyleRTError(
                    f"ONNX Runtime and PyTorch disagree: max error latent {report['max_abs']['latent']:.2e}, "
                    f"style {report['max_abs']['style']:.2e}, image {report['max_abs']['image']:.2e} > {contract.export_tolerance:.0e}.",
                    "Nothing was written. This is an exporter problem; report it with the checkpoint.",
                )
        if not in_place:
            shutil.copytree(ckpt, tmp / "checkpoint", ignore=lambda d, names: [n for n in names if n not in (WEIGHTS_FILE, CONFIG_FILE)])
        import onnx
        import onnxruntime

        manifest = {
            "kind": EXPORT_KIND,
            "contract": asdict(contract),
            "files": {role: {"path": f, "sha256": sha256_file(tmp / f), "ops": _op_types(tmp / f)}
                      for role, f in (("encoder", ENCODER_FILE), ("decoder", DECODER_FILE))},
            "checkpoint": {"path": "." if in_place else "checkpoint", "source": "." if in_place else str(ckpt.resolve()), "sha256": sha,
                           "config": json.loads((ckpt / CONFIG_FILE).read_text())["model"]},
            "verification": report,
            "config": {"checkpoint": str(ckpt), "opset": opset, "verify": verify_outputs,
                       "verify_images": str(real_dir) if real_dir else None},
            "versions": {"stylert": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
            "export_seconds": round(time.time() - t0, 2),
        }
        atomic_write_bytes(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
        # Move in: the old manifest out first and the new one last, so a reader never sees a
        # manifest that does not describe the files beside it.
        for name in (MANIFEST_FILE, *outputs[:-1]):
            old = out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for name in outputs:
            (tmp / name).replace(out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out / ENCODER_FILE}, {out / DECODER_FILE}, {out / MANIFEST_FILE} in {time.time() - t0:.1f} s")
    return manifest


def probe_images(seed: int = 0, side: int = 256) -> np.ndarray:
    """What the contract's style ranges are measured on, (N, 3, S, S) float32 with S the
    runtime's style scale (runtime.STYLE_SIDE: every style image is scaled to it before it is
    encoded, so codes are measured as the runtime makes them): the shipped calibration images
    and generated `side`-px extremes a user may well pass as a style: flat colours (black,
    white, primaries, greys), white noise, stripes and checks of several periods, gradients,
    and random rectangles (flat regions with hard edges, as in posters and woodcuts). The same
    on every machine (no development data), so an export is reproducible."""
    from stylert.engine.artifacts import SHIPPED_CALIB_DIR
    from stylert.engine.images import _longer_side_to
    from stylert.engine.runtime import STYLE_SIDE

    gen = [to_array(center_crop(load_image(f), side, side))
           for f in (list_images(SHIPPED_CALIB_DIR) if SHIPPED_CALIB_DIR.is_dir() else [])]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for c in [(0, 0, 0), (1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), (0.8, 0.8, 0.8)]:
        gen.append(np.broadcast_to(np.array(c, np.float32)[:, None, None], (3, side, side)))
    gen += [rng.random((3, side, side), dtype=np.float32) for _ in range(2)]
    for period in (2, 4, 8, 16, 32, 64):
        col = rng.random(3).astype(np.float32)[:, None, None]
        stripes = ((xx * side // period) % 2)[None]
        checks = ((xx * side // period + yy * side // period) % 2)[None]
        gen += [np.broadcast_to(stripes, (3, side, side)), checks * col + (1 - checks) * (1 - col)]
    gen += [np.stack([xx, yy, 1 - xx]), np.broadcast_to(xx, (3, side, side))]
    for _ in range(6):
        img = np.broadcast_to(rng.random(3).astype(np.float32)[:, None, None], (3, side, side)).copy()
        for _ in range(rng.integers(3, 12)):
            (y0, y1), (x0, x1) = np.sort(rng.integers(0, side, 2)), np.sort(rng.integers(0, side, 2))
            img[:, y0:y1 + 1, x0:x1 + 1] = rng.random(3).astype(np.float32)[:, None, None]
        gen.append(img)
    return np.stack([_longer_side_to(np.ascontiguousarray(g, np.float32), STYLE_SIDE) for g in gen]).astype(np.float32)


def style_ranges(encoder: Path, contract: ModelContract, factor: float = 4.0) -> tuple[float, tuple[tuple[float, ...], ...]]:
    """The contract's style_limit (`factor` x the largest |entry| of the probe images' codes)
    and style_ranges: per statistics level, (lowest mean, highest mean, largest RMS of the
    level's means, largest std, largest RMS of the level's stds) over `probe_images`, encoded
    by the exported `encoder`. What a StyleCode may hold is judged against these
    (StyleCode.out_of_range)."""
    from stylert.engine.backends.onnxrt.session import make_session

    levels = contract.style_channels
    x, sess = probe_images(), make_session(encoder)
    codes = np.concatenate([sess.run(None, {contract.image.name: x[i:i + 4]})[1] for i in range(0, len(x), 4)])
    k = codes.shape[1] // 2
    rows, i = [], 0
    for c in levels:
        m, s = codes[:, i:i + c].astype(np.float64), codes[:, k + i:k + i + c].astype(np.float64)
        i += c
        rows.append(tuple(float(f"{v:.4g}") for v in (m.min(), m.max(), np.sqrt((m * m).mean(1)).max(),
                                                       s.max(), np.sqrt((s * s).mean(1)).max())))
    return float(f"{factor * float(np.abs(codes).max()):.3g}"), tuple(rows)


def _set_contract(path: Path, contract: ModelContract) -> None:
    """Replace the contract in an exported graph's metadata."""
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = contract.to_json()
    onnx.save(model, str(path))


def _op_types(path: Path) -> list[str]:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path)).graph.node})
