"""Precision artifacts for bench: the FP16 and INT8 engine folders of an export, built once by
build-engine (stylert.engine.build) with its default calibration, so bench measures exactly
what `stylert build-engine EXPORT --int8` produces. Cached by the export's ONNX sha256s: a
second bench run starts at once and two exports never share a cache entry. Delete the cache
to rebuild.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def engine_folder(export: Path, precision: str, cache: Path, size: int = 256, log: Callable = print,
                  backend: str = "onnxruntime") -> tuple[Path, str]:
    """A build-engine output folder (engine.json) of `precision` for `backend`, built on first use."""
    from stylert.engine.artifacts import read_export
    from stylert.engine.build import BuildConfig, build_engine

    import hashlib
    import json
    from dataclasses import asdict, replace

    man = read_export(export)
    # Default calibration (the shipped calib_data/); a small accuracy report: bench measures
    # accuracy itself, on its own inputs.
    cfg = BuildConfig(str(export), precision=precision, backend=backend, calib_size=max(size, 64), eval_count=4)
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("export_dir", "out")}  # a changed default rebuilds
    key = "-".join([man["files"]["encoder"]["sha256"][:16], man["files"]["decoder"]["sha256"][:16],
                    hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]])
    out = Path(cache) / key / (f"engine-{precision}" if backend == "onnxruntime" else f"engine-{backend}-{precision}")
    if (out / "engine.json").is_file():
        from stylert.engine.errors import StyleRTError
        from stylert.engine.manifest import backend_version, check_engine, current_device, read_engine_manifest

        try:
            # the slot is named after the export; the engine's record of its source must agree
            # (another model's engine left there would be measured as this one's)
            em = read_engine_manifest(out)
            check_engine(em, backend_version(em["backend"], (em.get("device") or {}).get("flavour")),
                         current_device(em["backend"]), export_manifest=man, folder=out)
            return out, f"cached build-engine output ({out})"
        except StyleRTError as e:
            log(f"  the cached engine {out} is not this export's to run ({e.what}); rebuilding it")
        except Exception as e:  # noqa: BLE001 (no device for a cached GPU engine: rebuilt as a miss)
            log(f"  the cached engine {out} cannot be checked here ({e}); rebuilding it")
    log(f"  build-engine {export} --precision {precision} --backend {backend} -> {out} ...")
    build_engine(replace(cfg, out=str(out), overwrite=True), log=lambda m: log("    " + m))
    return out, f"built with build-engine ({out})"
