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
    latent (N, latent_channels, H / downsample, W / downsample), the encoder's mean.
    """

    latent_channels: int
    downsample: int = 8
    image: TensorSpec = field(default_factory=lambda: TensorSpec("image", "NCHW", value_range=(0.0, 1.0)))
    latent: TensorSpec = field(default_factory=lambda: TensorSpec("latent", "NChw"))
    opset: int = OPSET
    # Export verification: max |ONNX Runtime - PyTorch| per output, FP32.
    export_tolerance: float = 1e-4
    checkpoint_sha256: str = ""
    stylert_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelContract":
        d = json.loads(text)
        d["image"] = TensorSpec(**{**d["image"], "value_range": _tuple(d["image"].get("value_range"))})
        d["latent"] = TensorSpec(**{**d["latent"], "value_range": _tuple(d["latent"].get("value_range"))})
        return cls(**d)

    def latent_shape(self, n: int, h: int, w: int) -> tuple[int, int, int, int]:
        """Latent shape for an (n, 3, h, w) image."""
        return (n, self.latent_channels, h // self.downsample, w // self.downsample)


def _tuple(v):
    return None if v is None else tuple(v)


# The key under which the contract is stored in ONNX `metadata_props` and in manifests.
METADATA_KEY = "stylert.contract"
