"""The build stage's steps: an export folder -> an FP32/BF16/FP16/INT8 engine folder with a
manifest and an accuracy report.

Steps: read the export (hashes checked) -> load calibration and evaluation images -> FP32
reference -> precision ONNX (precision.py) -> backend artifact (onnxrt.py: an optimized ONNX
Runtime model for this CPU; openvino.py: OpenVINO IR; tensorrt.py: a TensorRT plan) -> accuracy against FP32 on the calibration
images and on photographs not used for calibration -> gate on --min-psnr -> engine.json.
Everything is built in a temporary folder beside --out and renamed into place only when the
gate passes: a failed build leaves nothing behind.

Engine folder: engine.json, encoder.onnx/decoder.onnx (the precision ONNX: the portable
artifact; TensorRT's input), and encoder.ort.onnx/decoder.ort.onnx (ONNX Runtime, optimized
for this CPU) or encoder.plan/decoder.plan (TensorRT).
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import sys
import tempfile
import time

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import precisions
from ..artifacts import DEV_DATA_DIR, SAMPLE_PHOTOS, SHIPPED_CALIB_DIR, sample_photo_dir
from ..backends import BACKENDS, ENGINE_BACKENDS
from ..errors import StyleRTError
from ..images import make_readable
from ..precisions import PRECISIONS
from . import onnxrt, openvino, tensorrt
from .precision import CALIB_METHODS, CONVERTERS
from .profiles import ProfileSpec

# Each engine backend's step: (tmp folder, BuildConfig, profile shapes, conversions, log) ->
# (files, flags, ONNX Runtime sessions for the accuracy check, what they measure).
BUILDERS = {"onnxruntime": onnxrt.build_artifacts, "openvino": openvino.build_artifacts,
            "tensorrt": tensorrt.build_artifacts}
assert set(BUILDERS) == set(ENGINE_BACKENDS), "engine/backends/__init__.py and BUILDERS disagree"
assert set(CONVERTERS) == set(PRECISIONS), "engine/precisions.py and precision.CONVERTERS disagree"

DEV_PHOTOS_DIR = DEV_DATA_DIR / "content"
STYLE_CODES_FILE = "style_codes.json"  # the shipped bank of paintings' codes (calib_data/)
DEFAULT_MIN_PSNR = {name: p.min_psnr for name, p in PRECISIONS.items()}  # the precision table's gates


@dataclass
class BuildConfig:
    export_dir: str
    precision: str = "fp16"  # a name in PRECISIONS (engine/precisions.py)
    backend: str = "auto"  # auto | tensorrt | openvino | onnxruntime (the rule: choose_backend)
    out: str | None = None  # default: EXPORT_DIR/../engine-<precision>
    calib_dir: str | None = None  # default: the shipped calib_data/
    calib_count: int = 32  # calibration images used (the first N, sorted by name)
    calib_method: str = "percentile"  # minmax | percentile | entropy (measured: README, "Engines and precision")
    calib_size: int = 256  # images are scaled and centre-cropped to this square (pixels)
    calib_styles: str | None = None  # paintings whose codes calibrate the decoder; default: calib_data/style_codes.json
    int8_budget_db: float = 40.0  # INT8 mixed precision: convs go int8 while their summed error stays above this PSNR
    eval_dir: str | None = None  # photographs for the report; default: see resolve_eval_dir
    eval_count: int = 16
    min_psnr: float | None = None  # dB; default DEFAULT_MIN_PSNR[precision]
    profile: ProfileSpec = field(default_factory=ProfileSpec)
    threads: int = 0  # ONNX Runtime intra-op threads, 0 = all cores
    opt_level: str = "all"  # ONNX Runtime graph optimization level saved into the model
    workspace_mb: int | None = None  # TensorRT workspace limit; None: no limit (the library's own)
    timing_cache: str | None = None  # TensorRT timing cache file (datacenter flavour); default in the cache
    tensorrt_flavour: str | None = None  # tensorrt | tensorrt_rtx; None: $STYLERT_TENSORRT, else the installed one
    compute_capability: tuple[str, ...] = ()  # TensorRT-RTX targets, e.g. ("8.6", "8.9"); () = its default set
    overwrite: bool = False  # replace an engine folder already at `out`

    def __post_init__(self):
        precisions.get(self.precision)
        if self.backend not in ("auto", *ENGINE_BACKENDS):
            raise StyleRTError(f"unknown backend {self.backend!r}.", f"Use auto or one of {', '.join(ENGINE_BACKENDS)}.")
        if self.calib_count < 1 or self.eval_count < 1:
            raise StyleRTError("--calib-count and --eval-count must be at least 1.")
        if self.calib_size < 64 or self.calib_size % 8:
            # the accuracy gate is measured at this size: tiny images pass it and say
            # nothing about photographs (a 7-pixel gate passed an engine that scored 21.5 dB)
            raise StyleRTError(f"--calib-size {self.calib_size} is invalid.",
                               "Calibration and the accuracy gate run at this side: use a multiple of 8, at least 64 "
                               "(256, the default, is what the gates were set at).")
        if self.min_psnr is not None and not 0 < self.min_psnr < float("inf"):
            raise StyleRTError(f"--min-psnr {self.min_psnr} is invalid.", "A PSNR in dB, e.g. 35.")

    @property
    def psnr_gate(self) -> float:
        return DEFAULT_MIN_PSNR[self.precision] if self.min_psnr is None else self.min_psnr

    def default_out(self) -> Path:
        return Path(self.export_dir).resolve().parent / f"engine-{self.precision}"


# ----------------------------------------------------------------------------- steps
def choose_backend(requested: str, flavour: str | None = None) -> tuple[str, str]:
    """(backend, reason). auto: TensorRT when its engine can run on this machine's GPU (an
    ahead-of-time TensorRT-RTX build on a machine without one must be asked for); else
    OpenVINO when it is installed (on the CPU it runs the same files 1.3x-2.3x faster than ONNX
    Runtime: bench/RESULTS.md); else ONNX Runtime."""
    from . import tensorrt as trt_build

    if requested in ("onnxruntime", "openvino"):
        return requested, f"requested with --backend {requested}"
    ok, why = trt_build.available(flavour)
    if requested == "tensorrt":
        if not ok:
            raise StyleRTError(f"--backend tensorrt, but {why}.", "Use --backend onnxruntime (or auto) on this machine.")
        return "tensorrt", f"requested; {why}"
    if ok and trt_build.runs_here(flavour):
        return "tensorrt", f"auto: {why}"
    if ok:
        why += "; its engine could not run here (pass --backend tensorrt to build it anyway)"
    if BACKENDS["openvino"].version():
        return "openvino", f"auto: {why}, so OpenVINO on the CPU (installed; faster than ONNX Runtime there)"
    return "onnxruntime", f"auto: {why}, so ONNX Runtime on the CPU (OpenVINO is not installed: {BACKENDS['openvino'].install})"


def resolve_eval_dir(cfg: BuildConfig) -> Path | None:
    """--eval-dir, else the development photographs, else scikit-image's sample photographs
    (when installed), else None (a quarter of the calibration images is held out)."""
    if cfg.eval_dir:
        return Path(cfg.eval_dir)
    if DEV_PHOTOS_DIR.is_dir():
        return DEV_PHOTOS_DIR
    return sample_photo_dir()


def gather_images(cfg: BuildConfig, log=print):
    """(calib_paths, eval_paths, eval_label): calibration images, and photographs for the
    report that are not among them (held-out calibration images when no photo folder)."""
    from ..images import list_images

    cdir = Path(cfg.calib_dir) if cfg.calib_dir else SHIPPED_CALIB_DIR
    if not cdir.is_dir():
        raise StyleRTError("calibration folder does not exist.",
                           "Pass --calib-dir with representative images (see calib_data/README.md).", path=cdir)
    calib = list_images(cdir)[: cfg.calib_count]
    edir = resolve_eval_dir(cfg)
    used = {p.resolve() for p in calib}
    if edir is not None:
        files = list_images(edir) if edir != sample_photo_dir() else [edir / f for f in SAMPLE_PHOTOS]
        evals = [p for p in files if p.resolve() not in used][: cfg.eval_count]
        label = f"photographs in {edir} (not used for calibration)"
    else:
        evals = []
    if not evals:
        n = max(1, len(calib) // 4)
        if len(calib) < 2:
            raise StyleRTError("need at least 2 calibration images when there is no --eval-dir.", path=cdir)
        calib, evals = calib[:-n], calib[-n:]
        label = f"{n} calibration-folder images held out of calibration"
    return calib, evals, label


def _stylized_inputs(enc, x, contract, styles: np.ndarray | None = None, batch=8):
    """Encode x and mix it at strength 1 with `styles`' codes, in turn (None: each image of x
    with the next one's). Returns (latent, mixed latent, style offset)."""
    from ..mixing import mix_arrays
    from .precision import run_batched

    z, code = run_batched(enc, {contract.image.name: x}, batch)
    if styles is None:
        sc = np.roll(code, 1, axis=0)
    else:
        sc = run_batched(enc, {contract.image.name: styles}, batch)[1]
        sc = sc[np.arange(len(x)) % len(sc)]
    return (z, *mix_arrays(z, code, sc, 1.0, contract.latent_channels))


