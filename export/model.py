"""The convolutional VAE: encoder -> Gaussian latent at 1/8 resolution -> decoder.

Export-friendly by design (TAESD's habit): Conv, ReLU, Add, nearest Resize and one Clip are
the only ops. ReLU rather than SiLU because Conv+ReLU fuses into one kernel in ONNX Runtime's
INT8 (QLinearConv) and TensorRT paths, and ReLU's output quantizes without a negative half.
Residual blocks are what make it learn on a CPU budget: a plain conv stack stalled near 10 dB
with the KL driving the latent to zero (../shared/notes/vae-training.md, probe A).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VAEConfig:
    latent_channels: int = 32  # AdaIN matches 2 x 32 statistics (4 would be a colour shift); 16
                               # held the reconstruction of held-out photos to 24 dB
    widths: tuple[int, ...] = (32, 64, 96, 128)  # channels at 1, 1/2, 1/4, 1/8 of the image
    enc_blocks: tuple[int, ...] = (0, 1, 1, 2)  # residual blocks per level, encoder
    dec_blocks: tuple[int, ...] = (1, 1, 2, 2)  # decoder: the quality is made here
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)  # keeps exp() finite early in training

    def __post_init__(self):
        self.widths = tuple(self.widths)
        self.enc_blocks = tuple(self.enc_blocks)
        self.dec_blocks = tuple(self.dec_blocks)
        self.logvar_clamp = tuple(self.logvar_clamp)
        if not (len(self.widths) == len(self.enc_blocks) == len(self.dec_blocks) == 4):
            raise ValueError("widths, enc_blocks and dec_blocks need 4 levels (1, 1/2, 1/4, 1/8)")
        if self.latent_channels < 1:
            raise ValueError("latent_channels must be positive")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {sorted(unknown)}")
        return cls(**d)


def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class Block(nn.Module):
    """relu(x + conv(relu(conv(x)))): a residual block that exports to Conv, Relu, Add."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.conv2 = conv(c, c), conv(c, c)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths
        layers: list[nn.Module] = [conv(3, w[0]), nn.ReLU()]
        layers += [Block(w[0]) for _ in range(cfg.enc_blocks[0])]
        for i in range(1, len(w)):
            layers += [conv(w[i - 1], w[i], stride=2), nn.ReLU()]
            layers += [Block(w[i]) for _ in range(cfg.enc_blocks[i])]
        self.body = nn.Sequential(*layers)
        self.mu = conv(w[-1], cfg.latent_channels)
        self.logvar = conv(w[-1], cfg.latent_channels)
        self.logvar_clamp = cfg.logvar_clamp

    def forward(self, x):  # (B, 3, H, W) in [0, 1] -> 2 x (B, C, H/8, W/8)
        h = self.body(x)
        return self.mu(h), self.logvar(h).clamp(*self.logvar_clamp)


class Decoder(nn.Module):
    """Latent -> RGB. `forward` is unclamped (the training loss sees it); `image` clamps."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths[::-1]
        nb = cfg.dec_blocks[::-1]
        layers: list[nn.Module] = [conv(cfg.latent_channels, w[0]), nn.ReLU()]
        layers += [Block(w[0]) for _ in range(nb[0])]
        for i in range(1, len(w)):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(w[i - 1], w[i]), nn.ReLU()]
            layers += [Block(w[i]) for _ in range(nb[i])]
        layers += [conv(w[-1], 3)]
        self.body = nn.Sequential(*layers)

    def forward(self, z):  # (B, C, h, w) -> (B, 3, 8h, 8w), unbounded
        return self.body(z)

    def image(self, z):  # (B, C, h, w) -> (B, 3, 8h, 8w) in [0, 1]
        return self.body(z).clamp(0.0, 1.0)


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or VAEConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def forward(self, x, sample: bool = True):
        """Returns (unclamped reconstruction, mu, logvar). Reparameterized when sampling."""
        mu, logvar = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x):  # inference path: the mean, then the clamped decoder
        return self.decoder.image(self.encoder(x)[0])


def kl_divergence(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent, per sample: (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def elbo_loss(x, recon, mu, logvar, beta: float):
    """Negative ELBO per image element: MSE (a fixed-variance Gaussian likelihood) plus
    beta x KL spread over the image's elements, so beta does not depend on the crop size.
    Returns (loss, mse, kl_per_element)."""
    mse = F.mse_loss(recon, x)
    kl = kl_divergence(mu, logvar).mean() / x[0].numel()
    return mse + beta * kl, mse, kl
