"""Precision-specific ONNX models: FP16 by conversion, INT8 by static Q/DQ quantization.

TensorRT 10.12+/11 takes precision from the ONNX file, not from builder flags
(../shared/notes/tensorrt.md), so this module makes the one artifact both backends run:
ONNX Runtime on any CPU, TensorRT (strongly typed) on an NVIDIA GPU.

- FP16: onnxconverter-common's converter, float32 inputs and outputs kept; any node whose
  FP32 activations on the calibration images come near the float16 limit stays in float32.
- INT8: `onnxruntime.quantization.quantize_static`, QDQ format, symmetric int8 activations
  and weights, per-channel weights. Every zero-point is 0 (int8): the only form TensorRT's
  ONNX parser accepts. `check_qdq_symmetric` verifies that on the written file.

onnx / onnxruntime.quantization are imported inside the functions (the runtime never needs them).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import StyleRTError

FP16_MAX = 65504.0
# A node stays in float32 when its FP32 activations reach this fraction of the float16
# limit on the calibration images: photographs outside the calibration set may go higher.
FP16_HEADROOM = 0.25
CALIB_METHODS = ("minmax", "entropy", "percentile")
# A decoder conv whose worst held-out input (a style its ranges were not fitted on, at 1.5x
# strength) loses more than this alone is range-limited: it clips on paintings beyond the
# calibration's and stays float. Measured on the shipped model: the residual blocks' convs
# (worst 34-45 dB here) cost 23-33 dB worst on Kodak x held-out paintings, the upsampling
# convs (48 dB here) 35-40 dB (calib_data/README.md).
INT8_LAYER_WORST_DB = 47.5
# ONNX Runtime's int8 kernels also round a conv's output (QLinearConv): kept where that alone
# costs the worst held-out input less than this (shipped model: up.0 46.3 dB -> Kodak x
# held-out paintings 41.4 / 37.4 dB; up.1 37.5 dB here cost 6 dB there, so it runs DQ -> Conv).
ORT_OUTPUT_WORST_DB = 45.0


# ----------------------------------------------------------------------------- images
def load_batch(paths: Sequence[str | os.PathLike], size: int = 256) -> np.ndarray:
    """Images -> (N, 3, size, size) float32 in [0, 1]: the shorter side scaled to `size`,
    then centre-cropped (so every photograph is seen whole in one direction)."""
    from ..images import center_crop, load_image, to_array

    out = np.empty((len(paths), 3, size, size), np.float32)
    for i, p in enumerate(paths):
        out[i] = to_array(center_crop(load_image(p), size, size))
    return out


Feeds = dict  # {input name: (N, ...) float32 array}, every array with the same N


class CalibFeeds(dict):
    """Calibration feeds whose last `holdout` inputs share no image and no style code with
    the others (stage.decoder_calibration): the sensitivity pass measures there."""

    holdout: int = 0


def feeds_len(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))


def feeds_slice(feeds: Feeds, i: int, j: int) -> Feeds:
    return {k: v[i:j] for k, v in feeds.items()}


class ArrayReader:
    """An onnxruntime.quantization CalibrationDataReader over in-memory inputs:
    yields {name: x[i:i+batch]} for every input until exhausted; `rewind` starts over."""

    def __init__(self, feeds: Feeds, batch: int = 4):
        self.feeds = {k: np.ascontiguousarray(v, np.float32) for k, v in feeds.items()}
        self.n, self.batch, self.i = feeds_len(self.feeds), batch, 0

    def get_next(self) -> dict | None:
        if self.i >= self.n:
            return None
        feed = feeds_slice(self.feeds, self.i, self.i + self.batch)
        self.i += self.batch
        return feed

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return -(-self.n // self.batch)


# ----------------------------------------------------------------------------- sessions
def session(path: str | os.PathLike | bytes, threads: int = 0, level: str = "all", optimized_path: str | os.PathLike | None = None):
    """A CPU InferenceSession (backends/onnxrt/session.py). level: "disable" | "basic" |
    "extended" | "all"."""
    from ..backends.onnxrt.session import make_session

    return make_session(path, threads, level, optimized_path)


def run_batched(sess, feeds: Feeds, batch: int = 8) -> list[np.ndarray]:
    """Run a session over its inputs in batches of `batch`; every output, concatenated."""
    n = feeds_len(feeds)
    parts = [sess.run(None, feeds_slice(feeds, i, i + batch)) for i in range(0, n, batch)]
    return [np.concatenate(p) for p in zip(*parts)]


def activation_ranges(model_path: str | os.PathLike, feeds: Feeds, batch: int = 4) -> dict[str, float]:
    """Max |value| of every float tensor a node produces, over the inputs (FP32 model).
    Keys are node names."""
    import onnx

    model = onnx.load(os.fspath(model_path))
    graph = model.graph
    have = {o.name for o in graph.output}
    producer = {}
    for node in graph.node:
        for o in node.output:
            producer[o] = node.name
            if o not in have:
                graph.output.append(onnx.ValueInfoProto(name=o))
    sess = session(model.SerializeToString(), level="disable")
    names = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}
    for i in range(0, feeds_len(feeds), batch):
        for n, v in zip(names, sess.run(None, feeds_slice(feeds, i, i + batch))):
            if n in producer and v.dtype.kind == "f":
                peak[producer[n]] = max(peak.get(producer[n], 0.0), float(np.abs(v).max(initial=0.0)))
    return peak


# ----------------------------------------------------------------------------- FP16
def only_feeding(model, outputs: Iterable[str]) -> set[str]:
    """Names of the nodes that compute `outputs` and nothing else of the graph's outputs
    (e.g. the encoder's style statistics, not its latent)."""
    prod = {o: n for n in model.graph.node for o in n.output}

    def ancestors(names) -> set[str]:
        seen, stack = set(), list(names)
        while stack:
            n = prod.get(stack.pop())
            if n is not None and n.name not in seen:
                seen.add(n.name)
                stack += list(n.input)
        return seen

    outputs = set(outputs)
    return ancestors(outputs) - ancestors(o.name for o in model.graph.output if o.name not in outputs)


def _float32_after_kept(model, keep: set[str]) -> None:
    """Repair what onnxconverter-common does around float32 nodes that feed a graph output:
    it casts their results to float16 and declares the output float16 (against
    keep_io_types). A Cast to float16 right after a kept node whose consumers are all kept
    nodes, Casts to float32 or graph outputs becomes a Cast to float32 (a no-op), and the
    graph outputs it writes are declared float32 again."""
    import onnx

    prod = {o: n for n in model.graph.node for o in n.output}
    cons: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    outputs = {o.name: o for o in model.graph.output}
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16

    def to(n) -> int:
        return next(a.i for a in n.attribute if a.name == "to")

    fixed = set()
    for n in model.graph.node:
        if n.op_type != "Cast" or to(n) != F16 or getattr(prod.get(n.input[0]), "name", None) not in keep:
            continue
        users = cons.get(n.output[0], [])
        if all(u.name in keep or (u.op_type == "Cast" and to(u) == F32) for u in users):
            next(a for a in n.attribute if a.name == "to").i = F32
            fixed.add(n.output[0])
    for name in fixed:
        if name in outputs:
            outputs[name].type.tensor_type.elem_type = F32
    keep_vi = [v for v in model.graph.value_info if v.name not in fixed]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep_vi)


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, calib: Feeds, log: Callable = print,
                 float_outputs: Iterable[str] = ()) -> dict:
    """Write an FP16 copy of the FP32 model `src` to `dst`: float32 I/O, float16 inside,
    except nodes whose FP32 activations on `calib` (the model's inputs) exceed
    FP16_HEADROOM x 65504, and the nodes that only compute `float_outputs` (statistics: a
    variance summed in float16 loses its low digits, and the converter breaks the
    ReduceMean chains it feeds into a graph output). Returns {"fp32_nodes": [...],
    "peak_activation": float}."""
    import onnx
    from onnxconverter_common import float16

    peaks = activation_ranges(src, calib)
    limit = FP16_HEADROOM * FP16_MAX
    keep = sorted(n for n, v in peaks.items() if v > limit)
    if keep:
        log(f"  fp16: {len(keep)} node(s) reach > {limit:.0f} on the calibration images, kept in float32: {keep}")
    # The converter's default block list keeps Resize in float32 (with Casts around it):
    # converting it also turns its float32-only `scales` input into float16, an invalid model.
    block = float16.DEFAULT_OP_BLOCK_LIST
    model = onnx.load(os.fspath(src))
    keep = sorted(set(keep) | only_feeding(model, float_outputs))
    with warnings.catch_warnings():  # "float32 number 1e-9 will be truncated": by design
        warnings.simplefilter("ignore", UserWarning)
        if set(keep) >= {n.name for n in model.graph.node}:
            fp16 = model  # every node stays float32: nothing to convert
        else:
            fp16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block, node_block_list=keep)
            _float32_after_kept(fp16, set(keep))
    _save(fp16, dst)
    out = run_batched(session(dst, level="basic"), calib, batch=4)
    if not all(np.all(np.isfinite(o)) for o in out):
        raise StyleRTError(
            "the FP16 model produced inf/NaN on the calibration images (float16 overflow).",
            "Build FP32 or INT8 instead, or report the model: its activations exceed float16's range.",
            path=dst,
        )
    return {"fp32_nodes": keep, "peak_activation": max(peaks.values(), default=0.0)}


