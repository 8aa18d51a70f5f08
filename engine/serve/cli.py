"""`stylert serve`: the HTTP service, on Ray Serve (default) or plain uvicorn (--no-ray)."""

from __future__ import annotations

import argparse
import os
import signal
import textwrap
import threading
from dataclasses import asdict, fields

from ..options import ENGINE_FIELDS, add_engine_options
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
            Start the HTTP service: a page to try it in a browser at /, POST /v1/stylize
            (image in, stylized image out), /v1/styles (the style bank), /healthz, /readyz,
            /metrics (Prometheus), /v1/info.
            By default a local Ray is started on this machine (one command, no cluster) and
            --replicas replicas each load the engine; --address joins an existing Ray cluster
            instead. Requests are batched per replica by Ray Serve (--max-batch-size,
            --batch-wait-ms). --no-ray serves the same app with plain uvicorn in this process
            (batched in-process, one replica). Listens on 127.0.0.1 unless --host says otherwise.""").strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent("""
            stylert serve --port 8000 --replicas 2                       # then open http://127.0.0.1:8000/
            curl -s --data-binary @painting.jpg 'http://127.0.0.1:8000/v1/styles?name=painting'   # -> {"id": ...}
            curl -s --data-binary @photo.jpg 'http://127.0.0.1:8000/v1/stylize?style=ID&format=jpeg' -o out.jpg
            """).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_engine_options(p, {"threads": "CPU threads per replica's backend (default: the cores divided among the "
                                      "replicas on a local Ray; the backend's own default on a cluster)"})
    defaults = ServeConfig()
    for f in fields(ServeConfig):
        if f.name in ENGINE_FIELDS:
            continue
        extra = {"choices": list(FORMATS)} if f.name == "default_format" else {}
        p.add_argument(f"--{f.name.replace('_', '-')}", type=field_parser(f), default=getattr(defaults, f.name),
                       help=f"{HELP.get(f.name, '')} (default: %(default)s)", **extra)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--replicas", default="1",
                   help="replicas (each loads the engine), or 'auto' to autoscale between 1 and what the cluster's CPUs "
                        "(or GPUs) hold at --cpus-per-replica (default: %(default)s)")
    p.add_argument("--cpus-per-replica", type=float, default=1.0,
                   help="CPUs Ray reserves for each replica, fractions allowed (default: %(default)s)")
    p.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs per replica, fractions allowed (default: %(default)s)")
    p.add_argument("--name", default="stylert",
                   help="the Ray Serve application's name; a running application of that name is never replaced "
                        "(default: %(default)s)")
    p.add_argument("--route-prefix", default="/",
                   help="URL prefix of this application on the cluster's proxies (default: %(default)s)")
    p.add_argument("--max-queued", type=int, default=-1,
                   help="requests queued per proxy beyond what replicas hold; more get 503 (default: %(default)s = no limit)")
    p.add_argument("--address", help="join this Ray cluster (HEAD:6379, or auto on a node of it) instead of starting a "
                   "local Ray; needs --styles-dir on storage every node shares (docs/serving.md, \"Scale out\")")
    p.add_argument("--no-ray", action="store_true", help="serve with plain uvicorn in this process (one replica, batched in-process)")
    p.set_defaults(func=run)


def config_of(a) -> ServeConfig:
    return ServeConfig(**{f.name: getattr(a, f.name) for f in fields(ServeConfig)})


def run(a) -> int:
    from ..errors import StyleRTError

    if a.replicas != "auto" and not (a.replicas.isdigit() and int(a.replicas) >= 1):
        raise StyleRTError(f"--replicas {a.replicas!r} is not a positive count or 'auto'.", "Use e.g. --replicas 2.")
    if not a.cpus_per_replica >= 0 or not a.gpus_per_replica >= 0:
        raise StyleRTError("--cpus-per-replica and --gpus-per-replica must be 0 or more.", "Fractions such as 0.5 are allowed.")
    if not a.route_prefix.startswith("/"):
        raise StyleRTError(f"--route-prefix {a.route_prefix!r} does not start with '/'.", "Use e.g. --route-prefix /stylert.")
    if a.address and not a.no_ray and not a.styles_dir:
        # each replica would keep its own bank in its node's cache: a style added through one
        # node would be unknown (404) on the others
        raise StyleRTError("--address without --styles-dir: each node would keep its own style bank.",
                           "Pass --styles-dir DIR on storage every node mounts at the same path (NFS, a shared disk).")
    if a.threads is None and not a.address and a.replicas.isdigit() and a.gpus_per_replica == 0:
        # replicas on one machine share its cores: without this each backend would use them all
        a.threads = max(1, (os.cpu_count() or 1) // int(a.replicas))
    from ..frontend import model_folder

    if a.address and not a.no_ray:
        # on a cluster every replica resolves the model on its own node: the shipped model from
        # its own stylert install (and its node's engine cache); a folder the user names must be
        # at that path on every node
        if a.model is not None and not os.path.isdir(a.model):
            raise StyleRTError(f"--model {a.model}: no such folder here.",
                               "On a cluster, name a folder every node mounts at the same path, or omit --model.")
        where = ("the shipped model, resolved by each replica from its own node's stylert install" if a.model is None
                 else f"{a.model}, read by each replica at that path on its node (shared storage)")
    else:
        # resolved once here (the shipped model's engine is built into the cache at most
        # once), not by every replica at the same moment
        a.model = str(model_folder(a.model, a.backend, precision=a.precision))
        where = a.model
    cfg = config_of(a)
    print("config:", {**asdict(cfg), "host": a.host, "port": a.port, "replicas": a.replicas,
                      "address": a.address or "local Ray", "ray": not a.no_ray}, flush=True)
    print(f"model: {where}", flush=True)
    if a.no_ray:
        import uvicorn

        from .app import create_app
        from .service import Stylizer

        stylizer = Stylizer(cfg)
        stylizer.load()  # here, not in the background: a service that cannot load exits non-zero with the reason
        print(f"serving on http://{a.host}:{a.port}/ (open it in a browser to try it); Ctrl-C stops", flush=True)
        uvicorn.run(create_app(stylizer), host=a.host, port=a.port, timeout_graceful_shutdown=30)
        return 0
    return _run_ray(cfg, a)


AUTH_REMEDY = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the contents of the head node's ~/.ray/auth_token "
               "(or copy that file to ~/.ray/auth_token here) and rerun; docs/serving.md, \"Scale out\".")


def _connect(ray, a) -> None:
    """ray.init for a local Ray or the cluster at --address; an authentication failure or an
    unreachable head becomes a StyleRTError with the remedy."""
    from ..errors import StyleRTError

    if not a.address:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        return
    try:
        ray.init(address=a.address, log_to_driver=False)
    except Exception as e:  # Ray raises AuthenticationError, ConnectionError or RuntimeError here
        text = f"{type(e).__name__}: {e}"
        if "uthenticat" in text or "InvalidAuthToken" in text:
            raise StyleRTError(f"the Ray cluster at {a.address} refused this process's authentication.",
                               "Give this process the cluster's token: " + AUTH_REMEDY) from None
        # a head with token authentication drops a client without the token as if it were
        # unreachable (Ray logs InvalidAuthToken and raises ConnectionError): say both causes
        token = ("this process has no Ray token" if not _has_token()
                 else "this process's Ray token may not be the head node's")
        raise StyleRTError(f"cannot join the Ray cluster at {a.address} ({text.splitlines()[0][:200]}).",
                           f"Either it is not running or not at that address (start it with `ray start --head`, "
                           f"check HEAD:6379), or it uses token authentication and {token}: {AUTH_REMEDY}") from None


def _has_token() -> bool:
    """Whether Ray would send a token from this process (its environment or ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled" and os.path.isfile(path)


def _check_cluster(a) -> None:
    """On a running cluster: refuse to replace another application or to claim a port or
    route that Serve does not give this one."""
    from ray.serve.context import _get_global_client

    from ..errors import StyleRTError

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return  # Serve is not running on the cluster yet: serve.start below starts it on --host/--port
    http = client.http_config
    if int(http.port) != a.port or (http.host or "") != a.host:
        raise StyleRTError(f"Ray Serve on this cluster already listens on {http.host}:{http.port}; it cannot also serve "
                           f"{a.host}:{a.port} (one HTTP address per cluster).",
                           f"Pass --host {http.host} --port {http.port} (with another --name and --route-prefix "
                           "beside the applications already there).")
    apps = client.get_serve_details().get("applications", {})  # name -> details, route_prefix included
    if a.name in apps:
        raise StyleRTError(f"an application named {a.name!r} is already running on this cluster.",
                           "Stop it first (Ctrl-C or SIGTERM its `stylert serve`, or `serve shutdown` for the whole "
                           "cluster), or pass another --name and --route-prefix.")
    for name, app in apps.items():
        if app.get("route_prefix") == a.route_prefix:
            raise StyleRTError(f"the application {name!r} already serves the route prefix {a.route_prefix!r} on this cluster.",
                               "Pass another --route-prefix (and --name).")


def _replica_error(message: str) -> str:
    """The first line a failing replica constructor raised, from Serve's deployment message."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "StyleRTError" in ln or "cannot load" in ln:
            return ln
    return lines[-1] if lines else message


def _deploy(serve, ray, cfg: ServeConfig, a, replicas, tries: int = 2) -> None:
    """serve.run, with the replicas' own error when they cannot start. Serve's controller kills
    and restarts an HTTP proxy that misses its start-up deadline (seen on a loaded 2-core
    machine: serve.run then raises the proxy's ActorDiedError): the application is asked for
    again, `tries` times in all."""
    from ..errors import StyleRTError
    from .ray_app import build

    for attempt in range(1, tries + 1):
        try:
            serve.run(build(cfg, replicas=replicas, gpus_per_replica=a.gpus_per_replica, max_queued=a.max_queued,
                            cpus_per_replica=a.cpus_per_replica), name=a.name, route_prefix=a.route_prefix)
            return
        except RuntimeError as e:
            why = str(e)
            try:  # the replica's own error is in the deployment's status, not in the app's
                why = "\n".join(d.message for d in serve.status().applications[a.name].deployments.values()) or why
            except Exception:
                pass
            raise StyleRTError(f"the replicas could not start: {_replica_error(why)}",
                               "Fix what the replica reports (on a cluster: the model and --styles-dir must exist on "
                               "every node) and rerun.") from None
        except ray.exceptions.RayActorError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if attempt == tries:
                raise StyleRTError(f"a Ray Serve actor died while the application started, {tries} times: {first}",
                                   "Check the cluster's health (ray status; a node short of memory or CPU) and "
                                   "rerun.") from None
            print(f"a Ray Serve actor died while the application started ({first}); trying again", flush=True)


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

    _connect(ray, a)
    stop = threading.Event()
    # SIGTERM asks for a drain: honoured as soon as the start ends, which is bounded (replicas
    # that cannot load fail it after max_constructor_retry_count tries); Ctrl-C interrupts
    # the start at once. Either way the application is removed below.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deployed, code = False, 0
    try:
        replicas = a.replicas
        if replicas == "auto":
            res = ray.cluster_resources()
            per = [(res.get("CPU", 0) / a.cpus_per_replica) if a.cpus_per_replica else float("inf"),
                   (res.get("GPU", 0) / a.gpus_per_replica) if a.gpus_per_replica else float("inf")]
            replicas = ("auto", max(1, int(min(per)) if min(per) != float("inf") else int(res.get("CPU", 1))))
        if a.address:
            _check_cluster(a)
        serve.start(http_options={"host": a.host, "port": a.port})
        deployed = True
        _deploy(serve, ray, cfg, a, replicas)
        n = f"1 to {replicas[1]} (autoscaling)" if isinstance(replicas, tuple) else replicas
        print(f"serving on http://{a.host}:{a.port}{a.route_prefix.rstrip('/')}/ ({n} replica(s), application "
              f"{a.name!r}; open it in a browser to try it); Ctrl-C or SIGTERM drains and stops", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        print("draining: new requests are refused, requests in flight finish (up to 30 s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted while starting: removing the application", flush=True)
        code = 130
    finally:
        # the drain and the removal run to the end: a second Ctrl-C (or the SIGINT Ray's
        # shutdown may send to its process group) must not cut them short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if deployed:
            try:
                serve.delete(a.name)  # replicas stop gracefully: they wait for their ongoing requests
            except Exception as e:  # the cluster may be gone already; nothing of ours is left then
                print(f"could not remove the application {a.name!r}: {e}", flush=True)
            if not a.address:
                serve.shutdown()  # our own local Ray: nothing else runs on it
        ray.shutdown()
    return code
