"""The style stage: the whole VAE trained end to end to paint, its ELBO kept.

Huang & Belongie's AdaIN objective with VGG-16 (ImageNet) as the loss network, on a batch
of content crops x_c and style crops x_s. The encoder gives the content's latent mean z_c and
code c, the style's code s, and t = AdaIN(z_c, s); the decoder paints y = D(t, s - c)
(strength 1). The loss:

    style:    mean over relu1_2, relu2_2, relu3_3, relu4_3 of the relative error of y's
              per-channel means and stds against x_s's      (AdaIN's style loss)
            + their Gram matrices, relative                 (which features occur together:
                                                             strokes and patterns, not only
                                                             how strong each feature is)
            + each 3x3 patch of y's relu3_3 and relu4_3     (CNNMRF: local shapes, the nearest
              features against the nearest style patch       style patch's; weight 0 skips it)
            + the Grams of y and x_s at half size, relative (coarse: strokes and shapes
                                                             twice VGG's scale; weight 0 skips it)
            + the RGB means and stds, relative              (the palette, directly)
    content:  ||relu4_3(y) - relu4_3(x_c)||^2, relative     (shapes survive, textures do not)
            + ||relu2_2(y) - relu2_2(x_c)||^2, relative     (detail: the content's edges, where the
                                                             strokes go; weight 0 skips it)
            + the luminance at 10-30 px against x_c's,      (layout: no blotches or drips the
              over each image's std, relative                photo lacks; weight 0 skips it)
    marks:    the squared correlation of the marks two      (distinct: each painting its own
              paintings add to the same content              marks, not one shared hatching;
                                                             the batch's second half repeats the
                                                             first's contents; weight 0 skips it)
    ELBO:     the VAE's reconstruction D(z, 0) of x_c (z sampled) + beta x KL

Encoder and decoder both learn from every term. The ELBO keeps the latent a VAE latent and
strength 0 the reconstruction (the style head has no biases: a zero offset changes nothing,
export/model.py); the style terms teach the encoder which statistics describe a style.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import VAE, elbo_loss, mean_std
from .runner import adain_tensor
from .vgg import TAPS, VGG16

STYLE_TAPS = tuple(TAPS)  # relu1_2, relu2_2, relu3_3, relu4_3
CONTENT_TAP = "relu4_3"
DETAIL_TAP = "relu2_2"
LossNet = VGG16  # the loss network, frozen


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


def gram_loss(fy: dict, fs: dict, taps: tuple[str, ...] = STYLE_TAPS) -> torch.Tensor:
    """Mean over taps of ||G(F_l(y)) - G(F_l(x_s))||^2 / ||G(F_l(x_s))||^2 (B,)."""
    total = 0.0
    for t in taps:
        ga, gb = gram(fy[t]), gram(fs[t])
        total = total + (ga - gb).pow(2).flatten(1).sum(1) / (gb.pow(2).flatten(1).sum(1) + 1e-6)
    return total / len(taps)


PATCH_TAPS = (("relu3_3", 2), ("relu4_3", 1))  # (tap, stride of the patch grid): 3x3 patches, about 400 per 160-px crop


def patches(f, stride: int):  # (B, C, H, W) -> (B, P, C x 9): every 3x3 patch on a grid of `stride`
    return F.unfold(f.float(), 3, stride=stride).transpose(1, 2)


def patch_loss(fy: dict, fs: dict) -> torch.Tensor:
    """CNNMRF's term (Li and Wand 2016) (B,): each 3x3 patch of the output's features is pulled
    toward its nearest patch of the style's (normalized cross-correlation, chosen without
    gradient), relative to the style patches' energy. Gram and mean/std terms say which
    features occur and together; this says which local shapes: a lead line, a cell, a swirl's arc."""
    total = 0.0
    for tap, stride in PATCH_TAPS:
        py, ps = patches(fy[tap], stride), patches(fs[tap], stride)  # (B, P, D), (B, Q, D)
        with torch.no_grad():
            sim = F.normalize(py, dim=2) @ F.normalize(ps, dim=2).transpose(1, 2)  # (B, P, Q)
            nn_idx = sim.argmax(2)
        target = torch.gather(ps, 1, nn_idx[:, :, None].expand(-1, -1, ps.shape[2]))
        total = total + (py - target).pow(2).sum(2).mean(1) / (ps.pow(2).sum(2).mean(1) + 1e-6)
    return total / len(PATCH_TAPS)


def colour_loss(y, xs) -> torch.Tensor:
    """Relative squared error of the RGB means and stds (B,): the style's palette."""
    my, sy = mean_std(y.float())
    ms, ss = mean_std(xs.float())
    return ((my - ms).pow(2) + (sy - ss).pow(2)).sum(1) / ((ms.pow(2) + ss.pow(2)).sum(1) + 1e-6)


def content_loss(fy: dict, fc: dict, tap: str = CONTENT_TAP) -> torch.Tensor:
    """Relative squared error at a tap (B,)."""
    a, b = fy[tap].float(), fc[tap].float()
    return (a - b).pow(2).flatten(1).mean(1) / (b.pow(2).flatten(1).mean(1) + 1e-6)


def _box(x, k: int):  # (B, 1, H, W) -> its k x k mean, edge-replicated (k odd)
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


def luminance(x):  # (B, 3, H, W) -> (B, 1, H, W), float32: Rec. 601, as marks.py's probe
    return (x.float() * x.new_tensor([0.299, 0.587, 0.114], dtype=torch.float32)[None, :, None, None]).sum(1, keepdim=True)