# ----------------------------------------------------------------------------- INT8
# ----------------------------------------------------------------------------- converters
# The precision table (engine/precisions.py) names one of these per precision; build-engine
# calls it for each model: (src, dst, calibration feeds, role, BuildConfig, contract, log) ->
# the settings recorded in the manifest.
def as_fp32(src, dst, calib: Feeds, role: str, cfg, contract, log: Callable = print) -> dict:
    import shutil

    shutil.copyfile(src, dst)
    return {}


def as_fp16(src, dst, calib: Feeds, role: str, cfg, contract, log: Callable = print) -> dict:
    return convert_fp16(src, dst, calib, log=log, float_outputs=[contract.style.name])


def as_int8(src, dst, calib: Feeds, role: str, cfg, contract, log: Callable = print) -> dict:
    """INT8 models, measured on the shipped model (calib_data/README.md): the encoder stays
    float, the decoder's convolutions go int8 where a per-layer sensitivity pass says they
    can (`select_int8_convs`), in the shared Q/DQ form (`quantize_int8(..., conv_outputs=False)`)."""
    import shutil
    import time

    if role == "encoder":
        # Every encoder layer feeds the style code's statistics (the decoder's FiLM input):
        # an int8 encoder cost the shipped model 8 dB on real paintings (32.6 dB mean, 20.2 dB
        # worst against 39-40 / 33 with it in float), and still 10 dB with 7-bit weights on a
        # CPU whose int8 kernels would otherwise saturate (31.4 / 18.3 against 41.7 / 36.4);
        # it is 14 % of the model's work.
        shutil.copyfile(src, dst)
        log(f"  {role}: kept in float (its every layer feeds the style code's statistics)")
        return {"format": "float", "kept_in_float": "the whole encoder",
                "why": "int8 activations shift the style statistics the decoder's modulations read"}
    log(f"  {role}: calibrating on {feeds_len(calib)} inputs ({cfg.calib_method}) ...")
    t = time.time()
    never = latent_facing_convs(src, role) + sorted(style_path_nodes(src, contract.style.name))
    scales = activation_scales(src, calib, cfg.calib_method)
    sens = select_int8_convs(src, calib, scales, never, cfg.int8_budget_db, cfg.calib_method, log=log)
    settings = quantize_int8(src, dst, calib, method=cfg.calib_method, op_types=["Conv"],
                             exclude_nodes=[n for n in conv_nodes(src) if n not in sens["quantized"]] + never,
                             scales=scales, conv_outputs=False)
    settings["sensitivity"] = sens
    # the output Q/DQ pairs ONNX Runtime's CPU form puts back: only where the pass found them cheap
    ort = {c for c in sens["onnxruntime_int8_kernels"]}
    settings["ort_output_scales"] = {t: v for t, v in settings.get("ort_output_scales", {}).items()
                                     if any(t in o for o in _conv_outputs(src, ort))}
    log(f"  {role}: quantized in {time.time() - t:.1f} s: {count_qdq(dst)}")
    return settings


