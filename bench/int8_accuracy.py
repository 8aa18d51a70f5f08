"""INT8 (or any precision) against FP32 through the runtime API, on real photographs stylized
with real paintings: the table issue 34 is judged by.

    python -m stylert.bench.int8_accuracy --reference out/export \\
        --engines out/engine-int8 out/engine-openvino-int8 \\
        --images ../shared/data/photos/kodak24 \\
        --styles ../shared/data/paintings/cysmith_nst/starry-night.jpg ... [--side 384] [--json t.json]

Each engine folder is loaded with `Engine.load(folder)` (its own backend), each painting
encoded with its `encode_style`, each photograph stylized with `stylize` at strength 1
(every painting) and 0 (the reconstruction), default options otherwise; the reference is the
FP32 export on ONNX Runtime, the same calls. PSNR per image (peak 1, float outputs): the
mean over images of the per-image PSNR and the worst image, per engine. Photographs are
scaled so their longer side is `--side` first (384 by default: 24 x 4 stylizations per
engine in about a minute on 2 cores; 0 keeps them as they are).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def load_photos(folder: str | Path, side: int, count: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """(names, float32 (H, W, 3) arrays in [0, 1]) of the images in `folder`, longer side scaled to `side` (0: as is)."""
    from stylert.engine.images import list_images, load_image

    paths = list_images(Path(folder))[:count]
    out = []
    for p in paths:
        im = load_image(p)
        if side:
            f = side / max(im.size)
            im = im.resize((max(8, round(im.width * f)), max(8, round(im.height * f))), resample=3)  # bicubic
        out.append(np.asarray(im, np.float32) / 255.0)
    return [p.name for p in paths], out


def run_engine(folder: str | Path, photos: Sequence[np.ndarray], styles: Sequence[str | Path],
               strengths: Sequence[float] = (1.0, 0.0), backend: str = "auto") -> dict:
    """{strength: [outputs per style (one list of (H, W, 3) arrays per style)]} through the
    runtime API: Engine.load(folder), encode_style, stylize."""
    from stylert.engine import Engine

    out = {}
    with Engine.load(folder, backend=backend) as eng:
        codes = [eng.encode_style(s) for s in styles]
        for a in strengths:
            runs = codes if a > 0 else codes[:1]  # strength 0 does not depend on the style
            out[a] = [eng.stylize(list(photos), c, strength=a) for c in runs]
    return out


def score(test: dict, ref: dict) -> dict:
    """Per strength: mean of the per-image PSNR, worst image, images (dB vs the reference)."""
    from stylert.engine.compare import psnr_per_image

    res = {}
    for a, per_style in ref.items():
        p = np.concatenate([[float(psnr_per_image(t[None], r[None])[0]) for t, r in zip(ts, rs)]
                            for ts, rs in zip(test[a], per_style)])
        res[a] = {"mean_db": float(p.mean()), "worst_db": float(p.min()), "images": int(p.size),
                  "per_style_mean_db": [float(x) for x in p.reshape(len(per_style), -1).mean(1)]}
    return res


def evaluate(reference: str | Path, engines: Sequence[str | Path], images: str | Path, styles: Sequence[str | Path],
             side: int = 384, count: int | None = None, log: Callable = print) -> dict:
    """The table: {engine folder: {"backend", "precision", "stylized": {...}, "reconstruction": {...}}}."""
    names, photos = load_photos(images, side, count)
    log(f"{len(photos)} photographs from {images} (longer side {side or 'as is'}), {len(styles)} paintings")
    t = time.time()
    ref = run_engine(reference, photos, styles, backend="onnxruntime")
    log(f"  reference {reference}: {time.time() - t:.0f} s")
    table = {}
    for e in engines:
        t = time.time()
        man = json.loads((Path(e) / "engine.json").read_text()) if (Path(e) / "engine.json").is_file() else {}
        s = score(run_engine(e, photos, styles), ref)
        row = {"backend": man.get("backend", "?"), "precision": man.get("precision", "?"),
               "stylized": s[1.0], "reconstruction": s[0.0]}
        table[str(e)] = row
        log(f"  {e} ({row['backend']} {row['precision']}): stylized {s[1.0]['mean_db']:.2f} dB mean, "
            f"{s[1.0]['worst_db']:.2f} worst; reconstruction {s[0.0]['mean_db']:.2f} / {s[0.0]['worst_db']:.2f} dB  "
            f"({time.time() - t:.0f} s)")
    return {"images": str(images), "photos": names, "styles": [str(s) for s in styles], "side": side,
            "reference": str(reference), "engines": table}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stylert.bench.int8_accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=True, help="FP32 export folder (stylert export-onnx)")
    p.add_argument("--engines", nargs="+", required=True, help="engine folders (stylert build-engine)")
    p.add_argument("--images", required=True, help="folder of photographs (not used for calibration)")
    p.add_argument("--styles", nargs="+", required=True, help="painting files (not used for calibration)")
    p.add_argument("--side", type=int, default=384, help="photographs' longer side in pixels, 0: as they are (default 384)")
    p.add_argument("--count", type=int, default=None, help="first N photographs only")
    p.add_argument("--json", help="write the table as JSON")
    p.add_argument("--overwrite", action="store_true", help="let --json replace an existing file")
    a = p.parse_args(argv)
    from stylert.engine.outputs import check_before_run, write_output

    check_before_run(p, a.json, a.overwrite, "--json")
    res = evaluate(a.reference, a.engines, a.images, a.styles, a.side, a.count)
    if a.json:
        write_output(a.json, json.dumps(res, indent=1).encode(), a.overwrite, option="--json")
    print("\n| engine | backend | precision | stylized mean dB | worst | reconstruction mean dB | worst |")
    print("|---|---|---|---:|---:|---:|---:|")
    for e, r in res["engines"].items():
        s, z = r["stylized"], r["reconstruction"]
        print(f"| {Path(e).name} | {r['backend']} | {r['precision']} | {s['mean_db']:.2f} | {s['worst_db']:.2f} "
              f"| {z['mean_db']:.2f} | {z['worst_db']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
