"""Regenerate the README's pictures: stylized outputs only (the photographs and paintings of
../shared/data may not be copied into the repository, not even resized; what the model makes
from them is the project's own).

    python docs/make_pictures.py [--data ../shared/data] [--side 512]

Writes
- docs/grid.jpg: held-out Kodak photographs (released by Kodak for unrestricted use) x
  held-out public-domain paintings, each stylized at --side px by the shipped model through
  the runtime (Engine: the packaged ONNX export), labelled with the painting's title;
- docs/strength.jpg: one photograph at strength 0, 0.25, 0.5, 0.75, 1 with one painting.
Needs ../shared/data (it is the development data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from stylert.engine.runtime import Engine

DOCS = Path(__file__).resolve().parent
PHOTOS = ("photos/kodak24/kodim23.jpg", "photos/kodak24/kodim15.jpg", "photos/kodak24/kodim05.jpg",
          "photos/kodak24/kodim21.jpg")
PAINTINGS = {  # held out of training (README, "The model"); public domain (paintings/SOURCES.tsv)
    "paintings/cysmith_nst/starry-night.jpg": "Van Gogh, The Starry Night",
    "paintings/cysmith_nst/kandinsky.jpg": "Kandinsky, Composition VII",
    "paintings/cysmith_nst/wave_crop.jpg": "Hokusai, The Great Wave",
    "paintings/gordicaleksa_nst/edtaonisl.jpg": "Picabia, Edtaonisl",
    "paintings/magenta_styles/Camille_Mauclair.jpg": "Vallotton, woodcut",
    "paintings/cysmith_nst/the_scream.jpg": "Munch, The Scream",
}


def _fit(img: Image.Image, side: int) -> Image.Image:
    s = side / max(img.size)
    return img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)


def grid(eng: Engine, data: Path, side: int, cell: int = 256) -> Image.Image:
    titles = list(PAINTINGS.values())
    head = 22
    sheet = Image.new("RGB", (cell * len(titles), head + cell * len(PHOTOS)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, t in enumerate(titles):
        draw.text((j * cell + 4, 5), t, fill=(0, 0, 0))
    codes = [eng.encode_style(data / p) for p in PAINTINGS]
    for i, photo in enumerate(PHOTOS):
        img = _fit(Image.open(data / photo).convert("RGB"), side)
        for j, code in enumerate(codes):
            y = eng.stylize(img, code)
            y.thumbnail((cell, cell), Image.LANCZOS)
            sheet.paste(y, (j * cell + (cell - y.width) // 2, head + i * cell + (cell - y.height) // 2))
    return sheet


def strength_strip(eng: Engine, data: Path, side: int = 320) -> Image.Image:
    img = _fit(Image.open(data / PHOTOS[0]).convert("RGB"), side)
    code = eng.encode_style(data / next(iter(PAINTINGS)))
    strip = [eng.stylize(img, code, strength=s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    sheet = Image.new("RGB", (img.width * len(strip), img.height), "white")
    for i, y in enumerate(strip):
        sheet.paste(y, (i * img.width, 0))
    return sheet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--side", type=int, default=512, help="the longer side the photographs are stylized at")
    a = p.parse_args()
    with Engine.load() as eng:
        grid(eng, a.data, a.side).save(DOCS / "grid.jpg", quality=88)
        strength_strip(eng, a.data).save(DOCS / "strength.jpg", quality=88)
    print("wrote", DOCS / "grid.jpg", DOCS / "strength.jpg")


if __name__ == "__main__":
    main()