# The converter of each precision of engine/precisions.py: (src, dst, calib feeds, role,
# BuildConfig, contract, log) -> settings. BF16 is the FP32 files, computed in bfloat16 by OpenVINO.
CONVERTERS = {"fp32": as_fp32, "fp16": as_fp16, "bf16": as_fp32, "int8": as_int8}


# ----------------------------------------------------------------------------- sensitivity
def _conv_outputs(path: str | os.PathLike, names: set[str]) -> list[list[str]]:
    import onnx

    return [list(n.output) for n in onnx.load(os.fspath(path)).graph.node if n.name in names]


def conv_nodes(path: str | os.PathLike) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(os.fspath(path)).graph.node if n.op_type == "Conv"]


def conv_macs(path: str | os.PathLike, feeds: Feeds) -> dict[str, float]:
    """Multiply-accumulates of every Conv for one input of `feeds`' shape (shape inference)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(os.fspath(path))
    for i in model.graph.input:
        if i.name in feeds:
            for d, n in zip(i.type.tensor_type.shape.dim, (1, *feeds[i.name].shape[1:])):
                d.Clear()
                d.dim_value = int(n)
    model = shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*model.graph.value_info, *model.graph.output)}
    w = {t.name: list(t.dims) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "Conv" and n.input[1] in w and n.output[0] in dims:
            out[n.name] = float(np.prod(dims[n.output[0]])) * float(np.prod(w[n.input[1]][1:]))
    return out


def select_int8_convs(src: str | os.PathLike, calib: Feeds, scales: dict, never: Sequence[str], budget_db: float,
                      method: str = "percentile", log: Callable = print) -> dict:
    """The per-layer sensitivity report and the mixed-precision choice it makes.

    Each candidate Conv (every Conv not in `never`) is quantized alone (int8 input and
    weights, float output: the shared Q/DQ form) with ranges (`method`) fitted on all but
    the held-out calibration inputs (`CalibFeeds.holdout`), and run on the held-out ones
    with a style offset: styles whose ranges it never saw, as users' paintings are (on the
    inputs its ranges were fitted on, a layer never clips and every layer looked cheap:
    measured). Its cost is the output's mean squared error
    against FP32, also given as PSNR (peak 1: dB). Convs are then taken in order of work
    saved per error (MACs / MSE) while the summed MSE stays within `budget_db` (the errors
    of different layers add up, roughly), skipping any whose worst input loses more than
    INT8_LAYER_WORST_DB alone (it clips); the rest stay float. Finally each chosen Conv is
    left out of the chosen set in turn (what keeping it float would win), and the whole
    choice is measured. Returns {"rows": [...], "quantized": [...], "kept_in_float": [...],
    "estimate_db", "measured_db", "measured_worst_db", "int8_share_of_macs", ...}."""
    from ..compare import psnr_per_image

    n = feeds_len(calib)
    held = int(getattr(calib, "holdout", 0) or 0)
    if 0 < held < n:  # ranges fitted without the held-out styles: clipping shows
        scales = activation_scales(src, feeds_slice(calib, 0, n - held), method)
        pick, where = np.arange(n - held, n), f"{held} held-out calibration inputs (images and styles the ranges were not fitted on)"
    else:
        pick, where = np.arange(n), f"{n} calibration inputs"
    style_name = next((k for k in calib if calib[k].ndim == 2), None)
    if style_name is not None:
        moved = pick[np.abs(calib[style_name][pick]).reshape(len(pick), -1).max(1) > 0]
        pick = moved if len(moved) else pick
    pick = pick[:: max(1, len(pick) // 16)][:16]  # at most 16 inputs: seconds per layer
    feeds = {k: v[pick] for k, v in calib.items()}
    ref = run_batched(session(src, level="basic"), feeds, 4)[0]
    macs = conv_macs(src, feeds)
    total = sum(macs.values()) or 1.0
    cands = [n for n in conv_nodes(src) if n not in set(never)]

    def measure(quantized: Sequence[str], outputs: bool = False) -> tuple[float, float, float]:
        import tempfile

        with tempfile.TemporaryDirectory() as td:
            q = Path(td) / "q.onnx"
            quantize_int8(src, q, feeds, op_types=["Conv"], scales=scales, conv_outputs=outputs, check=False,
                          exclude_nodes=[n for n in conv_nodes(src) if n not in quantized] + list(never))
            out = run_batched(session(q, level="basic"), feeds, 4)[0]
        mse = float(np.mean((out.astype(np.float64) - ref) ** 2))
        return mse, float(np.mean(psnr_per_image(out, ref))), float(np.min(psnr_per_image(out, ref)))

    rows = []
    for n in cands:
        mse, mean_db, worst_db = measure([n])
        rows.append({"node": n, "macs_share": macs.get(n, 0.0) / total, "alone_mse": mse,
                     "alone_db": mean_db, "alone_worst_db": worst_db})
    budget = 10.0 ** (-budget_db / 10.0)
    chosen, spent = [], 0.0
    for r in sorted(rows, key=lambda r: -r["macs_share"] / max(r["alone_mse"], 1e-12)):
        if r["alone_worst_db"] >= INT8_LAYER_WORST_DB and spent + r["alone_mse"] <= budget:
            chosen.append(r["node"])
            spent += r["alone_mse"]
    whole = measure(chosen) if chosen else (0.0, 999.0, 999.0)
    for r in rows:
        r["int8"] = r["node"] in chosen
        if r["int8"] and len(chosen) > 1:
            mse, mean_db, _ = measure([c for c in chosen if c != r["node"]])
            r["left_out_db"] = mean_db  # the whole choice with this layer kept float
        if r["int8"]:
            # ONNX Runtime's int8 kernels also round the output: worth it only where that is cheap
            _, r["ort_output_db"], r["ort_output_worst_db"] = measure([r["node"]], outputs=True)
        r["float_cost_macs_share"] = 0.0 if r["int8"] else r["macs_share"]
    rows.sort(key=lambda r: -r["alone_mse"])
    share = sum(macs.get(c, 0.0) for c in chosen) / total
    ort_out = [r["node"] for r in rows if r.get("ort_output_worst_db", 0.0) >= ORT_OUTPUT_WORST_DB]
    rep = {"measured_on": f"{len(pick)} strength-1 inputs of the {where}, decoder output vs FP32",
           "budget_db": budget_db, "rows": rows, "quantized": [c for c in cands if c in chosen],
           "kept_in_float": [c for c in conv_nodes(src) if c not in chosen],
           "onnxruntime_int8_kernels": [c for c in cands if c in ort_out],
           "estimate_db": float(10 * np.log10(1.0 / spent)) if spent > 0 else None,
           "measured_db": whole[1], "measured_worst_db": whole[2], "int8_share_of_macs": share}
    for line in format_sensitivity(rep):
        log("  " + line)
    return rep


def format_sensitivity(rep: dict, top: int | None = None) -> list[str]:
    """The sensitivity report as text lines (build-engine prints them)."""
    lines = [f"per-layer INT8 sensitivity ({rep['measured_on']}; dB = PSNR of the output, higher is better):",
             f"  {'conv':<18} {'MACs':>6} {'alone dB':>9} {'worst':>6} {'left out':>9} {'ORT out':>8}  choice"]
    for r in rep["rows"][:top]:
        lo = f"{r['left_out_db']:9.2f}" if "left_out_db" in r else " " * 9
        ort = f"{r['ort_output_worst_db']:8.2f}" if "ort_output_worst_db" in r else " " * 8
        lines.append(f"  {r['node']:<18} {100 * r['macs_share']:5.1f}% {r['alone_db']:9.2f} {r['alone_worst_db']:6.2f} {lo} {ort}  "
                     + ("int8" if r["int8"] else f"float (worst < {INT8_LAYER_WORST_DB:g} dB: clips)"
                        if r["alone_worst_db"] < INT8_LAYER_WORST_DB else "float (over the budget)"))
    lines.append(f"  ONNX Runtime's form rounds the outputs of {', '.join(rep['onnxruntime_int8_kernels']) or 'none'} "
                 "(its int8 kernels; elsewhere DQ -> float Conv, as OpenVINO and TensorRT run every one)")
    lines.append(f"  int8: {', '.join(rep['quantized']) or 'none'} ({100 * rep['int8_share_of_macs']:.0f}% of the decoder's MACs; "
                 f"the {100 - 100 * rep['int8_share_of_macs']:.0f}% left in float is the speed the choice costs); "
                 f"measured together {rep['measured_db']:.2f} dB (worst {rep['measured_worst_db']:.2f}), "
                 f"budget {rep['budget_db']:g} dB")
    return lines


def style_path_nodes(path: str | os.PathLike, style: str) -> set[str]:
    """The nodes of the style code's path, kept in float in INT8 models: in the encoder, the
    statistics that only feed the `style` output; in the decoder, the style head (the nodes
    that depend on the `style` input alone) and the modulations that apply its output to
    the image path (the gates, scales and shifts). A few hundred numbers per image: float
    costs nothing measurable, while int8 ranges calibrated on some styles clip others
    (measured on the first style decoder: the decoder's stylized PSNR vs FP32 27.5 dB with
    everything int8 but the latent-facing conv, 29.9 dB with this path in float)."""
    import onnx

    model = onnx.load(os.fspath(path))
    if any(o.name == style for o in model.graph.output):
        return only_feeding(model, [style])
    if not any(i.name == style for i in model.graph.input):
        return set()
    cons: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def descendants(names) -> set[str]:
        seen, stack = set(), list(names)
        while stack:
            for n in cons.get(stack.pop(), []):
                if n.name not in seen:
                    seen.add(n.name)
                    stack += list(n.output)
        return seen

    others = [i.name for i in model.graph.input if i.name != style]
    head = descendants([style]) - descendants(others)
    head_out = {o for n in model.graph.node if n.name in head for o in n.output}
    mods = {n.name for n in model.graph.node if n.name not in head and any(i in head_out for i in n.input)}
    return head | mods


def latent_facing_convs(path: str | os.PathLike, role: str) -> list[str]:
    """The convolution that writes the latent (encoder) or reads it (decoder), kept in float.

    AdaIN divides by the content latent's per-channel std, which amplifies the latent's
    quantization error; both convolutions run at the latent's resolution, so keeping them in
    float costs little. Measured (15 photos x 4 styles, percentile
    calibration): stylized PSNR vs FP32 36.8 dB all-int8 -> 38.2 dB with these two in float.
    """
    import onnx

    convs = [n.name for n in onnx.load(os.fspath(path)).graph.node if n.op_type == "Conv"]
    if not convs:
        return []
    return [convs[-1]] if role == "encoder" else [convs[0]]


def int8_weights_saturate() -> bool:
    """Whether this x86 CPU lacks the VNNI dot product (AVX512_VNNI, AVX_VNNI, AMX), so that
    ONNX Runtime's and OpenVINO's int8 convolutions multiply uint8 activations by int8 weights
    with VPMADDUBSW, whose int16 pair sums saturate. Measured on a 2-core AVX2 AMD EPYC: an
    INT8 build of the test model fell to 19.4 dB against FP32 (OpenVINO) and 24.5 (ONNX Runtime),
    under the 25 dB gate; with 7-bit weights (ONNX Runtime's `reduce_range`, made for this) both
    passed. Weights stay symmetric int8 with zero-point 0, so TensorRT reads the same files."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    return flags is not None and not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags)


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization prints a line per call and logs "consider pre-processing"
    warnings through the root logger for every model it reads (hundreds in a sensitivity
    pass); build-engine's own report says what matters."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def quantize_int8(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calib: Feeds,
    method: str = "minmax",
    exclude_nodes: Iterable[str] = (),
    batch: int = 4,
    op_types: Sequence[str] | None = None,
    scales: dict | None = None,
    conv_outputs: bool = True,
    check: bool = True,
) -> dict:
    """Static INT8 quantization of `src` calibrated on `calib` (the model's inputs):
    QDQ, symmetric int8 activations and weights (all zero-points 0), per-channel weights.

    op_types: the op types quantized (None: every type onnxruntime quantizes). scales:
    fixed activation scales ({tensor: [{"scale", "zero_point"}]}, `activation_scales`;
    None: calibrated here with `method`). conv_outputs=False drops the Q/DQ pair
    onnxruntime puts on every quantized Conv's output: OpenVINO and TensorRT run
    DQ -> Conv with a float output, which spares one rounding of a range the style
    modulates (measured on the shipped model: 7-9 dB); their scales are returned as
    "ort_output_scales" for ONNX Runtime's CPU form (`add_output_qdq`), whose int8 kernels
    need them. Returns the settings used (for the manifest)."""
    if method not in CALIB_METHODS:
        raise StyleRTError(f"unknown calibration method {method!r}.", f"Use one of {', '.join(CALIB_METHODS)}.")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    n = feeds_len(calib)
    # Equal batches: the histogram calibrators stack per-batch outputs and fail on a ragged tail.
    batch = max(b for b in range(1, min(batch, n) + 1) if n % b == 0)
    reader = ArrayReader(calib, batch)
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        # Keep Relu as its own node with Q/DQ around it: with symmetric activations, folding
        # it into the previous Q/DQ pair would let negative values through (no clamp at 0).
        # ORT and TensorRT fuse Conv+Relu themselves.
        "QDQKeepRemovableActivations": True,
        # Biases stay float: TensorRT's parser rejects an int32 DequantizeLinear
        # ("only activation types allowed as input", onnx-tensorrt#850); it folds the bias itself.
        "QuantizeBias": False,
    }
    if scales is None and method in ("entropy", "percentile"):
        # The histogram calibrators are driven here rather than by quantize_static, for two
        # reasons: quantize_static gives the entropy calibrator 128 bins for 128 quantized
        # bins, which leaves nothing to choose (its threshold is the full range: measured
        # identical to minmax), and they keep every intermediate tensor of every image
        # (~130 MB per 256x256 image for the decoder); here they see a few images at a time.
        # The chosen ranges go to quantize_static as fixed scales.
        scales = activation_scales(src, calib, method, batch)
    if scales is not None:
        extra["TensorQuantOverrides"] = scales
        reader = ArrayReader(feeds_slice(calib, 0, batch), batch)  # ranges fixed already
    seven = int8_weights_saturate()
    settings = {
        "format": "QDQ", "activations": "int8 symmetric",
        "weights": "int8 symmetric per-channel" + (", 7-bit (reduce_range: this CPU's int8 kernels would saturate)" if seven else ""),
        "calibration_method": method, "calibration_images": int(n),
        "extra_options": {k: v for k, v in extra.items() if k != "TensorQuantOverrides"},
        "excluded_nodes": sorted(exclude_nodes),
    }
    if op_types is not None:
        settings["op_types"] = list(op_types)
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    with _quiet():
        quantize_static(
            os.fspath(src), os.fspath(tmp), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=seven,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            op_types_to_quantize=list(op_types) if op_types is not None else None,
            nodes_to_exclude=list(exclude_nodes),
            extra_options=extra,
        )
    if not conv_outputs:
        settings["conv_outputs"] = "float (no Q/DQ after a Conv)"
        settings["ort_output_scales"] = drop_conv_output_qdq(tmp, tmp)
    os.replace(tmp, dst)
    bad = check_qdq_symmetric(dst) if check else []
    if bad:
        raise StyleRTError(
            "the quantized model is not symmetric int8: " + "; ".join(bad[:5]) + ".",
            "TensorRT's ONNX parser accepts only int8 Q/DQ with zero-point 0; this is a bug in the build step.",
            path=dst,
        )
    return settings


