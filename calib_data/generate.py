"""Generate the shipped calibration set: procedural images, nothing copied from anywhere.

    python calib_data/generate.py [--kind pinknoise|mixed|deadleaves] [--count 32] [--out calib_data]

Two generators with natural-image statistics (`mixed`: half each); the shipped set is
`--kind pinknoise --count 32`, the kind that measured best (README.md):
- deadleaves: occluding disks and rectangles whose sizes follow a power law (the classic
  "dead leaves" model, whose power spectrum falls off like photographs' 1/f^2), each with a
  colour gradient, soft edges and fine texture;
- pinknoise: colour noise with a 1/f^alpha amplitude spectrum (alpha 1.5..2.5), with
  random contrast, brightness and colour balance.
Deterministic (seeded): rerunning writes the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def pink_noise(rng: np.random.Generator, size: int, alpha: float) -> np.ndarray:
    """(3, size, size) in [0, 1]: 1/f^alpha noise, channels correlated like RGB photos."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = 1.0 / f ** (alpha / 1.0)
    amp[0, 0] = 0.0
    base = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, amp.shape)
        base.append(np.fft.irfft2(amp * np.exp(1j * phase), s=(size, size)))
    base = np.stack(base)
    base /= base.std(axis=(1, 2), keepdims=True) + 1e-12
    mix = np.eye(3) * rng.uniform(0.2, 0.6) + rng.uniform(0.3, 0.8)  # luminance-dominated
    img = np.einsum("ij,jhw->ihw", mix / mix.sum(1, keepdims=True), base)
    img = img * rng.uniform(0.12, 0.3) + rng.uniform(0.3, 0.7, (3, 1, 1))
    return np.clip(img, 0, 1)


def dead_leaves(rng: np.random.Generator, size: int, n: int = 1500) -> np.ndarray:
    """(3, size, size) in [0, 1]: occluding shapes with power-law sizes."""
    img = np.empty((3, size, size))
    img[:] = rng.uniform(0, 1, (3, 1, 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    rmin, rmax = 3.0, size * 0.6
    # Inverse-CDF sampling of p(r) ~ r^-3 on [rmin, rmax], drawn in random order: each new
    # leaf falls on top of the earlier ones.
    u = rng.uniform(0, 1, n)
    r = 1.0 / np.sqrt(1 / rmin**2 - u * (1 / rmin**2 - 1 / rmax**2))
    for radius in r:
        cx, cy = rng.uniform(-radius, size + radius, 2)
        x0, x1 = int(max(0, cx - radius)), int(min(size, cx + radius + 1))
        y0, y1 = int(max(0, cy - radius)), int(min(size, cy + radius + 1))
        if x0 >= x1 or y0 >= y1:
            continue
        X, Y = xx[y0:y1, x0:x1] - cx, yy[y0:y1, x0:x1] - cy
        if rng.uniform() < 0.6:
            mask = X * X + Y * Y <= radius * radius
        else:
            a = rng.uniform(0, np.pi)
            u_, v_ = X * np.cos(a) + Y * np.sin(a), -X * np.sin(a) + Y * np.cos(a)
            mask = (np.abs(u_) <= radius) & (np.abs(v_) <= radius * rng.uniform(0.2, 1.0))
        # photographs' colours: mostly luminance, moderate chroma
        colour = (rng.beta(1.5, 1.5) + rng.normal(0, 0.12, 3))[:, None]
        grad = rng.normal(0, 0.4, 2) / max(radius, 1.0)
        shade = 1.0 + grad[0] * X[mask] + grad[1] * Y[mask]
        img[:, y0:y1, x0:x1][:, mask] = colour * shade
    img = np.clip(img, 0, 1)
    texture = pink_noise(rng, size, 1.0) - 0.5
    return np.clip(img + texture * rng.uniform(0.05, 0.25), 0, 1)


def make(kind: str, i: int, size: int) -> Image.Image:
    rng = np.random.default_rng(1000 + i)
    if kind == "mixed":
        kind = "deadleaves" if i % 2 == 0 else "pinknoise"
    arr = dead_leaves(rng, size) if kind == "deadleaves" else pink_noise(rng, size, rng.uniform(1.5, 2.5))
    im = Image.fromarray((arr.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
    blur = rng.uniform(0, 1.2)  # photographs are never perfectly sharp
    return im.filter(ImageFilter.GaussianBlur(blur)) if blur > 0.3 else im


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["pinknoise", "mixed", "deadleaves"], default="pinknoise")
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(a.count):
        make(a.kind, i, a.size).save(out / f"{a.kind}_{i:03d}.jpg", quality=90)
    print(f"wrote {a.count} {a.kind} images to {out}")


if __name__ == "__main__":
    main()
