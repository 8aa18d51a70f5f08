"""The video bench: clips made here, stylized per backend, with and without temporal
steadying; frames/s, warped error and flicker side by side.

    python -m stylert.bench.video --json out/video.json [--seconds 10] [--backends openvino onnxruntime]

Warped error: each output frame against the previous output frame moved by the clip's motion,
within shots and where the motion is defined (no occlusion), over the same for the input
frames; 1 = the stylization adds no temporal noise, the input's own sensor noise being the
floor. On the synthetic clips (`synthetic_clip`: a camera panning and zooming over a
photograph with a cut; an object crossing a still photograph) the motion is known exactly;
on the phone-like clip it is estimated (DIS optical flow with its forward-backward check, the
same estimator the stylizer uses, so that figure favours it: the synthetic ones are the fair
test). Flicker (engine.video.Flicker) is the plain change from frame to frame, which rewards
texture that stands still on screen.

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


def _boxes_frame(img: Image.Image, box, size) -> np.ndarray:
    return np.asarray(img.resize(size, Image.BICUBIC, box=tuple(box)), np.float32)


def _box_maps(prev_box, box, size) -> np.ndarray:
    """Where each pixel of the frame cropped at `box` was in the frame cropped at `prev_box`
    (both resized to `size`): (H, W, 2) float32, cv2.remap's map."""
    w, h = size
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx, sy = box[0] + (gx + 0.5) * (box[2] - box[0]) / w, box[1] + (gy + 0.5) * (box[3] - box[1]) / h
    px = (sx - prev_box[0]) * w / (prev_box[2] - prev_box[0]) - 0.5
    py = (sy - prev_box[1]) * h / (prev_box[3] - prev_box[1]) - 0.5
    return np.stack([px, py], -1).astype(np.float32)


