"""Video and frame sequences: stylized frame by frame through `Engine`, steady over time.

Why frames flicker, and the fix: each frame's own statistics (its style code, and the latent
channels' means and stds that AdaIN normalizes by) move a little from frame to frame, and the
decoder's style offset (style - own code) moves with them, so colours and textures jump. Here
the content's code is an exponential moving average over the frames of a shot
(`temporal`: the weight of the past, 0 = every frame on its own), used both to normalize the
latent and in the offset, while the latent itself follows the motion. The texture is steadied
too: where the input did not change (8x8 blocks whose pixels moved less than STILL_CHANGE
levels), `temporal` of the previous output is kept, so still regions are not repainted from
the sensor noise of every frame. A scene cut (the mean difference of consecutive frames'
thumbnails above `cut_threshold`) starts over.

Flicker is measured as the mean change of the output from one frame to the next divided by
the same for the input (1 = no added flicker), cuts excluded: `Flicker`.

Files go through PyAV (FFmpeg's libraries in its wheels: no system FFmpeg): decoding, batched
stylization and encoding run in three threads joined by bounded queues, so memory stays flat
on a long clip; audio packets are copied into the output unchanged. The output is written to a
temporary file beside the destination and renamed into place when complete.
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
from .mixing import StyleCode, adain, check_strength

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
# the encoder per container when --codec is not given
DEFAULT_CODEC = {".mp4": "libx264", ".mov": "libx264", ".m4v": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9",
                 ".avi": "mpeg4", ".gif": "gif"}
INSTALL = "pip install 'stylert[video]' (PyAV: FFmpeg's libraries in its wheels)"
# A mean pixel change (0..255, over 8x8 blocks) below about this is a still region (sensor
# noise and compression are a few levels); above it, the region moved.
STILL_CHANGE = 6.0


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
        self._prev = None  # (last input frame (3, H, W) in [0, 1], last output frame (H, W, 3)), float32, for _steady
        self.cuts = 0

    def _is_cut(self, frame: np.ndarray) -> bool:
        t = _thumb(frame)
        cut = self._thumb is not None and float(np.abs(t - self._thumb).mean()) > self.cut_threshold
        self._thumb = t
        return cut

    def __call__(self, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
        """Frames (H, W, 3) uint8 of one size -> (stylized frames of the same size, which
        frames start a new shot)."""
        from .images import to_pil
        from .runtime import pad_to_multiple

        eng, c = self.engine, self.engine.contract
        full = [np.ascontiguousarray(f.transpose(2, 0, 1), np.float32) / np.float32(255.0) for f in frames]
        work = [eng._fit(a) for a in full]  # the working resolution (the stroke scale)
        h, w = work[0].shape[1:]
        x = np.stack([pad_to_multiple(a, c.downsample) for a in work])
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
        y = eng.decode(t, (self.strength * (style[None] - smooth)).astype(np.float32))[:, :, :h, :w]
        outs = [np.asarray(to_pil(eng._unfit(self._palette(y[i], cuts[i]), work[i], a))) for i, a in enumerate(full)]
        return [self._steady(f, o, cut) for f, o, cut in zip(full, outs, cuts)], cuts

    def _palette(self, y: np.ndarray, cut: bool) -> np.ndarray:
        """The output (3, h, w) moved to the style's palette (Engine.stylize's last step), from
        its colour statistics averaged over the shot like the codes, so the colours do not
        pump from frame to frame."""
        pal = self.style.palette
        if not self.engine.palette or pal is None or self.strength == 0:
            return y
        st = mixing.rgb_stats(y)
        if self._rgb is None or cut or self.temporal == 0:
            self._rgb = st
        else:
            self._rgb = tuple(self.temporal * a + (1.0 - self.temporal) * b for a, b in zip(self._rgb, st))
        return mixing.apply_colour_map(y, *mixing.colour_map(self._rgb, pal), self.strength)

    def _steady(self, frame: np.ndarray, out: np.ndarray, cut: bool) -> np.ndarray:
        """Where the input did not change since the last frame, keep `temporal` of the last
        output: the painted texture of a still region stays still instead of being repainted
        from the sensor noise. Where the input changed (motion, light), the new output.
        `frame`: the input as __call__ converted it, (3, H, W) float in [0, 1]."""
        if self.temporal == 0:
            return out
        f = frame
        o = out.astype(np.float32)
        if self._prev is not None and not cut and self._prev[0].shape == f.shape:
            # the change per pixel, averaged over 8x8 blocks so that sensor noise does not read
            # as motion; a change of STILL_CHANGE (0..255 scale) keeps e^-1 of the weight
            d = np.abs(f - self._prev[0]).mean(0) * np.float32(255.0)
            hb, wb = max(1, d.shape[0] // 8), max(1, d.shape[1] // 8)
            d = np.asarray(Image.fromarray(d, "F").resize((wb, hb), Image.BOX).resize(d.shape[::-1], Image.BILINEAR))
            keep = (self.temporal * np.exp(-(d / STILL_CHANGE) ** 2))[..., None]
            o = keep * self._prev[1] + (1.0 - keep) * o
        self._prev = (f, o)
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


def stylize_video(engine, src: str | os.PathLike, dst: str | os.PathLike, style: StyleCode, strength: float = 1.0,
                  temporal: float = 0.9, cut_threshold: float = 0.12, codec: str | None = None, crf: int = 20,
                  batch: int = 8, overwrite: bool = False, progress: Callable[[int, int | None, float], None] | None = None) -> dict:
    """Stylize the video file `src` into `dst`: the same frame count, frame rate, size and
    timestamps, its audio streams copied unchanged. Returns what was done (frames, seconds,
    frames/s, flicker ratio, cuts). `progress(frames done, total or None, seconds)` is called
    after every batch."""
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
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.partial{suffix}")
    frames_q: queue.Queue = queue.Queue(maxsize=2 * batch)  # decoded frames for the stylizer
    out_q: queue.Queue = queue.Queue(maxsize=2 * batch)  # stylized frames and audio packets for the muxer
    errors: list[BaseException] = []
    stop = threading.Event()
    flick = Flicker()
    audio_in = [s for s in inp.streams.audio]

    def put(q, item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                pass

    def decode():
        try:
            for packet in inp.demux(vin, *audio_in):
                if stop.is_set():
                    return
                if packet.stream.type == "audio":
                    if packet.dts is not None:
                        put(out_q, ("audio", packet))
                    continue
                for frame in packet.decode():
                    put(frames_q, (frame.to_ndarray(format="rgb24"), frame.pts, frame.time_base))
        except BaseException as e:  # surfaced by the main thread
            errors.append(e)
        finally:
            put(frames_q, _END)

    out = av.open(os.fspath(tmp), mode="w")
    try:
        rate = vin.average_rate or vin.guessed_rate or 25
        vout = out.add_stream(codec, rate=rate)
        vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
        if codec == "gif":
            vout.pix_fmt = "rgb8"
        else:
            even = vout.width % 2 == 0 and vout.height % 2 == 0
            vout.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
            if codec in ("libx264", "libvpx-vp9"):
                vout.options = {"crf": str(crf), **({"b": "0"} if codec == "libvpx-vp9" else {})}
        vout.time_base = vin.time_base
        audio_map = {}
        for a in audio_in:
            try:
                audio_map[a.index] = out.add_stream_from_template(a)
            except (ValueError, av.error.FFmpegError):
                pass  # a container that cannot hold this audio codec: the video is still written
    except BaseException:
        out.close()
        inp.close()
        tmp.unlink(missing_ok=True)
        raise

    def mux():
        try:
            while True:
                item = out_q.get()
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
                    frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                    frame.pts, frame.time_base = pts, tb
                    for p in vout.encode(frame):
                        out.mux(p)
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
    try:
        st = TemporalStylizer(engine, style, strength, temporal, cut_threshold)
        end, pending = False, None
        while not end and not errors:
            items = []
            while len(items) < batch:
                it, pending = (pending, None) if pending is not None else (frames_q.get(), None)
                if it is _END:
                    end = True
                    break
                if items and it[0].shape != items[0][0].shape:  # a size change mid-stream: its own batch
                    pending = it
                    break
                items.append(it)
            if not items:
                continue
            outs, cuts = st([f for f, _, _ in items])
            for (f_in, pts, tb), f_out, cut in zip(items, outs, cuts):
                flick.add(f_in, f_out, cut)
                put(out_q, ("video", (f_out, pts, tb)))
            done += len(items)
            if progress:
                progress(done, total, time.time() - t0)
        put(out_q, _END)
        threads[1].join()
        if errors:
            e = errors[0]
            if isinstance(e, StyleRTError):
                raise e
            raise StyleRTError(f"could not be transcoded: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}.",
                               "The file may be corrupt or use a codec FFmpeg cannot decode here.", path=src) from e
        out.close()
        os.replace(tmp, dst)  # complete: only now under its name
    except BaseException:
        stop.set()
        try:
            out.close()
        except Exception:
            pass
        tmp.unlink(missing_ok=True)
        raise
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        inp.close()
    secs = time.time() - t0
    return {"src": str(src), "dst": str(dst), "frames": done, "seconds": round(secs, 2),
            "frames_per_s": round(done / secs, 2) if secs > 0 else None, "flicker": flick.ratio, "cuts": st.cuts,
            "temporal": temporal, "codec": codec, "audio_streams": len(audio_map)}
