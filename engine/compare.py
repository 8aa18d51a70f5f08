"""Comparison of outputs: the one function used by the tests, build-engine's accuracy report
and bench (Polygraphy keeps comparison outside the runners for the same reason)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Comparison:
    max_abs: float  # max |test - ref|
    mean_abs: float
    psnr_db: float  # 10 log10(peak^2 / MSE); inf when identical
    peak: float  # the signal peak the PSNR is relative to

    def to_dict(self) -> dict:
        d = asdict(self)
        if not np.isfinite(self.psnr_db):
            d["psnr_db"] = None if np.isnan(self.psnr_db) else 999.0  # JSON has no inf
        return d


def compare(test: np.ndarray, ref: np.ndarray, peak: float | None = 1.0) -> Comparison:
    """Compare `test` against the reference `ref` (same shape).

    peak: the value range for PSNR; 1.0 for images in [0, 1]; None takes ref's own
    max - min (for latents, which have no fixed range).
    """
    test = np.asarray(test, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if test.shape != ref.shape:
        raise ValueError(f"shape mismatch: test {test.shape} vs reference {ref.shape}")
    d = test - ref
    if not np.all(np.isfinite(test)):
        return Comparison(float("inf"), float("inf"), float("nan"), float(peak or 0.0))
    if peak is None:
        peak = float(ref.max() - ref.min()) or 1.0
    mse = float(np.mean(d * d)) if d.size else 0.0
    psnr = float("inf") if mse == 0.0 else 10.0 * np.log10(peak * peak / mse)
    return Comparison(float(np.abs(d).max(initial=0.0)), float(np.abs(d).mean()) if d.size else 0.0, psnr, float(peak))


def psnr_per_image(test: np.ndarray, ref: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """PSNR in dB of each image in a batch (N, ...): shape (N,)."""
    d = np.asarray(test, np.float64) - np.asarray(ref, np.float64)
    mse = np.maximum((d * d).reshape(len(d), -1).mean(1), 1e-20)
    return 10.0 * np.log10(peak * peak / mse)
