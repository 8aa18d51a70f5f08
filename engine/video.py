"""Video and frame sequences: stylized frame by frame through `Engine`, steady over time.

Two things move from frame to frame, and each has its fix:
- The statistics. Each frame's own style code (and the latent channels' means and stds that
  AdaIN normalizes by) moves a little, and the decoder's style offset (style - own code) with
  it, so colours and textures jump. The content's code is an exponential moving average over
  the frames of a shot (`temporal`: the weight of the past, 0 = every frame on its own).
- The painted texture. A feed-forward stylizer paints texture from what is in each frame,
  sensor noise included, so under motion it repaints the texture every frame and it boils.
  The texture is carried along the scene's motion instead: the optical flow between
  consecutive input frames (OpenCV's DIS, `Motion`) warps the last output onto the new frame,
  and `temporal` of it is kept wherever the flow holds (forward and backward flows agree, and
  the warped input matches the new one within sensor noise); occluded and disoccluded regions,
  and whatever changed in light, are painted anew. A still region is the zero-flow case.
  Without OpenCV (`pip install 'stylert[video]'`), only still regions are kept.
A scene cut (the mean difference of consecutive frames' thumbnails above `cut_threshold`)
starts over.

Measured by `python -m stylert.bench.video`: the warped error (each output frame against the
previous output moved by the clip's motion, over the same for the input: 1 = no temporal noise
added), exact on synthetic clips with known motion, flow-based on a real clip; and the plain
flicker (`Flicker`: mean change of the output from one frame to the next over the input's),
which rewards texture that stands still on screen.

Files go through PyAV (FFmpeg's libraries in its wheels: no system FFmpeg): decoding (and the
flow), batched stylization and encoding run in three threads joined by bounded queues, so
memory stays flat on a long clip; audio packets are copied into the output unchanged. The
output is written to a temporary file beside the destination and renamed into place when
complete.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .errors import StyleRTError
from . import mixing
from .images import MAX_PIXELS_DEFAULT
from .mixing import StyleCode, adain, check_strength

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
# the encoder per container when --codec is not given
DEFAULT_CODEC = {".mp4": "libx264", ".mov": "libx264", ".m4v": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9",
                 ".avi": "mpeg4", ".gif": "gif"}
INSTALL = "pip install 'stylert[video]' (PyAV: FFmpeg's libraries in its wheels)"
# A mean pixel change (0..255, over 8x8 blocks, after motion compensation) below about this is
# the same surface (sensor noise and compression are a few levels); above it, something changed.
STILL_CHANGE = 6.0
FLOW_SIDE = 640  # the flow is estimated with the frame's longer side at most this (DIS "fast": ~30 ms at 640x360)


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _thumb(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> a 32x18 float thumbnail in [0, 1], for cut detection."""
    return np.asarray(Image.fromarray(frame).resize((32, 18), Image.BILINEAR), np.float32) / 255.0


@dataclass
class Flicker:
    """Running flicker measure: mean |out_t - out_t-1| over mean |in_t - in_t-1|, on
    thumbnails, transitions at cuts left out."""

    out_change: float = 0.0
    in_change: float = 0.0
    pairs: int = 0
    _prev: tuple | None = field(default=None, repr=False)

    def add(self, frame_in: np.ndarray, frame_out: np.ndarray, cut: bool) -> None:
        a, b = (np.asarray(Image.fromarray(f).resize((128, 72), Image.BILINEAR), np.float32) / 255.0
                for f in (frame_in, frame_out))
        if self._prev is not None and not cut:
            self.in_change += float(np.abs(a - self._prev[0]).mean())
            self.out_change += float(np.abs(b - self._prev[1]).mean())
            self.pairs += 1
        self._prev = (a, b)

    @property
    def ratio(self) -> float | None:
        return self.out_change / self.in_change if self.in_change > 0 else None