def layout(x):
    """(B, 3, H, W) -> (B, 1, H, W): the luminance's light and dark at 10-30 px (its 9x9 mean
    minus its 33x33 mean, marks.blotches' band) over the image's luminance std."""
    lum = luminance(x)
    return (_box(lum, 9) - _box(lum, 33)) / (lum.flatten(1).std(1)[:, None, None, None] + 0.02)


def layout_loss(y, xc) -> torch.Tensor:
    """Relative squared error of the output's layout against the content's (B,). Model 2's
    blotches on faces and drips in skies are light and dark patches 10-30 px across that the
    photo does not have; the VGG terms reward them (their statistics are a painting's), this
    term does not. Strokes finer than 9 px, and the overall palette and contrast, are free."""
    a, b = layout(y), layout(xc)
    return (a - b).pow(2).flatten(1).mean(1) / (b.pow(2).flatten(1).mean(1) + 0.01)


def added_marks(y, xc, finest: int = 1):
    """(B, 3, H, W) outputs and their contents -> (B, H x W): the marks the stylizer added, the
    output's luminance (its finest x finest mean, finest odd) minus its 33x33 mean (with
    finest 1 every mark under 33 px: the probe's fine marks and its blotches) with the content's
    own marks projected out (its edges are meant to be kept)."""
    band = [((_box(lum, finest) if finest > 1 else lum) - _box(lum, 33)).flatten(1)
            for lum in (luminance(y), luminance(xc))]
    m, c = (b - b.mean(1, keepdim=True) for b in band)
    return m - (m * c).sum(1, keepdim=True) / ((c * c).sum(1, keepdim=True) + 1e-6) * c


def distinct_loss(y, xc, finest: int = 1) -> torch.Tensor:
    """The squared correlation of the marks added to the same content by two paintings (B/2,):
    images i and i + B/2 must share their content. A shared vocabulary (model 2's drips, run 5's
    hatching) reads near 1, each painting its own marks near 0; either sign counts (the same
    marks inverted are the same vocabulary), and no scale of the marks lowers it. finest > 1
    leaves marks finer than finest px out (a painting's fine texture is what the random-filter
    measure reads at full scale, and every painting's is much alike)."""
    h = y.shape[0] // 2
    r = added_marks(y, xc, finest)
    a, b = r[:h], r[h : 2 * h]
    # a floor of 1e-3 (a quarter of an 8-bit level; 1e-6 squared) inside the roots: a crop the
    # output clips flat has no marks, and the root's gradient at 0 is infinite
    n = (a.pow(2).mean(1) + 1e-6).sqrt() * (b.pow(2).mean(1) + 1e-6).sqrt()
    return ((a * b).mean(1) / n).pow(2)


def adain_torch(z, code, channels: int, strength=1.0):
    """AdaIN of latents z (B, C, h, w) to the latent part of style codes (B, 2K): the torch
    runner's AdaIN (one definition of the statistics for training and inference); strength a
    float or a tensor that broadcasts against z (one per image: (B, 1, 1, 1))."""
    k = code.shape[1] // 2
    return adain_tensor(z, code[:, :channels, None, None], code[:, k : k + channels, None, None], strength)


def style_step(vae: VAE, vgg: VGG16, xc, xs, w: dict, beta: float, distinct_finest: int = 1) -> tuple[torch.Tensor, dict]:
    """One style-stage loss on content crops xc and style crops xs (B, 3, H, W) in [0, 1].
    w: weights of "style", "gram", "patch", "coarse", "colour", "content", "detail", "layout",
    "distinct", "recon" (distinct needs the batch's second half to repeat the first's contents). Returns the loss and its
    parts as floats for the progress bar."""
    mu, logvar, cc = vae.encoder.encode_with_style(xc, mu_logvar=True)
    _, cs = vae.encoder.encode_with_style(xs)
    z = mu + torch.exp(0.5 * logvar.float()) * torch.randn_like(mu, dtype=torch.float32)
    recon = vae.decoder(z.to(mu.dtype))
    elbo, mse, kl = elbo_loss(xc, recon.float(), mu.float(), logvar.float(), beta)
    t = adain_torch(mu, cs.float(), vae.cfg.latent_channels)
    y = vae.decoder(t, (cs - cc).to(t.dtype))
    with torch.no_grad():
        fs = vgg(xs)
        fc = vgg(xc)
    fy = vgg(y)
    parts = {"style": style_loss(fy, fs).mean(), "gram": gram_loss(fy, fs).mean(),
             "colour": colour_loss(y, xs).mean(), "content": content_loss(fy, fc).mean()}
    if w.get("detail", 0.0) > 0:
        parts["detail"] = content_loss(fy, fc, DETAIL_TAP).mean()
    if w.get("layout", 0.0) > 0:
        parts["layout"] = layout_loss(y, xc).mean()
    if w.get("distinct", 0.0) > 0:
        parts["distinct"] = distinct_loss(y, xc, distinct_finest).mean()
    if w.get("patch", 0.0) > 0:
        parts["patch"] = patch_loss(fy, fs).mean()
    if w.get("coarse", 0.0) > 0:
        with torch.no_grad():
            fs2 = vgg(F.avg_pool2d(xs, 2))
        parts["coarse"] = gram_loss(vgg(F.avg_pool2d(y, 2)), fs2).mean()
    loss = w["recon"] * elbo + sum(w[k] * v for k, v in parts.items())
    out = {k: v.item() for k, v in parts.items()}
    out["psnr"] = float(10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10)))
    out["kl"] = kl.item()
    return loss, out
