"""`stylert bench`: every configuration on one batch, interleaved; speed, accuracy and
efficiency side by side, as one JSON-ready dict.

Order of a run: environment and machine peak -> model work (FLOPs, bytes) -> per
configuration cold start (load + first inference, which also gives the output compared with
the FP32 reference) -> warm-up (excluded) -> interleaved measurement -> peak again (the
machine's load may have changed; both are kept) -> optional sweep over batch sizes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylert.engine.artifacts import DEV_DATA_DIR, SAMPLE_PHOTOS, SAMPLE_STYLE, SHIPPED_CALIB_DIR, sample_photo_dir
from stylert.engine.frontend import cache_root, model_folder

from . import harness
from .configs import BASELINE, Config, Context, accuracy_gate, cpu_flags, cpu_model, default_threads, discover, select

SCHEMA = 1
TARGET_RATIO = 3.0  # the engine's promise: the best accurate configuration >= 3x PyTorch eager FP32
ROOT = Path(__file__).resolve().parent.parent
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class BenchOptions:
    model: str | None = None  # export folder or checkpoint folder; None: the shipped model
    batch: int = 16
    size: int = 256  # square images, pixels (a multiple of 8)
    configs: list[str] | None = None  # name substrings; None: the default set; ["all"]: everything
    min_time: float = 3.0  # seconds of measured time per configuration, at least
    min_iters: int = 5  # measured iterations per configuration, at least
    warmup: float = 0.5  # seconds of warm-up per configuration (at least 1 iteration), excluded
    threads: int | None = None  # None: every core this process may use
    sweep: bool = False
    sweep_batches: tuple[int, ...] = SWEEP_BATCHES
    images: str | None = None  # content photos to measure on; default ../shared/data/content
    cache: str | None = None  # where exports and precision builds are kept
    peak_n: int = 2048  # matmul side for the machine's peak
    peak_time: float = 0.5  # seconds of matmuls (best of) for the peak, before and after

    def __post_init__(self):
        from stylert.engine.errors import StyleRTError

        if self.batch < 1:
            raise StyleRTError(f"--batch {self.batch} is not a positive number of images.")
        if self.size < 8 or self.size % 8:
            raise StyleRTError(f"--size {self.size} is not a multiple of 8.", "Use e.g. 256 or 512 (any multiple of 8 suits every model here).")
        if self.min_iters < 1 or self.min_time < 0 or self.warmup < 0:
            raise StyleRTError("--min-iters must be >= 1, --min-time and --warmup >= 0.")
        if self.threads is not None and self.threads < 1:
            raise StyleRTError(f"--threads {self.threads} must be at least 1.")


def cache_dir(opt: BenchOptions) -> Path:
    return cache_root(opt.cache) / "bench"


def resolve_model(model: str | None, cache: Path, log=print) -> Path:
    """An export folder for `model` (the shipped model when None); a checkpoint folder is
    exported once into <cache>/exports/<weights sha256[:16]> (needs torch) and reused."""
    src = Path(model) if model is not None else None
    if src is None or not (src / "model.safetensors").is_file() or (src / "manifest.json").is_file():
        return model_folder(model, "onnxruntime", cache=cache.parent, log=log)
    from stylert.engine.artifacts import sha256_file

    sha = sha256_file(src / "model.safetensors")
    out = cache.parent / "exports" / sha[:16]
    if not (out / "manifest.json").is_file() or _export_sha(out) != sha:  # the slot's export must be of these weights
        from stylert.export.onnx_export import export_onnx

        log(f"exporting {src} to {out} (once)")
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(out, checkpoint=src, log=lambda *a: None, overwrite=True)  # the cache is ours
    return out


def _export_sha(folder: Path) -> str | None:
    """The checkpoint sha256 an export folder records (None when it is not a valid export)."""
    from stylert.engine.artifacts import read_export
    from stylert.engine.errors import StyleRTError

    try:
        return read_export(folder, check_hashes=True)["checkpoint"]["sha256"]
    except (StyleRTError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------- inputs
def _synthetic(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth colour gradients with texture: deterministic stand-ins for photos, (N, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        f = rng.uniform(1, 6, 3)
        p = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * f[c] * (xx * (c + 1) / 2 + yy) + p[c]) for c in range(3)], -1)
        img += rng.normal(0, 0.04, img.shape).astype(np.float32)
        out[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def content_dir(opt: "BenchOptions") -> Path:
    """The content photos: --images, else ../shared/data/content beside the repository."""
    if opt.images:
        d = Path(opt.images)
        if not d.is_dir():
            from stylert.engine.errors import StyleRTError

            raise StyleRTError("is not a folder of images.", "--images takes a folder of photographs.", path=d)
        return d
    return DEV_DATA_DIR / "content"


def load_inputs(n: int, size: int, folder: Path, seed: int = 0) -> tuple[np.ndarray, str]:
    """n images (N, size, size, 3) uint8 from `folder` (cycled, centre-cropped) or synthetic."""
    if folder.is_dir():
        from stylert.engine.images import list_images
        from stylert.engine.build.precision import load_batch

        paths = list_images(folder)
        if paths:
            uniq = load_batch(paths[: min(n, len(paths))], size)
            u8 = np.clip(uniq.transpose(0, 2, 3, 1) * 255 + 0.5, 0, 255).astype(np.uint8)
            return u8[np.arange(n) % len(u8)], f"{min(n, len(paths))} photo(s) from {folder}"
    samples = sample_photo_dir()
    if samples is not None and folder.name in ("content", "style"):
        # No development photographs here: scikit-image's openly licensed sample photos.
        from stylert.engine.build.precision import load_batch

        files = [samples / f for f in (SAMPLE_PHOTOS if folder.name == "content" else (SAMPLE_STYLE,))]
        uniq = load_batch(files[: min(n, len(files))], size)
        u8 = np.clip(uniq.transpose(0, 2, 3, 1) * 255 + 0.5, 0, 255).astype(np.uint8)
        return u8[np.arange(n) % len(u8)], f"{len(uniq)} openly licensed sample photo(s) from scikit-image ({samples})"
    calib = SHIPPED_CALIB_DIR
    if folder.name == "content" and calib.is_dir() and any(calib.glob("*.jpg")):
        # No photographs on this machine: the shipped (generated, 1/f-spectrum) calibration
        # images are closer to photos than sine gradients. Their noise-like latents make
        # AdaIN harder than photographs do (INT8 measured 33.9 dB here, 35.7 dB on photos),
        # so accuracy figures on them are not the ones to quote: the source line says so.
        x, _ = load_inputs(n, size, calib, seed)
        return x, f"generated calibration images from {calib} (no photo folder found: pass --images PHOTOS for accuracy figures)"
    return _synthetic(n, size, seed), "synthetic gradients (no photo folder found)"


def style_code(export: Path, style_u8: np.ndarray) -> np.ndarray:
    """The style's code (2K,), from the FP32 export (encoded once)."""
    from stylert.engine.mixing import StyleCode
    from stylert.engine.build.precision import session

    from .configs import preprocess

    s = session(export / "encoder.onnx")
    return StyleCode.from_codes(s.run(None, {s.get_inputs()[0].name: preprocess(style_u8)})[1]).vector


