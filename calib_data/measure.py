"""Measurements behind calib_data/README.md (run from the project root).

    python calib_data/measure.py sets  EXPORT_DIR PHOTOS_DIR [--methods minmax entropy]
        INT8 accuracy on real photographs for each calibration set: the generated kinds,
        and real photographs (every other photo of PHOTOS_DIR; the rest is the test set
        for every row, so no row is scored on its own calibration images).
    python calib_data/measure.py speed EXPORT_DIR ENGINE_DIR [--batch 16 --reps 5]
        FP32 vs the engine's models, encoder+decoder at batch N, 256x256, interleaved
        (A B A B ...), median and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stylert.engine import precision as P
from stylert.engine.compare import compare
from stylert.engine.images import list_images

HERE = Path(__file__).resolve().parent


def int8_psnr(export: Path, calib: np.ndarray, test: np.ndarray, method: str, tmp: Path) -> tuple[float, float]:
    """(stylized PSNR dB, latent max |err|) of the INT8 CPU models against FP32 on `test`
    (each image stylized with the next one's code, as build-engine's gate does)."""
    from stylert.engine.artifacts import contract_of
    from stylert.engine.build.stage import _run_pair, decoder_calibration

    c = contract_of(export)
    enc, dec = export / "encoder.onnx", export / "decoder.onnx"
    ref_e, ref_d = P.session(enc), P.session(dec)
    zr, ir = _run_pair(ref_e, ref_d, test, c, calib)
    feeds = {"encoder": {c.image.name: calib}, "decoder": decoder_calibration(ref_e, calib, c)}
    for name, src in (("encoder", enc), ("decoder", dec)):
        P.quantize_int8(src, tmp / f"{name}.onnx", feeds[name], method=method)
        P.fold_relu_uint8(tmp / f"{name}.onnx", tmp / f"{name}.cpu.onnx")
    z, img = _run_pair(P.session(tmp / "encoder.cpu.onnx"), P.session(tmp / "decoder.cpu.onnx"), test, c, calib)
    return compare(img, ir).psnr_db, compare(z, zr, peak=None).max_abs


def cmd_sets(a) -> None:
    from generate import make  # noqa: E402  (this folder's generator)

    photos = list_images(a.photos)
    test, real = photos[1::2], photos[0::2]
    x_test = P.load_batch(test)
    sets = {}
    with tempfile.TemporaryDirectory() as td:
        for kind in ("deadleaves", "pinknoise", "mixed"):
            d = Path(td) / kind
            d.mkdir()
            for i in range(a.count):
                make(kind, i, 256).save(d / f"{i:03d}.png")
            sets[f"generated {kind} ({a.count})"] = P.load_batch(list_images(d))
        sets[f"photographs ({len(real)}, disjoint from the test photos)"] = P.load_batch(real)
        if a.extra_dir:
            ex = list_images(a.extra_dir)[: a.count]
            sets[f"{Path(a.extra_dir).name} ({len(ex)})"] = P.load_batch(ex)
        print(f"test set: {len(test)} photographs of {a.photos} at 256x256; model {a.export}")
        print(f"{'calibration set':<55} {'method':<11} {'decoded PSNR':>12} {'latent max|err|':>16}")
        for label, x in sets.items():
            for m in a.methods:
                psnr, lat = int8_psnr(Path(a.export), x, x_test, m, Path(td))
                print(f"{label:<55} {m:<11} {psnr:>9.2f} dB {lat:>16.4f}", flush=True)


def cmd_speed(a) -> None:
    import json

    man = json.loads((Path(a.engine) / "engine.json").read_text())
    conf = {
        "fp32": [P.session(Path(a.export) / f"{r}.onnx", threads=a.threads) for r in ("encoder", "decoder")],
        man["precision"]: [P.session(Path(a.engine) / man["files"][r]["path"], threads=a.threads, level="disable") for r in ("encoder", "decoder")],
    }
    x = np.random.default_rng(0).random((a.batch, 3, 256, 256), dtype=np.float32)

    def once(e, d):
        z, code = e.run(None, {e.get_inputs()[0].name: x})
        return d.run(None, {d.get_inputs()[0].name: z, d.get_inputs()[1].name: code})[0]

    for e, d in conf.values():  # warm-up, outside the statistics
        once(e, d)
    t = {k: [] for k in conf}
    for _ in range(a.reps):
        for k, (e, d) in conf.items():
            t0 = time.perf_counter()
            once(e, d)
            t[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in t.items()}
    for k, v in t.items():
        print(f"{k:>5}: median {med[k]:.3f} s per batch of {a.batch} ({a.batch / med[k]:.1f} img/s), runs {np.round(v, 3).tolist()}")
    k = man["precision"]
    print(f"{k} speed-up over fp32: {med['fp32'] / med[k]:.2f}x (batch {a.batch}, 256x256, encoder+decoder, {a.reps} interleaved runs)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sets")
    s.add_argument("export")
    s.add_argument("photos")
    s.add_argument("--count", type=int, default=32)
    s.add_argument("--methods", nargs="+", default=["minmax"])
    s.add_argument("--extra-dir", default=None, help="another folder of real images to calibrate on")
    s.set_defaults(func=cmd_sets)
    p = sub.add_parser("speed")
    p.add_argument("export")
    p.add_argument("engine")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=cmd_speed)
    a = ap.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
