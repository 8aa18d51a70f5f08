"""Latent mixing in NumPy: the reference every device implementation is checked against.

The math is ../shared/notes/style-transfer.md. Latents are (N, C, h, w) float32. A style is
its StyleCode: per-channel means and stds of the latent (what AdaIN moves, the first C
entries) and of the encoder's features at every level (what the decoder's style head reads:
the texture), K channels in all, so 2 x K numbers. A service encodes a style once and keeps
the StyleCode (a style bank).

Mixing with strength alpha gives the decoder two things: the latent
t = alpha * AdaIN(z_c, style) + (1 - alpha) * z_c, and the style offset
alpha * (style - the content's own code), which drives the decoder's style head. At
alpha = 0 that is the content's own latent and a zero offset: exactly the reconstruction.

A style also carries its **palette**: the mean (3) and covariance (3 x 3) of its pixels' RGB.
After the decoder, each output is moved to it (a linear colour transfer, Pitie & Kokaram's
"MKL"/CORAL form: x' = C_s^1/2 C_y^-1/2 (x - mu_y) + mu_s, blended by the strength): the
decoder paints the strokes and the palette is then exact, as colour transfer's is.

Statistics: mu = mean over h x w, sigma = sqrt(population variance + EPS), EPS = 1e-5.
The CUDA kernel (kernels/adain.cu) and the torch path use the same definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from .errors import StyleRTError

EPS = 1e-5
# How far a StyleCode may lie beyond the encoder's own range (ModelContract.style_ranges) and
# still be read as one: any single entry up to RANGE_FACTOR x the level's extreme, each level
# as a whole (the RMS of its means, of its stds) up to RMS_FACTOR x the largest the encoder
# gave. Measured on the shipped model: codes of 300 paintings and photographs and 60
# generated images it never saw all pass. What renders one flat colour or black is entries
# moving together (all means of every level at their largest, each entry inside its own
# range, is black): the RMS bound refuses that; codes crafted to move every feature mean
# together by less still can (docs/bad-input.md: a value check cannot see the decoder's
# response to every direction).
RANGE_FACTOR = 3.0
RMS_FACTOR = 1.5


# ----------------------------------------------------------------------------- statistics
def channel_stats(z: np.ndarray, mask: np.ndarray | None = None, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample, per-channel mean and std of z (N, C, h, w) -> two (N, C) float32 arrays.

    mask: optional (N or 1, 1 or C, h, w) weights in [0, 1]; the statistics are then taken
    over the weighted region only (a region with no weight gives mean 0, std sqrt(eps)).
    """
    z = np.asarray(z, dtype=np.float64)
    if mask is None:
        mu = z.mean(axis=(2, 3))
        var = z.var(axis=(2, 3))
    else:
        m = np.broadcast_to(np.asarray(mask, dtype=np.float64), z.shape)
        wsum = np.maximum(m.sum(axis=(2, 3)), 1e-12)
        mu = (m * z).sum(axis=(2, 3)) / wsum
        var = (m * (z - mu[:, :, None, None]) ** 2).sum(axis=(2, 3)) / wsum
    return mu.astype(np.float32), np.sqrt(var + eps).astype(np.float32)


