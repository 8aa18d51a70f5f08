"""Loopback-only network namespaces: where the tests and the load test start Ray.

Ray's internal services listen on every interface and may connect to the machine's own
non-loopback address; on machines where traffic may go to loopback only, a process that
starts Ray runs inside a network namespace whose only interface is `lo`. Nothing can leave
it: no packet reaches any other address, whatever Ray tries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys


def loopback_only() -> bool:
    """True when this process sees no network interface but loopback."""
    try:
        return {name for _, name in socket.if_nameindex()} <= {"lo"}
    except OSError:
        return False


def why_not() -> str | None:
    """None when `in_loopback_namespace` can run here, else the reason."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "`unshare` or `ip` (util-linux, iproute2) is not installed"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace ({r.stderr.strip() or 'unshare -n failed'}; needs root or user namespaces)"
    return None


def command(argv: list[str]) -> list[str]:
    """`argv` wrapped to run in a new loopback-only network namespace with `lo` up."""
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


# A one-machine Ray: no usage reports, no uv runtime environments, and its node address is
# loopback, never probed by connecting out (Ray otherwise tries 8.8.8.8 to find its own IP).
# Serve's controller kills an HTTP proxy not ready within 5 s and serve.start then fails with
# its ActorDiedError: on a 2-core machine whose cores are busy (a replica loading, a training
# run) a proxy's start took longer, so a local Ray gives it 30 s.
LOCAL_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}


def ray_env(env: dict | None = None) -> dict:
    """The environment for a process that starts a one-machine Ray (LOCAL_RAY_ENV set)."""
    return {**(os.environ if env is None else env), **LOCAL_RAY_ENV}
