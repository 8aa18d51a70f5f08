"""`stylert evaluate --styles`: how much style a method transfers, and how much content it keeps.

Every method stylizes each content image with each style image at --size (the longer side;
both images are scaled so); the same three measures score every output:

- texture moved (%): 100 x (1 - d(out, style) / d(content, style)), where d is the distance
  between multi-scale texture statistics: the Gram matrices of a fixed bank of random
  convolution filters (3x3 and 7x7, ReLU) applied at 1, 1/2, 1/4 and 1/8 of the image's
  luminance, standardized to zero mean and unit contrast (so colour and tone alone move
  nothing), each scale's distance relative to the Grams' magnitudes. Random filters are a texture space known to
  synthesize natural textures (Ustyuzhaninov et al., ICLR 2017), and not the space any method
  here was trained or optimized in. 0 % = the content's texture, 100 % = the style's.
  The same figure in EfficientNet-Lite0's space (`texture_effnet`) is also given: that is
  the space the style stage is trained in and the optimization baseline optimizes in, so it
  favours them; read it as a check, not a verdict.
- colour moved (%): the same with per-channel mean and std of the RGB pixels.
- edges kept: the correlation between the Sobel edge magnitudes of the output and of the
  content (greyscale): 1 = the same edges, 0 = unrelated. Style transfer trades some of it
  for texture; a recognizable photo keeps roughly 0.5 or more.

Methods: `new` (the model under test), `previous` (a reconstruction-only model: AdaIN of the
latent statistics, the colour grade the project shipped before), `colour` (each RGB channel's
mean and std moved to the style's: the baseline to beat on texture), `optimized` (the image
itself optimized for --opt-steps Adam steps against EfficientNet-Lite0 Gram matrices and a
content term, Gatys-style: slow, the quality to approach).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylert.engine.images import atomic_write_bytes, load_image, save_image, to_pil

from .checkpoint import load_model
from .style import CONTENT_TAP, STYLE_TAPS, LossNet, adain_torch, gram

METHODS = ("grade", "colour", "optimized", "previous", "new")


# ----------------------------------------------------------------------------- measures
class RandomTexture(torch.nn.Module):
    """Fixed random filters (seed 0) at four scales on the standardized luminance: the report's
    texture space. Luminance with its mean and contrast removed, so that a colour or tone
    change alone moves nothing: what is left is the pattern (strokes, edges, grain)."""

    def __init__(self, n: int = 64, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w3 = torch.nn.Parameter(torch.randn(n, 1, 3, 3, generator=g) / 3.0, requires_grad=False)
        self.w7 = torch.nn.Parameter(torch.randn(n, 1, 7, 7, generator=g) / 7.0, requires_grad=False)

    def forward(self, x):  # (1, 3, H, W) -> list of (2n, 2n) Grams, one per scale
        lum = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        grams = []
        for s in range(4):
            xs = F.avg_pool2d(lum, 2 ** s) if s else lum
            xs = (xs - xs.mean()) / (xs.std() + 1e-6)
            f = torch.cat([F.relu(F.conv2d(xs, self.w3, padding=1)), F.relu(F.conv2d(xs, self.w7, padding=3))], 1)
            f = f.flatten(2)
            grams.append((f @ f.transpose(1, 2))[0] / f.shape[2])
        return grams


def gram_distance(a: list, b: list) -> float:
    """Mean over scales of ||Ga - Gb|| / (||Ga|| + ||Gb||): scale-free, in [0, 1]."""
    return float(np.mean([float((x - y).norm() / (x.norm() + y.norm() + 1e-12)) for x, y in zip(a, b)]))


def effnet_grams(net: LossNet, x) -> list:
    f = net(x)
    return [gram(f[t])[0] for t in STYLE_TAPS]


def colour_stats(x) -> torch.Tensor:  # (1, 3, H, W) -> (6,)
    return torch.cat([x.mean(dim=(2, 3))[0], x.std(dim=(2, 3))[0]])


def moved(d_out: float, d_content: float) -> float:
    """Percent of the way from the content's statistics to the style's."""
    return 100.0 * (1.0 - d_out / max(d_content, 1e-12))


def edge_correlation(a, b) -> float:
    """Pearson correlation of the Sobel edge magnitudes of two (1, 3, H, W) images."""
    k = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    kernel = torch.stack([k, k.t()])[:, None]

    def edges(x):
        g = x.mean(1, keepdim=True)
        e = F.conv2d(g, kernel, padding=1)
        return e.pow(2).sum(1).sqrt().flatten()

    ea, eb = edges(a), edges(b)
    ea, eb = ea - ea.mean(), eb - eb.mean()
    return float((ea @ eb) / (ea.norm() * eb.norm() + 1e-12))


# ----------------------------------------------------------------------------- methods
def colour_transfer(c, s):
    """Each RGB channel's mean and std moved to the style's."""
    mc, sc = c.mean(dim=(2, 3), keepdim=True), c.std(dim=(2, 3), keepdim=True) + 1e-5
    ms, ss = s.mean(dim=(2, 3), keepdim=True), s.std(dim=(2, 3), keepdim=True)
    return ((c - mc) / sc * ss + ms).clamp(0, 1)


def colour_grade(vae, c, s):
    """AdaIN of the latent statistics, decoded without a style offset: a reconstruction-only
    VAE's style transfer (for a style model, its frozen reconstruction decoder's)."""
    zc = vae.encoder.posterior_mean(c)
    zs = vae.encoder.posterior_mean(s)
    from .model import mean_std

    m, sd = mean_std(zs)
    t = adain_torch(zc, torch.cat([m, sd], 1), zc.shape[1])
    return vae.decoder.image(t)


def new_model(vae, c, s):
    """The style decoder as the runtime runs it: with Engine.stylize's mirrored margin."""
    from stylert.engine.runtime import MARGIN as m

    cp = torch.nn.functional.pad(c, (m, m, m, m), mode="reflect")
    zc, cc = vae.encoder.encode_with_style(cp)
    _, cs = vae.encoder.encode_with_style(s)
    y = vae.decoder.image(adain_torch(zc, cs, vae.cfg.latent_channels), cs - cc)
    return y[:, :, m:y.shape[2] - m, m:y.shape[3] - m]


