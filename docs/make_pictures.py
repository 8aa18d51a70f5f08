"""Regenerate the README's pictures from scikit-image's openly licensed sample images (the
photographs and paintings of ../shared/data may not be committed, not even resized).

    python docs/make_pictures.py [--previous MODEL] [--engine out/engine-int8] [--opt-steps 200]

Writes docs/sample-astronaut.jpg and docs/sample-chelsea.jpg (the style report's grids: rows
brick, gravel, hubble_deep_field; columns content, style, grade,
colour, optimized, previous, new),
docs/strength-fp32.jpg / docs/strength-int8.jpg (strength 0, 0.25, 0.5, 0.75, 1 with the
brick style through the runtime: the shipped model's export and, given --engine, an engine)
and docs/style-size.jpg (a generated cells pattern as the style at --style-size 256, 512, 1024).
Needs the export, style and bench extras.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image
from stylert.engine.artifacts import sample_photo_dir
from stylert.engine.frontend import model_folder
from stylert.engine.runtime import Engine
from stylert.export.style_report import print_summary, style_report

DOCS = Path(__file__).resolve().parent
CONTENTS = ("chelsea.png", "coffee.png", "astronaut.png")
STYLES = ("brick.png", "gravel.png", "hubble_deep_field.jpg")


def strength_strip(folder: Path, content: Path, style: Path, out: Path, side: int = 256) -> None:
    with Engine.load(folder) as eng:
        img = Image.open(content).convert("RGB")
        img = img.resize((side, round(img.height * side / img.width)))
        code = eng.encode_style(style)
        strip = [eng.stylize(img, code, strength=s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    sheet = Image.new("RGB", (side * len(strip), strip[0].height))
    for i, im in enumerate(strip):
        sheet.paste(im, (i * side, 0))
    sheet.save(out, quality=90)
    print("wrote", out)


def style_size_strip(folder: Path, content: Path, out: Path, side: int = 320) -> None:
    """The style, then the content stylized with it encoded at 256, 512 and 1024 px."""
    import numpy as np
    from stylert.export.textures import texture

    style = Image.fromarray(texture(np.random.default_rng(7), 512, kind="cells"))
    img = Image.open(content).convert("RGB")
    img = img.resize((side, round(img.height * side / img.width)))
    panels = [style.resize((side, side))]
    for px in (256, 512, 1024):
        with Engine.load(folder, style_side=px) as eng:
            panels.append(eng.stylize(img, style))
    sheet = Image.new("RGB", (side * len(panels), max(p.height for p in panels)), "white")
    for i, im in enumerate(panels):
        sheet.paste(im, (i * side, 0))
    sheet.save(out, quality=90)
    print("wrote", out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--previous", help="an earlier model (style or reconstruction-only) for the 'previous' column")
    p.add_argument("--engine", help="an engine folder (build-engine) for docs/strength-int8.jpg")
    p.add_argument("--opt-steps", type=int, default=200)
    a = p.parse_args()
    d = sample_photo_dir()
    if d is None:
        raise SystemExit("scikit-image is not installed: pip install -e '.[bench]'")
    tmp = Path(tempfile.mkdtemp(prefix="stylert-docs-"))
    try:
        report = style_report([d / c for c in CONTENTS], [d / s for s in STYLES], None, a.previous,
                              size=256, opt_steps=a.opt_steps, out_dir=tmp)
        print_summary(report)
        for name in ("astronaut", "chelsea"):
            Image.open(tmp / f"grid_{name}.jpg").save(DOCS / f"sample-{name}.jpg", quality=88)
            print("wrote", DOCS / f"sample-{name}.jpg")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    strength_strip(model_folder(None), d / "astronaut.png", d / "brick.png", DOCS / "strength-fp32.jpg")
    style_size_strip(model_folder(None), d / "astronaut.png", DOCS / "style-size.jpg")
    if a.engine:
        strength_strip(Path(a.engine), d / "astronaut.png", d / "brick.png", DOCS / "strength-int8.jpg")


if __name__ == "__main__":
    main()