# ----------------------------------------------------------------------------- environment
def environment(threads: int) -> dict:
    vers = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx", "tensorrt"):
        try:
            vers[mod] = __import__(mod).__version__
        except ImportError:
            vers[mod] = None
    from stylert.engine.contract import __version__

    vers["stylert"] = __version__
    gpu = None
    if vers["torch"]:
        import torch

        if torch.cuda.is_available():
            gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                   "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"cpu": {"model": cpu_model(), "cores": os.cpu_count(), "usable_cores": default_threads(), "flags": cpu_flags()},
            "gpu": gpu, "platform": platform.platform(), "versions": vers, "git_commit": commit, "git_dirty": dirty,
            "threads": threads, "load_average_before": load}


# ----------------------------------------------------------------------------- the run
def _row(cfg: Config, status: str, note: str = "") -> dict:
    return {"configuration": cfg.to_dict(), "name": cfg.name, "status": status, "note": note or cfg.note,
            "cold_start": None, "iterations": 0, "measured_s": 0.0, "throughput": None, "latency": None,
            "stages": {}, "trace_ms": [], "efficiency": None, "accuracy": None, "warnings": []}


def run_bench(opt: BenchOptions, log=print) -> dict:
    from stylert.engine.compare import compare

    from . import flops
    from .configs import reference_fp32

    threads = opt.threads or default_threads()
    cache = cache_dir(opt)
    export = resolve_model(opt.model, cache, log)
    from stylert.engine.artifacts import contract_of

    contract = contract_of(export)
    env = environment(threads)
    warnings = harness.machine_warnings()
    for w in warnings:
        log("warning: " + w)

    x_u8, inputs_src = load_inputs(opt.batch, opt.size, content_dir(opt))
    st_u8, style_src = load_inputs(1, opt.size, DEV_DATA_DIR / "style", seed=1)
    ctx = Context(export=export, batch=opt.batch, size=opt.size, threads=threads, style=style_code(export, st_u8),
                  cache=cache / "artifacts", log=log)

    log(f"machine peak: {opt.peak_n}x{opt.peak_n} fp32 matmul ...")
    peak_before = flops.measure_peak(opt.peak_n, threads=threads, min_time=opt.peak_time)
    work = flops.count_export(export, opt.size, opt.size, contract.downsample)
    log(f"  {peak_before['peak_gflops']:.1f} GFLOP/s; model: {work.flops / 1e9:.2f} GFLOP per {opt.size}x{opt.size} image")

    configs = select(discover(), opt.configs)
    ref = reference_fp32(ctx, x_u8)
    rows: dict[str, dict] = {}
    live: dict[str, Config] = {}
    for cfg in configs:
        if cfg.unavailable:
            rows[cfg.name] = _row(cfg, "not measured", cfg.unavailable)
            log(f"{cfg.name}: {cfg.unavailable}")
            continue
        log(f"{cfg.name}: loading ...")
        t0 = time.perf_counter_ns()
        try:
            cfg.load(ctx)
            t1 = time.perf_counter_ns()
            y = x_u8
            for st in cfg.stages:  # the first inference: compilation, allocation, autotuning
                if st.name == "postprocess":
                    break
                y = st.fn(y)
            t2 = time.perf_counter_ns()
        except Exception as e:  # noqa: BLE001  a peer that fails here is a row note, not a crash
            msg = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            rows[cfg.name] = _row(cfg, "failed", msg)
            log(f"  {msg}")
            continue
        row = _row(cfg, "measured")
        row["configuration"] = cfg.to_dict()
        row["cold_start"] = {"load_s": (t1 - t0) / 1e9, "first_inference_s": (t2 - t1) / 1e9}
        cmp = compare(np.asarray(y, np.float32), ref)
        gate = accuracy_gate(cfg)
        acc = cmp.to_dict()
        acc.update(gate_psnr_db=gate, passed=bool(cmp.max_abs == 0.0 or cmp.psnr_db >= gate),
                   reference="PyTorch eager FP32, float output before uint8 rounding")
        row["accuracy"] = acc
        rows[cfg.name] = row
        live[cfg.name] = cfg
        log(f"  load {row['cold_start']['load_s']:.2f} s, first inference {row['cold_start']['first_inference_s']:.2f} s, "
            f"PSNR {acc['psnr_db']:.1f} dB vs FP32 reference")
        n = harness.warm_up(cfg.stages, x_u8, opt.warmup, cfg.cuda)
        row["warmup_iterations"] = n

    log(f"measuring {len(live)} configuration(s), interleaved: >= {opt.min_iters} iterations and >= {opt.min_time:g} s each ...")
    series = harness.measure_interleaved({k: (c.stages, x_u8, c.cuda) for k, c in live.items()}, opt.min_time, opt.min_iters)
    peak_after = flops.measure_peak(opt.peak_n, threads=threads, min_time=opt.peak_time)
    peaks = {k: max(peak_before.get(k) or 0.0, peak_after.get(k) or 0.0)
             for k in ("peak_gflops", "int8_peak_gops", "bf16_peak_gflops")}
    peak = peaks["peak_gflops"]
    for name, s in series.items():
        fill_row(rows[name], s, opt.batch, work.flops, flops.peak_for(peaks, rows[name]["configuration"]["precision"]), opt.min_time)

    over = [r["name"] for r in rows.values() if r["efficiency"] and (r["efficiency"]["fraction_of_peak"] or 0) > 1.0]
    if over:
        warnings.append(f"the measured peak of their precision is below what {', '.join(over)} achieved: the machine's load "
                        "changed while it was measured, so fractions of peak are overstated; remedy: rerun on an idle machine")
    base = rows.get(BASELINE)
    base_ips = base["throughput"]["images_per_s"] if base and base["throughput"] else None
    for r in rows.values():
        if r["throughput"]:
            r["throughput"]["ratio_vs_baseline"] = r["throughput"]["images_per_s"] / base_ips if base_ips else None
        warnings += r["warnings"]

    result = {
        "kind": "stylert-bench", "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [os.path.basename(sys.argv[0]), *sys.argv[1:]],
        "settings": {"batch": opt.batch, "size": opt.size, "min_time_s": opt.min_time, "min_iters": opt.min_iters,
                     "warmup_s": opt.warmup, "threads": threads, "percentile_method": harness.PERCENTILE_METHOD,
                     "order": "interleaved round-robin", "inputs": inputs_src, "style": style_src},
        "environment": env,
        "model": {"export": str(export), "latent_channels": contract.latent_channels, "checkpoint_sha256": contract.checkpoint_sha256,
                  "work_per_image": work.to_dict()},
        "peak": {"before": peak_before, "after": peak_after, "peak_gflops": peak, **peaks},
        "baseline": BASELINE,
        "results": [rows[c.name] for c in configs],
        "target": target_summary(rows),
        "warnings": warnings,
    }
    if opt.sweep:
        result["sweep"] = run_sweep(opt, live, log)
    return result


