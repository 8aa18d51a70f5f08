"""Procedural style images for the style stage: more kinds of pattern than 17 paintings hold.

Why: on held-out paintings the style loss of the shipped decoder is 5x its loss on the
training paintings (0.136 against 0.028, `python -m stylert.export.loss_probe`; README,
"Why procedural styles"): with 17 paintings the decoder learns those 17 textures and paints its nearest
one for any other. Generated patterns (cells with dark lead lines, warped bands, flow-aligned
strokes, dots, tilings, thresholded noise) in colours drawn from the training paintings
teach it to follow the style code's statistics instead. They are made here, from a seed: no
files, no licences, nothing downloaded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("cells", "bands", "strokes", "dots", "tiles", "mottle")


def _palette(rng: np.random.Generator, source: list[np.ndarray] | None, n: int) -> np.ndarray:
    """n colours (n, 3) uint8: pixels of one source painting when given, else random HSV-ish."""
    if source:
        a = source[rng.integers(len(source))].reshape(-1, 3)
        return a[rng.integers(len(a), size=n)]
    base = rng.uniform(0, 255, size=(1, 3))
    return np.clip(base + rng.normal(0, 70, size=(n, 3)), 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float noise in [0, 1], smooth at 1/cells of the side (bicubic upsampling)."""
    g = rng.random((cells, cells)).astype(np.float32)
    im = Image.fromarray((g * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(im, np.float32) / 255.0


def _cells(rng, size, pal):
    n = int(rng.integers(12, 90))
    pts = rng.uniform(0, size, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = (yy[..., None] - pts[:, 1]) ** 2 + (xx[..., None] - pts[:, 0]) ** 2  # (H, W, n)
    part = np.partition(d, 1, axis=-1)
    idx = d.argmin(-1)
    img = pal[idx % len(pal)].astype(np.float32)
    edge = np.sqrt(part[..., 1]) - np.sqrt(part[..., 0])  # distance to the nearest border, x2
    width = rng.uniform(1.0, 6.0)
    dark = pal[rng.integers(len(pal))].astype(np.float32) * 0.25
    img = np.where((edge < width)[..., None], dark, img)
    return img


def _bands(rng, size, pal):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    th = rng.uniform(0, np.pi)
    freq = rng.uniform(2, 10)  # bands a few to tens of pixels wide (more aliases into moire)
    warp = rng.uniform(0, 1.5) * (_smooth_noise(rng, size, int(rng.integers(2, 5))) - 0.5)  # swirls
    phase = (np.cos(th) * xx + np.sin(th) * yy + warp) * freq
    t = (np.sin(2 * np.pi * phase) + 1) / 2  # (H, W) in [0, 1]
    k = len(pal)
    pos = t * (k - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, k - 1)
    f = (pos - lo)[..., None]
    sharp = rng.random() < 0.5  # flat bands or smooth gradients
    if sharp:
        f = (f > 0.5).astype(np.float32)
    return pal[lo].astype(np.float32) * (1 - f) + pal[hi].astype(np.float32) * f


def _strokes(rng, size, pal):
    bg = tuple(int(v) for v in pal[rng.integers(len(pal))])
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    flow = _smooth_noise(rng, size, int(rng.integers(2, 5))) * 2 * np.pi * rng.uniform(0.5, 2.0)
    length, width = rng.uniform(6, 40), int(rng.integers(2, 12))
    for _ in range(int(rng.integers(150, 700))):
        x, y = rng.uniform(0, size, 2)
        a = flow[int(y) % size, int(x) % size] + rng.normal(0, 0.15)
        dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
        c = pal[rng.integers(len(pal))].astype(int) + rng.integers(-20, 21, 3)
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=tuple(int(v) for v in np.clip(c, 0, 255)), width=width)
    return np.asarray(im, np.float32)


def _dots(rng, size, pal):
    bg = tuple(int(v) for v in pal[rng.integers(len(pal))])
    im = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(im)
    r0 = rng.uniform(1.5, 14)
    for _ in range(int(min(6000, rng.uniform(0.3, 1.2) * size * size / (r0 * r0 * 3)))):
        x, y = rng.uniform(0, size, 2)
        r = r0 * rng.uniform(0.6, 1.4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in pal[rng.integers(len(pal))]))
    return np.asarray(im, np.float32)


def _tiles(rng, size, pal):
    h, w = rng.uniform(6, 60), rng.uniform(6, 90)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    row = np.floor(yy / h)
    xs = xx + (row % 2) * w * rng.uniform(0, 0.5)  # running bond, or a grid
    col = np.floor(xs / w)
    ids = (row * 7919 + col * 104729).astype(np.int64) % len(pal)
    img = pal[ids].astype(np.float32)
    rng.random((size, size, 1))  # unused draw, kept: a seed still gives the textures the shipped model saw
    mortar = rng.uniform(0.5, 4)
    line = ((yy % h) < mortar) | ((xs % w) < mortar)
    gap = pal[rng.integers(len(pal))].astype(np.float32) * rng.uniform(0.2, 1.2)
    return np.where(line[..., None], np.clip(gap, 0, 255), img)


def _mottle(rng, size, pal):
    t = sum(_smooth_noise(rng, size, c) / (i + 1) for i, c in enumerate((4, 16, 64, size // 2)))
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    levels = len(pal)
    idx = np.clip((t * levels).astype(int), 0, levels - 1)
    return pal[idx].astype(np.float32)


_MAKERS = {"cells": _cells, "bands": _bands, "strokes": _strokes, "dots": _dots, "tiles": _tiles, "mottle": _mottle}


def texture(rng: np.random.Generator, size: int = 256, source: list[np.ndarray] | None = None, kind: str | None = None) -> np.ndarray:
    """One procedural style image (size, size, 3) uint8; its colours come from `source`
    (arrays of training paintings) when given. A light blur and grain keep it painterly."""
    kind = kind or KINDS[rng.integers(len(KINDS))]
    pal = _palette(rng, source, int(rng.integers(2, 8)))
    img = _MAKERS[kind](rng, size, pal)
    img = img + rng.normal(0, rng.uniform(0, 8), size=img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    return np.asarray(im)


def textures(n: int, seed: int, size: int = 256, source: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """n procedural style images, the same for the same seed (and source)."""
    rng = np.random.default_rng(seed)
    return [texture(rng, size, source, KINDS[i % len(KINDS)]) for i in range(n)]


def sky(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """One flat content (size, size, 3) uint8 of the kind where a stylizer's marks show most: a
    sky's vertical gradient (sometimes with soft clouds, sometimes a plain wall) under a camera's
    grain (0.5-3 levels). The drip probe (export/marks.py) found the shipped model turning this grain
    into the same dark drips for every painting; with such contents in training, the style terms
    judge what the decoder paints there."""
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if rng.random() < 0.6:  # sky-like: blue above, paler below
        top = np.array([rng.uniform(40, 140), rng.uniform(90, 180), rng.uniform(170, 250)])
        bottom = np.clip(top + rng.uniform(30, 110), 0, 255)
    if rng.random() < 0.2:  # a plain wall
        bottom = top
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None] ** rng.uniform(0.5, 2.0)
    img = top * (1 - y) + bottom * y + np.zeros((1, size, 1), np.float32)
    if rng.random() < 0.3:  # soft clouds
        img = img + (_smooth_noise(rng, size, int(rng.integers(3, 8)))[:, :, None] - 0.5) * rng.uniform(10, 60)
    img = img + rng.normal(0, rng.uniform(0.5, 3.0), size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def skies(n: int, seed: int, size: int = 256) -> list[np.ndarray]:
    """n flat contents (`sky`), the same for the same seed."""
    rng = np.random.default_rng(seed + 7919)
    return [sky(rng, size) for _ in range(n)]
