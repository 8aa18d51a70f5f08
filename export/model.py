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
    style_hidden: int = 256  # width of the decoder's style MLP (style code -> per-level scale
                             # and shift); 0: a plain reconstruction decoder (models before 0.2)
    style_blocks: tuple[int, ...] = (1, 1, 2, 3)  # style adapters per decoder level (1 .. 1/8):
                             # the extra ones sit at the coarse levels, where a painting's shapes
                             # (cells, bricks, bands) are a few latent pixels wide; +1.3 GFLOP
    style_inner: tuple[int, ...] = (0, 0, 1, 1)  # per level (1 .. 1/8), 1: the style also modulates
                             # the adapters' hidden layers (FiLM between their convs); without it an
                             # adapter computes one fixed set of textures and the style only picks
                             # among them by channel. Coarse levels only: between a Conv and its
                             # ReLU it stops their fusion, and at 1 and 1/2 too it made the decoder
                             # 7 % slower (ORT FP32, batch 16, interleaved: 1.17x against 1.10x
                             # the one-adapter decoder's time)

    def __post_init__(self):
        self.widths = tuple(self.widths)
        self.enc_blocks = tuple(self.enc_blocks)
        self.dec_blocks = tuple(self.dec_blocks)
        self.logvar_clamp = tuple(self.logvar_clamp)
        self.style_blocks = tuple(self.style_blocks)
        if isinstance(self.style_inner, bool):  # one flag for every level
            self.style_inner = (int(self.style_inner),) * len(self.widths)
        self.style_inner = tuple(int(v) for v in self.style_inner)
        if not (len(self.widths) == len(self.enc_blocks) == len(self.dec_blocks) == len(self.style_blocks)
                == len(self.style_inner) == 4):
            raise ValueError("widths, enc_blocks, dec_blocks, style_blocks and style_inner need 4 levels (1, 1/2, 1/4, 1/8)")
        if min(self.style_blocks) < 1:
            raise ValueError("style_blocks needs at least one adapter per level")
        if self.latent_channels < 1:
            raise ValueError("latent_channels must be positive")
        if self.style_hidden < 0:
            raise ValueError("style_hidden must be >= 0")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.widths) - 1)

    @property
    def style_channels(self) -> tuple[int, ...]:
        """Channels whose mean and std make up a style code: the latent first (what AdaIN
        moves), then the encoder's feature maps at 1, 1/2, 1/4 and 1/8 of the image (where
        texture lives: the latent alone made only a colour grade)."""
        return (self.latent_channels, *self.widths)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {sorted(unknown)}")
        # configs written before the style decoder existed describe a reconstruction decoder;
        # those before style_blocks a style decoder with one unmodulated adapter per level
        return cls(**{"style_hidden": 0, "style_blocks": (1, 1, 1, 1), "style_inner": (0, 0, 0, 0), **d})


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
        ends = [len(layers)]
        for i in range(1, len(w)):
            layers += [conv(w[i - 1], w[i], stride=2), nn.ReLU()]
            layers += [Block(w[i]) for _ in range(cfg.enc_blocks[i])]
            ends.append(len(layers))
        self.body = nn.Sequential(*layers)
        self.level_ends = tuple(ends)  # body indices after which a level's features are complete
        self.mu = conv(w[-1], cfg.latent_channels)
        self.logvar = conv(w[-1], cfg.latent_channels)
        self.logvar_clamp = cfg.logvar_clamp

    def trunk(self, x):
        """(B, 3, H, W) -> (body output, the features at each level's end)."""
        feats, h = [], x
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i + 1 in self.level_ends:
                feats.append(h)
        return h, feats

    def forward(self, x):  # (B, 3, H, W) in [0, 1] -> 2 x (B, C, H/8, W/8)
        h = self.body(x)
        return self.mu(h), self.logvar(h).clamp(*self.logvar_clamp)

    def posterior_mean(self, x):  # (B, 3, H, W) -> (B, C, H/8, W/8): the inference latent
        return self.mu(self.body(x))

    def encode_with_style(self, x):
        """The inference path: (latent (B, C, H/8, W/8), style code (B, 2K)).

        The style code is [means, stds] of the latent's channels and of the body's features at
        every level (VAEConfig.style_channels, K channels in all), over the spatial positions."""
        h, feats = self.trunk(x)
        z = self.mu(h)
        return z, style_code(z, *feats)