def fill_row(row: dict, s: harness.Series, batch: int, flops_per_image: float, peak_gflops: float, min_time: float) -> None:
    e2e = harness.summarize(s.e2e)
    ips = harness.throughput(batch, s)
    row["iterations"] = len(s.e2e)
    row["measured_s"] = s.measured_s
    row["throughput"] = {"images_per_s": ips, "ratio_vs_baseline": None}
    row["latency"] = e2e.to_dict()
    row["stages"] = {k: {"host": harness.summarize(v).to_dict(),
                         "device": harness.summarize(s.device[k]).to_dict() if k in s.device else None}
                     for k, v in s.host.items()}
    row["trace_ms"] = [round(v / 1e6, 3) for v in s.e2e]
    g = ips * flops_per_image / 1e9
    row["efficiency"] = {"gflops": g, "fraction_of_peak": g / peak_gflops if peak_gflops else None}
    name = row["name"]
    row["warnings"] = harness.noise_warnings(f"{name} end-to-end", e2e, min_time)
    if row["configuration"]["device"] == "cuda" and s.device:
        comp = sum(np.median(s.device[k]) for k in ("encode", "mix", "decode") if k in s.device)
        xfer = sum(np.median(s.device[k]) for k in ("h2d", "d2h") if k in s.device)
        if comp and xfer >= comp:
            row["warnings"].append(f"{name}: transfers take as long as compute; remedy: keep data on the device, pinned memory")
        enq = sum(np.median(s.host[k]) for k in ("encode", "mix", "decode") if k in s.host)
        if comp and enq >= 0.8 * comp and not row["configuration"]["options"].get("cuda_graph"):
            row["warnings"].append(f"{name}: host enqueue time approaches device compute; remedy: CUDA graphs")