def _run_pair(enc, dec, x, contract, styles: np.ndarray | None = None, batch=8):
    """encode -> stylize (strength 1) -> decode: the path a service runs, so the gate measures
    stylized output, not only reconstruction. Returns (latent, image)."""
    from .precision import run_batched

    z, t, s = _stylized_inputs(enc, x, contract, styles, batch)
    return z, run_batched(dec, {contract.latent.name: t, contract.style.name: s}, batch)[0]


def decoder_calibration(enc, x: np.ndarray, contract, codes: np.ndarray | None = None, batch: int = 8,
                        per_image: int = 2, strengths: Sequence[float] = (1.0,), seed: int = 0) -> dict:
    """The decoder's calibration inputs: each image's own latent with no offset (strength 0),
    and the same latent mixed with `per_image` style codes at each of `strengths` (codes
    drawn from `codes`, (M, 2K): paintings' codes, `calibration_codes`; None: the other
    calibration images' codes). INT8 ranges must cover what users run: strength 1 with
    real paintings drives the decoder's modulated activations several times past what
    photo-to-photo codes do (calib_data/README.md).

    The last quarter of the images, mixed with the last quarter of the codes, comes last
    and shares neither with the rest: `precision.select_int8_convs` fits ranges on the rest
    and measures each layer there, on styles its ranges never saw (returned as
    `precision.CalibFeeds` with `.holdout`, the number of those inputs)."""
    from ..mixing import mix_arrays
    from .precision import CalibFeeds, run_batched

    z, own = run_batched(enc, {contract.image.name: x}, batch)
    n_h = len(z) // 4
    pool = own if codes is None else np.asarray(codes, np.float32)
    m_h = len(pool) // 4 if n_h else 0
    rng = np.random.default_rng(seed)
    lat, off, held = [], [], 0
    for part, (zs, os_, ps) in enumerate([(z[:len(z) - n_h], own[:len(z) - n_h], pool[:len(pool) - m_h]),
                                          (z[len(z) - n_h:], own[len(z) - n_h:], pool[len(pool) - m_h:])]):
        if not len(zs):
            continue
        size = len(zs) * (1 + per_image * len(strengths))
        lat.append(zs)
        off.append(np.zeros_like(os_))
        # held-out styles at 1.5x strength (an extrapolated offset): a stand-in for paintings
        # more extreme than the bank's, as a user's may be (a held-out Doesburg drives the
        # decoder's activations 2-4x past the bank's percentile ranges: calib_data/README.md)
        for a in (strengths if part == 0 else [1.5 * a for a in strengths]):
            for k in range(per_image):
                # without paintings, each image with another image's code (its neighbour first)
                pick = (np.arange(len(zs)) + 1 + k % max(1, len(ps) - 1)) % len(ps) if codes is None else rng.integers(len(ps), size=len(zs))
                t, s = mix_arrays(zs, os_, ps[pick], float(a), contract.latent_channels)
                lat.append(t)
                off.append(s)
        held = size if part == 1 else 0
    feeds = CalibFeeds({contract.latent.name: np.concatenate(lat), contract.style.name: np.concatenate(off)})
    feeds.holdout = held
    return feeds


