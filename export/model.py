"""The convolutional VAE that paints: encoder -> Gaussian latent at 1/4 -> style-modulated decoder.

Lean by design: about 4 GFLOP per 256x256 image, spent where the pictures need it (the
decoder at 1/4 of the image, where a painting's strokes are a few latent pixels wide).
Export-friendly (TAESD's habit): Conv, Relu, Add, Mul, nearest Resize, DepthToSpace, Pad (edge)
and one Clip, plus the statistics of the style code (and, with style_norm, the same reductions
over the decoder's 1/4-level activations). ReLU because Conv+ReLU fuses into one INT8
kernel in ONNX Runtime and TensorRT.

Every convolution pads by replicating the border (ONNX Pad, mode edge), not with zeros: a
zero border is an edge the style-modulated decoder paints as a frame. Replication rather
than reflection because it is defined for any size down to one pixel (the style branch
reaches 1/16 of the image).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VAEConfig


def conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, padding_mode="replicate")


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w, sw = cfg.widths, cfg.style_widths
        self.levels = nn.ModuleList([conv(3, w[0]), conv(w[0], w[1], 2), conv(w[1], w[2], 2)])
        self.mu = conv(w[2], cfg.latent_channels)
        self.logvar = conv(w[2], cfg.latent_channels)
        self.style_branch = nn.ModuleList(conv(a, b, 2) for a, b in zip((w[2], *sw[:-1]), sw))
        self.logvar_clamp = cfg.logvar_clamp

    def trunk(self, x):  # (B, 3, H, W) -> features at 1, 1/2, 1/4
        feats, h = [], x
        for c in self.levels:
            h = F.relu(c(h))
            feats.append(h)
        return feats

    def forward(self, x):  # (B, 3, H, W) in [0, 1] -> 2 x (B, C, H/4, W/4)
        h = self.trunk(x)[-1]
        return self.mu(h), self.logvar(h).clamp(*self.logvar_clamp)

    def posterior_mean(self, x):  # (B, 3, H, W) -> (B, C, H/4, W/4): the inference latent
        return self.mu(self.trunk(x)[-1])

    def encode_with_style(self, x, mu_logvar: bool = False):
        """The inference path: (latent (B, C, H/4, W/4), style code (B, 2K)); with mu_logvar,
        training's (mu, logvar, code) from one pass.

        The style code is [means, stds] over the spatial positions of the latent's channels,
        the trunk's features at each level and the style branch's (VAEConfig.style_channels)."""
        feats = self.trunk(x)
        z = self.mu(feats[-1])
        h, more = feats[-1], []
        for c in self.style_branch:
            h = F.relu(c(h))
            more.append(h)
        code = style_code(z, *feats, *more)
        if mu_logvar:
            return z, self.logvar(feats[-1]).clamp(*self.logvar_clamp), code
        return z, code


class StyleHead(nn.Module):
    """Style offset d (B, 2K) -> a FiLM (scale, shift) per modulated decoder convolution.

    d is the mixed code minus the content's own (strength x (style - own)). No biases: d = 0
    gives all zeros, so at strength 0 the decoder is exactly the reconstruction decoder. The
    code's entries differ in scale by orders of magnitude, so d is first scaled by fixed
    statistics of training offsets (a buffer, set once by `set_whitening`)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        k = 2 * sum(cfg.style_channels)
        self.sizes = cfg.film_channels
        self.mixes = cfg.kernel_mixes  # after the FiLM rows: each block's kernel mix (B, C x K)
        self.norms = cfg.film_channels[: cfg.norm_layers]  # after the mixes: (blend, scale, shift) per normalized conv
        self.register_buffer("code_scale", torch.ones(k))
        self.net = nn.Sequential(nn.Linear(k, cfg.style_hidden, bias=False), nn.ReLU(),
                                 nn.Linear(cfg.style_hidden, 2 * sum(self.sizes) + sum(self.mixes) + 3 * sum(self.norms),
                                           bias=False))
        nn.init.zeros_(self.net[-1].weight)  # a fresh head changes nothing

    @torch.no_grad()
    def set_whitening(self, offsets: torch.Tensor) -> None:  # (N, 2K) offsets of training pairs
        self.code_scale.copy_(1.0 / (offsets.pow(2).mean(0).sqrt() + 1e-3))

    def forward(self, d):
        """(B, 2K) -> ([(scale, shift) per FiLM], each (B, c, 1, 1); [kernel mix per block], each (B, C x K, 1, 1);
        [(blend, scale, shift) per normalized conv], each (B, c, 1, 1))."""
        m = self.net(d * self.code_scale)
        out, i = [], 0
        for c in self.sizes:
            out.append((m[:, i : i + c, None, None], m[:, i + c : i + 2 * c, None, None]))
            i += 2 * c
        mixes = []
        for c in self.mixes:
            mixes.append(m[:, i : i + c, None, None])
            i += c
        norms = []
        for c in self.norms:
            norms.append(tuple(m[:, i + j * c : i + (j + 1) * c, None, None] for j in range(3)))
            i += 3 * c
        return out, mixes, norms