def target_summary(rows: dict[str, dict]) -> dict:
    """The speed target: the best configuration passing the accuracy gate, vs the baseline and torch.compile."""
    ok = [r for r in rows.values() if r["throughput"] and r["accuracy"] and r["accuracy"]["passed"] and not r["configuration"]["peer"]]
    comp = rows.get("torch-compile-fp32")
    comp_ips = comp["throughput"]["images_per_s"] if comp and comp["throughput"] else None
    if not ok:
        return {"best": None, "met": False, "note": "no StyleRT configuration passed the accuracy gate"}
    best = max(ok, key=lambda r: r["throughput"]["images_per_s"])
    ratio = best["throughput"]["ratio_vs_baseline"]
    beats = None if comp_ips is None else best["throughput"]["images_per_s"] > comp_ips
    return {"best": best["name"], "images_per_s": best["throughput"]["images_per_s"], "ratio_vs_baseline": ratio,
            "ratio_needed": TARGET_RATIO, "beats_torch_compile": beats,
            "torch_compile_status": comp["status"] if comp else "not selected",
            "met": bool(ratio is not None and ratio >= TARGET_RATIO and beats is not False)}


def run_sweep(opt: BenchOptions, live: dict[str, Config], log=print) -> list[dict]:
    """Throughput and latency against batch size; each batch size is its own interleaved run."""
    out = []
    cfgs = {k: c for k, c in live.items() if not c.options.get("cuda_graph")}  # graphs are captured for one batch
    for b in opt.sweep_batches:
        x, _ = load_inputs(b, opt.size, content_dir(opt))
        log(f"sweep: batch {b} ...")
        for c in cfgs.values():
            harness.warm_up(c.stages, x, min(opt.warmup, 0.2), c.cuda)
        ser = harness.measure_interleaved({k: (c.stages, x, c.cuda) for k, c in cfgs.items()}, opt.min_time, opt.min_iters)
        for k, s in ser.items():
            st = harness.summarize(s.e2e)
            out.append({"name": k, "batch": b, "images_per_s": harness.throughput(b, s), "latency_median_ms": st.median_ms,
                        "latency_p90_ms": st.p90_ms, "cv_pct": st.cv_pct, "iterations": st.n})
    return out