def calibration_codes(cfg: "BuildConfig", enc, contract, log=print) -> tuple[np.ndarray | None, str]:
    """Style codes (M, 2K) the decoder is calibrated with, and where they came from:
    --calib-styles (paintings, encoded here as the runtime encodes a style: longer side
    STYLE_SIDE), else the shipped bank calib_data/style_codes.json when it was made by this
    model's checkpoint, else None (the calibration images' own codes; a line says so)."""
    from ..artifacts import SHIPPED_CALIB_DIR
    from ..images import as_array, list_images, preprocess, _longer_side_to
    from ..runtime import STYLE_SIDE

    if cfg.calib_styles:
        paths = list_images(Path(cfg.calib_styles))
        if not paths:
            raise StyleRTError("--calib-styles holds no images.", "Pass a folder of paintings.", path=cfg.calib_styles)
        codes = [enc.run(None, {contract.image.name: preprocess([_longer_side_to(as_array(p), STYLE_SIDE)],
                                                                 contract.downsample)[0]})[1] for p in paths]
        return np.concatenate(codes), f"{len(paths)} paintings in {cfg.calib_styles}"
    bank = SHIPPED_CALIB_DIR / STYLE_CODES_FILE
    if bank.is_file():
        import json

        data = json.loads(bank.read_text())
        if data.get("model") and data["model"] == contract.checkpoint_sha256:
            codes = np.asarray(data["codes"], np.float32)
            if codes.ndim == 2 and codes.shape[1] == contract.style_size:
                return codes, f"{len(codes)} paintings' codes in {bank.name} ({data.get('made_from', '')})"
    log(f"  note: no style codes for this model (checkpoint {contract.checkpoint_sha256[:12]}) in {bank.name} and no "
        "--calib-styles: the decoder is calibrated with the calibration images' own codes, which modulate it far "
        "less than paintings; for an INT8 engine that holds on paintings pass --calib-styles PAINTINGS "
        "(or remake the bank: python calib_data/style_codes.py)")
    return None, "the calibration images' own codes"


