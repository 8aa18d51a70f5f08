"""`stylert serve`: the HTTP service, on Ray Serve (default) or plain uvicorn (--no-ray)."""

from __future__ import annotations

import argparse
import os
import signal
import textwrap
import threading
from dataclasses import asdict, fields

from ..backends import BACKENDS
from ..precisions import PRECISIONS
from .service import FORMATS, ServeConfig, field_parser

HELP = {
    "max_body_mb": "request bodies above this many MiB get 413",
    "max_pixels": "decoded images above this many pixels get 413 (decompression bombs)",
    "max_side": "larger images are stylized downscaled to this side and answered at their own size",
    "style_side": "style images are encoded with their longer side at this many pixels (the model's training scale); 0 = as uploaded",
    "max_batch_size": "most stylize requests per engine call (Ray Serve's batcher)",
    "batch_wait_ms": "how long a batch waits to fill; latency traded for throughput",
    "max_in_flight": "requests one replica holds at once; more get 503 + Retry-After",
    "timeout_s": "per-request deadline; 504 when it passes (clients may ask for less with X-Timeout-S)",
    "read_timeout_s": "a request body must arrive within this many seconds; a stalled upload gets 408 and frees its slot",
    "retry_after_s": "Retry-After of 503 answers",
    "styles_dir": "the style bank folder (default: <cache>/styles/<model sha>); share it between replicas",
    "default_format": "answer format when the request names none (format= or Accept)",
    "quality": "JPEG/WebP quality unless the request gives one",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the runtime over HTTP (Ray Serve: batched, scalable)",
        description=textwrap.dedent("""
            Start the HTTP service: POST /v1/stylize (image in, stylized image out),
            /v1/styles (the style bank), /healthz, /readyz, /metrics (Prometheus), /v1/info.
            By default a local Ray is started on this machine (one command, no cluster) and
            --replicas replicas each load the engine; --address joins an existing Ray cluster
            instead. Requests are batched per replica by Ray Serve (--max-batch-size,
            --batch-wait-ms). --no-ray serves the same app with plain uvicorn in this process
            (batched in-process, one replica). Listens on 127.0.0.1 unless --host says otherwise.""").strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent("""
            stylert serve --port 8000 --replicas 2
            curl -s --data-binary @painting.jpg 'http://127.0.0.1:8000/v1/styles?name=painting'   # -> {"id": ...}
            curl -s --data-binary @photo.jpg 'http://127.0.0.1:8000/v1/stylize?style=ID&format=jpeg' -o out.jpg
            """).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="export folder, engine folder or checkpoint (default: the shipped model)")
    p.add_argument("--backend", choices=["auto", *BACKENDS], default="auto")
    p.add_argument("--precision", choices=list(PRECISIONS), help="default: the model folder's own")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="CPU threads per replica's backend (default: the cores divided among "
                   "the replicas on a local Ray; the backend's own default on a cluster)")
    defaults = ServeConfig()
    for f in fields(ServeConfig):
        if f.name in ("model", "backend", "precision", "device", "threads"):
            continue
        extra = {"choices": list(FORMATS)} if f.name == "default_format" else {}
        p.add_argument(f"--{f.name.replace('_', '-')}", type=field_parser(f), default=getattr(defaults, f.name),
                       help=f"{HELP.get(f.name, '')} (default: %(default)s)", **extra)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--replicas", default="1", help="replicas (each loads the engine), or 'auto' to autoscale (default: %(default)s)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica, fractions allowed (default: %(default)s)")
    p.add_argument("--max-queued", type=int, default=-1,
                   help="requests queued per proxy beyond what replicas hold; more get 503 (default: %(default)s = no limit)")
    p.add_argument("--address", help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local Ray")
    p.add_argument("--no-ray", action="store_true", help="serve with plain uvicorn in this process (one replica, batched in-process)")
    p.set_defaults(func=run)


def config_of(a) -> ServeConfig:
    return ServeConfig(**{f.name: getattr(a, f.name) for f in fields(ServeConfig)})


def run(a) -> int:
    from ..errors import StyleRTError

    if a.replicas != "auto" and not (a.replicas.isdigit() and int(a.replicas) >= 1):
        raise StyleRTError(f"--replicas {a.replicas!r} is not a positive count or 'auto'.", "Use e.g. --replicas 2.")
    if a.threads is None and not a.address and a.replicas.isdigit() and a.gpus_per_replica == 0:
        # replicas on one machine share its cores: without this each backend would use them all
        a.threads = max(1, (os.cpu_count() or 1) // int(a.replicas))
    from ..frontend import model_folder

    # resolved once here (the shipped model is exported into the cache at most once), not by
    # every replica at the same moment; on a cluster the folder must be on shared storage
    a.model = str(model_folder(a.model, a.backend, precision=a.precision))
    cfg = config_of(a)
    print("config:", {**asdict(cfg), "host": a.host, "port": a.port, "replicas": a.replicas,
                      "address": a.address or "local Ray", "ray": not a.no_ray}, flush=True)
    if a.no_ray:
        import uvicorn

        from .app import create_app
        from .service import Stylizer

        stylizer = Stylizer(cfg)
        stylizer.load()  # here, not in the background: a service that cannot load exits non-zero with the reason
        uvicorn.run(create_app(stylizer), host=a.host, port=a.port, timeout_graceful_shutdown=30)
        return 0
    return _run_ray(cfg, a)


def _run_ray(cfg: ServeConfig, a) -> int:
    from .netns import LOCAL_RAY_ENV

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports unless asked for
    if not a.address:  # the user's own settings win
        for k, v in LOCAL_RAY_ENV.items():
            os.environ.setdefault(k, v)
    try:
        import ray
        from ray import serve
    except ImportError as e:
        from ..errors import StyleRTError

        raise StyleRTError(f"Ray Serve is not installed ({e}).", "pip install 'stylert[serve]', or pass --no-ray.") from None
    from .ray_app import build

    if a.address:
        ray.init(address=a.address, log_to_driver=False)
    else:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    stop = threading.Event()  # after ray.init, which installs its own SIGTERM handler
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serve.start(http_options={"host": a.host, "port": a.port})
    serve.run(build(cfg, replicas=a.replicas, gpus_per_replica=a.gpus_per_replica, max_queued=a.max_queued),
              name="stylert", route_prefix="/")
    print(f"serving on http://{a.host}:{a.port} ({a.replicas} replica(s)); Ctrl-C or SIGTERM drains and stops", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    print("draining: new requests are refused, requests in flight finish (up to 30 s)", flush=True)
    serve.delete("stylert")  # replicas stop gracefully: they wait for their ongoing requests
    serve.shutdown()
    ray.shutdown()
    return 0