def optimize(net: LossNet, c, s, steps: int, style_weight: float = 1e3, lr: float = 0.02):
    """Gatys-style: the pixels optimized against EfficientNet-Lite0 Grams of the style and its
    block-7 features of the content, from the content. The quality a feed-forward decoder
    approaches, at a few seconds per image here."""
    with torch.no_grad():
        gs = effnet_grams(net, s)
        fc = net(c)[CONTENT_TAP]
    x = c.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        f = net(x)
        loss = F.mse_loss(f[CONTENT_TAP], fc) / fc.pow(2).mean()
        for t, g in zip(STYLE_TAPS, gs):
            gx = gram(f[t])[0]
            loss = loss + style_weight / len(gs) * (gx - g).pow(2).mean() / g.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach()


# ----------------------------------------------------------------------------- the report
def _load(path, size: int):
    """(1, 3, H, W) in [0, 1], the longer side scaled to `size`, sides multiples of 8."""
    img = load_image(path)
    f = size / max(img.size)
    w, h = max(8, round(img.width * f) // 8 * 8), max(8, round(img.height * f) // 8 * 8)
    a = np.asarray(img.resize((w, h)), np.float32) / 255.0
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None]


def style_report(contents: list[Path], styles: list[Path], model: str | os.PathLike | None, previous: str | os.PathLike | None,
                 size: int = 256, opt_steps: int = 200, out_dir: str | os.PathLike | None = None, log=print) -> dict:
    """Score every method on every (content, style) pair; returns the table and, with out_dir,
    writes each output image and report.json there."""
    vae, sha = load_model(model)
    prev = load_model(previous)[0] if previous else None
    net = LossNet()
    tex = RandomTexture()
    rows = []
    out = Path(out_dir) if out_dir else None
    t0 = time.time()
    for cp in contents:
        c = _load(cp, size)
        for sp in styles:
            s = _load(sp, size)
            with torch.no_grad():
                outs = {"grade": colour_grade(vae, c, s), "colour": colour_transfer(c, s), "new": new_model(vae, c, s)}
                if prev is not None:
                    outs["previous"] = (new_model if prev.decoder.style is not None else colour_grade)(prev, c, s)
            if opt_steps:
                outs["optimized"] = optimize(net, c, s, opt_steps)
            with torch.no_grad():
                tc, ts = tex(c), tex(s)
                ec, es = effnet_grams(net, c), effnet_grams(net, s)
                d_tex, d_eff = gram_distance(tc, ts), gram_distance(ec, es)
                d_col = float((colour_stats(c) - colour_stats(s)).norm())
                for name, y in outs.items():
                    rows.append({
                        "content": cp.name, "style": sp.name, "method": name,
                        "texture_moved": moved(gram_distance(tex(y), ts), d_tex),
                        "texture_effnet_moved": moved(gram_distance(effnet_grams(net, y), es), d_eff),
                        "colour_moved": moved(float((colour_stats(y) - colour_stats(s)).norm()), d_col),
                        "edges_kept": edge_correlation(y, c),
                    })
                    if out is not None:
                        out.mkdir(parents=True, exist_ok=True)
                        save_image(to_pil(y[0].numpy()), out / f"{cp.stem}__{sp.stem}__{name}.png")
            log(f"  {cp.name} x {sp.name}: " + ", ".join(
                f"{r['method']} tex {r['texture_moved']:.0f}% edges {r['edges_kept']:.2f}" for r in rows[-len(outs):])
                + f"  [{time.time() - t0:.0f} s]")
    summary = {}
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if rs:
            summary[m] = {k: float(np.mean([r[k] for r in rs])) for k in
                          ("texture_moved", "texture_effnet_moved", "colour_moved", "edges_kept")}
            summary[m]["pairs"] = len(rs)
    report = {"size": size, "opt_steps": opt_steps, "model_sha256": sha, "model": str(model or "shipped"),
              "previous": str(previous) if previous else None, "contents": [p.name for p in contents],
              "styles": [p.name for p in styles], "summary": summary, "rows": rows}
    if out is not None:
        atomic_write_bytes(out / "report.json", json.dumps(report, indent=2).encode())
        write_grids(contents, styles, out, size)
    return report


