"""The runtime API services embed: `Engine.load(folder)` over ONNX Runtime, TensorRT or PyTorch.

    eng = Engine.load("out/export")                      # or an engine folder, or a checkpoint
    print(eng.info["backend"], eng.info["reason"])
    style = eng.encode_style("painting.jpg")             # StyleCode: keep it (style bank)
    out = eng.stylize(["a.jpg", pil_img, array], style, strength=0.8)

Stages, public so a benchmark can time them separately:
    preprocess(images) -> (batch (N, 3, H8, W8) float32, sizes)   [images.py]
    eng.encode(batch) -> (latent, code);  eng.mix(latent, code, styles, ...) -> (latent, offset)
    eng.decode(latent, offset=None) -> batch;  postprocess(batch, sizes, kind) -> images   [images.py]
    eng.stylize_batch(batch, style) -> batch: the fused encode -> mix -> decode (device-resident
    on GPU backends, a CUDA graph on TensorRT / torch-CUDA)

The code is the image's style code (N, 2K): statistics of its latent and of the encoder's
features at every level. The decoder reads a style offset (the mixed style's code minus the
content's, times the strength) to paint texture; no offset (zeros) is the reconstruction.

Inputs: file paths, PIL images of any mode (EXIF rotation applied), and NumPy arrays: (H, W)
grey, (H, W, 1|3|4) or (1|3|4, H, W); uint8, uint16 or float in [0, 1]. Images are padded
(reflect) to multiples of 8 and the result is cropped back: outputs have the input's size.
Outputs have the input's kind: PIL for PIL or paths, (H, W, 3) uint8 for integer arrays,
(H, W, 3) float32 in [0, 1] for float arrays.

Large images: sides above `tile` (default 1024 px) are encoded and decoded in tiles with
`overlap` pixels of context (statistics are taken over the whole latent, so tiles agree; the
image's own style code is taken from a copy scaled down to one tile);
`max_side` (default None) instead downscales larger images and scales the result back up.
Style images are encoded with their longer side at `style_side` (default 512, the scale the
style stage trained at), so a painting's strokes do not depend on its file's resolution.

Concurrency: one Engine may be shared by many threads. ONNX Runtime sessions allow
concurrent run(); TensorRT keeps an execution context, stream and buffers per thread; the
torch runner serializes calls with a lock. Engine itself keeps no per-call state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import mixing
from .contract import ModelContract
from .errors import StyleRTError
from .images import (_as_float_array, _downsample, _kind_of, _longer_side_to, _name_of, _resize_array, _resize_mask,  # noqa: F401
                     as_array, as_mask, guided_upsample, pad_to_multiple, postprocess, preprocess, reflect_pad)
from .mixing import StyleCode
from .plan import Plan
from .tiling import run_tiled

from .choose import BACKENDS, choose_runner  # noqa: F401 (BACKENDS: the choices front ends offer)
DEFAULT_BATCH = 8  # images per call for backends without a profile (bounded memory)
# Engine.stylize can mirror this many pixels around each image and crop them off the output,
# for models whose convolutions pad with zeros and paint a frame at the border. The shipped
# model pads by replication inside the network and paints none, so the default is 0.
MARGIN = 0
# The working resolution: images with a longer side above this are stylized at it and brought
# back to full size by edge-aware upsampling (images.guided_upsample), so the painting's
# strokes have the same size relative to the picture at any resolution (a feed-forward
# decoder paints strokes a fixed number of pixels wide: at 4000 px they would be a fine
# grain) and a 12-megapixel photo costs a 1024-px one plus the upsampling. Smaller values
# paint larger strokes; None stylizes at full size (in tiles above `tile`).
MAX_SIDE = 1024
# Style images are encoded with their longer side scaled to this many pixels, up or down, so a
# painting gives the same StyleCode (and the same strokes) from a 300-px thumbnail as from a
# 4000-px scan. 512 is the scale the shipped style stage saw its paintings at (files of at most
# 512 px, cropped at scale 0.4-1). Larger paints bigger, flatter shapes; smaller, finer strokes.
# style_side=None encodes the file as it is (then only max_side applies).
STYLE_SIDE = 512


# ============================================================================= stages
# ============================================================================= the engine
class Engine:
    """One model on one backend. Build with Engine.load; see the module docstring."""

    def __init__(self, runner, info: dict, tile: int = 1024, overlap: int = 64, max_side: int | None = MAX_SIDE,
                 batch_size: int | None = None, margin: int = MARGIN, style_side: int | None = STYLE_SIDE,
                 palette: bool = True):
        self.runner = runner
        self.contract: ModelContract = runner.contract
        d = self.contract.downsample
        self.tile = max(2 * d, tile // d * d)
        self.overlap = overlap // d * d
        if self.tile <= 2 * self.overlap:
            raise StyleRTError(f"tile {tile} must exceed twice the overlap {overlap}.", "Use e.g. tile=1024, overlap=64.")
        if runner.side_range is not None:
            self.tile = min(self.tile, runner.side_range[1])
        if not (isinstance(margin, int) and 0 <= margin <= 256):
            raise StyleRTError(f"margin {margin!r} is not a whole number of pixels in 0..256.", f"The default is {MARGIN}.")
        self.margin = margin
        if style_side is not None and not (isinstance(style_side, int) and 8 <= style_side <= 4096):
            raise StyleRTError(f"style_side {style_side!r} is not a whole number of pixels in 8..4096.",
                               f"It is the longer side style images are encoded at (default {STYLE_SIDE}); None keeps their own size.")
        self.style_side = style_side
        self.palette = bool(palette)
        self.max_side = max_side
        self.batch_size = min(batch_size or runner.max_batch or DEFAULT_BATCH, runner.max_batch or 1 << 30)
        self.info = {**info, **runner.info(), "tile": self.tile, "overlap": self.overlap,
                     "max_side": max_side, "batch_size": self.batch_size, "margin": margin, "style_side": style_side,
                     "palette": self.palette}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, backend: str = "auto", precision: str | None = None,
             device: str = "auto", threads: int | None = None, runner_options: dict | None = None,
             **options) -> "Engine":
        """Load an export folder (manifest.json), an engine folder (engine.json, from
        build-engine) or a checkpoint folder (model.safetensors, torch only); None: the shipped
        model (its verified ONNX export is in the package: no torch needed).

        backend: auto | onnxruntime | tensorrt | torch. precision: None (the folder's own) |
        fp32 | fp16 | int8 (bf16: torch on the CPU). device: auto | cpu | cuda.
        runner_options: passed to the backend's runner (e.g. torch: compile, channels_last;
        onnxruntime: level, config). options: tile, overlap, max_side, batch_size, margin, style_side,
        palette (False: outputs keep the decoder's colours, no move to the style's palette).
        `info["reason"]` says what was chosen and why."""
        if folder is None:
            from .artifacts import SHIPPED_MODEL_DIR

            folder = SHIPPED_MODEL_DIR
        runner, info = choose_runner(Path(folder), backend, precision, device, threads, runner_options or {})
        runner.load()
        return cls(runner, info, **options)

    def close(self) -> None:
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ latent stages
    def _batched(self, fn, *arrays: np.ndarray):
        """fn over slices of at most batch_size of every array; outputs concatenated (one
        array or a tuple of arrays, as fn returns)."""
        bs = self.batch_size
        if len(arrays[0]) == 0:
            raise StyleRTError("empty batch (0 images).", "Pass at least one image.")
        parts = [fn(*(a[i:i + bs] for a in arrays)) for i in range(0, len(arrays[0]), bs)]
        if isinstance(parts[0], tuple):
            return tuple(p[0] if len(parts) == 1 else np.concatenate(p) for p in zip(*parts))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batch (N, 3, H, W) float32 in [0, 1], H and W multiples of 8 -> (latent
        (N, C, H/d, W/d), style code (N, 2K)); d is the contract's downsample. Batched by the engine's batch size, tiled above
        `tile` (the code then comes from a copy scaled down to one tile)."""
        x = _as_float_array(x, "image batch")
        if x.ndim == 4 and max(x.shape[2:]) > self.tile:
            d, c = self.contract.downsample, self.contract.latent_channels
            z = self._batched(lambda b: run_tiled(lambda t: self.runner.encode(t)[0], b, self.tile, self.overlap, 1, d, c), x)
            return z, self._batched(lambda b: self.runner.encode(self._shrink(b))[1], x)
        return self._batched(self.runner.encode, x)

    def _shrink(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) -> scaled so the longer side fits one tile (multiples of downsample)."""
        d = self.contract.downsample
        f = self.tile / max(x.shape[2:])
        size = (max(d, int(x.shape[2] * f) // d * d), max(d, int(x.shape[3] * f) // d * d))
        return np.stack([_resize_array(a, size) for a in x])

    def decode(self, z: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """Latent (N, C, h, w) and style offset (N, 2K) -> batch (N, 3, d*h, d*w) float32 in
        [0, 1]. No offset: the reconstruction."""
        z = _as_float_array(z, "latent")
        code = (np.zeros(self.contract.style_shape(len(z)), np.float32) if offset is None
                else _as_float_array(offset, "style offset"))
        d = self.contract.downsample
        if z.ndim == 4 and max(z.shape[2:]) * d > self.tile:
            if not self.contract.decoder_tiles:
                raise StyleRTError(f"this model's decoder normalizes over the whole image, so it cannot decode in tiles, and "
                                   f"this image's longer side ({max(z.shape[2:]) * d} px) is over the tile ({self.tile} px).",
                                   f"Stylize at most {self.tile} px on the longer side (--max-side {self.tile} or less) or "
                                   f"raise --tile to {max(z.shape[2:]) * d} or more.")
            return self._batched(lambda b, s: run_tiled(lambda t: self.runner.decode(t, s), b, self.tile // d,
                                                        self.overlap // d, d, 1, 3), z, code)
        return self._batched(self.runner.decode, z, code)

    def mix(self, z: np.ndarray, code: np.ndarray, style, weights: Sequence[float] | None = None, strength: float = 1.0,
            masks: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The decoder's inputs for content latents z (N, C, h, w) with their own codes
        (N, 2K), moved towards one StyleCode or several (weights), with optional masks (one
        per style, (h, w) at latent resolution): (AdaIN-mixed latent, style offset). NumPy on
        the host."""
        codes = [style] if isinstance(style, StyleCode) else list(style)
        self.check_codes(codes)
        return self._mix(z, code, codes, weights, strength, masks)

    def _mix(self, z, code, codes: list, weights, strength, masks):
        """mix() for checked codes (Engine.stylize's: those it encoded itself are not checked)."""
        z, code = _as_float_array(z, "latent"), _as_float_array(code, "content codes")
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(code))):
            raise StyleRTError("latent or content codes hold NaN or infinite values.", "Pass the outputs of Engine.encode.")
        coverage = None if masks is None else [
            np.broadcast_to(np.asarray(m, np.float32).reshape(-1, np.shape(m)[-2] * np.shape(m)[-1]).mean(1), (len(z),))
            for m in masks]
        return (mixing.mix(z, codes, weights, strength, masks),
                mixing.style_offset(code, codes, weights, strength, coverage))

    def stylize_batch(self, x: np.ndarray, style: StyleCode, strength: float = 1.0) -> np.ndarray:
        """Fused encode -> mix -> decode of a padded batch (the device path on GPUs)."""
        self.check_codes([style])
        return self._stylize_batch(x, style, strength)

    def _stylize_batch(self, x, style: StyleCode, strength: float) -> np.ndarray:
        x = _as_float_array(x, "image batch")
        if x.ndim == 4 and max(x.shape[2:]) > self.tile:
            return self.decode(*self._mix(*self.encode(x), [style], None, strength, None))
        return self._batched(lambda b: self.runner.stylize_batch(b, style.vector, strength), x)

    # ------------------------------------------------------------------ styles
    def encode_style(self, images, weights: Sequence[float] | None = None) -> StyleCode:
        """One style image (path, PIL, array) or several (mixed with `weights`) -> StyleCode."""
        items = images if isinstance(images, (list, tuple)) else [images]
        codes = []
        for i, im in enumerate(items):
            codes.append(self._code_of(self._fit_style(as_array(im, _name_of(im, i))), _name_of(im, i)))
        return codes[0] if len(codes) == 1 else mixing.combine(codes, weights)

    def check_codes(self, codes: Sequence[StyleCode]) -> None:
        """Raise StyleRTError when a StyleCode was not made by this model (size or sha256) or
        holds values its encoder could never give (StyleCode.out_of_range: they would render
        one flat colour or black)."""
        for c in codes:
            if not isinstance(c, StyleCode):
                raise StyleRTError(f"a style is a {type(c).__name__}, not a StyleCode.",
                                   "Make one with Engine.encode_style(image) or StyleCode.from_json(text).")
            if 2 * c.channels != self.contract.style_size:
                raise StyleRTError(f"StyleCode has {c.channels} channels, this model's codes have {self.contract.style_size // 2}.",
                                   "Re-encode the style with this engine (encode_style).")
            if c.model and self.contract.checkpoint_sha256 and c.model != self.contract.checkpoint_sha256:
                raise StyleRTError("StyleCode was encoded by a different model (checkpoint sha256 differs).",
                                   "Re-encode the style with this engine (encode_style).")
            why = c.out_of_range(self.contract)
            if why:
                raise StyleRTError(why, "Re-encode the style from its image with this engine (encode_style); "
                                        "an edited or foreign code would render a wrong image (one flat colour or black).")

    # ------------------------------------------------------------------ the whole path
    def stylize(self, contents, style, weights: Sequence[float] | None = None, strength: float = 1.0,
                mask=None, preserve_color: bool = False):
        """Stylize one content image or a list. `style`: a StyleCode, a style image, or a list
        of them mixed with `weights`. `mask`: one mask per style (path, PIL or (H, W) array
        in [0, 1], resized to each content), the style applies where the mask is 1.
        `preserve_color`: recolour each style image to the content's colours (CORAL) before
        encoding (needs style images, not StyleCodes). Returns outputs of the inputs' kind,
        a list when `contents` is a list."""
        single = not isinstance(contents, (list, tuple))
        items = [contents] if single else list(contents)
        styles = style if isinstance(style, (list, tuple)) else [style]
        masks = None if mask is None else (mask if isinstance(mask, (list, tuple)) else [mask])
        mixing.check_strength(strength)
        w = mixing.normalize_weights(weights, len(styles))
        if masks is not None and len(masks) != len(styles):
            raise StyleRTError(f"{len(masks)} masks for {len(styles)} styles.", "Give one mask per style.")
        if preserve_color and any(isinstance(s, StyleCode) for s in styles):
            raise StyleRTError("preserve_color needs the style images, not StyleCodes.",
                               "Pass the style image(s); colour preservation recolours them per content.")
        style_arrays = [None if isinstance(s, StyleCode) else self._fit_style(as_array(s, _name_of(s, i, "style")))
                        for i, s in enumerate(styles)]
        codes = None
        # the codes given are checked; those encoded here from style images are the encoder's own
        self.check_codes([s for s in styles if isinstance(s, StyleCode)])
        if not preserve_color:
            codes = [s if isinstance(s, StyleCode) else self._code_of(a, _name_of(s, i, "style"))
                     for i, (s, a) in enumerate(zip(styles, style_arrays))]
        mask_arrays = None if masks is None else [as_mask(m, f"mask #{i}") for i, m in enumerate(masks)]

        arrays = [as_array(c, _name_of(c, i)) for i, c in enumerate(items)]
        outputs: list = [None] * len(items)
        # group same-size contents into batches; everything else runs per image
        groups: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            key = a.shape if (masks is None and not preserve_color) else ("single", i)
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            orig = [arrays[i] for i in idx]
            plan = self.plan(orig[0].shape[1:])
            worked = [plan.shrink(a) for a in orig]
            x, _ = preprocess([plan.pad(a) for a in worked], self.contract.downsample)
            if preserve_color:
                codes = [self._code_of(mixing.coral(sa, worked[0]), _name_of(styles[k], k, "style"))
                         for k, sa in enumerate(style_arrays)]
            if mask_arrays is None:
                y = self._stylize_batch(x, mixing.combine(codes, w), strength)
            else:
                d = self.contract.downsample
                ml = [_downsample(pad_to_multiple(plan.pad(_resize_mask(mk, plan.work)[None])[0], d), d)
                      for mk in mask_arrays]
                y = self.decode(*self._mix(*self.encode(x), codes, w, strength, ml))
            palettes = self.palettes(codes, w, mask_arrays, plan.work) if plan.palette else []
            for j, i in enumerate(idx):
                yj = mixing.match_palettes(plan.crop(y[j]), palettes, strength)
                out = plan.restore(yj, worked[j], orig[j])[None]
                outputs[i] = postprocess(out, [orig[j].shape[1:]], _kind_of(items[i]))[0]
        return outputs[0] if single else outputs

    def _code_of(self, arr: np.ndarray, name: str) -> StyleCode:
        x, _ = preprocess([arr], self.contract.downsample)
        return StyleCode.from_codes(self.encode(x)[1], model=self.contract.checkpoint_sha256, sources=[name],
                                    palette=mixing.rgb_stats(arr))

    def palettes(self, codes: Sequence[StyleCode], weights: np.ndarray, masks, size: tuple[int, int]) -> list:
        """The palette step's targets for decoder outputs of `size` (h, w), for
        `mixing.match_palettes`: [(palette, region (h, w) or None)], the mix of the styles'
        palettes, or with masks each style's in its region (weighted and normalized as
        `mixing.mix` does); [] for codes without one."""
        if any(c.palette is None for c in codes):
            return []
        if masks is None:
            return [(mixing.combine(codes, weights).palette, None)]
        regions, scale, _ = mixing.region_weights([_resize_mask(mk, size) for mk in masks], weights)
        return [(c.palette, r * scale) for c, r in zip(codes, regions)]

    def plan(self, size: tuple[int, int]) -> Plan:
        """How an image of `size` (height, width) is stylized with this engine's options
        (max_side, tile, margin, palette): engine/plan.py."""
        return Plan.of(tuple(size), self.max_side, self.tile, self.margin, self.palette, self.contract.downsample)

    def _fit_style(self, a: np.ndarray) -> np.ndarray:
        """The style-scale policy: (3, H, W) with its longer side scaled to style_side (None:
        the content's max_side policy)."""
        return self.plan(a.shape[1:]).shrink(a) if self.style_side is None else _longer_side_to(a, self.style_side)

    # ------------------------------------------------------------------ interpolation
    def interpolate(self, a, b, ts: Sequence[float], method: str = "slerp") -> list:
        """Images along the latent path from image a to image b (same size) at each t in ts."""
        if method not in ("lerp", "slerp"):
            raise StyleRTError(f"unknown interpolation '{method}'.", "Use 'lerp' or 'slerp'.")
        try:
            ts = [float(t) for t in ts]
        except (TypeError, ValueError):
            raise StyleRTError(f"ts is {ts!r}, not a list of numbers.", "Pass the points to render, e.g. [0, 0.5, 1].") from None
        if not ts or not all(np.isfinite(ts)):
            raise StyleRTError(f"ts {ts} holds no points or non-finite ones.",
                               "Pass one or more finite points, e.g. [0, 0.5, 1] (0 is a, 1 is b).")
        x, sizes = preprocess([a, b], self.contract.downsample)
        za, zb = np.split(self.encode(x)[0], 2)
        f = mixing.slerp if method == "slerp" else mixing.lerp
        z = np.concatenate([f(za, zb, float(t)) for t in ts])
        # decoded without a style offset: every point renders as a reconstruction would
        return postprocess(self.decode(z), [sizes[0]] * len(ts), _kind_of(a))


# ============================================================================= helpers