def _block_mean(d: np.ndarray) -> np.ndarray:
    """(H, W) float32 -> the same averaged over 8x8 blocks (bilinear back to full size), so that
    sensor noise does not read as change."""
    hb, wb = max(1, d.shape[0] // 8), max(1, d.shape[1] // 8)
    return np.asarray(Image.fromarray(d, "F").resize((wb, hb), Image.BOX).resize(d.shape[::-1], Image.BILINEAR))


class Motion:
    """Where each pixel of a frame was in the frame before, and whether to trust it.

    `Motion()(prev, cur)` -> (maps, reliable): `maps` (H, W, 2) float32, the position in `prev`
    of every pixel of `cur` (cv2.remap's map), and `reliable` (H, W) float32 in [0, 1]: 1 where
    the backward flow and the forward flow agree (Sundaram et al.'s check: occlusions and
    disocclusions fail it) and the pixel came from inside `prev`. The flow is OpenCV's DIS
    (fast preset) on the grey frames at most FLOW_SIDE on the longer side, scaled back up.
    Without OpenCV, `available` is False and callers keep only still regions."""

    def __init__(self, side: int = FLOW_SIDE):
        try:
            import cv2
        except ImportError:
            self.cv2 = None
            return
        self.cv2, self.side = cv2, side
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    @property
    def available(self) -> bool:
        return self.cv2 is not None

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cv2 = self.cv2
        h, w = cur.shape[:2]
        f = min(1.0, self.side / max(h, w))
        size = (max(8, round(w * f)), max(8, round(h * f)))
        a, b = (cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA) for x in (prev, cur))
        back = self._dis.calc(b, a, None)  # (h', w', 2): cur -> prev
        fwd = self._dis.calc(a, b, None)  # prev -> cur
        gy, gx = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
        px, py = gx + back[..., 0], gy + back[..., 1]
        fwd_at = cv2.remap(fwd, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        err = ((back + fwd_at) ** 2).sum(-1)
        mag = (back ** 2).sum(-1) + (fwd_at ** 2).sum(-1)
        ok = (err <= 0.01 * mag + 0.5) & (px >= 0) & (py >= 0) & (px <= size[0] - 1) & (py <= size[1] - 1)
        # a little erosion and blur: the check is noisy at motion boundaries, and a hard seam shows
        ok = cv2.erode(ok.astype(np.float32), np.ones((3, 3), np.uint8))
        ok = cv2.GaussianBlur(ok, (5, 5), 0)
        if f < 1.0:
            back = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR) / f
            ok = cv2.resize(ok, (w, h), interpolation=cv2.INTER_LINEAR)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        maps = np.stack([gx + back[..., 0], gy + back[..., 1]], -1)
        return maps, np.clip(ok, 0.0, 1.0)

    def warp(self, img: np.ndarray, maps: np.ndarray, sharp: bool = False) -> np.ndarray:
        """`img` (H, W, C) float32 of the previous frame moved onto the current one. `sharp`:
        bicubic, for the painted texture, which is resampled again every frame it is carried
        (bilinear softened it to 0.58 of the frame-by-frame sharpness on the pan-zoom clip,
        bicubic to 0.69, at the same warped error)."""
        interp = self.cv2.INTER_CUBIC if sharp else self.cv2.INTER_LINEAR
        return self.cv2.remap(img, maps[..., 0], maps[..., 1], interp, borderMode=self.cv2.BORDER_REPLICATE)