class StyleHead(nn.Module):
    """Style offset d (B, 2K) -> per level: a gate for the level's first style adapter and a
    FiLM scale and shift, each (B, channels); and, from a second MLP (`inner`: where there are
    extra adapters or modulated levels), the extra adapters' gates and the modulated levels'
    hidden-layer scales and shifts.

    d is the mixed code minus the content's own code (strength x (style - own)). The head has
    no biases, so d = 0 gives all zeros: at strength 0 the decoder is exactly the
    reconstruction decoder, whatever the style training did. The code's entries differ in
    scale by orders of magnitude, so d is first scaled by fixed statistics of training
    offsets (a buffer, set once by `set_whitening`). Two MLPs rather than one wider one so a
    model trained without `inner` starts one with it unchanged (its last layer starts at zero)."""

    def __init__(self, cfg: VAEConfig, level_widths: tuple[int, ...], level_blocks: tuple[int, ...],
                 level_inner: tuple[int, ...]):
        super().__init__()
        k = 2 * sum(cfg.style_channels)
        self.level_widths, self.level_blocks, self.level_inner = level_widths, level_blocks, level_inner
        self.register_buffer("code_scale", torch.ones(k))
        self.net = nn.Sequential(nn.Linear(k, cfg.style_hidden, bias=False), nn.ReLU(),
                                 nn.Linear(cfg.style_hidden, 3 * sum(level_widths), bias=False))
        nn.init.zeros_(self.net[-1].weight)  # a fresh head changes nothing
        # level by level, coarse first: per adapter its gate (the extra ones) and, where the level
        # is modulated, its hidden (scale, shift)
        self.inner_sizes = [c * (2 * n * mod + n - 1) for c, n, mod in zip(level_widths, level_blocks, level_inner)]
        self.inner = None
        if sum(self.inner_sizes):
            self.inner = nn.Sequential(nn.Linear(k, cfg.style_hidden, bias=False), nn.ReLU(),
                                       nn.Linear(cfg.style_hidden, sum(self.inner_sizes), bias=False))
            nn.init.zeros_(self.inner[-1].weight)

    @torch.no_grad()
    def set_whitening(self, offsets: torch.Tensor) -> None:  # (N, 2K) offsets of training pairs
        self.code_scale.copy_(1.0 / (offsets.pow(2).mean(0).sqrt() + 1e-3))

    def forward(self, d):
        """(B, 2K) -> per level (film scale, film shift, [(gate, hidden scale, hidden shift)
        per adapter]), each (B, c); the hidden pair is None for unmodulated adapters."""
        ds = d * self.code_scale
        m = self.net(ds)
        q = self.inner(ds) if self.inner is not None else None
        out, i, j = [], 0, 0
        for c, n, mod in zip(self.level_widths, self.level_blocks, self.level_inner):
            gate, scale, shift = m[:, i : i + c], m[:, i + c : i + 2 * c], m[:, i + 2 * c : i + 3 * c]
            i += 3 * c
            blocks = []
            for b in range(n):
                if b:
                    gate = q[:, j : j + c]
                    j += c
                hidden = None
                if mod:
                    hidden = (q[:, j : j + c], q[:, j + c : j + 2 * c])
                    j += 2 * c
                blocks.append((gate, hidden))
            out.append((scale, shift, blocks))
        return out


def adapter(c: int) -> nn.Sequential:  # conv, relu, conv: the style modulates between them
    return nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c))


class Decoder(nn.Module):
    """(Latent, style offset) -> RGB. `forward` is unclamped (the training loss sees it);
    `image` clamps.

    The body is the reconstruction decoder. With a style head, each level ends with
    `style_blocks` style adapters (residual conv-relu-conv branches whose output is gated per
    channel by the style, and whose hidden layer it modulates where `style_inner` says) and a
    FiLM modulation
    (x * (1 + scale) + shift): the mixed latent alone carries 64 statistics, too few to paint
    one painting's strokes rather than another's. Without an offset (None or zeros) the
    adapters and FiLM are silent and the output is the reconstruction."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths[::-1]
        nb = cfg.dec_blocks[::-1]
        layers: list[nn.Module] = [conv(cfg.latent_channels, w[0]), nn.ReLU()]
        layers += [Block(w[0]) for _ in range(nb[0])]
        ends = [len(layers)]
        for i in range(1, len(w)):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(w[i - 1], w[i]), nn.ReLU()]
            layers += [Block(w[i]) for _ in range(nb[i])]
            ends.append(len(layers))
        layers += [conv(w[-1], 3)]
        self.body = nn.Sequential(*layers)
        self.level_ends = tuple(ends)
        sb = cfg.style_blocks[::-1]
        self.style = StyleHead(cfg, tuple(w), tuple(sb), tuple(cfg.style_inner[::-1])) if cfg.style_hidden else None
        # first adapter per level, then the extra ones (two lists: older models have only the first)
        self.adapters = nn.ModuleList(adapter(c) for c in w) if cfg.style_hidden else None
        self.more_adapters = (nn.ModuleList(nn.ModuleList(adapter(c) for _ in range(n - 1)) for c, n in zip(w, sb))
                              if cfg.style_hidden and max(sb) > 1 else None)

    def forward(self, z, offset=None):  # (B, C, h, w), (B, 2K) -> (B, 3, 8h, 8w), unbounded
        if self.style is None or offset is None:
            return self.body(z)
        mods = iter(enumerate(self.style(offset)))
        h = z
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i + 1 in self.level_ends:
                lvl, (scale, shift, blocks) = next(mods)
                nets = [self.adapters[lvl], *(self.more_adapters[lvl] if self.more_adapters is not None else ())]
                for net, (gate, hidden) in zip(nets, blocks):
                    a = net[0](h)
                    if hidden is not None:
                        a = a * (1.0 + hidden[0][:, :, None, None]) + hidden[1][:, :, None, None]
                    h = h + net[2](net[1](a)) * gate[:, :, None, None]
                h = h * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None]
        return h

    def image(self, z, offset=None):  # (B, C, h, w), (B, 2K) -> (B, 3, 8h, 8w) in [0, 1]
        return self.forward(z, offset).clamp(0.0, 1.0)


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or VAEConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def forward(self, x, sample: bool = True):
        """Returns (unclamped reconstruction, mu, logvar). Reparameterized when sampling. The
        decoder gets no style offset: reconstruction is strength 0."""
        mu, logvar = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.decoder(z), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x):  # inference path: the mean, no style offset, clamped decoder
        return self.decoder.image(self.encoder.posterior_mean(x))


STATS_EPS = 1e-5  # engine.mixing.EPS: the runtime's statistics must match these


def mean_std(f):  # (B, C, H, W) -> 2 x (B, C): per-channel mean and sqrt(var + eps)
    m = f.mean(dim=(2, 3))
    v = (f - m[:, :, None, None]).pow(2).mean(dim=(2, 3))
    return m, torch.sqrt(v + STATS_EPS)


def style_code(*feats):  # feature maps -> (B, 2K): all means, then all stds
    means, stds = zip(*(mean_std(f) for f in feats))
    return torch.cat(means + stds, dim=1)


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