def activation_scales(src: str | os.PathLike, calib: Feeds, method: str, batch: int = 4,
                      chunk: int = 8, num_bins: int = 512, percentile: float = 99.999) -> dict:
    """{tensor: [{"scale", "zero_point"}]}: symmetric int8 scales of every float tensor of
    `src` from onnxruntime's minmax, entropy (KL) or percentile calibrator, fed `chunk`
    inputs at a time (histograms and ranges merge across calls). num_bins: the entropy
    threshold search grows with its square (2048 bins: minutes on the shipped model; 512:
    seconds)."""
    import tempfile

    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    kind = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    opts = {"symmetric": True} if method == "minmax" else \
        {"symmetric": True, "num_bins": num_bins if method == "entropy" else 2048, "percentile": percentile}
    if method == "entropy":
        opts["num_quantized_bins"] = 128
    n = feeds_len(calib)
    batch = max(b for b in range(1, min(batch, n) + 1) if n % b == 0)
    with tempfile.TemporaryDirectory() as td:
        cal = create_calibrator(Path(src), augmented_model_path=os.path.join(td, "augmented.onnx"),
                                calibrate_method=kind, extra_options=opts)
        step = max(batch, chunk - chunk % batch)
        for i in range(0, n, step):
            part = feeds_slice(calib, i, i + step)
            m = feeds_len(part)
            with _quiet():  # it prints a line per call
                cal.collect_data(ArrayReader(part, max(b for b in range(1, batch + 1) if m % b == 0)))
            # collect_data keeps the raw tensors it has put into the histograms: drop them
            # (the histograms themselves merge across calls).
            cal.clear_collected_data()
        with _quiet():
            ranges = cal.compute_data()
        del cal
    out = {}
    for tensor, td_ in ranges.items():
        lo, hi = (float(np.asarray(v).ravel()[0]) for v in td_.range_value)
        t = max(abs(lo), abs(hi), 1e-8)
        out[tensor] = [{"scale": np.array(t / 127.0, np.float32), "zero_point": np.array(0, np.int8)}]
    return out