class TemporalStylizer:
    """Stateful: stylizes consecutive frames of one clip with smoothed content statistics."""

    def __init__(self, engine, style: StyleCode, strength: float = 1.0, temporal: float = 0.9, cut_threshold: float = 0.12):
        check_strength(strength)
        if not 0.0 <= temporal < 1.0:
            raise StyleRTError(f"temporal {temporal} is outside [0, 1).", "The weight of past frames: 0 (none) to 0.99.")
        if not cut_threshold > 0:
            raise StyleRTError(f"cut threshold {cut_threshold} is not positive.", "The frame difference that starts a shot, e.g. 0.12.")
        engine.check_codes([style])
        self.engine, self.style, self.strength = engine, style, strength
        self.temporal, self.cut_threshold = temporal, cut_threshold
        self._avg = None  # the smoothed own code (2K,)
        self._thumb = None
        self._rgb = None  # the shot's averaged output colour statistics, for _palette
        self._prev = None  # (last input frame (H, W, 3) uint8, last output frame (H, W, 3) float32), for _follow
        self.motion = Motion() if temporal > 0 else None
        self.cuts = 0

    def _is_cut(self, frame: np.ndarray) -> bool:
        t = _thumb(frame)
        cut = self._thumb is not None and float(np.abs(t - self._thumb).mean()) > self.cut_threshold
        self._thumb = t
        return cut

    def __call__(self, frames: list[np.ndarray], flows: list | None = None) -> tuple[list[np.ndarray], list[bool]]:
        """Frames (H, W, 3) uint8 of one size -> (stylized frames of the same size, which
        frames start a new shot). `flows`: for each frame, `Motion()(frame before, frame)` when
        the caller computed it already (a decoding thread), else None: computed here."""
        from .images import to_pil
        from .runtime import pad_to_multiple

        eng, c = self.engine, self.engine.contract
        full = [np.ascontiguousarray(f.transpose(2, 0, 1), np.float32) / np.float32(255.0) for f in frames]
        plan = eng.plan(full[0].shape[1:])  # Engine.stylize's plan: the working size, the way back
        work = [plan.shrink(a) for a in full]
        x = np.stack([pad_to_multiple(plan.pad(a), c.downsample) for a in work])
        z, own = eng.encode(x)
        cuts, smooth = [], np.empty_like(own)
        for i, f in enumerate(frames):
            cut = self._is_cut(f)
            cuts.append(cut)
            if self._avg is None or cut or self.temporal == 0:
                self._avg = own[i].copy()
                self.cuts += cut
            else:
                self._avg = self.temporal * self._avg + (1.0 - self.temporal) * own[i]
            smooth[i] = self._avg
        k = own.shape[1] // 2
        ch = c.latent_channels
        style = self.style.vector
        t = adain(z, style[:ch], style[k:k + ch], self.strength, content_stats=(smooth[:, :ch], smooth[:, k:k + ch]))
        y = eng.decode(t, (self.strength * (style[None] - smooth)).astype(np.float32))
        outs = [np.asarray(to_pil(plan.restore(self._palette(plan.crop(y[i]), cuts[i], plan.palette), work[i], a)))
                for i, a in enumerate(full)]
        flows = flows or [None] * len(frames)
        return [self._follow(f, o, cut, fl) for f, o, cut, fl in zip(frames, outs, cuts, flows)], cuts

    def _palette(self, y: np.ndarray, cut: bool, on: bool) -> np.ndarray:
        """The output (3, h, w) moved to the style's palette (Engine.stylize's last step), from
        its colour statistics averaged over the shot like the codes, so the colours do not
        pump from frame to frame."""
        pal = self.style.palette
        if not on or pal is None or self.strength == 0:
            return y
        st = mixing.rgb_stats(y)
        if self._rgb is None or cut or self.temporal == 0:
            self._rgb = st
        else:
            self._rgb = tuple(self.temporal * a + (1.0 - self.temporal) * b for a, b in zip(self._rgb, st))
        return mixing.apply_colour_map(y, *mixing.colour_map(self._rgb, pal), self.strength)

    def _follow(self, frame: np.ndarray, out: np.ndarray, cut: bool, flow=None) -> np.ndarray:
        """Carry the painted texture along the motion: the last output, warped onto this frame
        by the optical flow, keeps `temporal` of the weight wherever the flow holds and the warped
        input matches this one (the same surface under the same light); elsewhere (occlusions,
        disocclusions, light changes, the first frame of a shot) the new output. `frame` (H, W, 3)
        uint8, `out` the new output (H, W, 3) uint8; `flow` Motion's result from the previous
        frame to this one, or None to compute it here."""
        if self.temporal == 0:
            return out
        o = out.astype(np.float32)
        prev = self._prev
        if prev is not None and not cut and prev[0].shape == frame.shape:
            if self.motion is not None and self.motion.available:
                maps, reliable = flow if flow is not None else self.motion(prev[0], frame)
                last_in = self.motion.warp(prev[0].astype(np.float32), maps)
                last_out = self.motion.warp(prev[1], maps, sharp=True)
            else:  # no flow: the zero-flow case, still regions only
                reliable, last_in, last_out = np.float32(1.0), prev[0].astype(np.float32), prev[1]
            # a change of STILL_CHANGE (0..255) after motion compensation keeps e^-1 of the weight
            d = _block_mean(np.abs(frame.astype(np.float32) - last_in).mean(-1))
            keep = (self.temporal * reliable * np.exp(-(d / STILL_CHANGE) ** 2))[..., None]
            o = keep * last_out + (1.0 - keep) * o
        self._prev = (frame, o)
        return np.clip(o + 0.5, 0, 255).astype(np.uint8)