def synthetic_clip(kind: str, n: int = 36, size=(480, 272), seed: int = 0):
    """(frames (H, W, 3) uint8, motion) with the motion known exactly: motion[i] is None at the
    first frame of a shot, else (maps, valid): where each pixel of frame i was in frame i-1
    (cv2.remap's map) and where that is defined (the previous frame saw it).

    kind "pan-zoom": a camera panning right and down 2.5 px a frame while zooming in 0.6 % a
    frame over one photograph, a cut at 2/3 to a second one panning left. kind "object": a
    textured disc crossing a still photograph at 5 px a frame. Sensor noise (2 levels) on every frame."""
    rng = np.random.default_rng(seed)
    a, b = photos()
    w, h = size
    frames, motion = [], []
    if kind == "pan-zoom":
        cut = 2 * n // 3
        prev = None
        for i in range(n):
            img, t = (a, i) if i < cut else (b, i - cut)
            W, H = img.size
            z = 1.006 ** t
            bw = 0.55 * W / z
            bh = bw * h / w
            x0 = 0.1 * W + 2.5 * t * bw / w if i < cut else 0.4 * W - 2.5 * t * bw / w
            y0 = 0.1 * H + 1.0 * t * bh / h
            box = (x0, y0, x0 + bw, y0 + bh)
            frames.append(_boxes_frame(img, box, size))
            if prev is None or i == cut:
                motion.append(None)
            else:
                maps = _box_maps(prev, box, size)
                valid = (maps[..., 0] >= 0) & (maps[..., 1] >= 0) & (maps[..., 0] <= w - 1) & (maps[..., 1] <= h - 1)
                motion.append((maps, valid))
            prev = box
    elif kind in ("object", "still"):
        bg = _boxes_frame(a, (0, 0, *a.size), size)
        patch = _boxes_frame(b, (0, 0, *b.size), (w // 4, w // 4))
        r = w // 8
        yy, xx = np.mgrid[0:h, 0:w]
        prev_c = None
        for i in range(n):
            c = (r + 5 * i, h // 2)
            inside = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 < r * r
            f = bg.copy()
            if kind == "object":
                py, px = (yy - c[1] + r)[inside], (xx - c[0] + r)[inside]
                f[inside] = patch[py.clip(0, 2 * r - 1), px.clip(0, 2 * r - 1)]
            else:
                inside = np.zeros_like(inside)
            frames.append(f)
            if prev_c is None:
                motion.append(None)
            else:
                d = c[0] - prev_c[0]
                maps = np.stack([xx - d * inside, yy], -1).astype(np.float32)
                was_inside = (xx - prev_c[0]) ** 2 + (yy - prev_c[1]) ** 2 < r * r
                valid = inside | ~was_inside  # the background the disc uncovered was not seen before
                ring = np.abs(np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2) - r) < 2  # the edge: no exact motion
                motion.append((maps, valid & ~ring))
            prev_c = c
    else:
        raise ValueError(f"unknown clip kind {kind!r}")
    frames = [np.clip(f + rng.normal(0, 2.0, f.shape), 0, 255).astype(np.uint8) for f in frames]
    return frames, motion


def warped_error(inputs: list[np.ndarray], outputs: list[np.ndarray], motion: list) -> float:
    """Mean |out_t - warp(out_t-1)| over mean |in_t - warp(in_t-1)|, over valid pixels of every
    pair with a motion (None: a shot's first frame, left out)."""
    import cv2

    num = den = 0.0
    for i, m in enumerate(motion):
        if m is None or i == 0:
            continue
        maps, valid = m

        def err(seq):
            prev = cv2.remap(seq[i - 1].astype(np.float32), maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
            return float(np.abs(seq[i].astype(np.float32) - prev).mean(-1)[valid].mean())

        num, den = num + err(outputs), den + err(inputs)
    return num / den if den > 0 else float("nan")


def flow_motion(frames: list[np.ndarray], cuts: list[bool]) -> list:
    """The motion of a real clip, estimated: engine.video.Motion between consecutive frames,
    valid where its forward-backward check holds; None at the first frame and at cuts."""
    from stylert.engine.video import Motion

    mo = Motion()
    out = [None]
    for i in range(1, len(frames)):
        if cuts[i]:
            out.append(None)
            continue
        maps, rel = mo(frames[i - 1], frames[i])
        out.append((maps, rel > 0.5))
    return out


def synthetic_rows(eng, style, temporals, n: int = 36) -> list[dict]:
    """Warped error, flicker and frames/s of the synthetic clips, per steadying setting."""
    from stylert.engine.video import Flicker, stylize_frames

    rows = []
    for kind in ("pan-zoom", "object"):
        frames, motion = synthetic_clip(kind, n)
        for temporal in temporals:
            flick = Flicker()
            t = time.perf_counter()
            outs = list(stylize_frames(eng, frames, style, temporal=temporal, flicker=flick))
            secs = time.perf_counter() - t
            rows.append({"clip": kind, "backend": eng.info["backend"], "precision": eng.info["precision"],
                         "temporal": temporal, "frames": len(outs), "frames_per_s": round(len(outs) / secs, 2),
                         "warped_error": round(warped_error(frames, outs, motion), 2),
                         "flicker": round(flick.ratio, 3) if flick.ratio else None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def clip_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


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
    ap.add_argument("--overwrite", action="store_true", help="let --json replace an existing file")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic clips with known motion")
    a = ap.parse_args(argv)
    from stylert.engine.outputs import check_before_run

    check_before_run(ap, a.json, a.overwrite, "--json")

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
    clip_in = None
    for backend in a.backends:
        eng = Engine.load(model_folder(None, backend), backend=backend)
        style = eng.encode_style(style_img)
        if not a.no_synthetic:
            rows += synthetic_rows(eng, style, a.temporal)
        for temporal in a.temporal:
            dst = work / f"out-{eng.info['backend']}-{eng.info['precision']}-t{temporal:g}.mp4"
            r = stylize_video(eng, clip, dst, style, temporal=temporal, overwrite=True)
            if clip_in is None:  # the input's motion, estimated once
                from stylert.engine.video import TemporalStylizer

                clip_in = clip_frames(clip)
                probe = TemporalStylizer(eng, style, temporal=0.0)
                motion = flow_motion(clip_in, [probe._is_cut(f) for f in clip_in])
            row = {"clip": f"phone-like {a.seconds:g} s 720p", "backend": eng.info["backend"],
                   "precision": eng.info["precision"], "temporal": temporal,
                   "frames": r.get("frames"), "frames_per_s": r["frames_per_s"],
                   "warped_error (flow)": round(warped_error(clip_in, clip_frames(dst), motion), 2),
                   "flicker": round(r["flicker"], 3) if r["flicker"] else None, "cuts": r["cuts"],
                   "audio_streams": r["audio_streams"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.json:
        from stylert.engine.outputs import write_output

        write_output(a.json, json.dumps({"clip": str(clip), "seconds": a.seconds, "rows": rows}, indent=1).encode(),
                     a.overwrite, option="--json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
