"""Where the time goes: per-op profiles, in a run of their own (never inside a timed one).

ONNX Runtime: SessionOptions.enable_profiling writes a Chrome-trace JSON; the "Node" events
are summed per op type and per node. PyTorch eager: torch.profiler's key_averages.
`python -m stylert.bench.profile EXPORT [--batch 16 --size 256 --precision fp32 int8]`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def ort_profile(path: str | os.PathLike, feeds: dict, threads: int, runs: int = 2, options: dict | None = None) -> dict:
    """Per-op-type and top-node times (ms per run) of one ONNX model on its inputs (feeds)."""
    from stylert.engine.backends.onnxrt.session import make_session

    with tempfile.TemporaryDirectory() as d:
        s = make_session(path, threads, config=options, enable_profiling=True, profile_file_prefix=os.path.join(d, "ort"))
        s.run(None, feeds)  # warm-up: excluded below by dropping the first run's events
        for _ in range(runs):
            s.run(None, feeds)
        prof = s.end_profiling()
        events = json.loads(Path(prof).read_text())
    node_ev = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    n_nodes = len({e["name"] for e in node_ev})
    node_ev = node_ev[n_nodes:]  # the warm-up run's events come first
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    for e in node_ev:
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] += e["dur"] / 1e3 / runs
        by_node[f"{e['name'][:-len('_kernel_time')]} ({op})"] += e["dur"] / 1e3 / runs
    total = sum(by_op.values())
    return {"total_ms": total, "by_op_ms": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "top_nodes_ms": dict(sorted(by_node.items(), key=lambda kv: -kv[1])[:10])}


def torch_profile(checkpoint: str | os.PathLike, x: np.ndarray, threads: int, channels_last: bool = False) -> str:
    """torch.profiler table (self CPU time) of the encoder (mean and code) + clamped decoder on x."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from stylert.export.checkpoint import load_model

    torch.set_num_threads(threads)
    m, _ = load_model(checkpoint)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = m.to(memory_format=fmt)
    t = torch.from_numpy(x).contiguous(memory_format=fmt)
    with torch.inference_mode():
        m.decoder.image(*m.encoder.encode_with_style(t))
        with profile(activities=[ProfilerActivity.CPU]) as p:
            m.decoder.image(*m.encoder.encode_with_style(t))
    return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["fp32"])
    ap.add_argument("--cache", default=None)
    ap.add_argument("--torch", action="store_true", help="also profile PyTorch eager (NCHW and channels_last)")
    a = ap.parse_args(argv)
    from .suite import BenchOptions, cache_dir, load_inputs, ROOT
    from .configs import preprocess

    exp = Path(a.export)
    x = preprocess(load_inputs(a.batch, a.size, ROOT.parent / "shared" / "data" / "content")[0])
    from stylert.engine.build.precision import session

    from stylert.engine.artifacts import contract_of

    c = contract_of(exp)
    s = session(exp / "encoder.onnx")
    z, code = s.run(None, {c.image.name: x})
    for prec in a.precision:
        if prec == "fp32":
            enc, dec = exp / "encoder.onnx", exp / "decoder.onnx"
        else:
            from .configs import Config, Context, artifact_paths

            ctx = Context(exp, a.batch, a.size, a.threads, code[0], cache_dir(BenchOptions(cache=a.cache)) / "artifacts")
            _, enc, dec, _ = artifact_paths(Config(f"onnxruntime-{prec}", "onnxruntime", prec), ctx)
        for role, path, inp in (("encoder", enc, {c.image.name: x}), ("decoder", dec, {c.latent.name: z, c.style.name: code})):
            r = ort_profile(path, inp, a.threads)
            print(f"\n== onnxruntime {prec} {role}: {r['total_ms']:.1f} ms of kernels per run (batch {a.batch}, {a.size}px)")
            for op, ms in list(r["by_op_ms"].items())[:8]:
                print(f"  {op:24s} {ms:9.1f} ms  {100 * ms / r['total_ms']:5.1f}%")
            print("  top nodes:")
            for n, ms in list(r["top_nodes_ms"].items())[:6]:
                print(f"    {n:60s} {ms:9.1f} ms")
    if a.torch:
        for cl in (False, True):
            print(f"\n== torch eager fp32 {'channels_last' if cl else 'NCHW'}")
            print(torch_profile(exp / "checkpoint", x, a.threads, channels_last=cl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
