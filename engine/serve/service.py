"""What the HTTP service does, without the web framework: one loaded Engine, the style bank,
request decoding under limits, batches of stylize jobs, and the metrics.

`app.py` turns requests into calls here and HTTPError into answers; `ray_app.py` feeds
`run_batch` from Ray Serve's batcher. Everything here is synchronous and thread-safe (the
Engine is): the app calls it from worker threads.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..errors import StyleRTError
from ..images import READABLE, CorruptImage, ImageTooLarge, NotAnImage, load_image_bytes
from ..mixing import StyleCode, check_strength, normalize_weights
from ..options import EngineChoice
from ..runtime import STYLE_SIDE
from .bank import StyleBank, describe

log = logging.getLogger("stylert.serve")

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
FORMAT_ALIASES = {"jpg": "jpeg", "image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/webp": "webp"}


@dataclass
class ServeConfig(EngineChoice):
    """Every option of the service, with its default (the model and engine: EngineChoice).
    `stylert serve` exposes each field as --field-name; the Ray deployment and the plain ASGI
    app read the same object."""

    styles_dir: str | None = None  # the style bank; None = <cache>/styles/<model sha256[:16]>
    max_body_mb: float = 20.0  # request bodies above this: 413
    max_pixels: int = 40_000_000  # decoded images above this (decompression bombs): 413
    max_side: int = 1024  # larger images are stylized downscaled and answered at their own size
    style_side: int = STYLE_SIDE  # style images are encoded at this longer side; 0 = as uploaded
    max_batch_size: int = 8  # Ray Serve's batcher: jobs per engine call
    batch_wait_ms: float = 10.0  # how long the batcher waits for a batch to fill
    max_in_flight: int = 32  # requests one replica holds at once; beyond: 503 + Retry-After
    timeout_s: float = 60.0  # per-request deadline: 504 when it passes (work not yet started is dropped)
    read_timeout_s: float = 15.0  # a request body must arrive within this: 408, and the slot is freed
    retry_after_s: int = 1  # the Retry-After of 503 answers
    default_format: str = "png"
    quality: int = 90  # JPEG/WebP quality unless the request gives one

    def __post_init__(self):
        checks = [("max_body_mb", self.max_body_mb > 0), ("max_pixels", self.max_pixels >= 64),
                  ("max_side", self.max_side >= 8),
                  ("style_side", self.style_side == 0 or 8 <= self.style_side <= 4096), ("max_batch_size", 1 <= self.max_batch_size <= 256),
                  ("batch_wait_ms", 0 <= self.batch_wait_ms <= 10_000), ("max_in_flight", self.max_in_flight >= 1),
                  ("timeout_s", self.timeout_s > 0), ("read_timeout_s", 0 < self.read_timeout_s <= 3600),
                  ("retry_after_s", self.retry_after_s >= 0),
                  ("quality", 1 <= self.quality <= 100), ("default_format", self.default_format in FORMATS)]
        for name, ok in checks:
            if not ok:
                raise StyleRTError(f"--{name.replace('_', '-')} {getattr(self, name)!r} is out of range.",
                                   "See `stylert serve --help` for each limit's meaning and default.")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


def field_parser(f) -> type:
    """How to read a ServeConfig field from text (argparse, environment): int, float or str."""
    return {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)


class HTTPError(Exception):
    """An answer other than 200: status, what happened, what to do."""

    # what to do, for the errors that name no remedy of their own: every JSON error has a note
    NOTES = {400: "Correct the request as the error says; GET /docs lists every parameter and its range.",
             404: "GET /docs lists the endpoints.", 405: "GET /docs lists each endpoint's methods.",
             408: "Send the whole request without pausing.", 413: "Send a smaller request.",
             500: "This is a bug in StyleRT: please report it with the request.",
             503: "Retry after the Retry-After seconds.", 504: "Retry later, or with a longer deadline (X-Timeout-S)."}

    def __init__(self, status: int, what: str, note: str | None = None, headers: dict | None = None):
        super().__init__(what)
        self.status, self.what, self.headers = status, what, headers or {}
        self.note = note or self.NOTES.get(status, "GET /docs describes the API.")

    def body(self) -> dict:
        return {"error": self.what, "note": self.note}


@dataclass
class Job:
    """One stylize request: the content image, its styles with weights, strength, deadline."""

    image: object  # PIL RGB
    styles: list  # StyleCodes; with preserve_color the style images (PIL RGB), recoloured per photo
    weights: list[float] | None
    strength: float
    deadline: float  # time.monotonic()
    queued: float = field(default_factory=time.monotonic)
    preserve_color: bool = False

    def key(self) -> tuple:
        """Jobs with the same key go through the engine in one call (one style mix)."""
        return (tuple(id(s) for s in self.styles), tuple(self.weights or ()), self.strength, self.preserve_color)


@dataclass
class Result:
    image: object = None  # PIL RGB, the input's size
    error: HTTPError | None = None
    batch_size: int = 0
    queue_s: float = 0.0
    compute_s: float = 0.0


class Metrics:
    """Prometheus metrics of one replica (its own registry: several apps in one process never
    clash)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        lat = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.latency = Histogram("stylert_request_seconds", "Request latency by endpoint", ["endpoint"], buckets=lat, registry=r)
        self.queue = Histogram("stylert_queue_seconds", "Time a stylize job waited for its batch", buckets=lat, registry=r)
        self.compute = Histogram("stylert_batch_seconds", "Engine time per batch", buckets=lat, registry=r)
        self.batch = Histogram("stylert_batch_size", "Jobs per engine batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.responses = Counter("stylert_responses", "Responses by endpoint and status", ["endpoint", "status"], registry=r)
        self.in_flight = Gauge("stylert_requests_in_flight", "Requests being handled", registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Stylizer:
    """One replica's state: load() the engine, then decode/encode/run_batch from any thread."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.engine = None
        self.bank: StyleBank | None = None
        self.ready = False
        self.metrics = Metrics()
        self.batching = "set by the front end"
        self.replica = f"{socket.gethostname()}:{os.getpid()}"  # X-Replica: which process answered

    def load(self, log_fn=log.info) -> None:
        from ..frontend import cache_root, model_folder
        from ..runtime import Engine

        c = self.cfg
        folder = model_folder(c.model, c.backend, log=log_fn, precision=c.precision)
        self.engine = Engine.load(folder, backend=c.backend, precision=c.precision, device=c.device,
                                  threads=c.threads, max_side=c.max_side, style_side=c.style_side or None)
        sha = self.engine.contract.checkpoint_sha256
        self.bank = StyleBank(c.styles_dir or cache_root() / "styles" / (sha[:16] or "unknown"), sha)
        self.warm_up()
        self.ready = True
        log_fn(f"ready: {self.engine.info.get('reason', '')}; style bank {self.bank.folder} "
               f"({len(self.bank.list())} styles)")

    def warm_up(self) -> None:
        """One small stylize through every stage, so the first request pays no lazy setup."""
        import numpy as np
        from PIL import Image

        img = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
        self.engine.stylize(img, self.engine.encode_style(img))

    # ------------------------------------------------------------------ inputs
    def decode(self, data: bytes, what: str = "image"):
        """Request bytes -> PIL RGB at the upload's size, or HTTPError 400/413/415 naming the
        problem. A photo larger than max_side is not shrunk here: Engine.stylize works at
        max_side and brings the result back to full size with edge-aware upsampling, the same
        steps as the CLI, so HTTP and `stylert stylize` give the same pixels."""
        try:
            return load_image_bytes(data, what, max_pixels=self.cfg.max_pixels)
        except ImageTooLarge as e:
            raise HTTPError(413, str(e).split("\n")[0], f"The limit is {self.cfg.max_pixels} pixels; downscale the image.") from None
        except NotAnImage as e:
            raise HTTPError(415, str(e).split("\n")[0], f"Send {READABLE} bytes.") from None
        except (CorruptImage, StyleRTError) as e:
            raise HTTPError(400, str(e).split("\n")[0], "The image is probably truncated or corrupt.") from None

    def style(self, sid: str) -> StyleCode:
        try:
            return self.bank.get(sid)[0]
        except KeyError:
            raise HTTPError(404, f"unknown style '{sid}'.", "List the styles with GET /v1/styles, or add one with POST /v1/styles.") from None

    def add_style(self, image, name: str) -> tuple[dict, bool]:
        """Encode a style image into the bank, and keep the image beside its code at the
        scale the encoder reads it (style_side; max_side when styles are read as uploaded)."""
        code = self.engine.encode_style(image)
        code.sources = [name or "upload"]
        kept = _shrunk(image, self.cfg.style_side or self.cfg.max_side)
        try:
            sid, created = self.bank.add(code, name, self.encode_image(kept, "jpeg", 90))
        except StyleRTError as e:
            raise HTTPError(400, e.what, e.note) from None
        return describe(sid, code, name, image=True), created

    def style_image(self, sid: str, side: int | None = None) -> bytes:
        """The style's stored JPEG, shrunk to `side` pixels on its longer side when given
        (thumbnails); HTTPError 404 for an unknown style or one stored without its image."""
        self.style(sid)
        data = self.bank.image(sid)
        if data is None:
            raise HTTPError(404, f"style '{sid}' was stored without its image.",
                            "Add the painting again (POST /v1/styles) to keep its image; its id stays the same.")
        if side is None:
            return data
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return self.encode_image(_shrunk(img.convert("RGB"), side), "jpeg", 85)

    def style_picture(self, sid: str):
        """The style's stored image as PIL RGB, for colour preservation (which recolours the
        painting to each photo before encoding it, so a StyleCode alone cannot do it)."""
        from PIL import Image

        self.style(sid)
        data = self.bank.image(sid)
        if data is None:
            raise HTTPError(400, f"style '{sid}' was stored without its image: colours cannot be preserved with it.",
                            "Add the painting again (POST /v1/styles) to keep its image, or stylize without preserve_color.")
        return Image.open(io.BytesIO(data)).convert("RGB")

    @staticmethod
    def parse_request(strength: str | None, weights: Sequence[str] | None, n_styles: int) -> tuple[float, list[float] | None]:
        try:
            s = 1.0 if strength in (None, "") else float(strength)
            check_strength(s)  # NaN fails its range test too
        except (ValueError, StyleRTError):
            raise HTTPError(400, f"strength {strength!r} is not a number in [0, 1].", "0 keeps the content, 1 is full style.") from None
        if not weights:
            return s, None
        try:
            w = [float(x) for x in weights]
            normalize_weights(w, n_styles)
        except ValueError:
            raise HTTPError(400, f"weights {list(weights)} are not numbers.", "Give one number per style.") from None
        except StyleRTError as e:
            raise HTTPError(400, e.what, e.note) from None
        return s, w

    def output_format(self, fmt: str | None, accept: str | None) -> str:
        """The answer's format: ?format=, else the first image type in Accept, else the default."""
        if fmt:
            f = FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
            if f not in FORMATS:
                raise HTTPError(400, f"format '{fmt}' is not supported.", f"Use one of {', '.join(FORMATS)}.")
            return f
        for part in (accept or "").split(","):
            f = FORMAT_ALIASES.get(part.split(";")[0].strip().lower())
            if f:
                return f
        return self.cfg.default_format

    @staticmethod
    def encode_image(img, fmt: str, quality: int) -> bytes:
        """The answer's bytes."""
        buf = io.BytesIO()
        img.save(buf, format=fmt.upper(), **({} if fmt == "png" else {"quality": quality}))
        return buf.getvalue()

    # ------------------------------------------------------------------ batches
    def run_batch(self, jobs: Sequence[Job]) -> list[Result]:
        """Stylize jobs: the ones past their deadline are dropped unstarted, the rest grouped
        by style mix and run through the engine (which batches same-size images together)."""
        start = time.monotonic()
        results = [Result() for _ in jobs]
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            if start > job.deadline:
                results[i].error = HTTPError(504, "the request's deadline passed while it waited for the engine.",
                                             "Retry later, or with a longer deadline (X-Timeout-S).")
            else:
                groups.setdefault(job.key(), []).append(i)
        live = sum(len(g) for g in groups.values())
        for idx in groups.values():
            job = jobs[idx[0]]
            try:
                images = self.engine.stylize([jobs[i].image for i in idx], job.styles, job.weights, job.strength,
                                             preserve_color=job.preserve_color)
            except StyleRTError as e:
                for i in idx:
                    results[i].error = HTTPError(400, e.what, e.note)
                continue
            for i, img in zip(idx, images):
                results[i].image = img
        compute = time.monotonic() - start
        if live:
            self.metrics.batch.observe(live)
            self.metrics.compute.observe(compute)
        for r, job in zip(results, jobs):
            r.batch_size, r.queue_s, r.compute_s = live, start - job.queued, compute
            self.metrics.queue.observe(r.queue_s)
        return results

    # ------------------------------------------------------------------ description
    def info(self) -> dict:
        e = self.engine
        return {
            "model": {"checkpoint_sha256": e.contract.checkpoint_sha256, "latent_channels": e.contract.latent_channels,
                      "downsample": e.contract.downsample, "style_channels": e.contract.style_size // 2},
            "backend": e.info.get("backend"), "precision": e.info.get("precision"), "device": e.info.get("device"),
            "reason": e.info.get("reason"),
            "limits": {k: v for k, v in asdict(self.cfg).items()
                       if k in ("max_body_mb", "max_pixels", "max_side", "max_in_flight", "timeout_s")},
            "batching": {"mode": self.batching, "max_batch_size": self.cfg.max_batch_size,
                         "batch_wait_ms": self.cfg.batch_wait_ms},
            "formats": list(FORMATS), "styles": len(self.bank.list()), "pid": os.getpid(), "replica": self.replica,
        }


def _shrunk(img, side: int):
    """A copy of PIL `img` with its longer side at most `side` pixels (never enlarged)."""
    from PIL import Image

    img = img.copy()
    img.thumbnail((side, side), Image.LANCZOS)
    return img
