"""`stylert build-engine` (also installed as `build-engine`): the parser, generated from
BuildConfig and ProfileSpec (each default written once, there)."""

from __future__ import annotations

from ..artifacts import SHIPPED_CALIB_DIR
from ..backends import ENGINE_BACKENDS
from ..cli import fmt
from ..config_args import add_fields, from_args
from ..precisions import PRECISIONS
from .precision import CALIB_METHODS
from .profiles import ProfileSpec
from .stage import BuildConfig, build_engine

HELP = {
    "export_dir": "folder written by `stylert export-onnx`",
    "backend": "auto: TensorRT when it can run here (a CUDA GPU), else OpenVINO when installed, else ONNX Runtime",
    "out": "engine folder (default: EXPORT_DIR/../engine-PRECISION)",
    "overwrite": "replace an engine already in --out (after the new one passes its gate)",
    "calib_dir": f"calibration images (default: the shipped {SHIPPED_CALIB_DIR.name}/)",
    "calib_count": "calibration images used (the first N by name)",
    "calib_method": "INT8 range calibration",
    "calib_size": "calibration and evaluation image side in pixels",
    "calib_styles": "paintings whose style codes calibrate the INT8 decoder at strength 1 (default: the shipped "
                    "calib_data/style_codes.json when it matches the model, else the calibration images' codes)",
    "int8_budget_db": "INT8 mixed precision: decoder convolutions go int8, most work saved per error first, while "
                      "their summed error on the calibration inputs stays above this PSNR; the rest stay float",
    "eval_dir": "photographs for the accuracy report (default: ../shared/data/content when present, else "
                "scikit-image's sample photographs when installed, else held-out calibration images)",
    "eval_count": "photographs in the accuracy report",
    "min_psnr": "accuracy gate in dB against FP32, on stylized output (default: "
                + ", ".join(f"{n} {q.min_psnr:g}" for n, q in PRECISIONS.items()) + ")",
    "threads": "ONNX Runtime threads, 0 = all cores",
    "opt_level": "ONNX Runtime optimization level saved in the model",
    "workspace_mb": "TensorRT workspace limit in MiB (default: none, the library's own)",
    "timing_cache": "TensorRT timing cache file, reused across builds (datacenter flavour; default: in the cache)",
    "tensorrt_flavour": "which TensorRT builds the plan (default: $STYLERT_TENSORRT, else tensorrt when installed, "
                        "else tensorrt_rtx); tensorrt_rtx builds on a machine without a GPU, for compute "
                        "capability 8.0-8.9 and 12.x",
    "compute_capability": "TensorRT-RTX target GPUs, e.g. 8.6 8.9 (default: its multi-architecture set)",
    **{f"{lim}_{k}": f"TensorRT profile: {lim} {k}" for lim in ("min", "opt", "max") for k in ("batch", "size")},
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "build-engine",
        help="FP32/BF16/FP16/INT8 engine (TensorRT, OpenVINO or ONNX Runtime) from an export folder",
        **fmt(
            """
            Build a precision-specific engine from an export folder (stylert export-onnx).
            FP16: float16 inside, float32 inputs/outputs. BF16: OpenVINO's bfloat16 on CPUs with
            native BF16. INT8: static Q/DQ quantization (symmetric int8, per-channel weights)
            calibrated on images (the shipped calib_data/ unless --calib-dir). The build
            measures the engine against FP32 on the calibration images and on photographs not
            used for calibration, and fails (writing nothing) below --min-psnr. Output:
            OUT/engine.json + the backend's model files.
            """,
            """
            stylert build-engine out/export --int8 --out out/engine-int8
            stylert build-engine out/export --fp16 --backend tensorrt --max-batch 16
            """,
        ),
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--precision", choices=list(PRECISIONS), default=BuildConfig.precision,
                   help="; ".join(f"{n}: {q.summary}" for n, q in PRECISIONS.items()) + " (default: %(default)s)")
    for name in PRECISIONS:  # --fp32 / --bf16 / --fp16 / --int8
        g.add_argument(f"--{name}", dest="precision", action="store_const", const=name, help=f"same as --precision {name}")
    add_fields(p, BuildConfig, HELP, skip=("precision", "profile"), positional=("export_dir",),
               choices={"backend": ("auto", *ENGINE_BACKENDS), "calib_method": CALIB_METHODS,
                        "opt_level": ("basic", "extended", "all"), "tensorrt_flavour": ("tensorrt", "tensorrt_rtx")},
               metavar={"compute_capability": "CC"})
    add_fields(p, ProfileSpec, HELP)
    p.set_defaults(func=run)


def run(a) -> int:
    cfg = from_args(BuildConfig, a, profile=from_args(ProfileSpec, a))
    print("config:", cfg)
    build_engine(cfg)
    return 0
