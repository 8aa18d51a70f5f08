"""The HTTP API: a FastAPI app over one Stylizer.

    uvicorn --factory stylert.engine.serve.app:app_from_env      # STYLERT_SERVE_* options
    app.mount("/style", create_app(Stylizer(ServeConfig(...))))  # inside another ASGI app
    stylert serve                                                # behind Ray Serve (batched)

GET / is a page to try it in a browser (page/: plain HTML, CSS and JavaScript, nothing fetched
from elsewhere) that uses only the endpoints below, so it is also their worked example.

Images travel as bytes: the request body is the image (any Content-Type), or a
multipart/form-data form with an `image` part and an optional `style_image` part; the answer
to /v1/stylize is the image itself. Options go in the query string (or as form fields).
Errors are JSON {"error": what happened, "note": what to do} with the status that says why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import fields

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import StyleRTError
from ..frontend import parse_styles
from .service import (
    FORMATS,
    HTTPError,
    Job,
    Result,
    ServeConfig,
    Stylizer,
    field_parser,
)

log = logging.getLogger("stylert.serve")

Submit = Callable[[Job], Awaitable[Result]]
UNLIMITED = ("/healthz", "/readyz", "/metrics", "/v1/info", "page")  # answered even under overload
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "page.css": "text/css; charset=utf-8",
              "page.js": "text/javascript; charset=utf-8"}


def create_app(stylizer: Stylizer, submit: Submit | None = None) -> FastAPI:
    """The app. `submit` runs one job and answers its Result; by default an in-process
    MicroBatcher (Ray Serve passes its own batcher instead). A stylizer that is
    not loaded yet is loaded in the background at startup: /healthz answers at once, /readyz
    once the engine is loaded and warmed up."""
    cfg = stylizer.cfg

    if submit is None:
        submit = MicroBatcher(stylizer.run_batch, cfg.max_batch_size, cfg.batch_wait_ms / 1e3)
        stylizer.batching = "in-process micro-batcher (no Ray)"

    @asynccontextmanager
    async def lifespan(app):
        task = None
        if stylizer.engine is None:
            task = asyncio.create_task(asyncio.to_thread(stylizer.load))
            task.add_done_callback(lambda t: t.exception() and log.error("loading the engine failed: %s", t.exception()))
        yield
        stylizer.ready = False  # stop advertising readiness; the server drains requests in flight
        if task is not None and not task.done():
            await asyncio.wait([task], timeout=5)

    app = FastAPI(title="StyleRT", version="1", lifespan=lifespan,
                  description="Style transfer: POST an image, get the stylized image back.")
    slots = _Slots(cfg.max_in_flight, cfg.retry_after_s, stylizer.metrics.in_flight)

    # ------------------------------------------------------------------ limits, errors, metrics
    @app.middleware("http")
    async def guard(request: Request, call_next):
        endpoint = _endpoint(request.url.path)
        limited = endpoint not in UNLIMITED
        uploads = limited and request.method in ("POST", "PUT")
        # a request with a body takes its in-flight slot once the body has arrived (_read), so
        # clients that send headers and then stall cannot shut others out; uploads still arriving
        # are bounded separately, because each holds up to max_body_mb of memory
        refused = slots.refuse(upload=uploads) if limited else None
        if refused is not None:
            response = _error(refused)
        else:
            request.state.slots = slots
            request.state.slot = "upload" if uploads else ("request" if limited else None)
            t0 = time.monotonic()
            try:
                response = await call_next(request)
            finally:
                slots.release(request.state.slot)
            stylizer.metrics.latency.labels(endpoint).observe(time.monotonic() - t0)
        stylizer.metrics.responses.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, e: HTTPError):
        return _error(e)

    @app.exception_handler(StarletteHTTPException)
    async def on_routing(request: Request, e: StarletteHTTPException):  # unknown path, wrong method
        return _error(HTTPError(e.status_code, f"{request.method} {request.url.path}: {e.detail}.",
                                "See GET /docs for the endpoints.", dict(e.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, e: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        return _error(HTTPError(400, f"bad request: {problems}.", "See GET /docs for the parameters."))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, e: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _error(HTTPError(500, f"internal error ({type(e).__name__}).", "This is a bug in StyleRT: please report it."))

    def need_ready():
        if not stylizer.ready:
            raise HTTPError(503, "the engine is not loaded yet.", "Wait for GET /readyz to answer 200.",
                            {"Retry-After": str(max(1, cfg.retry_after_s))})

    # ------------------------------------------------------------------ health, metrics, info
    @app.get("/healthz")
    async def healthz():
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz():
        need_ready()
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics():
        data, ctype = stylizer.metrics.render()
        return Response(data, media_type=ctype)

    @app.get("/v1/info")
    async def info():
        need_ready()
        return stylizer.info()

    # ------------------------------------------------------------------ stylize
    @app.post("/v1/stylize", response_class=Response,
              responses={200: {"content": {t: {} for t in FORMATS.values()}, "description": "the stylized image"}})
    async def stylize(request: Request):
        """Body: the content image (or a multipart form with `image` and optionally
        `style_image`). Query: style=ID (repeat for several; ID:WEIGHT or weight=... to mix),
        strength=0..1, format=png|jpeg|webp (else from Accept), quality=1..100,
        preserve_color=true (keep the photo's colours: the paintings are recoloured to it)."""
        need_ready()
        deadline = time.monotonic() + _timeout(request, cfg)
        params, files = await _read(request, cfg)
        content = files.get("image")
        if content is None:
            raise HTTPError(400, "no content image.", "Send the image as the body, or as the `image` part of a form.")
        fmt = stylizer.output_format(params.get("format"), request.headers.get("accept"))
        quality = _int(params.get("quality"), "quality", 1, 100, cfg.quality)
        try:
            ids, weights = parse_styles(params.getlist("style"), [_float(w, "weight") for w in params.getlist("weight")] or None)
        except StyleRTError as e:
            raise HTTPError(400, e.what, e.note) from None
        preserve = _bool(params.get("preserve_color"), "preserve_color")
        # bank reads: off the event loop; colour preservation recolours the style images themselves
        styles = [await asyncio.to_thread(stylizer.style_picture if preserve else stylizer.style, i) for i in ids]
        if "style_image" in files:
            style_img = await asyncio.to_thread(stylizer.decode, files["style_image"], "style_image")
            styles.append(style_img if preserve else await asyncio.to_thread(stylizer.engine.encode_style, style_img))
            if weights is not None and len(weights) == len(styles) - 1:
                weights.append(_float(params.get("style_image_weight", "1"), "style_image_weight"))
        if not styles:
            raise HTTPError(400, "no style given.", "Pass ?style=ID (ids from GET /v1/styles) or a `style_image` form part.")
        strength, weights = stylizer.parse_request(params.get("strength"), weights, len(styles))
        image = await asyncio.to_thread(stylizer.decode, content, "image")
        job = Job(image, styles, weights, strength, deadline, preserve_color=preserve)
        try:
            result = await asyncio.wait_for(submit(job), timeout=max(0.0, deadline - time.monotonic()))
        except (asyncio.TimeoutError, TimeoutError):
            raise HTTPError(504, "the request's deadline passed before its image was stylized.",
                            "Retry later or with a longer deadline (X-Timeout-S header); the server may be overloaded.") from None
        if result.error is not None:
            raise result.error
        data = await asyncio.to_thread(stylizer.encode_image, result.image, fmt, quality)
        return Response(data, media_type=FORMATS[fmt], headers={
            "X-Batch-Size": str(result.batch_size), "X-Queue-Ms": f"{result.queue_s * 1e3:.1f}",
            "X-Compute-Ms": f"{result.compute_s * 1e3:.1f}", "X-Replica": stylizer.replica})

    # ------------------------------------------------------------------ the style bank
    @app.post("/v1/styles", status_code=201)
    async def add_style(request: Request):
        """Body: a style image (or the `image` part of a form); ?name= labels it. Answers the
        style's id (the same image twice gives the same id: 200 instead of 201)."""
        need_ready()
        params, files = await _read(request, cfg)
        if "image" not in files:
            raise HTTPError(400, "no style image.", "Send the image as the body, or as the `image` part of a form.")
        img = await asyncio.to_thread(stylizer.decode, files["image"], "image")
        desc, created = await asyncio.to_thread(stylizer.add_style, img, params.get("name", ""))
        return JSONResponse(desc, status_code=201 if created else 200)

    @app.get("/v1/styles")
    async def list_styles():
        need_ready()
        return {"styles": await asyncio.to_thread(stylizer.bank.list)}

    @app.get("/v1/styles/{sid}")
    async def get_style(sid: str):
        need_ready()
        code = await asyncio.to_thread(stylizer.style, sid)
        desc = await asyncio.to_thread(stylizer.bank.describe, sid)
        return {**desc, "code": {"mean": code.mean.tolist(), "std": code.std.tolist()}}

    @app.get("/v1/styles/{sid}/image", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "the style's image"}})
    async def style_image(sid: str, side: str | None = None):
        """The style's image as the bank keeps it (JPEG, its longer side at most the style
        scale); side=16..1024 shrinks it (thumbnails). 404 for a style stored without one."""
        need_ready()
        px = None if side in (None, "") else _int(side, "side", 16, 1024, 0)
        data = await asyncio.to_thread(stylizer.style_image, sid, px)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})  # ids are content hashes

    @app.delete("/v1/styles/{sid}", status_code=204)
    async def delete_style(sid: str):
        need_ready()
        await asyncio.to_thread(stylizer.style, sid)
        await asyncio.to_thread(stylizer.bank.delete, sid)
        return Response(status_code=204)

    # ------------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    async def page():
        return _page_file("index.html")

    @app.get("/page/{name}", include_in_schema=False)
    async def page_asset(name: str):
        if name not in PAGE_FILES or name == "index.html":
            raise HTTPError(404, f"no page file '{name}'.", "Open / for the page.")
        return _page_file(name)

    return app