def drop_conv_output_qdq(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, float]:
    """Remove the activation Q -> DQ pair on every Conv's output (the Conv then writes float);
    returns {tensor: scale} of the pairs removed (what `add_output_qdq` puts back)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.fspath(src))
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    rename, drop, scales = {}, set(), {}
    for q in g.node:
        conv = prod.get(q.input[0])
        if q.op_type != "QuantizeLinear" or conv is None or conv.op_type != "Conv":
            continue
        dqs = cons.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs) or len(cons.get(q.input[0], [])) != 1:
            continue
        scales[q.input[0]] = float(numpy_helper.to_array(inits[q.input[1]]))
        drop.add(id(q))
        for d in dqs:
            rename[d.output[0]] = q.input[0]
            drop.add(id(d))
    # a graph output keeps its name (the contract's): the Conv writes it directly
    outputs = {o.name for o in g.output}
    for dq_out, conv_out in list(rename.items()):
        if dq_out in outputs:
            for n in g.node:
                n.output[:] = [dq_out if o == conv_out else o for o in n.output]
            for v in rename:
                if rename[v] == conv_out:
                    rename[v] = dq_out
            scales[dq_out] = scales.pop(conv_out)
    keep = [n for n in g.node if id(n) not in drop]
    for n in keep:
        n.input[:] = [rename.get(i, i) for i in n.input]
    del g.node[:]
    g.node.extend(keep)
    _save(model, dst)
    return scales


def add_output_qdq(src: str | os.PathLike, dst: str | os.PathLike, scales: dict[str, float]) -> dict:
    """ONNX Runtime's form of the shared Q/DQ model: a symmetric int8 Q -> DQ pair on each
    tensor of `scales` (the quantized Convs' outputs), so that its optimizer fuses
    DQ -> Conv -> Q into QLinearConv (its int8 kernels write int8). Returns {"output_qdq": n}."""
    import onnx
    from onnx import helper

    model = onnx.load(os.fspath(src))
    g = model.graph
    nodes = list(g.node)
    out = []
    for n in nodes:
        out.append(n)
        for o in n.output:
            if o in scales:
                s, z = f"{o}_out_scale", f"{o}_out_zero_point"
                g.initializer.extend([helper.make_tensor(s, onnx.TensorProto.FLOAT, [], [scales[o]]),
                                      helper.make_tensor(z, onnx.TensorProto.INT8, [], [0])])
                for m in nodes:
                    m.input[:] = [f"{o}_out_dq" if i == o else i for i in m.input]
                out += [helper.make_node("QuantizeLinear", [o, s, z], [f"{o}_out_q"], name=f"{o}_out_QuantizeLinear"),
                        helper.make_node("DequantizeLinear", [f"{o}_out_q", s, z], [f"{o}_out_dq"], name=f"{o}_out_DequantizeLinear")]
    del g.node[:]
    g.node.extend(out)
    _save(model, dst)
    return {"output_qdq": sum(1 for o in scales if any(o in n.output for n in nodes))}


def check_qdq_symmetric(path: str | os.PathLike) -> list[str]:
    """Problems that make a Q/DQ model unacceptable to TensorRT: a QuantizeLinear or
    DequantizeLinear whose zero-point is not int8 0. Empty when all is well (or when the
    model has no Q/DQ nodes: check `count_qdq` for that)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.fspath(path))
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or not node.input[2]:
            problems.append(f"{node.name}: no zero-point (defaults to uint8)")
            continue
        t = inits.get(node.input[2]) or consts.get(node.input[2])
        if t is None:
            problems.append(f"{node.name}: zero-point {node.input[2]} is not a constant")
            continue
        if t.data_type != onnx.TensorProto.INT8:
            problems.append(f"{node.name}: zero-point type {onnx.TensorProto.DataType.Name(t.data_type)}, not INT8")
        elif np.any(numpy_helper.to_array(t) != 0):
            problems.append(f"{node.name}: non-zero zero-point")
    return problems