class StyleFilter(nn.Module):
    """A depthwise 3x3 filter whose kernel the style chooses, per image and channel (AdaConv's
    idea, Chandran et al. 2021): kernel_c = sum_k a_ck B_ck, with K learned kernels B per channel
    and the mix a predicted from the style offset. Written as plain convolutions so every
    backend runs it with a batch of different styles: a static grouped conv gives each
    channel's K responses (B, C x K, h, w), the mix multiplies them, and a fixed grouped 1x1
    conv of ones sums each channel's K. FiLM can only reweight the decoder's shared filters;
    this lets a painting choose the orientation and shape of its marks. The mix is zero at a
    zero offset, so strength 0 stays the reconstruction.

    The mix is the head's output times MIX_GAIN, for StyleNorm.BLEND_GAIN's reason: at gain 1
    the filters changed their layer's output by 2-5 % after 100 steps and 8-16 % after 400,
    too little to learn whether a painting wants them."""

    MIX_GAIN = 8.0

    def __init__(self, channels: int, kernels: int, dilation: int):
        super().__init__()
        self.basis = nn.Conv2d(channels, channels * kernels, 3, padding=dilation, dilation=dilation, groups=channels,
                               bias=False, padding_mode="replicate")
        nn.init.normal_(self.basis.weight, std=1.0 / 3.0)  # unit gain per kernel on unit-variance input
        self.register_buffer("ones", torch.ones(channels, kernels, 1, 1), persistent=False)
        self.channels = channels

    def forward(self, h, mix):  # (B, C, h, w), (B, C x K, 1, 1) -> (B, C, h, w)
        return F.conv2d(self.basis(h) * (self.MIX_GAIN * mix), self.ones.to(h.dtype), groups=self.channels)


def film(h, mod):  # x * (1 + scale) + shift; mod None: unmodulated (the reconstruction)
    return h if mod is None else h * (1.0 + mod[0]) + mod[1]


class StyleNorm(nn.Module):
    """Conditional instance normalization, blended in (VAEConfig.style_norm): FiLM scales the
    photo's activations, so the photo's own contrast decides what a layer draws (a sky's grain
    becomes the decoder's shared drips); normalized first, as Magenta's network is, a layer's
    statistics are the painting's. y = f + a * (IN(h) * s0 * (1 + g) + m0 + b - f), f = film(h),
    with (a, g, b) per channel from the style offset (zero at a zero offset: strength 0 stays the
    reconstruction, and a model grown from one without it paints as before) and (s0, m0) learned
    per channel, started at the layer's typical statistics on photographs (`calibrate`).
    The statistics are over the whole latent: the runtime decodes a styled image in one piece.

    The blend is the head's output times BLEND_GAIN: the head's last layer starts at zero and
    Adam moves each weight by about the learning rate a step, which at gain 1 left the blends
    at 0.03 after 200 steps (too slow to learn whether the painting wants them)."""

    BLEND_GAIN = 8.0

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, h, f, mod):  # conv output h, its FiLM f (B, C, h, w); (a, g, b) each (B, C, 1, 1)
        a, g, b = mod
        m = h.mean(dim=(2, 3), keepdim=True)
        n = (h - m) * torch.rsqrt(h.var(dim=(2, 3), keepdim=True, unbiased=False) + STATS_EPS)
        target = n * (self.scale[:, None, None] * (1.0 + g)) + self.shift[:, None, None] + b
        return f + (self.BLEND_GAIN * a) * (target - f)


