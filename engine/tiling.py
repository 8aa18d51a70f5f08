"""Tiles with overlap: large images through a fixed-memory encoder and decoder.

Why it is exact enough: the encoder and decoder are convolutional with a bounded receptive
field, so a tile's centre does not see the tile's border when the overlap exceeds the
receptive field's radius. Each tile is run with `overlap` pixels of context on every side and
only its core is kept; the cores partition the image. AdaIN statistics are taken over the
whole stitched latent (the latent of a 8000 x 6000 image is 1000 x 750 x C floats), never
per tile, so tiles cannot disagree in colour.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Cover [0, size) with tiles of at most `tile`: (start, end, core_start, core_end),
    cores partitioning [0, size), each tile = its core plus up to `overlap` on each side.
    All values are multiples of the inputs' common factor when size, tile, overlap are."""
    if size <= tile:
        return [(0, size, 0, size)]
    step = tile - 2 * overlap
    if step <= 0:
        raise ValueError(f"tile {tile} must exceed twice the overlap {overlap}")
    out = []
    for c0 in range(0, size, step):
        c1 = min(c0 + step, size)
        out.append((max(0, c0 - overlap), min(size, c1 + overlap), c0, c1))
    return out


def run_tiled(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, tile: int, overlap: int,
              scale_num: int, scale_den: int, out_channels: int) -> np.ndarray:
    """Apply a convolutional `fn` (N, Cin, H, W) -> (N, out_channels, H*num/den, W*num/den)
    tile by tile. `tile`/`overlap` are in x's pixels; the encoder has num/den = 1/8, the
    decoder 8/1."""
    n, _, h, w = x.shape
    out = np.empty((n, out_channels, h * scale_num // scale_den, w * scale_num // scale_den), np.float32)
    for y0, y1, cy0, cy1 in spans(h, tile, overlap):
        for x0, x1, cx0, cx1 in spans(w, tile, overlap):
            t = fn(np.ascontiguousarray(x[:, :, y0:y1, x0:x1]))
            s = lambda v: v * scale_num // scale_den  # noqa: E731  (x pixels -> out pixels)
            out[:, :, s(cy0):s(cy1), s(cx0):s(cx1)] = t[:, :, s(cy0 - y0):s(cy1 - y0), s(cx0 - x0):s(cx1 - x0)]
    return out