def write_grids(contents: list[Path], styles: list[Path], out: Path, size: int) -> list[Path]:
    """One sheet per content image, grid_<name>.jpg: a row per style; columns the content,
    the style, then each method's output (those found in `out`)."""
    from PIL import Image, ImageDraw

    written = []
    for cp in contents:
        cols = ["content", "style", *[m for m in METHODS if (out / f"{cp.stem}__{styles[0].stem}__{m}.png").is_file()]]
        sheet = Image.new("RGB", (len(cols) * size, len(styles) * size + 20), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for j, name in enumerate(cols):
            draw.text((j * size + 4, 4), name, fill=(0, 0, 0))
        for i, sp in enumerate(styles):
            for j, name in enumerate(cols):
                if name == "content":
                    img = to_pil(_load(cp, size)[0].numpy())
                elif name == "style":
                    img = to_pil(_load(sp, size)[0].numpy())
                else:
                    img = Image.open(out / f"{cp.stem}__{sp.stem}__{name}.png")
                sheet.paste(img, (j * size, 20 + i * size))
        path = out / f"grid_{cp.stem}.jpg"
        save_image(sheet, path, quality=90)
        written.append(path)
    return written


def print_summary(report: dict, log=print) -> None:
    log(f"\n{'method':<10} {'texture moved':>14} {'(effnet space)':>15} {'colour moved':>13} {'edges kept':>11}  "
        f"({len(report['contents'])} photos x {len(report['styles'])} styles at {report['size']} px)")
    for m, v in report["summary"].items():
        log(f"{m:<10} {v['texture_moved']:>13.1f}% {v['texture_effnet_moved']:>14.1f}% {v['colour_moved']:>12.1f}% {v['edges_kept']:>11.2f}")