def count_qdq(path: str | os.PathLike) -> dict[str, int]:
    """Node counts of a model by op type (to see what was quantized)."""
    import collections

    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(os.fspath(path)).graph.node))


def _save(model, dst: str | os.PathLike) -> None:
    import onnx

    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    onnx.save(model, os.fspath(tmp))
    os.replace(tmp, dst)


# ----------------------------------------------------------------------------- CPU form
def fold_relu_uint8(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """The ONNX Runtime (x86 CPU) form of a symmetric Q/DQ model: every
    `X -> Q_a -> DQ_a -> Relu -> Q_b` becomes `X -> Q_b'` with Q_b' = Q_b's scale, uint8,
    zero-point 0, and the DQs after it read uint8.

    Why: ONNX Runtime's int8 kernels on x86 take uint8 activations (U8S8); it turns int8
    zero-point-0 pairs into uint8 zero-point-128 ones, and a Relu in front of such a Q can
    not be folded (it clamps at 128, not 0), so it stays a float op between DQ and Q and
    blocks QLinearConv/QLinearAdd fusion (measured: no faster than FP32). Q_b' computes
    clamp(round(x / s), 0, 255): the Relu's clamp at 0 is its lower saturation, so the Relu
    folds away (ORT then fuses Conv+Relu into one QLinearConv). The result equals the
    symmetric model's except that Q_a's rounding is skipped and values above 127 x s are no
    longer clipped: never less accurate. TensorRT gets the symmetric model, not this one.
    Returns {"relus_folded": n}."""
    import collections

    import onnx
    from onnx import helper

    model = onnx.load(os.fspath(src))
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    cons = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            cons[i].append(n)
    outputs = {o.name for o in g.output}
    drop, folded = set(), 0
    for relu in [n for n in g.node if n.op_type == "Relu"]:
        dqa = prod.get(relu.input[0])
        qa = prod.get(dqa.input[0]) if dqa is not None and dqa.op_type == "DequantizeLinear" else None
        qbs = cons[relu.output[0]]
        if (qa is None or qa.op_type != "QuantizeLinear" or relu.output[0] in outputs
                or len(qbs) != 1 or qbs[0].op_type != "QuantizeLinear"
                or len(cons[qa.output[0]]) != 1 or len(cons[dqa.output[0]]) != 1):
            continue
        qb = qbs[0]
        zp_name = f"{qb.output[0]}_zero_point_u8"
        g.initializer.append(helper.make_tensor(zp_name, onnx.TensorProto.UINT8, [], [0]))
        qb.input[0] = qa.input[0]
        qb.input[2] = zp_name
        for dq in cons[qb.output[0]]:
            if dq.op_type == "DequantizeLinear":
                dq.input[2] = zp_name
        drop.update(id(n) for n in (qa, dqa, relu))
        folded += 1
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep)
    _save(model, dst)
    return {"relus_folded": folded}
