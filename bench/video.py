"""The video bench: a phone-like 720p clip made here, stylized per backend, with and without
temporal smoothing; frames/s and flicker side by side.

    python -m stylert.bench.video --json out/video.json [--seconds 10] [--backends openvino onnxruntime]

The clip (written once into the work folder): a hand-held pan and zoom over one photograph,
a cut to a second one at 60 % of the clip, sensor noise, stereo AAC audio (a tone), 30
frames/s, H.264. Photographs: scikit-image's astronaut and coffee (from ../shared/data/content
when present, else from the scikit-image package). Flicker is `engine.video.Flicker`: the mean change of the output
from frame to frame over the same for the input, cuts excluded (1 = none added).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photos() -> list[Image.Image]:
    from stylert.engine.artifacts import DEV_DATA_DIR

    names = [DEV_DATA_DIR / "content" / "astronaut.jpg", DEV_DATA_DIR / "content" / "coffee.jpg"]
    if all(p.is_file() for p in names):
        return [Image.open(p).convert("RGB") for p in names]
    from skimage import data  # the bench extra

    return [Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())]


def make_clip(path: Path, seconds: float = 10.0, fps: int = 30, size=(1280, 720), seed: int = 0) -> Path:
    """A phone-like clip: pan and zoom with hand shake, a cut, noise, audio."""
    import av

    rng = np.random.default_rng(seed)
    shots = photos()
    n = int(seconds * fps)
    cut = int(0.6 * n)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.options = {"crf": "18", "preset": "veryfast"}
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        shake = np.cumsum(rng.normal(0, 1.2, (n, 2)), axis=0)  # a hand's slow drift
        for i in range(n):
            img = shots[0] if i < cut else shots[1]
            t = (i if i < cut else i - cut) / fps
            W, H = img.size
            zoom = 1.0 + 0.15 * (1 - math.cos(0.5 * t))  # slowly in
            cw, ch = W / (1.3 * zoom), W / (1.3 * zoom) * size[1] / size[0]
            cw, ch = min(cw, W), min(ch, H)
            cx = W / 2 + 0.15 * W * math.sin(0.4 * t) + shake[i, 0]
            cy = H / 2 + 0.05 * H * math.sin(0.3 * t) + shake[i, 1]
            cx, cy = min(max(cx, cw / 2), W - cw / 2), min(max(cy, ch / 2), H - ch / 2)
            box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
            frame = np.asarray(img.resize(size, Image.BICUBIC, box=box), np.float32)
            frame = np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)  # sensor noise
            for p in v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        samples = int(seconds * 48000)
        tt = np.arange(samples) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * tt)).astype(np.float32)
        for k in range(0, samples, 1024):
            chunk = np.stack([tone[k:k + 1024], tone[k:k + 1024]])
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, k
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stylert.bench.video", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="out/video-bench", help="folder for the clip and the outputs (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default: %(default)s)")
    ap.add_argument("--style", default=None, help="style image (default: The Starry Night from ../shared/data, held out "
                    "of training, else scikit-image's Hubble deep field)")
    ap.add_argument("--backends", nargs="+", default=["auto"], help="backends to run (default: auto, the CLI's choice)")
    ap.add_argument("--temporal", type=float, nargs="+", default=[0.9, 0.0], help="smoothing settings (default: 0.9 0)")
    ap.add_argument("--json", default=None, help="write the rows here")
    a = ap.parse_args(argv)

    from stylert.engine.artifacts import DEV_DATA_DIR, SAMPLE_STYLE, sample_photo_dir
    from stylert.engine.errors import StyleRTError
    from stylert.engine.frontend import model_folder
    from stylert.engine.images import load_image
    from stylert.engine.runtime import Engine
    from stylert.engine.video import stylize_video

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    clip = work / f"clip-{a.seconds:g}s.mp4"
    if not clip.is_file():
        t = time.perf_counter()
        make_clip(clip, a.seconds)
        print(f"made {clip} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    starry = DEV_DATA_DIR / "paintings" / "cysmith_nst" / "starry-night.jpg"
    if a.style is None and not starry.is_file() and sample_photo_dir() is None:
        raise StyleRTError("no default style image here.", "Pass --style PAINTING.jpg, or pip install scikit-image.")
    style_img = load_image(a.style or (starry if starry.is_file() else sample_photo_dir() / SAMPLE_STYLE))
    rows = []
    for backend in a.backends:
        eng = Engine.load(model_folder(None, backend), backend=backend)
        style = eng.encode_style(style_img)
        for temporal in a.temporal:
            dst = work / f"out-{eng.info['backend']}-{eng.info['precision']}-t{temporal:g}.mp4"
            r = stylize_video(eng, clip, dst, style, temporal=temporal, overwrite=True)
            row = {"backend": eng.info["backend"], "precision": eng.info["precision"], "temporal": temporal,
                   "frames": r.get("frames"), "frames_per_s": r["frames_per_s"],
                   "flicker": round(r["flicker"], 3) if r["flicker"] else None, "cuts": r["cuts"],
                   "audio_streams": r["audio_streams"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"clip": str(clip), "seconds": a.seconds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