# ----------------------------------------------------------------------------- compare gate
def compare_runs(new: dict, old: dict, max_regression: float, max_psnr_drop_db: float = 1.0) -> dict:
    """Gate `new` against a saved `old` run. Speed is compared as the ratio to each run's own
    baseline when both have one (stable on a shared machine), else as absolute images/s.
    Fails when a configuration lost more than `max_regression` (a fraction) of its speed, or
    more than `max_psnr_drop_db` of PSNR."""
    old_rows = {r["name"]: r for r in old.get("results", [])}
    checks, failed = [], False
    for r in new.get("results", []):
        o = old_rows.get(r["name"])
        if not o or not r.get("throughput") or not o.get("throughput"):
            continue
        rn, ro = r["throughput"].get("ratio_vs_baseline"), o["throughput"].get("ratio_vs_baseline")
        if rn and ro and r["name"] != new.get("baseline"):
            metric, a, b = "ratio_vs_baseline", rn, ro
        else:
            metric, a, b = "images_per_s", r["throughput"]["images_per_s"], o["throughput"]["images_per_s"]
        change = a / b - 1.0 if b else 0.0
        ok = change >= -max_regression
        acc_ok = True
        pa, pb = (r.get("accuracy") or {}).get("psnr_db"), (o.get("accuracy") or {}).get("psnr_db")
        if pa is not None and pb is not None and pa < pb - max_psnr_drop_db:
            acc_ok = False
        checks.append({"name": r["name"], "metric": metric, "new": a, "old": b, "change": change, "speed_ok": ok,
                       "psnr_new": pa, "psnr_old": pb, "accuracy_ok": acc_ok})
        failed |= not (ok and acc_ok)
    return {"max_regression": max_regression, "max_psnr_drop_db": max_psnr_drop_db, "checks": checks,
            "passed": not failed and bool(checks), "compared": len(checks)}


def load_json(path: str | os.PathLike) -> dict:
    from stylert.engine.errors import StyleRTError

    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise StyleRTError("baseline file does not exist.", "Write one with `bench --json FILE` first.", path=path) from None
    except (OSError, ValueError) as e:
        raise StyleRTError(f"is not readable JSON: {e}.", "Pass a file written by `bench --json`.", path=path) from None
    if not isinstance(d, dict) or d.get("kind") != "stylert-bench":
        raise StyleRTError("is not a bench result (kind != 'stylert-bench').", "Pass a file written by `bench --json`.", path=path)
    return d
