"""The timing loop: warm-up excluded, a minimum duration and a minimum number of iterations,
configurations interleaved (A B C A B C ...), robust statistics and noise warnings.

Method (../shared/notes/benchmarking.md): the host is timed with `time.perf_counter_ns`
(monotonic); device stages on CUDA are additionally timed with CUDA events, synchronized once
at the end of each iteration before the host clock is read. Percentiles use NumPy's "linear"
method (Hyndman-Fan type 7). Throughput is images divided by the wall time of the measured
window (the sum of the measured iterations' end-to-end times: every configuration runs
sequentially, so there is no overlap to account for).

Top-level imports are stdlib and NumPy only; torch is imported only by a configuration that
asks for CUDA events.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy.percentile, Hyndman-Fan type 7
CV_WARN_PCT = 10.0  # torch.utils.benchmark warns at IQR/median > 10 %; CV is stricter on spikes
IQR_WARN = 0.10
SPIKE_WARN = 3.0  # max > 3 x median: a rare spike a mean would hide


@dataclass
class Stage:
    """One step of the pipeline: `fn(previous output) -> output`.

    device: the stage runs on an accelerator asynchronously (timed with CUDA events too)."""

    name: str
    fn: Callable[[Any], Any]
    device: bool = False


@dataclass
class Stats:
    """Summary of one series of durations, in milliseconds."""

    n: int
    mean_ms: float
    median_ms: float
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    cv_pct: float  # 100 x std / mean (population std)

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def summarize(samples_ns) -> Stats:
    """Robust statistics of durations given in nanoseconds."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if a.size == 0:
        raise ValueError("no samples")
    q1, med, q3, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99], method=PERCENTILE_METHOD)
    mean = float(a.mean())
    cv = 100.0 * float(a.std()) / mean if mean > 0 else 0.0
    return Stats(int(a.size), mean, float(med), float(q1), float(q3), float(q3 - q1), float(p90), float(p99), float(a.min()), float(a.max()), cv)


def noise_warnings(label: str, s: Stats, min_time_s: float) -> list[str]:
    """Warnings about a figure that should not be trusted, each with its remedy."""
    out = []
    remedy = (
        f"remedy: stop other work on the machine, fix --threads below the core count ({os.cpu_count()}), "
        f"or raise --min-time (now {min_time_s:g} s)"
    )
    if s.cv_pct > CV_WARN_PCT:
        out.append(f"{label}: noisy, CV {s.cv_pct:.1f}% > {CV_WARN_PCT:g}%; {remedy}")
    if s.median_ms > 0 and s.iqr_ms / s.median_ms > IQR_WARN:
        out.append(f"{label}: unstable, IQR/median {100 * s.iqr_ms / s.median_ms:.1f}% > {100 * IQR_WARN:g}%; {remedy}")
    if s.median_ms > 0 and s.max_ms > SPIKE_WARN * s.median_ms:
        out.append(f"{label}: spike, max {s.max_ms:.1f} ms > {SPIKE_WARN:g} x median {s.median_ms:.1f} ms; see the per-iteration trace in the JSON")
    return out


def machine_warnings() -> list[str]:
    """Run-level warnings: a busy machine makes every absolute figure unreliable."""
    out = []
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return out
    cores = os.cpu_count() or 1
    if load1 > 0.5 * cores:
        out.append(
            f"machine busy: 1-minute load average {load1:.1f} on {cores} cores before measuring; absolute times are "
            "inflated and noisy, compare the ratios (configurations are interleaved); remedy: rerun when the machine is idle"
        )
    return out


class _CudaEvents:
    """Start/end CUDA events around device stages; read after one synchronize per iteration."""

    def __init__(self):
        import torch

        self.torch = torch
        self.pairs: dict[str, tuple] = {}

    def start(self, name):
        e = self.torch.cuda.Event(enable_timing=True)
        e.record()
        self.pairs[name] = (e, None)

    def end(self, name):
        e = self.torch.cuda.Event(enable_timing=True)
        e.record()
        self.pairs[name] = (self.pairs[name][0], e)

    def read_ns(self) -> dict[str, int]:
        self.torch.cuda.synchronize()
        return {k: int(a.elapsed_time(b) * 1e6) for k, (a, b) in self.pairs.items()}


def run_once(stages: list[Stage], inp, cuda: bool = False) -> tuple[Any, dict[str, int], dict[str, int], int]:
    """One pass through the pipeline -> (output, host ns per stage, device ns per stage, end-to-end ns).

    On CUDA the host clock of a device stage measures the enqueue; the device time comes from
    the events, and the iteration synchronizes before the end-to-end clock is read."""
    host: dict[str, int] = {}
    ev = _CudaEvents() if cuda else None
    x = inp
    t_start = time.perf_counter_ns()
    for st in stages:
        if ev is not None and st.device:
            ev.start(st.name)
        t0 = time.perf_counter_ns()
        x = st.fn(x)
        host[st.name] = time.perf_counter_ns() - t0
        if ev is not None and st.device:
            ev.end(st.name)
    dev = ev.read_ns() if ev is not None else {}
    return x, host, dev, time.perf_counter_ns() - t_start


@dataclass
class Series:
    """Everything measured for one configuration."""

    host: dict[str, list[int]] = field(default_factory=dict)
    device: dict[str, list[int]] = field(default_factory=dict)
    e2e: list[int] = field(default_factory=list)
    warmup_iters: int = 0

    def add(self, host, dev, e2e):
        for k, v in host.items():
            self.host.setdefault(k, []).append(v)
        for k, v in dev.items():
            self.device.setdefault(k, []).append(v)
        self.e2e.append(e2e)

    @property
    def measured_s(self) -> float:
        return sum(self.e2e) / 1e9


def warm_up(stages: list[Stage], inp, warmup_s: float, cuda: bool = False, min_iters: int = 1) -> int:
    """Run until `warmup_s` seconds and `min_iters` iterations have passed; nothing is kept."""
    t_end = time.perf_counter() + warmup_s
    n = 0
    while n < min_iters or time.perf_counter() < t_end:
        run_once(stages, inp, cuda)
        n += 1
    return n


def measure_interleaved(
    pipelines: dict[str, tuple[list[Stage], Any, bool]],
    min_time_s: float,
    min_iters: int,
    max_iters: int = 100_000,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, Series]:
    """Round-robin over the configurations (A B C A B C ...) until each one has at least
    `min_iters` iterations and `min_time_s` seconds of measured time.

    pipelines: name -> (stages, input, cuda). A configuration that has met both minima leaves
    the rotation, so the slowest does not hold the fastest hostage."""
    series = {k: Series() for k in pipelines}
    rnd = 0
    while True:
        pending = [k for k, s in series.items() if len(s.e2e) < max_iters and (len(s.e2e) < min_iters or s.measured_s < min_time_s)]
        if not pending:
            return series
        for k in pending:
            stages, inp, cuda = pipelines[k]
            _, host, dev, e2e = run_once(stages, inp, cuda)
            series[k].add(host, dev, e2e)
        rnd += 1
        if on_round is not None:
            on_round(rnd)


def throughput(batch: int, s: Series) -> float:
    """Images per second over the measured window."""
    return batch * len(s.e2e) / s.measured_s if s.e2e else 0.0
