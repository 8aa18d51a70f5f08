"""The service on Ray Serve: replicas that each hold a loaded Engine behind the FastAPI app,
with request batching by `@serve.batch` and backpressure by Ray's proxy.

Each replica runs `create_app(stylizer, submit=self.stylize_batched)`: concurrent stylize
requests on one replica are collected for up to batch_wait_ms into batches of at most
max_batch_size jobs, and one engine call serves each batch (grouped by style mix; same-size
images share one engine batch). `max_ongoing_requests` is set so batches can fill (a batch can
never hold more requests than a replica is sent at once); beyond it Ray queues up to
`max_queued_requests` per proxy, then answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict

from ray import serve
from ray.serve.config import BackpressureConfig

from ..errors import StyleRTError
from .app import create_app
from .service import Job, Result, ServeConfig, Stylizer


@serve.deployment(name="stylert", graceful_shutdown_timeout_s=30, graceful_shutdown_wait_loop_s=1,
                  max_constructor_retry_count=3)
@serve.ingress()
class StyleRTDeployment:
    def __init__(self, config: dict):
        self.stylizer = Stylizer(ServeConfig(**config))
        try:
            self.stylizer.load()
        except StyleRTError as e:
            # one line that `stylert serve` shows when the deployment fails (Serve gives up
            # after max_constructor_retry_count tries instead of retrying forever)
            import ray

            raise RuntimeError(f"replica on node {ray.util.get_node_ip_address()} cannot load: {e}".replace("\n", " ")) from None
        c = self.stylizer.cfg
        self.stylize_batched.set_max_batch_size(c.max_batch_size)
        self.stylize_batched.set_batch_wait_timeout_s(c.batch_wait_ms / 1e3)
        self.stylizer.batching = "ray serve @serve.batch"
        import ray

        self.stylizer.replica = f"{ray.util.get_node_ip_address()}:{os.getpid()}"

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def stylize_batched(self, jobs: list[Job]) -> list[Result]:
        return await asyncio.to_thread(self.stylizer.run_batch, jobs)

    def __serve_build_asgi_app__(self):
        return create_app(self.stylizer, submit=self.stylize_batched)

    def check_health(self):
        if not self.stylizer.ready:
            raise RuntimeError("engine not loaded")


def build(cfg: ServeConfig, replicas: int | str | tuple = 1, gpus_per_replica: float = 0.0, max_queued: int = -1,
          cpus_per_replica: float | None = None):
    """The bound application: `serve.run(build(cfg, replicas=2))`. replicas: a count, or
    ("auto", N) to autoscale between 1 and N (`stylert serve` sets N from the cluster's
    resources), or "auto" for N = this machine's CPUs."""
    opts = dict(
        max_ongoing_requests=max(cfg.max_in_flight, cfg.max_batch_size),
        max_queued_requests=max_queued,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=cfg.retry_after_s),
        ray_actor_options={"num_gpus": gpus_per_replica, **({"num_cpus": cpus_per_replica} if cpus_per_replica is not None else {})},
    )
    if replicas == "auto" or isinstance(replicas, tuple):
        most = replicas[1] if isinstance(replicas, tuple) else max(1, os.cpu_count() or 1)
        opts["autoscaling_config"] = {"min_replicas": 1, "max_replicas": most,
                                      "target_ongoing_requests": max(2, cfg.max_batch_size)}
    else:
        opts["num_replicas"] = int(replicas)
    return StyleRTDeployment.options(**opts).bind(asdict(cfg))
