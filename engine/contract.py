"""The model's contract, declared once.

The exporter writes it into the ONNX metadata and the manifest, the runtime reads it back
from there (it never guesses), and the tests check both against this file (optimum's
`model_configs.py` habit: the I/O contract is data).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__version__ = "0.1.0"

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
MANIFEST_FILE = "manifest.json"
OPSET = 18  # the dynamo exporter's native opset; TensorRT 10.8+ and ORT 1.17+ run it


@dataclass(frozen=True)
class TensorSpec:
    name: str
    layout: str  # axis names; upper-case letters are dynamic axes
    dtype: str = "float32"
    value_range: tuple[float, float] | None = None  # None: unbounded


@dataclass(frozen=True)
class ModelContract:
    """What every artifact promises about its tensors.

    Shapes: image (N, 3, H, W) RGB in [0, 1], H and W multiples of `downsample`;
    latent (N, latent_channels, H / downsample, W / downsample), the encoder's mean;
    style (N, 2K): the style code, per-channel means then stds of the latent and of the
    encoder's features at each level (`style_channels`, K channels in all; the latent's come
    first). The encoder maps image -> (latent, style code); the decoder (latent, style offset)
    -> image, the offset being strength x (the style's code - the content's): zero decodes the
    reconstruction.
    """

    latent_channels: int
    style_channels: tuple[int, ...] = ()  # channels per statistics level, latent first
    downsample: int = 8
    image: TensorSpec = field(default_factory=lambda: TensorSpec("image", "NCHW", value_range=(0.0, 1.0)))
    latent: TensorSpec = field(default_factory=lambda: TensorSpec("latent", "NChw"))
    style: TensorSpec = field(default_factory=lambda: TensorSpec("style", "NS"))
    opset: int = OPSET
    # Export verification: max |ONNX Runtime - PyTorch| per output, FP32.
    export_tolerance: float = 1e-4
    # A StyleCode whose |mean| or std exceeds this is refused (0: unchecked): 4x the largest
    # entry the encoder gave on the calibration images at export. Finite but absurd
    # statistics (means of 50, stds of 1e6) would otherwise render a black image silently.
    style_limit: float = 0.0
    # The encoder's own range of style codes, one row per statistics level (style_channels'
    # order): (lowest mean, highest mean, largest RMS of the level's means, largest std,
    # largest RMS of the level's stds) over the export's probe images (the calibration images
    # and generated extremes: flat colours, noise, stripes). StyleCode.out_of_range reads it;
    # () (exports made before it existed): style_limit alone.
    style_ranges: tuple[tuple[float, ...], ...] = ()
    # Whether the decoder may run on tiles of the latent: False when it normalizes activations
    # over the whole latent (VAEConfig.style_norm), where a tile's own statistics would seam.
    decoder_tiles: bool = True
    checkpoint_sha256: str = ""
    stylert_version: str = __version__

    def __post_init__(self):
        def whole(v, lo):
            return isinstance(v, int) and not isinstance(v, bool) and v >= lo

        problems = [
            (not whole(self.latent_channels, 1), f"latent_channels {self.latent_channels!r} is not a positive integer"),
            (not (whole(self.downsample, 1) and self.downsample & (self.downsample - 1) == 0),
             f"downsample {self.downsample!r} is not a power of two"),
            (not all(whole(c, 1) for c in self.style_channels), f"style_channels {self.style_channels!r} are not positive integers"),
            (bool(self.style_channels) and self.style_channels[0] != self.latent_channels,
             "style_channels must start with the latent's channel count"),
            (not (isinstance(self.style_limit, (int, float)) and 0 <= self.style_limit < float("inf")),
             f"style_limit {self.style_limit!r} is not a finite number >= 0"),
            (not isinstance(self.decoder_tiles, bool), f"decoder_tiles {self.decoder_tiles!r} is not true or false"),
            (not (isinstance(self.export_tolerance, (int, float)) and self.export_tolerance == self.export_tolerance),
             f"export_tolerance {self.export_tolerance!r} is not a number"),
            (bool(self.style_ranges) and not _ranges_ok(self.style_ranges, len(self.style_channels)),
             f"style_ranges {self.style_ranges!r} are not one row of 5 finite numbers (rms and std >= 0) per style level"),
        ]
        for bad, what in problems:
            if bad:
                raise ValueError(what)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelContract":
        d = dict(d)
        for k in ("image", "latent", "style"):
            if k in d:
                d[k] = TensorSpec(**{**d[k], "value_range": _tuple(d[k].get("value_range"))})
        d["style_channels"] = tuple(d.get("style_channels", ()))
        d["style_ranges"] = tuple(tuple(r) if isinstance(r, (list, tuple)) else r for r in d.get("style_ranges", ()))
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "ModelContract":
        return cls.from_dict(json.loads(text))

    @property
    def style_size(self) -> int:
        """Length of a style code: 2 x K (means, then stds)."""
        return 2 * sum(self.style_channels)

    def latent_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """Latent shape for an (n, 3, h, w) image."""
        return (n, self.latent_channels, h // self.downsample, w // self.downsample)

    def style_shape(self, n: int) -> tuple[int, int]:
        return (n, self.style_size)

    def io(self, role: str) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """(inputs, outputs) of the encoder or decoder graph, in order."""
        if role == "encoder":
            return (self.image,), (self.latent, self.style)
        if role == "decoder":
            return (self.latent, self.style), (self.image,)
        raise ValueError(f"unknown role {role!r}")

    def shapes(self, role: str, n: int, h: int, w: int) -> dict[str, tuple[int, ...]]:
        """Input shapes of `role` for an (n, 3, h, w) image batch, by tensor name."""
        if role == "encoder":
            return {self.image.name: (n, 3, h, w)}
        return {self.latent.name: self.latent_shape(n, h, w), self.style.name: self.style_shape(n)}

    def axes(self, spec: TensorSpec) -> tuple[str, ...]:
        """Axis names of a tensor for the ONNX graph: dynamic axes by letter, fixed ones as
        numbers (channels)."""
        fixed = {"image": {1: "3"}, "latent": {1: str(self.latent_channels)}, "style": {1: str(self.style_size)}}
        names = {"N": "N", "C": "C", "H": "H", "W": "W", "h": "h", "w": "w"}
        role = next(k for k in ("image", "latent", "style") if getattr(self, k) == spec)
        return tuple(fixed[role].get(i, names.get(a, a)) for i, a in enumerate(spec.layout))


def _tuple(v):
    return None if v is None else tuple(v)


def _ranges_ok(rows, levels: int) -> bool:
    import math

    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    return len(rows) == levels and all(
        isinstance(r, tuple) and len(r) == 5 and all(num(v) for v in r) and r[0] <= r[1] and min(r[2:]) >= 0 for r in rows)


# The key under which the contract is stored in ONNX `metadata_props` and in manifests.
METADATA_KEY = "stylert.contract"
