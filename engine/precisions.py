"""The precisions an engine can be built in: one table that build-engine (accuracy gate), the
manifest, the runtime, the CLI choices and bench read. Adding a precision is one entry here
and its converter in build/precision.py's CONVERTERS (the build stage owns its code)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    name: str
    min_psnr: float  # build-engine's default gate: stylized output vs FP32 (dB)
    calibrated: bool  # needs calibration images beyond a sanity check
    summary: str  # build-engine --help
    backends: tuple[str, ...] = ()  # the engine backends that run it; () = every one


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", 60.0, False, "the exported models as they are"),
    Precision("fp16", 45.0, False, "float16 weights and activations, float32 I/O and statistics"),
    # The FP32 files computed in bfloat16 (OpenVINO's inference precision hint) on CPUs with
    # native BF16 (AVX512_BF16, AMX): 8 bits of mantissa, so a gate between FP16's and INT8's.
    Precision("bf16", 40.0, False, "the FP32 models computed in bfloat16 where the CPU has it natively",
              ("openvino",)),
    # 25 dB: the style decoder paints high-frequency texture, where an int8 error shifts
    # strokes a little and PSNR punishes it; side by side the pictures differ in the strokes'
    # details only (measured figures: bench/RESULTS.md).
    Precision("int8", 25.0, True, "symmetric int8 Q/DQ, calibrated on calib_data/ (or --calib-dir)"),
)}


def get(name: str) -> Precision:
    from .errors import StyleRTError

    if name not in PRECISIONS:
        raise StyleRTError(f"unknown precision {name!r}.", f"Use one of {', '.join(PRECISIONS)}.")
    return PRECISIONS[name]


def check_backend(name: str, backend: str) -> None:
    """Raise StyleRTError when `backend` cannot run engines of precision `name`."""
    from .errors import StyleRTError

    p = get(name)
    if p.backends and backend not in p.backends:
        raise StyleRTError(f"the {backend} backend has no {name} engines.",
                           f"Build {name} with --backend {' or '.join(p.backends)}, or pick another --precision.")
