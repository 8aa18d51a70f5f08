"""One command for a lent GPU machine: every check that needs CUDA, and the GPU bench rows,
with the figures written to one JSON file.

    python -m stylert.bench.gpu_check --out gpu-check.json

Runs (1) the tests marked `gpu` and `tensorrt` (the mixing kernels against NumPy, torch on
CUDA with FP16, channels_last and CUDA graphs, ONNX Runtime's CUDA provider with the
device-resident encode -> mix -> decode path, TensorRT plans where a flavour runs on this
GPU), with their outcome per test; (2) `stylert bench` at batch 16 with every configuration
this machine has (the CUDA rows appear only here). What it cannot check anywhere but on the
GPU model in question: TensorRT-RTX plans need compute capability 8.0-8.9 or 12.x, so on an
H100/H200 (9.0) only the datacenter flavour's rows run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path


def run_tests(root: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d) / "junit.xml"
        t0 = time.time()
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "gpu or tensorrt", "-rs", f"--junitxml={xml}",
                              str(root / "tests")], cwd=root)
        cases = []
        if xml.is_file():
            for c in ET.parse(xml).iter("testcase"):
                status = "skipped" if c.find("skipped") is not None else "failed" if (
                    c.find("failure") is not None or c.find("error") is not None) else "passed"
                reason = next((e.get("message", "") for e in c if e.tag in ("skipped", "failure", "error")), "")
                cases.append({"test": f"{c.get('classname')}::{c.get('name')}", "status": status, "seconds": float(c.get("time", 0)),
                              "reason": reason[:500]})
    return {"exit_code": rc, "seconds": round(time.time() - t0, 1), "cases": cases}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu-check.json", help="where the figures go (default: %(default)s)")
    ap.add_argument("--no-bench", action="store_true", help="tests only")
    ap.add_argument("--overwrite", action="store_true", help="let --out replace an existing file")
    a = ap.parse_args(argv)
    from stylert.engine.outputs import check_before_run

    check_before_run(ap, a.out, a.overwrite, "--out")
    from stylert.engine.cuda_mix import cuda_device_count

    root = Path(__file__).resolve().parent.parent
    result = {"gpus": cuda_device_count()}
    if not result["gpus"]:
        print("no CUDA GPU here: nothing to check (the GPU tests skip, the CUDA bench rows do not appear)", file=sys.stderr)
    result["tests"] = run_tests(root)
    if not a.no_bench:
        from .suite import BenchOptions, run_bench

        result["bench"] = run_bench(BenchOptions(batch=16, configs=["all"]))
    from stylert.engine.outputs import write_output

    write_output(a.out, json.dumps(result, indent=2, default=str).encode(), a.overwrite, option="--out")
    print(f"wrote {a.out}: tests exit code {result['tests']['exit_code']}")
    return 0 if result["tests"]["exit_code"] in (0, 5) else 1  # 5: every test deselected or skipped


if __name__ == "__main__":
    raise SystemExit(main())