def stylize_frames(engine, frames: Iterable[np.ndarray], style: StyleCode, strength: float = 1.0, temporal: float = 0.9,
                   cut_threshold: float = 0.12, batch: int = 8, flicker: Flicker | None = None) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 (any iterable: a service's own decoder) -> stylized frames,
    lazily, `batch` at a time through the engine. With `flicker`, it is updated as frames go."""
    st = TemporalStylizer(engine, style, strength, temporal, cut_threshold)
    buf: list[np.ndarray] = []

    def flush():
        outs, cuts = st(buf)
        for f_in, f_out, cut in zip(buf, outs, cuts):
            if flicker is not None:
                flicker.add(f_in, f_out, cut)
            yield f_out
        buf.clear()

    for f in frames:
        f = np.asarray(f)
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise StyleRTError(f"a frame has shape {f.shape} and dtype {f.dtype}.", "Pass RGB frames (H, W, 3) uint8.")
        if buf and f.shape != buf[0].shape:
            yield from flush()
        buf.append(f)
        if len(buf) >= batch:
            yield from flush()
    if buf:
        yield from flush()


# ============================================================================= files
_END = object()


def _open(src: Path):
    try:
        import av
    except ImportError:
        raise StyleRTError("video needs PyAV, which is not installed.", INSTALL) from None
    try:
        inp = av.open(os.fspath(src))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise StyleRTError(f"could not be opened as a video: {str(e).splitlines()[0]}.",
                           "The file is corrupt or not a video FFmpeg reads (mp4, mov, mkv, webm, avi, gif).", path=src) from None
    if not inp.streams.video:
        inp.close()
        raise StyleRTError("holds no video stream.", "Pass a video file (an audio file has nothing to stylize).", path=src)
    return av, inp


def _rotation(src: Path) -> int:
    """The clip's display rotation, counter-clockwise degrees (a multiple of 90), from its first
    frame's display matrix: phones store portrait video sideways and say so there."""
    import av

    try:
        with av.open(os.fspath(src)) as c:
            for frame in c.decode(video=0):
                return int(round((frame.rotation or 0) / 90.0)) * 90 % 360
    except (av.error.FFmpegError, OSError, ValueError, AttributeError):
        pass
    return 0


def _free_name(dst: Path) -> Path:
    for i in range(2, 10_000):
        alt = dst.with_name(f"{dst.stem}-{i}{dst.suffix}")
        if not alt.exists():
            return alt
    raise StyleRTError("has no free name beside it.", "Clean up the output folder.", path=dst)


def _publish(tmp: Path, dst: Path, overwrite: bool) -> Path:
    """Move the finished file to its name: replacing only with `overwrite`; otherwise created
    exclusively at this moment (a hard link fails if the name exists), so a file another program
    wrote under that name while the clip was stylized is kept and the result goes beside it."""
    if overwrite:
        os.replace(tmp, dst)
        return dst
    target = dst
    while True:
        try:
            os.link(tmp, target)
            break
        except FileExistsError:
            target = _free_name(dst)
        except OSError:  # a file system without hard links: the name checked just before the rename
            if target.exists():
                target = _free_name(dst)
                continue
            os.rename(tmp, target)
            return target
    tmp.unlink(missing_ok=True)
    return target


def stylize_video(engine, src: str | os.PathLike, dst: str | os.PathLike, style: StyleCode, strength: float = 1.0,
                  temporal: float = 0.9, cut_threshold: float = 0.12, codec: str | None = None, crf: int = 20,
                  batch: int = 8, overwrite: bool = False, progress: Callable[[int, int | None, float], None] | None = None,
                  max_pixels: int | None = MAX_PIXELS_DEFAULT) -> dict:
    """Stylize the video file `src` into `dst`: the same frame count, size, frame timestamps
    (variable rates kept) and display orientation, its audio streams copied unchanged. Returns
    what was done (frames, seconds, frames/s, flicker ratio, cuts, the path written: `dst`, or
    a free name beside it when another program created `dst` meanwhile; `missing_frames` when
    the file ended before the frames its header announces: a truncated file).
    `progress(frames done, total or None, seconds)` is called after every batch. Frames larger
    than `max_pixels` are refused before anything is decoded.

    Threads: a decoder (frames and their optical flow), this one (the stylizer) and a muxer,
    joined by bounded queues. Every wait is bounded and checks `stop`, so a failure in any of
    them (an encoder the container refuses, a corrupt packet) or Ctrl-C ends all three at once;
    the containers are closed only after the threads have left them."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise StyleRTError("no such video file.", "Check the path.", path=src)
    if dst.exists() and not overwrite:
        raise StyleRTError("exists.", "Pass --overwrite to replace it, or choose another --out.", path=dst)
    suffix = dst.suffix.lower()
    codec = codec or DEFAULT_CODEC.get(suffix)
    if codec is None:
        raise StyleRTError(f"no default video codec for '{suffix}'.", f"Use one of {', '.join(DEFAULT_CODEC)} or pass --codec.", path=dst)
    if not 0 <= crf <= 63:
        raise StyleRTError(f"--crf {crf} is outside 0..63.", "Lower is better quality: 18-28 is usual for H.264.")
    av, inp = _open(src)
    vin = inp.streams.video[0]
    if codec not in av.codecs_available:
        inp.close()
        raise StyleRTError(f"this PyAV has no encoder '{codec}'.", "Pass --codec libx264, libvpx-vp9, mpeg4 or gif.")
    width, height = vin.codec_context.width, vin.codec_context.height
    if max_pixels is not None and width * height > max_pixels:
        inp.close()
        raise StyleRTError(f"has {width}x{height} frames ({width * height:,} pixels), over the limit of {max_pixels:,}.",
                           "A tiny file can declare a huge canvas (a decompression bomb). If the clip is genuine, pass "
                           "--max-pixels with a larger limit.", path=src)
    rotation = _rotation(src)
    turns = rotation // 90  # frames are turned upright before stylization and written upright
    if turns % 2:
        width, height = height, width
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.partial{suffix}")
    frames_q: queue.Queue = queue.Queue(maxsize=2 * batch)  # decoded frames for the stylizer
    out_q: queue.Queue = queue.Queue(maxsize=2 * batch)  # stylized frames and audio packets for the muxer
    errors: list[BaseException] = []
    stop = threading.Event()
    flick = Flicker()
    audio_in = [s for s in inp.streams.audio]

    def put(q, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(q):
        """The next item, or _END once anything has stopped the run: no wait is unbounded."""
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return _END

    motion = Motion() if temporal > 0 else None
    decode_failed: list[BaseException] = []

    def decode():
        last = None
        try:
            for packet in inp.demux(vin, *audio_in):
                if stop.is_set():
                    return
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        put(out_q, ("audio", packet))
                    continue
                for frame in packet.decode():
                    arr = frame.to_ndarray(format="rgb24")
                    if turns:
                        arr = np.ascontiguousarray(np.rot90(arr, turns))
                    # the flow from the frame before, here: it overlaps with the stylization
                    flow = motion(last, arr) if motion is not None and motion.available and last is not None \
                        and last.shape == arr.shape else None
                    last = arr
                    put(frames_q, (arr, frame.pts, frame.time_base, flow))
        except BaseException as e:  # surfaced by the main thread
            decode_failed.append(e)
            errors.append(e)
            stop.set()
        finally:
            put(frames_q, _END)

    try:
        out = av.open(os.fspath(tmp), mode="w")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        inp.close()
        raise StyleRTError(f"cannot be written: {str(e).splitlines()[0]}.", "Check the folder exists and is writable.", path=dst) from None
    try:
        rate = vin.average_rate or vin.guessed_rate or 25
        vout = out.add_stream(codec, rate=rate)
        vout.width, vout.height = width, height
        if codec == "gif":
            vout.pix_fmt = "rgb8"
        elif codec == "mjpeg":
            vout.pix_fmt = "yuvj420p"
        else:
            even = vout.width % 2 == 0 and vout.height % 2 == 0
            vout.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
            if codec in ("libx264", "libvpx-vp9"):
                vout.options = {"crf": str(crf), **({"b": "0"} if codec == "libvpx-vp9" else {})}
        # the input's time base in the encoder too: each frame keeps its own timestamp (variable
        # rates, GIF delays) instead of being rounded onto a 1/rate grid
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        audio_map = {}
        for a in audio_in:
            try:
                audio_map[a.index] = out.add_stream_from_template(a)
            except (ValueError, av.error.FFmpegError):
                pass  # a container that cannot hold this audio codec: the video is still written
        out.start_encoding()
    except (av.error.FFmpegError, ValueError, OSError) as e:
        out.close()
        inp.close()
        tmp.unlink(missing_ok=True)
        raise StyleRTError(f"cannot hold '{codec}' video here: {str(e).splitlines()[0] if str(e) else type(e).__name__}.",
                           f"Leave --codec out for {suffix}'s default ({DEFAULT_CODEC.get(suffix, 'libx264')}), or choose "
                           "a container that holds it (.mkv holds most).", path=dst) from None
    except BaseException:
        out.close()
        inp.close()
        tmp.unlink(missing_ok=True)
        raise

    last_pts = [None]

    def mux():
        try:
            while True:
                item = get(out_q)
                if item is _END:
                    break
                kind, payload = item
                if kind == "audio":
                    s = audio_map.get(payload.stream.index)
                    if s is not None:
                        payload.stream = s
                        out.mux(payload)
                else:
                    arr, pts, tb = payload
                    if pts is not None and last_pts[0] is not None and pts <= last_pts[0]:
                        pts = last_pts[0] + 1  # a repeated timestamp (some VFR files): one tick later
                    last_pts[0] = pts
                    frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                    frame.pts, frame.time_base = pts, tb
                    for p in vout.encode(frame):
                        out.mux(p)
            if not stop.is_set():
                for p in vout.encode():
                    out.mux(p)
        except BaseException as e:
            errors.append(e)
            stop.set()

    total = vin.frames or None
    t0, done = time.time(), 0
    threads = [threading.Thread(target=decode, daemon=True), threading.Thread(target=mux, daemon=True)]
    for t in threads:
        t.start()
    finished = False
    try:
        st = TemporalStylizer(engine, style, strength, temporal, cut_threshold)
        end, pending = False, None
        while not end and not errors:
            items = []
            while len(items) < batch:
                it, pending = (pending, None) if pending is not None else (get(frames_q), None)
                if it is _END:
                    end = True
                    break
                if items and it[0].shape != items[0][0].shape:  # a size change mid-stream: its own batch
                    pending = it
                    break
                items.append(it)
            if not items:
                continue
            outs, cuts = st([it[0] for it in items], [it[3] for it in items])
            for (f_in, pts, tb, _), f_out, cut in zip(items, outs, cuts):
                flick.add(f_in, f_out, cut)
                put(out_q, ("video", (f_out, pts, tb)))
            done += len(items)
            if progress:
                progress(done, total, time.time() - t0)
        if not errors:
            put(out_q, _END)
            threads[1].join()
        if errors:
            e = errors[0]
            if isinstance(e, StyleRTError):
                raise e
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if decode_failed and not isinstance(e, KeyboardInterrupt):
                raise StyleRTError(f"could not be decoded past frame {done}" + (f" of {total}" if total else "") + f": {msg}.",
                                   "The file is truncated or corrupt: copy or export it again.", path=src) from e
            raise StyleRTError(f"could not be transcoded with '{codec}': {msg}.",
                               "The file may be corrupt or use a codec FFmpeg cannot decode here; if the encoder failed, "
                               f"leave --codec out for {suffix}'s default.", path=src) from e
        if not done:
            raise StyleRTError("holds no frame that could be decoded.", "The file is empty or corrupt.", path=src)
        finished = True
    finally:
        stop.set()
        for t in threads:  # every wait in them is bounded: they leave within ~0.1 s of `stop`
            t.join(timeout=10)
        try:
            out.close()  # only now: no thread is inside the container any more
        except Exception:
            finished = False
        inp.close()
        if not finished:
            tmp.unlink(missing_ok=True)
    published = _publish(tmp, dst, overwrite)
    secs = time.time() - t0
    missing = (total - done) if total and done < total else 0
    return {"src": str(src), "dst": str(published), "frames": done, "seconds": round(secs, 2),
            "frames_per_s": round(done / secs, 2) if secs > 0 else None, "flicker": flick.ratio, "cuts": st.cuts,
            "temporal": temporal, "codec": codec, "audio_streams": len(audio_map), "rotation": rotation,
            "missing_frames": missing}
