"""Regenerate the README's pictures: stylized outputs only (the photographs and paintings of
../shared/data may not be copied into the repository, not even resized; what the model makes
from them is the project's own).

    python docs/make_pictures.py [--data ../shared/data] [--side 512]

Writes
- docs/grid.jpg: held-out Kodak photographs (released by Kodak for unrestricted use) x
  held-out public-domain paintings, each stylized at --side px by the shipped model through
  the runtime (Engine: the packaged ONNX export), labelled with the painting's title;
- docs/strength.jpg: one photograph at strength 0, 0.25, 0.5, 0.75, 1 with one painting;
- docs/video-frames.jpg: the synthetic clips of `python -m stylert.bench.video` (known motion)
  stylized frame by frame and steadied (the default): a frame, how much each pixel changed
  from the previous output moved along the camera's motion (white: not at all), and the
  object clip's frame where a trail would show.
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


def video_strip(eng: Engine, data: Path, k: int = 12, gain: float = 4.0) -> Image.Image:
    import cv2
    import numpy as np

    from stylert.bench.video import synthetic_clip, warped_error
    from stylert.engine.video import stylize_frames

    code = eng.encode_style(data / next(iter(PAINTINGS)))
    frames, motion = synthetic_clip("pan-zoom")
    objects, obj_motion = synthetic_clip("object")
    runs = {name: (list(stylize_frames(eng, frames, code, temporal=t)), list(stylize_frames(eng, objects, code, temporal=t)))
            for name, t in (("frame by frame (--temporal 0)", 0.0), ("steadied (default)", 0.9))}
    cols = {"input": (frames, objects), **runs}
    maps, valid = motion[k]

    def change(seq):  # |frame k - frame k-1 moved along the motion|, white where nothing changed
        prev = cv2.remap(seq[k - 1].astype(np.float32), maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        d = np.abs(seq[k].astype(np.float32) - prev).mean(-1) * gain
        d[~valid] = 0
        return Image.fromarray((255 - d.clip(0, 255)).astype(np.uint8)).convert("RGB")

    w, h = frames[0].shape[1], frames[0].shape[0]
    head = 34
    sheet = Image.new("RGB", (w * len(cols), head + 3 * h), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (name, (pan, obj)) in enumerate(cols.items()):
        err = "" if name == "input" else (f"  warped error {warped_error(frames, pan, motion):.1f}"
                                          f" / {warped_error(objects, obj, obj_motion):.1f}")
        draw.text((j * w + 4, 4), name + err, fill=(0, 0, 0))
        sheet.paste(Image.fromarray(pan[k]), (j * w, head))
        sheet.paste(change(pan), (j * w, head + h))
        sheet.paste(Image.fromarray(obj[24]), (j * w, head + 2 * h))
    draw.text((4, 18), f"rows: pan-zoom frame {k}; its change from frame {k - 1} moved along the motion "
              f"(x{gain:g}; white = none); the object clip, frame 24", fill=(90, 90, 90))
    return sheet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--side", type=int, default=512, help="the longer side the photographs are stylized at")
    p.add_argument("--only", nargs="+", choices=("grid", "strength", "video"), default=("grid", "strength", "video"),
                   help="which pictures to remake (default: all)")
    a = p.parse_args()
    makers = {"grid": lambda eng: grid(eng, a.data, a.side), "strength": lambda eng: strength_strip(eng, a.data),
              "video": lambda eng: video_strip(eng, a.data)}
    names = {"grid": "grid.jpg", "strength": "strength.jpg", "video": "video-frames.jpg"}
    with Engine.load() as eng:
        for what in a.only:
            makers[what](eng).save(DOCS / names[what], quality=88)
            print("wrote", DOCS / names[what])


if __name__ == "__main__":
    main()