def accuracy(sets: dict, ref: dict, test_sessions, gate: float, contract, styles: np.ndarray | None = None) -> dict:
    """Per image set: latent max |err| and PSNR (peak = the reference's range), stylized
    image PSNR (peak 1) and max |err|, and the worst image's PSNR, all against FP32. The
    "calibration" set is stylized among itself, every other set with `styles`."""
    from ..compare import compare, psnr_per_image

    report = {}
    for name, x in sets.items():
        zr, ir = ref[name]
        z, img = _run_pair(*test_sessions, x, contract, None if name == "calibration" else styles)
        cz, ci = compare(z, zr, peak=None), compare(img, ir)
        worst = float(psnr_per_image(img, ir).min())
        report[name] = {
            "images": int(len(x)),
            "latent_max_abs": cz.max_abs, "latent_psnr_db": cz.to_dict()["psnr_db"],
            "image_psnr_db": ci.to_dict()["psnr_db"], "image_max_abs": ci.max_abs,
            "image_worst_psnr_db": min(worst, 999.0),
            "passed": bool(ci.psnr_db >= gate),
        }
    return report


def _print_report(report: dict, gate: float, log=print) -> None:
    for name, r in report.items():
        log(f"  {name:<11} {r['images']:>3} images: stylized PSNR {r['image_psnr_db']:.2f} dB "
            f"(worst image {r['image_worst_psnr_db']:.2f} dB, max |err| {r['image_max_abs']:.4f}); "
            f"latent max |err| {r['latent_max_abs']:.4g}  [{'ok' if r['passed'] else f'BELOW {gate:g} dB'}]")