def adain(content: np.ndarray, style_mean: np.ndarray, style_std: np.ndarray, strength: float = 1.0,
          eps: float = EPS, content_stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """alpha * AdaIN(z_c, style) + (1 - alpha) * z_c.

    content (N, C, h, w); style_mean/style_std (C,) or (N, C). content_stats: the (N, C) means
    and stds to normalize by instead of z's own (video: averaged over a shot's frames).
    Returns float32 (N, C, h, w).
    """
    z = np.asarray(content, dtype=np.float32)
    mu, sigma = channel_stats(z, eps=eps) if content_stats is None else (np.asarray(s, np.float32) for s in content_stats)
    sm = _per_sample(style_mean, z.shape)
    ss = _per_sample(style_std, z.shape)
    t = (z - mu[:, :, None, None]) / sigma[:, :, None, None] * ss + sm
    return (strength * t + (1.0 - strength) * z).astype(np.float32)


def _per_sample(s: np.ndarray, shape) -> np.ndarray:
    s = np.asarray(s, dtype=np.float32)
    if s.ndim == 1:
        s = s[None]
    if s.shape[-1] != shape[1] or s.shape[0] not in (1, shape[0]):
        raise StyleRTError(
            f"style statistics have shape {s.shape}, the latent has {shape[1]} channels and batch {shape[0]}.",
            "The StyleCode was made with a different model; re-encode the style with this engine.",
        )
    return s[:, :, None, None]


# ----------------------------------------------------------------------------- StyleCode
@dataclass
class StyleCode:
    """A style's per-channel statistics, 2 x K numbers (see the module docstring); the first
    C of `mean` and `std` are the latent's, what AdaIN moves.

    model: the sha256 of the checkpoint whose latent space the numbers live in (a code is
    meaningless under another model); sources: where it came from, for people.
    """

    mean: np.ndarray  # (K,) float32
    std: np.ndarray  # (K,) float32
    model: str = ""
    sources: list[str] = field(default_factory=list)
    # the palette: RGB mean (3,) and covariance (3, 3) of the style image's pixels in [0, 1];
    # None (codes saved before palettes existed): outputs keep the decoder's colours
    rgb_mean: np.ndarray | None = None
    rgb_cov: np.ndarray | None = None

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise StyleRTError(f"StyleCode mean {self.mean.shape} and std {self.std.shape} differ in length.")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise StyleRTError("StyleCode holds non-finite values or a non-positive std.", "Re-encode the style.")
        if (self.rgb_mean is None) != (self.rgb_cov is None):
            raise StyleRTError("StyleCode has half a palette (rgb_mean or rgb_cov alone).", "Re-encode the style.")
        if self.rgb_mean is not None:
            self.rgb_mean = np.asarray(self.rgb_mean, dtype=np.float64).reshape(-1)
            self.rgb_cov = np.asarray(self.rgb_cov, dtype=np.float64)
            if not _is_palette(self.rgb_mean, self.rgb_cov):
                raise StyleRTError("StyleCode's palette is not the RGB statistics of an image: a mean of 3 numbers in "
                                   "[0, 1] and a symmetric positive semi-definite 3 x 3 covariance whose variances are at "
                                   "most m (1 - m) (pixels lie in [0, 1]).", "Re-encode the style from its image.")

    def out_of_range(self, contract) -> str | None:
        """Why this code is one the model's encoder could never give (None: it could), against
        `contract` (a ModelContract of the same channel count): a std below sqrt(EPS) (the
        encoder's least: sigma = sqrt(var + EPS)); with contract.style_ranges, an entry beyond
        RANGE_FACTOR x its level's range or a level whose RMS exceeds RMS_FACTOR x the
        encoder's largest; without them, an entry over contract.style_limit."""
        floor = float(np.sqrt(EPS, dtype=np.float32)) * (1 - 1e-4)
        if float(self.std.min()) < floor:
            return (f"StyleCode has a std of {float(self.std.min()):.3g}, outside the range this model's codes take "
                    f"(at least sqrt({EPS:g}) = {floor:.5f}, the least the encoder computes).")
        levels, ranges = tuple(contract.style_channels), tuple(contract.style_ranges)
        if ranges and sum(levels) == self.channels:
            top = max(max(abs(r[0]), abs(r[1]), r[2], r[3], r[4]) for r in ranges)
            i = 0
            for lvl, (c, (lo, hi, mrms, shi, srms)) in enumerate(zip(levels, ranges)):
                m, sd = self.mean[i:i + c].astype(np.float64), self.std[i:i + c].astype(np.float64)
                i += c
                where = "the latent" if lvl == 0 else f"feature level {lvl}"
                checks = [
                    (float(m.min()), RANGE_FACTOR * min(lo, 0.0) - 1e-6, "lowest mean", lo, -1),
                    (float(m.max()), RANGE_FACTOR * max(hi, 0.0) + 1e-6, "highest mean", hi, 1),
                    (float(sd.max()), RANGE_FACTOR * shi + 1e-6, "largest std", shi, 1),
                    (float(np.sqrt((m * m).mean())), RMS_FACTOR * max(mrms, 1e-3 * top), "RMS of the means", mrms, 1),
                    (float(np.sqrt((sd * sd).mean())), RMS_FACTOR * max(srms, 1e-3 * top), "RMS of the stds", srms, 1),
                ]
                for got, bound, what, enc, sign in checks:
                    if sign * (got - bound) > 0:
                        return (f"StyleCode's {what} at {where} is {got:.4g}, outside the range this model's codes take "
                                f"(the encoder's on its probe images: {enc:.4g}; accepted {'down' if sign < 0 else 'up'} "
                                f"to {bound:.4g}).")
            return None
        lim = contract.style_limit
        peak = max(float(np.abs(self.mean).max()), float(self.std.max()))
        if lim and peak > lim:
            return f"StyleCode statistics reach {peak:.4g}, outside the range this model's codes take (up to {lim:.3g})."
        return None

    @property
    def palette(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.rgb_mean is None else (self.rgb_mean, self.rgb_cov)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    def to_json(self) -> str:
        d = asdict(self)
        d["mean"] = [float(v) for v in self.mean]
        d["std"] = [float(v) for v in self.std]
        if self.rgb_mean is None:
            del d["rgb_mean"], d["rgb_cov"]
        else:
            d["rgb_mean"] = [float(v) for v in self.rgb_mean]
            d["rgb_cov"] = [[float(v) for v in row] for row in self.rgb_cov]
        return json.dumps({"kind": "stylert-style", **d}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "StyleCode":
        """A StyleCode from its JSON (str, or bytes in UTF-8). Anything else, malformed,
        nested past Python's recursion limit or of the wrong types: StyleRTError."""
        try:
            if isinstance(text, (bytes, bytearray)):
                text = bytes(text).decode("utf-8")
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError(f"the top level is a {type(d).__name__}, not an object")
            if d.pop("kind", None) != "stylert-style":
                raise ValueError("kind is not 'stylert-style'")
            for k in ("mean", "std"):
                if not (isinstance(d[k], list) and all(_is_number(v) for v in d[k])):
                    raise ValueError(f"{k} must be a flat list of numbers")
            mean, std = (np.asarray(d[k], dtype=np.float32) for k in ("mean", "std"))
            if mean.ndim != 1 or std.ndim != 1 or mean.size == 0:
                raise ValueError(f"mean and std must be flat lists of numbers (got shapes {mean.shape} and {std.shape})")
            if not isinstance(d.get("model", ""), str) or not isinstance(d.get("sources", []), list):
                raise ValueError("model must be a string and sources a list")
            rgb = [None if d.get(k) is None else np.asarray(d[k], dtype=np.float64) for k in ("rgb_mean", "rgb_cov")]
            return cls(mean=mean, std=std, model=d.get("model", ""), sources=[str(x) for x in d.get("sources", [])],
                       rgb_mean=rgb[0], rgb_cov=rgb[1])
        except UnicodeDecodeError as e:
            raise StyleRTError(f"not a valid StyleCode JSON: not UTF-8 text (byte {e.start}).",
                               "Write it with StyleCode.to_json() (stylize --save-style).") from None
        except RecursionError:
            raise StyleRTError("not a valid StyleCode JSON: nested too deeply to be one.",
                               "Write it with StyleCode.to_json() (stylize --save-style).") from None
        except (ValueError, KeyError, TypeError, OverflowError) as e:
            raise StyleRTError(f"not a valid StyleCode JSON: {e}.", "Write it with StyleCode.to_json() (stylize --save-style).") from None

    @classmethod
    def from_codes(cls, codes: np.ndarray, model: str = "", sources: Sequence[str] = (),
                   palette: tuple[np.ndarray, np.ndarray] | None = None) -> "StyleCode":
        """The encoder's style output (N, 2K) for one or several style images; several are
        averaged with equal weights (the same as a weighted mix of their codes). palette: the
        style image's rgb_stats."""
        codes = np.asarray(codes, np.float32)
        k = codes.shape[1] // 2
        rgb = palette or (None, None)
        return cls(codes[:, :k].mean(0), codes[:, k:].mean(0), model=model, sources=list(sources),
                   rgb_mean=rgb[0], rgb_cov=rgb[1])

    @property
    def vector(self) -> np.ndarray:
        """(2K,) float32: the decoder's style input layout, means then stds."""
        return np.concatenate([self.mean, self.std]).astype(np.float32)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_palette(mean: np.ndarray, cov: np.ndarray, tol: float = 1e-5) -> bool:
    """Whether (mean, cov) can be the RGB mean and covariance of pixels in [0, 1]: the mean in
    [0, 1], cov symmetric positive semi-definite, and each variance at most m (1 - m) (the
    most a variable in [0, 1] with mean m can vary: Bhatia-Davis). A mix of palettes
    (mix_palettes, the moments of the pixels pooled) is one again."""
    if mean.shape != (3,) or cov.shape != (3, 3) or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        return False
    return bool(mean.min() >= -tol and mean.max() <= 1 + tol and np.allclose(cov, cov.T, atol=1e-6)
                and np.linalg.eigvalsh((cov + cov.T) / 2).min() >= -1e-6 and np.all(np.diag(cov) <= mean * (1 - mean) + tol))


def combine(codes: Sequence[StyleCode], weights: Sequence[float] | None = None) -> StyleCode:
    """Weighted mix of styles. AdaIN is linear in the style statistics, so the mix is
    sum_k w_k mu_k and sum_k w_k sigma_k with weights normalized to sum 1."""
    w = normalize_weights(weights, len(codes))
    _check_same_space(codes)
    mean = sum(wk * c.mean for wk, c in zip(w, codes))
    std = sum(wk * c.std for wk, c in zip(w, codes))
    pal = mix_palettes([c.palette for c in codes], w)
    return StyleCode(mean, std, model=codes[0].model, sources=[s for c in codes for s in c.sources],
                     rgb_mean=None if pal is None else pal[0], rgb_cov=None if pal is None else pal[1])


def normalize_weights(weights: Sequence[float] | None, k: int) -> np.ndarray:
    if k == 0:
        raise StyleRTError("no style given.", "Pass at least one style image or StyleCode.")
    w = np.ones(k) if weights is None else np.asarray(list(weights), dtype=np.float64)
    if w.shape != (k,):
        raise StyleRTError(f"{len(w)} style weights for {k} styles.", "Give one weight per style.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise StyleRTError(f"style weights {list(w)} are invalid.", "Weights must be >= 0 with a positive sum.")
    return w / w.sum()


def _check_same_space(codes: Sequence[StyleCode]) -> None:
    if len({c.channels for c in codes}) > 1:
        raise StyleRTError(f"styles have different channel counts {[c.channels for c in codes]}.",
                           "All StyleCodes must come from the same model.")
    models = {c.model for c in codes if c.model}
    if len(models) > 1:
        raise StyleRTError("styles were encoded by different models.", "Re-encode every style with this engine.")


# ----------------------------------------------------------------------------- mixing
def mix(z: np.ndarray, styles: Sequence[StyleCode] | StyleCode, weights: Sequence[float] | None = None,
        strength: float = 1.0, masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Move the style statistics onto the content latent z (N, C, h, w).

    Without masks: one AdaIN with the weighted mix of the styles.
    With masks (one (h, w) or (N, 1, h, w) weight map in [0, 1] per style, at the latent's
    resolution): for each style k, the content statistics are taken over its region, AdaIN is
    applied there and scattered back with the mask as weight. Where the masks sum above 1 they
    are normalized; where they sum below 1 the rest is the content. Weights, if given, scale
    each style's mask (relative to the largest weight).
    """
    styles = [styles] if isinstance(styles, StyleCode) else list(styles)
    check_strength(strength)
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 4:
        raise StyleRTError(f"latent has shape {z.shape}.", "Expected (N, C, h, w).")
    c = z.shape[1]
    if masks is None:
        s = combine(styles, weights)
        return adain(z, s.mean[:c], s.std[:c], strength)
    if len(masks) != len(styles):
        raise StyleRTError(f"{len(masks)} masks for {len(styles)} styles.", "Give one mask per style.")
    _check_same_space(styles)
    n, c, h, wd = z.shape
    shaped = []
    for m in masks:
        m = np.asarray(m, dtype=np.float32)
        m = m.reshape((1, 1) + m.shape) if m.ndim == 2 else m
        if m.shape[-2:] != (h, wd) or m.ndim != 4:
            raise StyleRTError(f"mask has shape {m.shape}, the latent is {h}x{wd}.",
                               "Masks are resized to the image first; pass (H, W) maps at image size to the engine.")
        shaped.append(np.broadcast_to(m, (n, 1, h, wd)))
    ms, scale, covered = region_weights(shaped, weights)
    out = z * (1.0 - covered)
    for code, m in zip(styles, ms):
        mu, sigma = channel_stats(z, mask=m)
        t = (z - mu[:, :, None, None]) / sigma[:, :, None, None] * code.std[None, :c, None, None] + code.mean[None, :c, None, None]
        out = out + m * scale * (strength * t + (1.0 - strength) * z)
    return out.astype(np.float32)


def region_weights(masks: Sequence[np.ndarray], weights: Sequence[float] | None) -> tuple[list, np.ndarray, np.ndarray]:
    """Masks as `mix` weighs them: each clipped to [0, 1] times its style's weight relative to
    the largest; `scale` normalizes where they sum above 1; `covered` (at most 1) is the share
    of each pixel that is style rather than content. Returns (weighted masks, scale, covered)."""
    w = normalize_weights(weights, len(masks))
    w = w / w.max()
    ms = [np.clip(m, 0.0, 1.0) * wk for m, wk in zip(masks, w)]
    total = np.sum(ms, axis=0)
    return ms, np.where(total > 1.0, 1.0 / np.maximum(total, 1e-12), 1.0), np.minimum(total, 1.0)


def style_offset(content_code: np.ndarray, styles: Sequence[StyleCode] | StyleCode, weights: Sequence[float] | None = None,
                 strength: float = 1.0, coverage: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """The decoder's style input for content codes (N, 2K): alpha * (style - own).

    coverage: with masks, each style's share of every image (N,) (its mask's mean); the style
    is then the coverage-weighted mix of the styles and the content's own code for the rest."""
    styles = [styles] if isinstance(styles, StyleCode) else list(styles)
    check_strength(strength)
    own = np.asarray(content_code, np.float32)
    if own.ndim != 2 or own.shape[1] != styles[0].vector.shape[0]:
        raise StyleRTError(f"content codes have shape {own.shape}, the styles have {styles[0].vector.shape[0]} numbers.",
                           "The StyleCode was made with a different model; re-encode the style with this engine.")
    if coverage is None:
        style = combine(styles, weights).vector[None]
        return (strength * (style - own)).astype(np.float32)
    _check_same_space(styles)
    cov = np.stack([np.asarray(a, np.float32).reshape(-1) for a in coverage], 1)  # (N, S)
    cov = cov / np.maximum(cov.sum(1, keepdims=True), 1.0)  # masks summing above 1 are normalized
    mixed = cov @ np.stack([s.vector for s in styles]) + (1.0 - cov.sum(1, keepdims=True)) * own
    return (strength * (mixed - own)).astype(np.float32)


def mix_arrays(z: np.ndarray, own: np.ndarray, style: np.ndarray, strength: float, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Content latents z (N, C, h, w) with their codes own (N, 2K), one style code per image
    (N, 2K) -> the decoder's inputs: alpha * AdaIN(z, the style's latent statistics) +
    (1 - alpha) * z, and the style offset alpha * (style - own). What every runner computes
    on its device (the torch runner, the CUDA kernels); StyleCode-level mixing (weights,
    masks) is `mix` and `style_offset`."""
    k = style.shape[1] // 2
    t = adain(z, style[:, :c], style[:, k:k + c], strength)
    return t, (strength * (style - own)).astype(np.float32)


def check_strength(strength: float) -> None:
    if not isinstance(strength, (int, float, np.integer, np.floating)) or isinstance(strength, bool):
        raise StyleRTError(f"strength {strength!r} is a {type(strength).__name__}, not a number.",
                           "Pass a number in [0, 1]: 0 keeps the content, 1 is full style.")
    if not (0.0 <= float(strength) <= 1.0):
        raise StyleRTError(f"strength {strength} is outside [0, 1].", "0 keeps the content, 1 is full style.")


# ----------------------------------------------------------------------------- colour
def rgb_stats(x: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mean (3,) and covariance (3, 3) of the pixels of x (3, H, W) (float64); weight:
    optional (H, W) weights >= 0 (a region)."""
    p = np.asarray(x, np.float32).reshape(3, -1)
    w = None if weight is None else np.asarray(weight, np.float32).reshape(-1)
    ws = p.shape[1] if w is None else max(float(w.sum(dtype=np.float64)), 1e-12)
    m = (p if w is None else p * w).sum(1, dtype=np.float64) / ws
    d = p - m.astype(np.float32)[:, None]
    dw = d if w is None else d * w
    cov = np.empty((3, 3))
    for i in range(3):  # elementwise, not a BLAS product: BLAS's spinning threads stall the backend's
        for j in range(i, 3):
            cov[i, j] = cov[j, i] = float((dw[i] * d[j]).sum(dtype=np.float64)) / ws
    return m, cov


def mix_palettes(palettes, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The palette of a weighted mixture of styles (the moments of the mixture of their
    pixels); None when any style has none."""
    if any(p is None for p in palettes):
        return None
    mean = sum(w * p[0] for w, p in zip(weights, palettes))
    second = sum(w * (p[1] + np.outer(p[0], p[0])) for w, p in zip(weights, palettes))
    cov = second - np.outer(mean, mean)
    return mean, (cov + cov.T) / 2


# Added to the source covariance: a nearly flat image (std under ~0.03) is not stretched into
# full-range noise (its contrast gain stays below about std_target / 0.03).
FLAT = 1e-3


def colour_map(source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray],
               eps: float = FLAT) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with A x + b taking pixels of mean/covariance `source` to `target`'s:
    A = C_t^1/2 (C_s + eps I)^-1/2 (CORAL)."""
    (ms, cs), (mt, ct) = source, target
    a = _sqrtm(ct) @ np.linalg.inv(_sqrtm(cs + eps * np.eye(3)))
    return a, mt - a @ ms


def apply_colour_map(x: np.ndarray, a: np.ndarray, b: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """x (3, H, W) -> (1 - s) x + s (A x + b), clipped to [0, 1], float32; s = strength."""
    p = np.asarray(x, np.float32).reshape(3, -1)
    s = np.float32(strength)
    return np.clip(p + s * (_affine(p, a, b) - p), 0.0, 1.0).reshape(np.shape(x))


def match_palettes(y: np.ndarray, palettes: list, strength: float = 1.0) -> np.ndarray:
    """y (3, H, W) moved to each (palette, region) of `palettes` (region (H, W) weights or
    None for all of y), each map fitted on y's own pixels there; [] returns y."""
    if not palettes or strength == 0:
        return y
    p = np.asarray(y, np.float32)
    out = p.copy()
    for pal, region in palettes:
        if region is not None and float(region.sum()) < 1.0:
            continue  # under a pixel of region: nothing to fit
        a, b = colour_map(rgb_stats(p, region), pal)
        s = np.float32(strength) * (1.0 if region is None else np.asarray(region, np.float32)[None])
        out += s * (_affine(p.reshape(3, -1), a, b).reshape(p.shape) - p)
    return np.clip(out, 0.0, 1.0)


def coral(style: np.ndarray, content: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Recolour `style` (3, H, W) in [0, 1] so its RGB pixels have the mean and covariance
    of `content`'s (CORAL, as the AdaIN authors do for colour preservation). Returns float32
    (3, H, W) clipped to [0, 1]."""
    s = np.asarray(style, np.float64)
    if s[0].size < 2 or np.asarray(content)[0].size < 2:
        # one pixel has no covariance: move the mean only
        ms, mc = s.reshape(3, -1).mean(1), np.asarray(content, np.float64).reshape(3, -1).mean(1)
        return np.clip(s + (mc - ms)[:, None, None], 0.0, 1.0).astype(np.float32)
    a, b = colour_map(rgb_stats(s), rgb_stats(content), eps)
    return apply_colour_map(s, a, b)


def _affine(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A p + b for pixels p (3, N) float32, as three multiply-adds per channel (see rgb_stats)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    return np.stack([a[i, 0] * p[0] + a[i, 1] * p[1] + a[i, 2] * p[2] + b[i] for i in range(3)])


def _sqrtm(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


# ----------------------------------------------------------------------------- interpolation
def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(1 - t) a + t b."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return ((1.0 - t) * a + t * b).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, t: float, dot_threshold: float = 0.9995) -> np.ndarray:
    """Spherical interpolation per sample over the flattened latent; lerp when the two
    vectors are nearly parallel (|cos| > dot_threshold), where slerp is ill-conditioned.
    Norms are interpolated linearly so the path keeps the latents' scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise StyleRTError(f"latents differ in shape: {a.shape} vs {b.shape}.",
                           "Interpolate between images of the same size.")
    lead = a.shape[:1] if a.ndim == 4 else ()
    fa, fb = a.reshape(*lead, -1), b.reshape(*lead, -1)
    if not lead:
        fa, fb = fa[None], fb[None]
    out = np.empty_like(fa)
    for i in range(len(fa)):
        na, nb = np.linalg.norm(fa[i]), np.linalg.norm(fb[i])
        if na == 0 or nb == 0:
            out[i] = (1 - t) * fa[i] + t * fb[i]
            continue
        ua, ub = fa[i] / na, fb[i] / nb
        dot = float(np.clip(ua @ ub, -1.0, 1.0))
        if abs(dot) > dot_threshold:
            out[i] = (1 - t) * fa[i] + t * fb[i]
            continue
        th = np.arccos(dot)
        u = (np.sin((1 - t) * th) * ua + np.sin(t * th) * ub) / np.sin(th)
        out[i] = u * ((1 - t) * na + t * nb)
    return out.reshape(a.shape).astype(np.float32)
