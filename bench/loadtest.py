"""`stylert loadtest`: the HTTP service under load, on this machine, on loopback only.

Starts Ray Serve (a local Ray, node address 127.0.0.1) inside a loopback-only network
namespace (re-executing itself under `unshare -n` when needed: no packet can leave), then for
each --replicas count:
  1. load: --clients concurrent clients, each sending stylize requests one after another
     until --requests are answered or --duration-s passes;
  2. overload (after the last count): --overload-clients clients against a deployment whose
     queue is bounded (--max-queued): every request must be answered, with 200 or 503/429 and
     Retry-After, never a 500 or a dropped connection.
Reports throughput, p50/p90/p99 latency, the batch sizes the replicas formed (the
X-Batch-Size header), and answers by status; and, measured in the same run before Ray starts,
the offline throughput of the same engine (Engine.stylize_batch, batch = --max-batch-size,
same image size): served / offline is what the service costs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser(
        "loadtest",
        help="load-test the HTTP service (Ray Serve on loopback) against offline throughput",
        description=textwrap.dedent(__doc__.split("\n", 2)[2]).strip(),
        epilog="example:\n  stylert loadtest --replicas 1 2 --clients 16 --requests 160 --json out/loadtest.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from stylert.engine.options import add_engine_options

    add_engine_options(p, {"threads": "CPU threads per replica (default: cores / replicas)"}, backend="onnxruntime")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts to test (default: 1 2)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients in the load phase (default: %(default)s)")
    p.add_argument("--requests", type=int, default=160, help="requests per load phase (default: %(default)s)")
    p.add_argument("--duration-s", type=float, default=120.0, help="time limit per phase (default: %(default)s)")
    p.add_argument("--size", type=int, default=256, help="side of the square content images (default: %(default)s)")
    p.add_argument("--max-batch-size", type=int, default=8, help="the server's batch limit (default: %(default)s)")
    p.add_argument("--batch-wait-ms", type=float, default=20.0, help="the server's batch wait (default: %(default)s)")
    p.add_argument("--overload-clients", type=int, default=64, help="clients in the overload phase, 0 to skip (default: %(default)s)")
    p.add_argument("--overload-requests", type=int, default=256, help="requests in the overload phase (default: %(default)s)")
    p.add_argument("--max-queued", type=int, default=8, help="overload phase: requests Ray queues per proxy before 503 (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port inside the namespace (default: %(default)s)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--overwrite", action="store_true", help="let --json replace an existing file")
    p.set_defaults(func=run)


def run(a) -> int:
    from stylert.engine.errors import StyleRTError
    from stylert.engine.serve import netns

    if not netns.loopback_only():
        why = netns.why_not()
        if why is not None:
            raise StyleRTError(f"the load test runs Ray only inside a loopback-only network namespace, and {why}.",
                               "Run it as root on Linux, or inside a namespace you made: unshare -n sh -c 'ip link set lo up; stylert loadtest ...'.")
        print("re-running inside a loopback-only network namespace (unshare -n)", flush=True)
        argv = [sys.executable, "-m", "stylert.engine.cli", *sys.argv[1:]]
        import subprocess

        return subprocess.call(netns.command(argv), env=netns.ray_env())
    if a.json:  # before the long run, not after it
        from stylert.engine.outputs import check_output

        check_output(a.json, a.overwrite, option="--json")
    os.environ.update(netns.ray_env())
    results = measure(a)
    print_table(results)
    if a.json:
        from stylert.engine.outputs import write_output

        write_output(a.json, json.dumps(results, indent=2).encode(), a.overwrite, option="--json")
        print(f"wrote {a.json}")
    return 0


# ----------------------------------------------------------------------------- inputs
def _images(size: int) -> tuple[list[bytes], bytes]:
    """Content JPEGs of size x size from the shipped calibration photographs, and a style image
    (the sample texture when scikit-image is installed, else a calibration photograph)."""
    from stylert.engine.artifacts import (
        SAMPLE_STYLE,
        SHIPPED_CALIB_DIR,
        sample_photo_dir,
    )
    from stylert.engine.images import center_crop, list_images, load_image

    files = list_images(SHIPPED_CALIB_DIR)[:8]
    contents = []
    for f in files:
        buf = io.BytesIO()
        center_crop(load_image(f), size, size).save(buf, "JPEG", quality=90)
        contents.append(buf.getvalue())
    d = sample_photo_dir()
    style_path = d / SAMPLE_STYLE if d is not None and (d / SAMPLE_STYLE).is_file() else files[-1]
    buf = io.BytesIO()
    center_crop(load_image(style_path), 256, 256).save(buf, "PNG")
    return contents, buf.getvalue()


def offline_throughput(a, contents: list[bytes], style: bytes) -> dict:
    """Images/s of Engine.stylize_batch on the same engine, batch and size: what the service
    would do with no HTTP, no decoding and no batching wait."""
    from PIL import Image
    from stylert.engine.frontend import model_folder
    from stylert.engine.images import to_array
    from stylert.engine.runtime import Engine, reflect_pad

    eng = Engine.load(model_folder(a.model, a.backend), backend=a.backend, precision=a.precision, device=a.device,
                      threads=a.threads)
    code = eng.encode_style(Image.open(io.BytesIO(style)).convert("RGB"))
    b = a.max_batch_size
    # the service's work per image: Engine.stylize's mirrored margin included
    m = eng.margin
    x = np.stack([reflect_pad(to_array(Image.open(io.BytesIO(contents[i % len(contents)])).convert("RGB")), m)
                  for i in range(b)])
    eng.stylize_batch(x, code)
    times = []
    t_end = time.monotonic() + 10
    while len(times) < 3 or (time.monotonic() < t_end and len(times) < 10):
        t0 = time.perf_counter()
        eng.stylize_batch(x, code)
        times.append(time.perf_counter() - t0)
    eng.close()
    med = float(np.median(times))
    return {"images_per_s": b / med, "batch": b, "median_batch_s": med, "runs": len(times), "margin": m,
            "backend": eng.info.get("backend"), "precision": eng.info.get("precision")}


# ----------------------------------------------------------------------------- clients
async def _drive(url: str, sid: str, contents: list[bytes], clients: int, requests: int, duration_s: float) -> dict:
    import httpx

    lat, statuses, batches, errors = [], Counter(), Counter(), Counter()
    sent = {"n": 0}
    t_end = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(k: int, c: httpx.AsyncClient):
        while sent["n"] < requests and time.monotonic() < t_end:
            i = sent["n"]
            sent["n"] += 1
            t0 = time.perf_counter()
            try:
                r = await c.post(f"{url}/v1/stylize?style={sid}&format=jpeg", content=contents[i % len(contents)])
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                continue
            dt = time.perf_counter() - t0
            statuses[r.status_code] += 1
            if r.status_code == 200:
                lat.append(dt)
                batches[int(r.headers.get("x-batch-size", 0))] += 1
            elif r.status_code in (429, 503) and "retry-after" not in r.headers:
                errors["no Retry-After"] += 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=duration_s + 30, limits=limits) as c:
        await asyncio.gather(*[client(k, c) for k in range(clients)])
    wall = time.perf_counter() - t0
    q = np.percentile(lat, [50, 90, 99]) if lat else [float("nan")] * 3
    return {"clients": clients, "sent": sent["n"], "answered": sum(statuses.values()), "wall_s": wall,
            "ok_per_s": statuses[200] / wall, "p50_s": float(q[0]), "p90_s": float(q[1]), "p99_s": float(q[2]),
            "status": {str(k): v for k, v in sorted(statuses.items())},
            "batch_sizes": {str(k): v for k, v in sorted(batches.items())},
            "mean_batch": (sum(k * v for k, v in batches.items()) / max(1, sum(batches.values()))),
            "client_errors": dict(errors)}


def _wait_ready(url: str, timeout_s: float = 300) -> None:
    import httpx

    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready in {timeout_s} s")


def measure(a) -> dict:
    import httpx
    import ray
    from ray import serve
    from stylert.engine.serve.ray_app import build
    from stylert.engine.serve.service import ServeConfig

    contents, style = _images(a.size)
    print(f"offline: Engine.stylize_batch, batch {a.max_batch_size}, {a.size}x{a.size}", flush=True)
    offline = offline_throughput(a, contents, style)
    print(f"  {offline['images_per_s']:.2f} images/s", flush=True)
    url = f"http://127.0.0.1:{a.port}"
    out = {"size": a.size, "backend": a.backend, "max_batch_size": a.max_batch_size, "batch_wait_ms": a.batch_wait_ms,
           "cpu_count": os.cpu_count(), "offline": offline, "phases": []}
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": a.port})
        phases = [("load", r) for r in a.replicas] + ([("overload", a.replicas[-1])] if a.overload_clients else [])
        for kind, replicas in phases:
            threads = a.threads or max(1, (os.cpu_count() or 1) // replicas)
            cfg = ServeConfig(model=a.model, backend=a.backend, precision=a.precision, device=a.device, threads=threads,
                              max_batch_size=a.max_batch_size, batch_wait_ms=a.batch_wait_ms,
                              max_in_flight=2 * a.max_batch_size, styles_dir=None)
            app = build(cfg, replicas=replicas, max_queued=a.max_queued if kind == "overload" else -1,
                        cpus_per_replica=0)
            print(f"{kind}: {replicas} replica(s), {threads} thread(s) each", flush=True)
            serve.run(app, name="stylert", route_prefix="/")
            _wait_ready(url)
            sid = httpx.post(f"{url}/v1/styles?name=loadtest", content=style, timeout=60).json()["id"]
            asyncio.run(_drive(url, sid, contents, replicas * a.max_batch_size, 2 * replicas * a.max_batch_size, 60))  # warm-up
            clients, n = (a.clients, a.requests) if kind == "load" else (a.overload_clients, a.overload_requests)
            r = asyncio.run(_drive(url, sid, contents, clients, n, a.duration_s))
            r.update(kind=kind, replicas=replicas, threads_per_replica=threads,
                     served_over_offline=r["ok_per_s"] / offline["images_per_s"])
            out["phases"].append(r)
            print(f"  {r['ok_per_s']:.2f} images/s, p50 {r['p50_s']:.2f} s, status {r['status']}, "
                  f"batches {r['batch_sizes']}", flush=True)
            serve.delete("stylert")
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def print_table(res: dict) -> None:
    off = res["offline"]
    print(f"\nserved vs offline ({res['backend']}, {res['size']}x{res['size']} images, server batch <= "
          f"{res['max_batch_size']}, wait {res['batch_wait_ms']:g} ms, {res['cpu_count']} CPU cores)")
    print(f"offline Engine.stylize_batch (batch {off['batch']}): {off['images_per_s']:.2f} images/s")
    print(f"{'phase':9} {'replicas':>8} {'clients':>7} {'answered':>8} {'img/s':>7} {'vs offline':>10} "
          f"{'p50 s':>6} {'p90 s':>6} {'p99 s':>6} {'mean batch':>10}  status")
    for p in res["phases"]:
        print(f"{p['kind']:9} {p['replicas']:>8} {p['clients']:>7} {p['answered']:>4}/{p['sent']:<3} {p['ok_per_s']:>7.2f} "
              f"{p['served_over_offline']:>9.2f}x {p['p50_s']:>6.2f} {p['p90_s']:>6.2f} {p['p99_s']:>6.2f} "
              f"{p['mean_batch']:>10.1f}  {p['status']}{' ' + str(p['client_errors']) if p['client_errors'] else ''}")