def build_engine(cfg: BuildConfig, command: str | None = None, log=print) -> dict:
    """Build the engine folder described by `cfg`; returns its manifest. Raises StyleRTError
    (and writes nothing) when an input is wrong or accuracy is below the gate."""
    from .. import manifest as M
    from . import precision as P
    from ..artifacts import read_export
    from ..contract import ModelContract
    from .profiles import profile_shapes

    t_start = time.time()
    step = _Steps(log)
    export_dir = Path(cfg.export_dir)
    exp = read_export(export_dir, check_hashes=True)
    contract = ModelContract.from_dict(exp["contract"])
    shapes = profile_shapes(cfg.profile, contract)
    backend, why = choose_backend(cfg.backend, cfg.tensorrt_flavour)
    precisions.check_backend(cfg.precision, backend)
    log(f"backend: {backend} ({why})")
    out = Path(cfg.out) if cfg.out else cfg.default_out()
    if out.exists() and not out.is_dir():
        raise StyleRTError("--out is a file, not a folder.", "Pass a folder for the engine (it is created if missing).", path=out)
    if out.exists() and not (out / M.ENGINE_MANIFEST_FILE).is_file() and any(out.iterdir()):
        raise StyleRTError("output folder exists and is not an engine folder.",
                           "Pick another --out: nothing that is not an engine is replaced.", path=out)
    if (out / M.ENGINE_MANIFEST_FILE).is_file() and not cfg.overwrite:
        raise StyleRTError("already holds an engine.", "Pass --overwrite to replace it (only once the new one passes its "
                           "gate), or choose another --out.", path=out)
    src = {r: export_dir / exp["files"][r]["path"] for r in ("encoder", "decoder")}

    step("reading calibration and evaluation images")
    calib_paths, eval_paths, eval_label = gather_images(cfg, log)
    x_cal = P.load_batch(calib_paths, cfg.calib_size)
    x_eval = P.load_batch(eval_paths, cfg.calib_size)
    log(f"  calibration: {len(calib_paths)} images from {calib_paths[0].parent}; evaluation: {eval_label} ({len(eval_paths)})")

    step("FP32 reference (ONNX Runtime, the exported models)")
    ref_sess = [P.session(src[r], threads=cfg.threads) for r in ("encoder", "decoder")]
    # The photographs are stylized with the (shipped, generated) calibration images' codes:
    # reproducible on any machine, and photo-to-photo codes are not what users stylize with.
    ref = {"calibration": _run_pair(*ref_sess, x_cal, contract), "photos": _run_pair(*ref_sess, x_eval, contract, x_cal)}
    codes, codes_from = (calibration_codes(cfg, ref_sess[0], contract, log) if PRECISIONS[cfg.precision].calibrated
                         else (None, "the calibration images' own codes"))
    if PRECISIONS[cfg.precision].calibrated:
        log(f"  decoder calibration: strength 0 and 1, style codes from {codes_from}")
    calib_feeds = {"encoder": {contract.image.name: x_cal}, "decoder": decoder_calibration(ref_sess[0], x_cal, contract, codes)}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    make_readable(tmp)  # the engine folder it becomes is read by other users' services
    try:
        conv = {}
        step(f"{cfg.precision.upper()} ONNX models")
        convert = CONVERTERS[cfg.precision]
        for role, calib in calib_feeds.items():
            conv[role] = convert(src[role], tmp / f"{role}.onnx", calib, role, cfg, contract, log)

        step(f"{backend} artifacts")
        built = BUILDERS[backend](tmp, cfg, shapes, conv, log)
        files, flags, test_sess, measured_with = built.files, built.flags, built.sessions, built.measured_with

        step("accuracy against FP32")
        gate = cfg.psnr_gate
        report = accuracy({"calibration": x_cal, "photos": x_eval}, ref, test_sess, gate, contract, x_cal)
        _print_report(report, gate, log)
        del test_sess
        if not all(r["passed"] for r in report.values()):
            worst = min(r["image_psnr_db"] for r in report.values())
            raise StyleRTError(
                f"{cfg.precision} accuracy check failed: stylized PSNR {worst:.2f} dB against FP32 is below {gate:g} dB; nothing was written.",
                ("Try another --calib-method (percentile, the default, measured best for the style decoder; minmax; entropy clips), more or more representative calibration images "
                 "(--calib-dir, --calib-count), or lower the bar with --min-psnr." if PRECISIONS[cfg.precision].calibrated
                 else "Lower the bar with --min-psnr if this accuracy is acceptable, or build fp32."),
            )

        from ..manifest import backend_version

        device = built.device
        man = {
            "kind": M.ENGINE_KIND, "format_version": M.FORMAT_VERSION,
            "backend": backend, "precision": cfg.precision, "backend_reason": why,
            "files": files,
            "source": {"export_dir": os.fspath(export_dir.resolve()),
                       **{r: {"path": exp["files"][r]["path"], "sha256": exp["files"][r]["sha256"]} for r in ("encoder", "decoder")},
                       "checkpoint_sha256": exp.get("checkpoint", {}).get("sha256")},
            "contract": exp["contract"],
            "device": device,
            "os": M.os_info(),
            "versions": {"backend": built.version, "onnxruntime": backend_version("onnxruntime"),
                         "stylert": contract.stylert_version, "python": platform.python_version()},
            # Flat: the runtime reads min/max batch and size from here; shapes per model input.
            "profile": {**cfg.profile.to_dict(), "shapes": shapes},
            "build": {"command": command or _command(cfg, out), "flags": flags, "precision_conversion": conv,
                      "config": {k: v for k, v in asdict(cfg).items() if k != "profile"},
                      "seconds": round(time.time() - t_start, 1),
                      "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "accuracy": {"reference": "fp32 export on onnxruntime", "measured_with": measured_with,
                         "min_psnr_db": gate, "calibration_images": [p.name for p in calib_paths],
                         "photos": eval_label, "photo_images": [p.name for p in eval_paths],
                         "decoder_style_codes": codes_from, "sets": report},
        }
        M.write_engine_manifest(tmp, man)
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"engine written to {out} in {time.time() - t_start:.0f} s")
    return man


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an older engine folder there is replaced."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _command(cfg: BuildConfig, out: Path) -> str:
    parts = ["stylert", "build-engine", cfg.export_dir, "--precision", cfg.precision, "--backend", cfg.backend, "--out", os.fspath(out)]
    if cfg.calib_dir:
        parts += ["--calib-dir", cfg.calib_dir]
    if PRECISIONS[cfg.precision].calibrated:
        parts += ["--calib-method", cfg.calib_method, "--calib-count", str(cfg.calib_count)]
    p = cfg.profile
    if (p.min_batch, p.opt_batch, p.max_batch) != (1, 16, 32):
        parts += ["--min-batch", str(p.min_batch), "--opt-batch", str(p.opt_batch), "--max-batch", str(p.max_batch)]
    return " ".join(shlex.quote(s) for s in parts)


class _Steps:
    """Numbered progress lines with the time each step took."""

    def __init__(self, log):
        self.log, self.n, self.t = log, 0, None

    def __call__(self, what: str) -> None:
        now = time.time()
        if self.t is not None:
            self.log(f"  ({now - self.t:.1f} s)")
        self.n += 1
        self.t = now
        self.log(f"[{self.n}] {what}")
        sys.stdout.flush()


# ----------------------------------------------------------------------------- CLI