class Decoder(nn.Module):
    """(Latent, style offset) -> RGB. `forward` is unclamped (the training loss sees it);
    `image` clamps. With VAEConfig.style_kernels, each residual block also runs a StyleFilter
    on its inner activations: the style chooses spatial filters, not only channel gains; with
    up_kernels, so does each convolution above 1/4, on its output.

    Every convolution's output is modulated by the style (FiLM, between the conv and its
    ReLU): the style offset sets, per channel, how each layer responds, which is what lets
    one decoder paint a stained glass's lead lines and a Van Gogh's strokes. At 1/4: an input
    conv and residual blocks relu(x + film(conv(relu(film(conv(x)))))) with growing dilation;
    then nearest x2 + conv to 1/2 and to full size, and an RGB conv, itself modulated (the
    palette's direct path: a per-channel gain and shift of the colours). The "shuffle" head
    (VAEConfig.dec_head) paints the full-size pixels from 1/2 instead: a conv to 4 x RGB and
    PixelShuffle(2) (ONNX DepthToSpace), sparing the two convs at full size."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths
        self.inp = conv(cfg.latent_channels, w[2])
        self.blocks = nn.ModuleList(nn.ModuleList([conv(w[2], w[2], dilation=d), conv(w[2], w[2], dilation=d)])
                                    for d in cfg.dec_dilations)
        if cfg.dec_head == "conv":
            self.up = nn.ModuleList([conv(w[2], w[1]), conv(w[1], w[0])])
            self.rgb = conv(w[0], 3)
        else:  # the full-size pixels come from a conv at 1/2: 4 RGB values per position, shuffled
            self.up = nn.ModuleList([conv(w[2], w[1])])
            self.rgb = conv(w[1], 12)
        self.filters = nn.ModuleList(StyleFilter(w[2], cfg.style_kernels, d) for d in cfg.dec_dilations) \
            if cfg.style_kernels else None
        self.up_filters = nn.ModuleList(StyleFilter(c, cfg.up_kernels, 1) for c in cfg.up_channels) \
            if cfg.up_kernels else None
        self.norms = nn.ModuleList(StyleNorm(c) for c in cfg.film_channels[: cfg.norm_layers])
        self.style = StyleHead(cfg)
        self.cfg = cfg

    def forward(self, z, offset=None):  # (B, C, h, w), (B, 2K) -> (B, 3, 4h, 4w), unbounded
        films, mixes, norms = self.style(offset) if offset is not None else ([None] * len(self.style.sizes), None, [])
        mods = enumerate(films)

        def modulate(h):  # the next FiLM, blended toward the style-normalized h where the decoder has it
            i, mod = next(mods)
            f = film(h, mod)
            return self.norms[i](h, f, norms[i]) if i < len(norms) else f

        h = F.relu(modulate(self.inp(z)) if self.cfg.input_film else self.inp(z))
        for i, (c1, c2) in enumerate(self.blocks):
            a = F.relu(modulate(c1(h)))
            if self.filters is not None and mixes is not None:  # no offset: the reconstruction, filters off
                a = a + self.filters[i](a, mixes[i])
            h = F.relu(h + modulate(c2(a)))
        up_mixes = mixes[len(self.filters or ()):] if mixes is not None else None
        for i, c in enumerate(self.up):
            h = F.relu(modulate(c(F.interpolate(h, scale_factor=2.0, mode="nearest"))))
            if self.up_filters is not None and up_mixes is not None:
                h = h + self.up_filters[i](h, up_mixes[i])
        rgb = self.rgb(h) if self.cfg.dec_head == "conv" else F.pixel_shuffle(self.rgb(h), 2)
        return modulate(rgb) if self.cfg.rgb_film else rgb

    @torch.no_grad()
    def calibrate_norms(self, z) -> None:
        """Start each StyleNorm's (scale, shift) at its layer's per-channel std and mean over
        latents z of photographs (no offset), so a small blend moves the picture a little."""
        stats, hooks = [], []
        convs = [*([self.inp] if self.cfg.input_film else []), *(c for pair in self.blocks for c in pair)][: len(self.norms)]
        for c in convs:
            hooks.append(c.register_forward_hook(lambda _m, _i, out: stats.append(out.float())))
        try:
            self.forward(z)
        finally:
            for hk in hooks:
                hk.remove()
        for norm, h in zip(self.norms, stats):
            m = h.mean(dim=(2, 3))
            norm.scale.copy_((h.var(dim=(2, 3), unbiased=False) + STATS_EPS).sqrt().mean(0))
            norm.shift.copy_(m.mean(0))

    def image(self, z, offset=None):  # (B, C, h, w), (B, 2K) -> (B, 3, 4h, 4w) in [0, 1]
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
