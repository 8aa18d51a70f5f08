"""How one image is stylized, decided once: the size the model works at, whether that runs in
tiles, the margin around it, how the result comes back to full size and whether the palette
step runs. `Engine.plan(size)` builds it from the engine's options; Engine.stylize (which the
CLI, `serve` and the Python API call) and the video path (engine/video.py) follow it, so one
photo with one set of options gives one picture from every front end. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import _resize_array, guided_upsample, reflect_pad


@dataclass(frozen=True)
class Plan:
    size: tuple[int, int]  # the input's (height, width)
    work: tuple[int, int]  # what the model paints: the input scaled so its longer side <= max_side
    tiled: bool  # the working image's longer side is above the engine's tile: encoded and decoded in tiles
    margin: int  # pixels of reflected border the model paints and the result drops (Engine's margin)
    palette: bool  # the output's colours move to the style's palette (mixing.match_palettes)

    @classmethod
    def of(cls, size: tuple[int, int], max_side: int | None, tile: int, margin: int, palette: bool,
           multiple: int = 8) -> "Plan":
        h, w = size
        if max_side is not None and max(h, w) > max_side:
            s = max_side / max(h, w)
            work = (max(1, round(h * s)), max(1, round(w * s)))
        else:
            work = (h, w)
        padded = -(-(max(work) + 2 * margin) // multiple) * multiple  # preprocess pads to the model's multiple
        return cls((h, w), work, padded > tile, margin, palette)

    @property
    def upsampled(self) -> bool:  # the result comes back by edge-aware upsampling, guided by the input
        return self.work != self.size

    def shrink(self, a: np.ndarray) -> np.ndarray:
        """The input (3, H, W) at the working size."""
        return a if not self.upsampled else _resize_array(a, self.work)

    def pad(self, a: np.ndarray) -> np.ndarray:
        return reflect_pad(a, self.margin)

    def crop(self, y: np.ndarray) -> np.ndarray:
        """The model's output (3, h + 2m, w + 2m, or more: padded to its multiple) without the margin."""
        m, (h, w) = self.margin, self.work
        return y[:, m:m + h, m:m + w]

    def restore(self, y: np.ndarray, worked: np.ndarray, orig: np.ndarray) -> np.ndarray:
        """The result (3, h, w) at the input's size: edge-aware upsampling guided by the input
        itself (images.guided_upsample) when it was painted smaller."""
        return y if not self.upsampled else guided_upsample(y, worked, orig)

    def describe(self) -> str:
        (h, w), (wh, ww) = self.size, self.work
        how = f"painted at {ww}x{wh}, upsampled edge-aware to {w}x{h}" if self.upsampled else f"painted at {w}x{h}"
        return how + (", in tiles" if self.tiled else "") + (", palette step" if self.palette else "")