def _page_file(name: str) -> Response:
    """A file of the page (package data beside this module), re-read on each request: small,
    and an edited page shows on reload."""
    from importlib.resources import files

    data = (files(__package__) / "page" / name).read_bytes()
    cls = HTMLResponse if name.endswith(".html") else Response
    return cls(data, media_type=PAGE_FILES[name], headers={"Cache-Control": "no-cache"})


# ============================================================================= batching without Ray
class MicroBatcher:
    """Batches for the app when it runs without Ray (uvicorn, mounted in another app), with
    Ray Serve's policy: up to max_batch jobs, waiting at most wait_s after the first. One
    batch runs at a time, in a worker thread (the engine uses the cores itself). A job whose
    request gave up (deadline) is still in its batch, and its answer is dropped."""

    def __init__(self, run: Callable[[list[Job]], list[Result]], max_batch: int, wait_s: float):
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def __call__(self, job: Job) -> Result:
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.queue = asyncio.Queue()
            self.task = loop.create_task(self._serve(self.queue))
        future = loop.create_future()
        await self.queue.put((job, future))
        return await future

    async def _serve(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            until = loop.time() + self.wait_s
            while len(batch) < self.max_batch and (left := until - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except (asyncio.TimeoutError, TimeoutError):
                    break
            try:
                results = await asyncio.to_thread(self.run, [job for job, _ in batch])
            except Exception as e:  # a bug in a batch fails that batch's requests, not the batcher
                results = [e] * len(batch)
            for (_, future), r in zip(batch, results):
                if not future.done():
                    future.set_exception(r) if isinstance(r, Exception) else future.set_result(r)


# ============================================================================= helpers
def _error(e: HTTPError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def _endpoint(path: str) -> str:
    """A metrics label: the route, with style ids folded into {id}; the page's files are "page"."""
    if path.startswith("/v1/styles/"):
        return "/v1/styles/{id}/image" if path.endswith("/image") else "/v1/styles/{id}"
    if path == "/" or path.startswith("/page/"):
        return "page"
    known = ("/v1/stylize", "/v1/styles", "/v1/info", "/healthz", "/readyz", "/metrics")
    return path if path in known else "other"


def _timeout(request: Request, cfg: ServeConfig) -> float:
    """The request's deadline in seconds: X-Timeout-S if given (at most the server's), else the server's."""
    raw = request.headers.get("x-timeout-s")
    if raw is None:
        return cfg.timeout_s
    t = _float(raw, "X-Timeout-S")
    if not t > 0:
        raise HTTPError(400, f"X-Timeout-S {raw!r} must be a positive number of seconds.")
    return min(t, cfg.timeout_s)


def _float(raw, name: str) -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{name} {raw!r} is not a number.") from None
    if not math.isfinite(v):
        raise HTTPError(400, f"{name} {raw!r} is not a finite number.")
    return v


class _Slots:
    """In-flight accounting of one replica: `max_in_flight` requests being handled, and at
    most UPLOADS_PER_SLOT times as many bodies still arriving. The event loop is the only
    caller, so plain integers are enough."""

    UPLOADS_PER_SLOT = 4

    def __init__(self, max_in_flight: int, retry_after_s: int, gauge):
        self.max, self.retry_after, self.gauge = max_in_flight, retry_after_s, gauge
        self.n = {"request": 0, "upload": 0}

    def _overloaded(self, what: str) -> HTTPError:
        return HTTPError(503, f"overloaded: {what} on this replica.",
                         "Retry after the Retry-After seconds, or scale out (--replicas).",
                         {"Retry-After": str(self.retry_after)})

    def refuse(self, upload: bool) -> HTTPError | None:
        kind = "upload" if upload else "request"
        if upload and self.n["upload"] >= self.max * self.UPLOADS_PER_SLOT:
            return self._overloaded(f"{self.n['upload']} uploads arriving")
        if self.n["request"] >= self.max:
            return self._overloaded(f"{self.n['request']} requests in flight")
        self.n[kind] += 1
        self.gauge.set(self.n["request"])
        return None

    def claim(self) -> HTTPError | None:
        """An upload whose body arrived becomes a request in flight, if a slot is free."""
        self.n["upload"] -= 1
        return self.refuse(upload=False)

    def release(self, kind: str | None) -> None:
        if kind is not None:
            self.n[kind] -= 1
            self.gauge.set(self.n["request"])


def _bool(raw, name: str) -> bool:
    if raw in (None, ""):
        return False
    v = str(raw).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise HTTPError(400, f"{name} {raw!r} is not true or false.", "Use true or false (1 or 0).")


def _int(raw, name: str, lo: int, hi: int, default: int) -> int:
    if raw in (None, ""):
        return default
    try:
        v = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} {raw!r} is not a whole number.", f"Use {lo}..{hi}.") from None
    if not lo <= v <= hi:
        raise HTTPError(400, f"{name} {v} is outside {lo}..{hi}.")
    return v


async def _read(request: Request, cfg: ServeConfig):
    """(params, files) of a request: the query string (plus a form's text fields) and the image
    bytes, from the body or from the form's file parts. The body is read up to the size limit
    and refused (413) beyond it, whatever Content-Length claims."""
    limit = cfg.max_body_bytes
    note = f"The limit is {cfg.max_body_mb:g} MiB; downscale or recompress the image."
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is {int(declared)} bytes, over the limit.", note)
    chunks, n = [], 0

    async def receive_all():
        nonlocal n
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise HTTPError(413, "request body is over the limit.", note)
            chunks.append(chunk)

    from starlette.requests import ClientDisconnect

    try:
        # a client that stalls mid-body must not hold an in-flight slot for ever
        await asyncio.wait_for(receive_all(), timeout=cfg.read_timeout_s)
    except ClientDisconnect:
        # the client's choice, not a fault of the service: one line, no traceback; nobody reads the answer
        log.info("client %s disconnected during its upload (%d bytes came)", request.client.host if request.client else "?", n)
        raise HTTPError(400, "the client disconnected before its request body was complete.") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise HTTPError(408, f"the request body did not arrive within {cfg.read_timeout_s:g} s ({n} bytes came).",
                        "Send the whole body without pausing; on a slow link, downscale the image first.",
                        {"Connection": "close"}) from None
    body = b"".join(chunks)
    slots = getattr(request.state, "slots", None)
    if slots is not None and request.state.slot == "upload":
        refused = slots.claim()  # the body is here: now it competes for an in-flight slot
        request.state.slot = None if refused is not None else "request"
        if refused is not None:
            raise refused
    from starlette.datastructures import MultiDict

    params = MultiDict(request.query_params.multi_items())
    ctype = request.headers.get("content-type", "")
    media, _, rest = ctype.partition(";")
    if media.strip().lower() != "multipart/form-data":  # media types are case-insensitive (RFC 9110)
        return params, ({"image": body} if body else {})

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = dict(request.scope)
    scope["headers"] = [(k, ("multipart/form-data;" + rest).encode("latin-1") if k == b"content-type" else v)
                        for k, v in request.scope["headers"]]
    try:
        form = await Request(scope, replay).form(max_files=4, max_fields=32)
    except Exception as e:  # python-multipart's parse errors, Starlette's limits
        raise HTTPError(400, f"the multipart form could not be parsed: {e}.", "Send a well-formed multipart/form-data body.") from None
    files, items = {}, list(params.multi_items())
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key not in ("image", "style_image"):
                raise HTTPError(400, f"unexpected file part '{key}'.", "Use `image` and optionally `style_image`.")
            files[key] = await value.read()
        else:
            items.append((key, value))
    return MultiDict(items), files


def app_from_env() -> FastAPI:
    """For `uvicorn --factory stylert.engine.serve.app:app_from_env`: ServeConfig from
    STYLERT_SERVE_<FIELD> environment variables (e.g. STYLERT_SERVE_MODEL=out/export)."""
    env = {f: os.environ.get(f"STYLERT_SERVE_{f.name.upper()}") for f in fields(ServeConfig)}
    kw = {f.name: field_parser(f)(raw) for f, raw in env.items() if raw is not None}
    return create_app(Stylizer(ServeConfig(**kw)))
