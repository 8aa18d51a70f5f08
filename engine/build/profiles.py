"""Optimization-profile shapes: the batch and image-size range an engine is built for.

Pure computation (no TensorRT): the TensorRT builder feeds these shapes to
`IOptimizationProfile.set_shape` and the engine's manifest records them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..contract import ModelContract
from ..errors import StyleRTError

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class ProfileSpec:
    """Batch sizes and square image sides (pixels) an engine accepts: min <= opt <= max.
    `opt` is the shape TensorRT tunes kernels for; every shape in between also runs."""

    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 32
    min_size: int = 64
    opt_size: int = 256
    max_size: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


def validate(spec: ProfileSpec, contract: ModelContract) -> None:
    """Raise StyleRTError when the ranges are out of order or sizes are not multiples of
    the model's downsampling factor."""
    b, s = (spec.min_batch, spec.opt_batch, spec.max_batch), (spec.min_size, spec.opt_size, spec.max_size)
    if not (1 <= b[0] <= b[1] <= b[2]):
        raise StyleRTError(
            f"batch range min {b[0]} / opt {b[1]} / max {b[2]} is not ordered.",
            "Pass 1 <= --min-batch <= --opt-batch <= --max-batch.",
        )
    if not (1 <= s[0] <= s[1] <= s[2]):
        raise StyleRTError(
            f"image size range min {s[0]} / opt {s[1]} / max {s[2]} is not ordered.",
            "Pass --min-size <= --opt-size <= --max-size.",
        )
    bad = [v for v in s if v % contract.downsample]
    if bad:
        raise StyleRTError(
            f"image sizes {bad} are not multiples of {contract.downsample}.",
            f"The encoder downsamples by {contract.downsample}: pick sizes divisible by it.",
        )


def profile_shapes(spec: ProfileSpec, contract: ModelContract) -> dict[str, dict[str, dict[str, Shape]]]:
    """{"encoder": {"image": {"min", "opt", "max"}}, "decoder": {"latent": {...}, "style": {...}}}:
    the input shapes per model, by the contract's tensor names."""
    validate(spec, contract)
    out: dict = {"encoder": {}, "decoder": {}}
    for k in ("min", "opt", "max"):
        n, side = getattr(spec, f"{k}_batch"), getattr(spec, f"{k}_size")
        for role in out:
            for name, shape in contract.shapes(role, n, side, side).items():
                out[role].setdefault(name, {})[k] = shape
    return out

