"""The `bench` verb (`stylert bench`, `bench`): argparse only; the work is in suite.py.

Top-level imports stay stdlib-only so `stylert --help` stays fast and torch-free.
"""

from __future__ import annotations

import argparse
import sys
import textwrap


def _percent(text: str) -> float:
    t = text.strip()
    try:
        v = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage like 10% or 0.1") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0% and 100%")
    return v


HELP = {
    "model": "export folder (export-onnx) or checkpoint folder; default: the shipped model",
    "batch": "images per inference",
    "size": "image side in pixels, a multiple of the model's downsampling",
    "configs": "keep configurations whose name contains one of these; 'all' adds the tuning experiments "
               "(default: the standard set)",
    "min_time": "measured seconds per configuration, at least",
    "min_iters": "measured iterations per configuration, at least",
    "warmup": "warm-up seconds per configuration, excluded",
    "threads": "CPU threads for every backend (default: all usable cores)",
    "sweep": "also measure batch sizes 1, 2, 4, ..., 64 (throughput against latency)",
    "images": "content photographs to measure on (default: ../shared/data/content when present, else the shipped "
              "calibration images)",
    "cache": "cache folder for exports and precision builds",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="throughput, latency and accuracy of every backend, side by side",
        description=textwrap.dedent(
            """
            Measure every backend and precision available here (ONNX Runtime, OpenVINO,
            TensorRT where present) and the peers a user would pick instead (PyTorch eager
            FP32 = the baseline, torch.compile), on the same batch: the whole pipeline
            (preprocess, host-to-device, encode, mix, decode, device-to-host, postprocess)
            and each stage. Warm-up is excluded; each configuration runs at least --min-iters
            iterations and --min-time seconds, interleaved with the others; figures are
            given as ratios to PyTorch eager FP32. Accuracy is each output against the FP32
            reference (PSNR, max abs). Efficiency is FLOPs counted from the ONNX graph
            against a matmul peak measured in the same run. FP16/INT8 artifacts are built
            on first use into the cache (~/.cache/stylert/bench, or $STYLERT_CACHE).
            """
        ).strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent(
            """
            bench --batch 16 --json bench.json --plot bench.png
            bench --configs onnxruntime --min-time 1          # ORT rows (and the baseline)
            bench --configs all                               # plus the tuning experiments
            bench --compare bench.json --max-regression 10%   # exit 1 on a regression
            bench --sweep --plot sweep.png                    # batch 1..64
            """
        ).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from stylert.engine.config_args import add_fields

    from .suite import BenchOptions

    add_fields(p, BenchOptions, HELP, skip=("sweep_batches", "peak_n", "peak_time"),
               metavar={"configs": "NAME", "images": "DIR", "cache": "DIR"})
    p.add_argument("--list", action="store_true", help="list the configurations and whether they can run here, then exit")
    p.add_argument("--json", default=None, metavar="FILE", help="write the full result as JSON")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the plot (images/s and per-stage breakdown; the sweep too)")
    p.add_argument("--overwrite", action="store_true", help="let --json and --plot replace existing files")
    p.add_argument("--sweep-batches", type=int, nargs="+", default=None, metavar="N", help="batch sizes for --sweep (implies it)")
    p.add_argument("--compare", default=None, metavar="BASELINE_JSON", help="gate against a saved `--json` run; exit 1 on a regression")
    p.add_argument("--max-regression", type=_percent, default=0.10, metavar="PCT", help="allowed slowdown for --compare (default: 10%%)")
    p.set_defaults(func=run)


def run(a) -> int:
    from .configs import discover, select
    from .report import plot, table, write_json
    from .suite import SWEEP_BATCHES, BenchOptions, compare_runs, load_json, run_bench

    if a.list:
        for c in select(discover(), a.configs or ["all"]):
            state = c.unavailable or "available"
            print(f"{c.name:34s} {'default' if c.default else 'extra':8s} {state}")
        return 0
    old = load_json(a.compare) if a.compare else None  # fail before a long run
    from stylert.engine.outputs import check_output

    for option, path in (("--json", a.json), ("--plot", a.plot)):
        if path:  # before a long run, not after it
            check_output(path, a.overwrite, [a.compare] if a.compare else [], option, data=option == "--json")
    from stylert.engine.config_args import from_args

    opt = from_args(BenchOptions, a, sweep=a.sweep or bool(a.sweep_batches),
                    sweep_batches=tuple(a.sweep_batches or SWEEP_BATCHES))
    result = run_bench(opt, log=lambda m: print(m, file=sys.stderr, flush=True))
    rc = 0
    if old is not None:
        result["compare"] = {"baseline_file": a.compare, **compare_runs(result, old, a.max_regression)}
        rc = 0 if result["compare"]["passed"] else 1
    print(table(result))
    if a.json:
        write_json(result, a.json, a.overwrite)
        print(f"wrote {a.json}")
    if a.plot:
        plot(result, a.plot, a.overwrite)
        print(f"wrote {a.plot}")
    return rc
