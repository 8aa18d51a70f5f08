"""Bench output: the console table, the JSON file and the PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import io
import json
import os

STAGES = ("preprocess", "h2d", "encode", "mix", "decode", "d2h", "postprocess")


def _f(v, fmt="{:.1f}", none="-"):
    return none if v is None else fmt.format(v)


def table(result: dict) -> str:
    """The console report: header, one line per configuration, the per-stage medians, warnings."""
    s = result["settings"]
    env = result["environment"]
    v = env["versions"]
    lines = [
        f"bench: batch {s['batch']}, {s['size']}x{s['size']}, {s['threads']} thread(s), inputs: {s['inputs']}",
        f"machine: {env['cpu']['model']} ({env['cpu']['cores']} cores; {' '.join(env['cpu']['flags'])})"
        + (f", GPU {env['gpu']['name']}" if env.get("gpu") else ", no GPU"),
        f"versions: torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, onnx {v.get('onnx')}, tensorrt {v.get('tensorrt')}; "
        f"git {str(env.get('git_commit'))[:10]}{' (dirty)' if env.get('git_dirty') else ''}",
        f"model: {result['model']['work_per_image']['flops'] / 1e9:.2f} GFLOP/image; machine peaks (this run): "
        f"fp32 matmul {result['peak']['peak_gflops']:.1f} GFLOP/s, int8 GEMM {result['peak'].get('int8_peak_gops') or 0:.0f} GOP/s, "
        f"bf16 {_bf16(result['peak'])} (%peak is against the higher of the row's own precision's peak and fp32's); statistics over >= {s['min_iters']} iterations and >= {s['min_time_s']:g} s, "
        f"warm-up {s['warmup_s']:g} s excluded, {s['order']}",
        "",
    ]
    hdr = ("configuration", "img/s", "x eager", "p50 ms", "p90 ms", "p99 ms", "max ms", "CV%", "n", "PSNR dB", "max abs", "GFLOP/s", "%peak", "load s", "1st s")
    rows = [hdr]
    notes = []
    for r in result["results"]:
        if r["status"] != "measured":
            rows.append((r["name"], *["-"] * (len(hdr) - 1)))
            notes.append(f"  {r['name']}: {r['note']}")
            continue
        t, lat, acc, eff, cs = r["throughput"], r["latency"], r["accuracy"], r["efficiency"], r["cold_start"]
        psnr = acc["psnr_db"]
        rows.append((
            r["name"], f"{t['images_per_s']:.2f}", _f(t["ratio_vs_baseline"], "{:.2f}x"), f"{lat['median_ms']:.0f}",
            f"{lat['p90_ms']:.0f}", f"{lat['p99_ms']:.0f}", f"{lat['max_ms']:.0f}", f"{lat['cv_pct']:.1f}", str(r["iterations"]),
            ("exact" if psnr is not None and psnr >= 999 else _f(psnr)) + ("" if acc["passed"] else " FAIL"), f"{acc['max_abs']:.1e}",
            f"{eff['gflops']:.1f}", _f(eff["fraction_of_peak"] and 100 * eff["fraction_of_peak"], "{:.0f}%"),
            f"{cs['load_s']:.2f}", f"{cs['first_inference_s']:.2f}",
        ))
        if r["note"]:
            notes.append(f"  {r['name']}: {r['note']}")
    lines += _grid(rows)
    if notes:
        lines += ["", "notes:", *notes]
    # Per-stage medians (host clock; device clock in brackets on CUDA).
    srows = [("stage median ms", *STAGES)]
    for r in result["results"]:
        if r["status"] != "measured":
            continue
        cells = []
        for st in STAGES:
            d = r["stages"].get(st)
            if d is None:
                cells.append("-")
                continue
            c = f"{d['host']['median_ms']:.2f}"
            if d.get("device"):
                c += f" [{d['device']['median_ms']:.2f}]"
            cells.append(c)
        srows.append((r["name"], *cells))
    lines += ["", *_grid(srows)]
    tg = result.get("target") or {}
    if tg.get("best"):
        lines += ["", f"target (>= {tg['ratio_needed']:g}x eager FP32 and faster than torch.compile, accuracy gate passed): "
                      f"best {tg['best']} at {_f(tg['ratio_vs_baseline'], '{:.2f}x')}; beats torch.compile: "
                      f"{tg['beats_torch_compile']} ({tg['torch_compile_status']}) -> {'MET' if tg['met'] else 'NOT MET'}"]
    if result.get("warnings"):
        lines += ["", "warnings:", *[f"  - {w}" for w in result["warnings"]]]
    if result.get("sweep"):
        lines += ["", *_grid([("sweep", "batch", "img/s", "p50 ms", "CV%")] + [
            (p["name"], str(p["batch"]), f"{p['images_per_s']:.2f}", f"{p['latency_median_ms']:.0f}", f"{p['cv_pct']:.1f}") for p in result["sweep"]])]
    if result.get("compare"):
        c = result["compare"]
        lines += ["", f"compare against {c.get('baseline_file')}: max regression {100 * c['max_regression']:.0f}%, "
                      f"max PSNR drop {c['max_psnr_drop_db']:g} dB -> {'PASSED' if c['passed'] else 'FAILED'}"]
        for k in c["checks"]:
            lines.append(f"  {k['name']}: {k['metric']} {k['old']:.3g} -> {k['new']:.3g} ({100 * k['change']:+.1f}%)"
                         f"{'' if k['speed_ok'] else ' SLOWER'}{'' if k['accuracy_ok'] else ' LESS ACCURATE'}")
    return "\n".join(lines)


def _grid(rows) -> list[str]:
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for j, r in enumerate(rows):
        out.append("  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r)))
        if j == 0:
            out.append("  ".join("-" * x for x in w))
    return out


def write_json(result: dict, path: str | os.PathLike, overwrite: bool = False) -> None:
    """The result as JSON, under the project's rule for outputs (engine/outputs.py): created
    whole and exclusively; an existing file is replaced only with `overwrite`."""
    from stylert.engine.outputs import write_output

    write_output(path, json.dumps(result, indent=2, default=_jsonable).encode(), overwrite, option="--json")


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def plot(result: dict, path: str | os.PathLike, overwrite: bool = False) -> None:
    """images/s per configuration (ratio to the baseline on each bar) and the per-stage
    breakdown of the median iteration; a third panel with the sweep when there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["results"] if r["status"] == "measured"]
    sweep = result.get("sweep")
    fig, axes = plt.subplots(1, 3 if sweep else 2, figsize=(17 if sweep else 12, max(3.0, 0.55 * len(rows) + 1.8)))
    names = [r["name"] for r in rows]
    ax = axes[0]
    ips = [r["throughput"]["images_per_s"] for r in rows]
    colors = ["tab:gray" if r["configuration"]["peer"] else ("tab:blue" if r["accuracy"]["passed"] else "tab:red") for r in rows]
    ax.barh(names, ips, color=colors)
    for i, r in enumerate(rows):
        ratio = r["throughput"]["ratio_vs_baseline"]
        ax.text(ips[i], i, f" {ips[i]:.1f}" + (f" ({ratio:.2f}x)" if ratio else ""), va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("images/s (higher is better)")
    s = result["settings"]
    ax.set_title(f"batch {s['batch']}, {s['size']}x{s['size']}, {s['threads']} threads\ngray: peers, blue: StyleRT (accuracy gate passed), red: failed gate", fontsize=9)
    ax.set_xlim(0, max(ips + [1e-9]) * 1.35)
    ax = axes[1]
    left = [0.0] * len(rows)
    cmap = plt.get_cmap("tab10")
    for k, st in enumerate(STAGES):
        vals = [(r["stages"].get(st) or {}).get("host", {}).get("median_ms", 0.0) for r in rows]
        ax.barh(names, vals, left=left, label=st, color=cmap(k))
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_yticklabels([])
    ax.set_xlabel("median ms per batch, by stage")
    ax.legend(fontsize=7, loc="lower right")
    if sweep:
        ax = axes[2]
        for name in dict.fromkeys(p["name"] for p in sweep):
            pts = [p for p in sweep if p["name"] == name]
            ax.plot([p["latency_median_ms"] for p in pts], [p["images_per_s"] for p in pts], "o-", label=name)
            for p in pts:
                ax.annotate(str(p["batch"]), (p["latency_median_ms"], p["images_per_s"]), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("median latency per batch, ms (log)")
        ax.set_ylabel("images/s")
        ax.set_title("throughput against latency (labels: batch size)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from stylert.engine.outputs import write_output

    write_output(path, buf.getvalue(), overwrite, option="--plot")


def _bf16(peak: dict) -> str:  # measured only on CPUs with native bf16 (bench/flops.py)
    v = peak.get("bf16_peak_gflops")
    return f"{v:.0f} GFLOP/s" if v else "not native here (bf16 rows run float32 kernels)"
