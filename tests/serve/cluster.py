"""A two-node Ray cluster on one machine, driven as docs/serving.md ("Scale out") tells a user
to: run inside a loopback-only network namespace (tests/serve/test_ray_cluster.py starts it;
the nodes are 127.0.0.1 and 127.0.0.2), it prints one line `RESULT {json}` with what it saw.

    python tests/serve/cluster.py MODEL WORKDIR [--seconds S] [--clients N]

The head node and the worker node have their own HOME (the worker starts as a fresh machine:
no Ray token of its own). Token authentication is on, as Ray turns it on once any token exists.
The worker node's proxy listens on 8001 (RAY_SERVE_WORKER_PROXY_HTTP_PORT: two proxies on
one machine need two ports; on real machines both use --port).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HEAD, WORKER = "127.0.0.1", "127.0.0.2"
PROXIES = {HEAD: "http://127.0.0.1:8000", WORKER: "http://127.0.0.1:8001"}


def png(seed: int, size=(64, 48)) -> bytes:
    b = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(b, "PNG")
    return b.getvalue()


def run(cmd, env, timeout=120, check=True):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


def wait_ready(url: str, proc, seconds: float = 240) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"stylert serve exited with {proc.returncode} before {url} was ready")
        time.sleep(0.5)
    raise SystemExit(f"{url} not ready after {seconds} s")


class Load:
    """Client threads sending stylize requests round-robin over `urls` until stopped; every
    answer recorded as (t_sent, t_done, proxy, status, replica)."""

    def __init__(self, urls: list[str], style: str, clients: int, size: int):
        self.urls, self.style, self.clients, self.size = urls, style, clients, size
        self.rows: list[tuple] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, i: int) -> None:
        body = png(100 + i, (self.size, self.size * 3 // 4))
        with httpx.Client(timeout=30) as c:
            k = i
            while not self.stop.is_set():
                url = self.urls[k % len(self.urls)]
                k += 1
                t = time.monotonic()
                try:
                    r = c.post(f"{url}/v1/stylize?style={self.style}&format=png", content=body)
                    row = (t, time.monotonic(), url, r.status_code, r.headers.get("x-replica", ""))
                except httpx.HTTPError as e:
                    row = (t, time.monotonic(), url, type(e).__name__, "")
                    time.sleep(0.2)  # a dead proxy refuses at once: no busy loop
                with self.lock:
                    self.rows.append(row)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def summary(rows, t0: float, t1: float) -> dict:
    """Figures over the requests sent in [t0, t1): per proxy and per replica node."""
    rows = [r for r in rows if t0 <= r[0] < t1]
    out = {"seconds": round(t1 - t0, 1), "requests": len(rows), "status": dict(Counter(str(r[3]) for r in rows))}
    lat = sorted(r[1] - r[0] for r in rows if r[3] == 200)
    if lat:
        out.update(images_per_s=round(len(lat) / (t1 - t0), 2), p50_ms=round(1e3 * lat[len(lat) // 2], 1),
                   p99_ms=round(1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1))
    out["per_proxy"] = {u: sum(1 for r in rows if r[2] == u and r[3] == 200) for u in sorted({r[2] for r in rows})}
    out["per_node"] = dict(Counter(r[4].split(":")[0] for r in rows if r[3] == 200))
    out["per_replica"] = dict(Counter(r[4] for r in rows if r[3] == 200))
    return out


class _Done(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("workdir")
    ap.add_argument("--seconds", type=float, default=8.0, help="load per phase")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--size", type=int, default=64, help="longer side of the load's images")
    a = ap.parse_args()
    work = Path(a.workdir)
    homes = {n: work / n for n in ("head", "worker", "stranger")}
    for h in homes.values():
        h.mkdir(parents=True, exist_ok=True)
    # the proxies' start-up deadline as docs/serving.md advises for small, busy nodes
    base = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_TMPDIR": str(work / "t"),
            "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        base.pop(k, None)
    head_env = {**base, "HOME": str(homes["head"]), "RAY_AUTH_MODE": "token"}
    res: dict = {}
    worker = serve = None
    try:
        # the head node (docs/serving.md: token first, then ray start --head)
        token = run(["ray", "get-auth-token", "--generate"], head_env).stdout.strip().splitlines()[-1]
        run(["ray", "start", "--head", "--node-ip-address", HEAD, "--port", "6379", "--num-cpus", "2",
             "--include-dashboard", "false", "--disable-usage-stats"], head_env, timeout=180)
        # a fresh machine joins with the head's token
        worker_env = {**base, "HOME": str(homes["worker"]), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                      "RAY_SERVE_WORKER_PROXY_HTTP_PORT": "8001"}
        worker = subprocess.Popen(["ray", "start", "--address", f"{HEAD}:6379", "--node-ip-address", WORKER,
                                   "--num-cpus", "1", "--disable-usage-stats", "--block"], env=worker_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        t_end = time.monotonic() + 120
        while "2 node" not in (s := run(["ray", "status", "--address", f"{HEAD}:6379"], head_env, check=False).stdout) \
                and s.count("node_") < 2:
            if time.monotonic() > t_end or worker.poll() is not None:
                raise SystemExit("the worker node did not join:\n" + s)
            time.sleep(1)

        serve_cmd = [sys.executable, "-m", "stylert.engine.cli", "serve", "--address", f"{HEAD}:6379"]
        common = ["--model", a.model, "--backend", "torch", "--threads", "1"]
        # refused before any work: no shared style bank
        r = run(serve_cmd + common, head_env, check=False)
        res["no_styles_dir"] = {"exit": r.returncode, "says": "--styles-dir" in r.stderr}
        # a process without the cluster's token: a clear error, not a hang or a traceback
        r = run(serve_cmd + common + ["--styles-dir", str(work / "bank")],
                {**base, "HOME": str(homes["stranger"])}, check=False, timeout=180)
        res["no_token"] = {"exit": r.returncode, "says": "token" in r.stderr and "Traceback" not in r.stderr,
                           "stderr": r.stderr.strip()[-600:]}

        # replicas that cannot load (here: the bank is a file) fail the start with the reason,
        # instead of being retried forever
        (work / "not-a-folder").write_text("x")
        t0 = time.monotonic()
        r = run(serve_cmd + common + ["--styles-dir", str(work / "not-a-folder"), "--replicas", "2"], head_env,
                check=False, timeout=300)
        res["replicas_fail"] = {"exit": r.returncode, "seconds": round(time.monotonic() - t0, 1),
                                "says": "cannot load" in r.stderr, "stderr": r.stderr.strip()[-400:]}
        if os.environ.get("CLUSTER_ONLY_REFUSALS"):
            raise _Done
        t0 = time.monotonic()
        serve = subprocess.Popen(serve_cmd + common + ["--styles-dir", str(work / "bank"), "--replicas", "2"],
                                 env=head_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(serve.stdout.readline, "")), daemon=True).start()
        for u in PROXIES.values():
            wait_ready(u, serve)
        res["ready_s"] = round(time.monotonic() - t0, 1)

        # a replica that Serve replaced on a busy machine has no node yet: ask until every one has
        probe = ("import time, ray; from ray.serve.context import _get_global_client as g; ray.init(address='%s:6379', "
                 "log_to_driver=False)\nfor _ in range(60):\n    reps = g().get_serve_details()['applications']['stylert']"
                 "['deployments']['stylert']['replicas']\n    if reps and all(r.get('node_ip') for r in reps): break\n"
                 "    time.sleep(1)\nprint('NODES', sorted(r.get('node_ip') for r in reps))" % HEAD)
        r = run([sys.executable, "-c", probe], head_env, check=False)
        res["replica_nodes"] = [json.loads(ln[6:].replace("'", '"')) for ln in r.stdout.splitlines() if ln.startswith("NODES")][-1:] \
            or r.stderr[-500:]

        # a second app on another port, or under the same name: refused, the first one untouched
        r = run(serve_cmd + common + ["--styles-dir", str(work / "bank"), "--port", "8010"], head_env, check=False)
        res["other_port"] = {"exit": r.returncode, "says": "8000" in r.stderr}
        r = run(serve_cmd + common + ["--styles-dir", str(work / "bank")], head_env, check=False)
        res["same_name"] = {"exit": r.returncode, "says": "already running" in r.stderr}

        # a style added through the head's proxy is used through the worker's
        sid = httpx.post(PROXIES[HEAD] + "/v1/styles?name=shared", content=png(1, (96, 96)), timeout=60).json()["id"]
        r = httpx.post(PROXIES[WORKER] + f"/v1/stylize?style={sid}", content=png(2), timeout=60)
        res["style_across_nodes"] = r.status_code

        # load over both proxies
        with Load(list(PROXIES.values()), sid, a.clients, a.size) as load:
            t1 = time.monotonic()
            time.sleep(a.seconds)
            t2 = time.monotonic()
            res["load_both"] = summary(load.rows, t1, t2)
            # the worker node dies under load
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            t_kill = time.monotonic()
            load.urls = [PROXIES[HEAD]]  # clients move to the surviving proxy, as a load balancer would
            recovered = None
            while time.monotonic() - t_kill < 90:
                ok = [r for r in list(load.rows) if r[0] > t_kill + 1 and r[2] == PROXIES[HEAD] and r[3] == 200]
                if len(ok) >= 3 * a.clients:
                    recovered = round(ok[0][1] - t_kill, 1)
                    break
                time.sleep(0.5)
            time.sleep(a.seconds)
            t3 = time.monotonic()
            res["node_killed"] = summary(load.rows, t_kill, t3)
            res["node_killed"]["head_proxy_recovered_s"] = recovered
            res["node_killed"]["head_proxy_5xx"] = sum(1 for r in load.rows if r[0] >= t_kill and r[2] == PROXIES[HEAD]
                                                       and isinstance(r[3], int) and r[3] >= 500 and r[3] != 503)
        for _ in range(60):  # the head's replica may still be taking over the dead node's share on a busy machine
            r = httpx.get(PROXIES[HEAD] + "/v1/styles", timeout=30)
            if r.status_code == 200:
                break
            time.sleep(1)
        res["bank_after"] = [s["id"] for s in r.json()["styles"]] if r.status_code == 200 else f"{r.status_code}: {r.text[:300]}"
        res["style_after"] = httpx.post(PROXIES[HEAD] + f"/v1/stylize?style={sid}", content=png(3), timeout=60).status_code
        res["sid"] = sid

        serve.send_signal(signal.SIGTERM)
        res["serve_exit"] = serve.wait(timeout=120)
        # this application is gone, Serve itself (other applications' proxies) stays
        probe = "import ray; from ray import serve; ray.init(address='%s:6379', log_to_driver=False); " \
                "print('APPS', sorted(serve.status().applications))" % HEAD
        r = run([sys.executable, "-c", probe], head_env, check=False)
        res["apps_after"] = [ln for ln in r.stdout.splitlines() if ln.startswith("APPS")][-1:] or r.stderr[-300:]
    except _Done:
        pass
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        run(["ray", "stop", "--force"], head_env, check=False)
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
